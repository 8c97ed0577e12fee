//! What slipstream's tests share, in one place: OTLP requests built for tests ([`otlp`]),
//! waiting for a condition with a deadline instead of sleeping ([`eventually`]), the
//! `slipstream` binary started on port 0 and the addresses it reports in its ready file
//! ([`process`]), the ports a child process such as Prometheus listens on ([`listening`]),
//! and plain HTTP and gRPC clients for bodies and headers no SDK would send ([`http`],
//! [`raw`]).
//!
//! It depends on no slipstream crate, so every component can take it as a dev-dependency
//! without building a second copy of itself; helpers that need the running app in-process
//! stay with the end-to-end tests.
#![forbid(unsafe_code)]

pub mod eventually;
pub mod http;
pub mod listening;
pub mod otlp;
pub mod process;
pub mod raw;

#[cfg(test)]
mod tests;

pub use eventually::{Condition, eventually, eventually_async};
pub use http::{answers, gunzip, gzip, http_get, self_metric};
