//! `prometheus` (in progress).
