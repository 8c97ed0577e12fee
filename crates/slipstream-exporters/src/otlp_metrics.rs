//! `otlp_metrics` (in progress).
