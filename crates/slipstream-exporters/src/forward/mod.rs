//! The forward queue and the OTLP exporter that drains it.
//!
//! The receivers push each accepted request (protobuf bytes, as received) into the
//! [`ForwardQueue`]; it is bounded by bytes, and refuses with [`slipstream_core::Backpressure`] when full so the
//! client keeps the data. The [`Forwarder`] sends queued requests downstream over OTLP/gRPC or
//! OTLP/HTTP, `concurrency` at a time, retrying failures with exponential backoff (honouring
//! RetryInfo and Retry-After) until the downstream takes them, or `max_elapsed_time` passes.

mod client;
mod counters;
mod queue;
mod router;
mod spill;

pub(crate) use client::otlp_delivery;
pub use client::{DrainReport, Forwarder, ForwarderHandle};
pub use queue::ForwardQueue;
pub use router::ForwardRouter;

#[cfg(test)]
mod tests;
