//! `delivery` (in progress).
