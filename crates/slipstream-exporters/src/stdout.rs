//! `stdout` (in progress).
