//! `webhook` (in progress).
