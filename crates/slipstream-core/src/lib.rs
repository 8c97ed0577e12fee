//! The data model every slipstream component shares.
//!
//! The receiver's span scanner walks OTLP requests and hands each span it finds to the
//! aggregator as a [`SpanRecord`]: a borrowed view of the few fields an SLI needs (service,
//! name, kind, status, HTTP/RPC status attributes, start and end time, configured dimension
//! values). The aggregator classifies it with [`OutcomeRules`] into an [`Outcome`] and files it
//! into a per-worker shard. Components never depend on each other: where one stage feeds the
//! next on the hot path, the interface is a trait here ([`ObservationSink`]) and the binary
//! plugs the implementation in ([`AggregatesSink`] likewise hands a gateway's receiver the
//! partial aggregates a sidecar ships, see [`aggregates`]). Time is read through a [`Clock`] so
//! tests can drive it.
#![forbid(unsafe_code)]

pub mod aggregates;
pub mod auth;
pub mod exemplar;
pub mod explain;
pub mod export;
mod forward;
mod outcome;
pub mod route;
pub mod rpc;
mod span;
pub mod telemetry;
mod time;
pub mod wire;

pub use aggregates::{AggregatesSink, MergeError, Merged};
pub use exemplar::{Exemplar, Exemplars};
pub use export::{BurnRateEvent, MetricFamily, MetricsSnapshot, MetricsSource};
pub use forward::{Backpressure, ForwardSink, Signal};
pub use outcome::{GrpcBadCodes, Outcome, OutcomeRules};
pub use span::{
    AttrValue, MAX_CANDIDATES, MAX_DIMENSIONS, ObservationSink, SAMPLING_THRESHOLD_RANGE, ScanSpec,
    SpanKind, SpanRecord, StatusCode,
};
pub use telemetry::Registry;
pub use time::{Clock, ManualClock, SystemClock, UnixNanos};

#[cfg(test)]
mod tests;
