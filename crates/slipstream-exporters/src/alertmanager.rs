//! `alertmanager` (in progress).
