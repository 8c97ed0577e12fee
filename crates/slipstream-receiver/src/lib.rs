//! The OTLP receivers: gRPC and HTTP servers, admission, and the span scanner.
//!
//! [`Receivers::bind`] opens the OTLP/gRPC (default :4317) and OTLP/HTTP (default :4318)
//! listeners; both hand each request body, once read within its size limit and decompressed
//! within its own limit, to the shared [`Pipeline`]. The pipeline validates the request (trace
//! requests with the wire-format [`scanner`], which extracts the fields an SLI needs without
//! building the prost tree; metrics and logs with its wire walk, which validates and counts
//! without allocating), offers the protobuf bytes to the forward queue (a refusal becomes the
//! OTLP spec's retryable answer), then hands the spans to the aggregator on the same worker
//! thread. JSON bodies are decoded with serde once and continue as protobuf. gRPC is framed by
//! hand on hyper's HTTP/2, so limits apply before decompression and forwarded bytes are the
//! bytes that arrived.
//!
//! With a [`MemoryGate`], what a request reads, decompresses and decodes is reserved on the
//! gate's [`InFlight`] budget before it is allocated, and a request that does not fit is
//! refused retryably; large decompressions and JSON decodes run on blocking threads.
//!
//! In two-tier mode the HTTP port also takes partial aggregates from sidecars
//! (`POST /v1/slipstream/aggregates`, see `http::aggregates`): same admission, then a prost decode
//! and the [`slipstream_core::AggregatesSink`] plugged in with [`Pipeline::with_aggregates`]
//! through an [`AggregatesIntake`], which holds the sidecars' own tokens, the sender names
//! taken and the plausibility limits (off unless `receivers.otlp.aggregates.enabled`).
//!
//! The modules, each depending only on those after it: `server` (listeners, TLS) and `conn`
//! (connection limits) route to `grpc` (hand-framed OTLP/gRPC) and `http` (routing to its
//! `otlp` and `aggregates` endpoints, both through its `admit`); these use `body` (bounded
//! reading and decompression) and the [`Pipeline`], which uses the [`scanner`], the
//! [`AggregatesIntake`] (`intake`) and the refusal reasons (`refusal`), each counted without a
//! registry lookup per request. The protobuf wire reader the scanner walks with is
//! [`slipstream_core::wire`], shared with the router.
#![forbid(unsafe_code)]

mod body;
mod conn;
mod grpc;
mod http;
mod intake;
mod pipeline;
pub mod records;
mod refusal;
pub mod scanner;
mod server;

pub use body::ResponseBody;
pub use conn::{ADMIN_MAX_OPEN, ConnectionLimits};
pub use intake::AggregatesIntake;
pub use pipeline::{ExportError, InFlight, Limits, MemoryGate, Pipeline, Transport};
pub use server::{Handler, Receivers, RunningReceivers, serve_http, serve_http_with};

#[cfg(test)]
mod test_support;
