//! `remote_write` (in progress).
