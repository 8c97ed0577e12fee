//! The hand-off from the receivers to the forward queue.

use std::time::Duration;

use bytes::Bytes;

/// An OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Traces (`/v1/traces`, `TraceService`).
    Traces,
    /// Metrics (`/v1/metrics`, `MetricsService`).
    Metrics,
    /// Logs (`/v1/logs`, `LogsService`).
    Logs,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The label value (`traces`, `metrics`, `logs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The OTLP/HTTP path (`/v1/traces`, ...).
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The OTLP/gRPC method path.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }
}

/// The forward queue refused a request because it is full; the client should retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the forward queue is full; retry after {retry_after:?}")]
pub struct Backpressure {
    /// How long the client should wait before retrying.
    pub retry_after: Duration,
}

/// Where the receivers put each accepted request for forwarding.
///
/// `body` is an encoded OTLP `Export*ServiceRequest` in protobuf: for protobuf requests the
/// bytes that arrived (decompressed), never re-encoded.
pub trait ForwardSink: Send + Sync + 'static {
    /// Queues a request for forwarding, or refuses it when the queue is full. The receivers
    /// call this before they aggregate, so a refused request leaves no trace in the SLIs and
    /// the client can retry it.
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure>;

    /// [`ForwardSink::forward`] of a request that arrived as `gzip`, one gzip member the
    /// receiver inflated to exactly `body`: a sink that sends gzip may send those bytes as they
    /// arrived rather than compress `body` again (bytes in, bytes out). The default drops them.
    fn forward_gzipped(
        &self,
        signal: Signal,
        body: Bytes,
        gzip: Bytes,
    ) -> Result<(), Backpressure> {
        drop(gzip);
        self.forward(signal, body)
    }

    /// Whether a request of `len` bytes would be refused now: the receivers ask before they
    /// scan a request, so that under overload a refusal costs little next to an accepted
    /// request. A cheap look, not a promise: [`ForwardSink::forward`] decides. `None` (the
    /// default) when it would probably be taken.
    fn would_refuse(&self, _signal: Signal, _len: usize) -> Option<Backpressure> {
        None
    }
}

/// Forwarding turned off: every request is accepted and discarded.
impl ForwardSink for () {
    fn forward(&self, _signal: Signal, _body: Bytes) -> Result<(), Backpressure> {
        Ok(())
    }
}
