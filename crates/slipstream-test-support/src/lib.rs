//! What slipstream's tests share, in one place: OTLP requests built for tests and benches
//! ([`otlp`]), waiting for a condition with a deadline instead of sleeping ([`eventually`]),
//! the `slipstream` binary started on port 0 and the addresses it reports in its ready file
//! ([`process`]), several of them each on its own config ([`node`]), a downstream OTLP server
//! that records what it is sent ([`sink`]), a recording HTTP server for testing clients
//! ([`recorder`]), the ports a child process such as Prometheus listens on ([`listening`]),
//! real Prometheus and Alertmanager processes ([`procs`]), a relay for a client that needs an
//! address before its server has one ([`relay`]), and plain HTTP and gRPC clients for bodies
//! and headers no SDK would send ([`http`], [`raw`]).
//!
//! It depends on no slipstream crate, so every component can take it as a dev-dependency
//! without building a second copy of itself; helpers that need the running app in-process
//! stay with the end-to-end tests.
#![forbid(unsafe_code)]

pub mod eventually;
pub mod http;
pub mod listening;
pub mod node;
pub mod otlp;
pub mod process;
pub mod procs;
pub mod raw;
pub mod recorder;
pub mod relay;
pub mod sink;

#[cfg(test)]
mod tests;

pub use eventually::{Condition, eventually, eventually_async};
pub use http::{answers, gunzip, gzip, http_get, self_metric};
