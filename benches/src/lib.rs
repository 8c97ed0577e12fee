//! Shared helpers for the benches and the load harness.
