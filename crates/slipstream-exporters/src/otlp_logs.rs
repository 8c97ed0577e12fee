//! `otlp_logs` (in progress).
