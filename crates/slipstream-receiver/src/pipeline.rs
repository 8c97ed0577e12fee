//! What happens to an export request once its body is read, whatever the transport: validate,
//! admit, forward, aggregate, count.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use slipstream_core::telemetry::{Counter, names};
use slipstream_core::{
    ForwardSink, ObservationSink, Registry, ScanSpec, Signal, SpanRecord,
};

use crate::scanner;

/// Why a request was not accepted; each maps onto an OTLP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The body cannot be decoded (HTTP 400, gRPC INVALID_ARGUMENT). Not retryable.
    #[error("{0}")]
    Invalid(String),
    /// The body is over a size limit (HTTP 413, gRPC RESOURCE_EXHAUSTED). Not retryable.
    #[error("{0}")]
    TooLarge(String),
    /// A span or resource breaks an attribute limit (HTTP 400, gRPC INVALID_ARGUMENT). Not
    /// retryable.
    #[error("{0}")]
    AttributeLimit(String),
    /// slipstream cannot take it now (HTTP 503 with Retry-After, gRPC UNAVAILABLE with
    /// RetryInfo). The client keeps the data and retries after the delay.
    #[error("slipstream is overloaded (forward queue full); retry after {0:?}")]
    Backpressure(Duration),
    /// slipstream is over its memory limit (HTTP 503 with Retry-After, gRPC UNAVAILABLE with
    /// RetryInfo); it recovers by itself as queued data drains.
    #[error("slipstream is over its memory limit; retry after {0:?}")]
    MemoryLimit(Duration),
}

impl ExportError {
    /// The `reason` label of the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ExportError::Invalid(_) => "invalid",
            ExportError::TooLarge(_) => "too_large",
            ExportError::AttributeLimit(_) => "attribute_limit",
            ExportError::Backpressure(_) => "queue_full",
            ExportError::MemoryLimit(_) => "memory_limit",
        }
    }
}

/// The transport a request came in on, as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

impl Transport {
    /// `grpc` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

#[derive(Debug)]
struct SignalCounters {
    items: Arc<Counter>,
    accepted: Arc<Counter>,
    refused: Arc<Counter>,
    bytes: Arc<Counter>,
}

/// Limits applied to every request, whatever the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body after decompression.
    pub max_decompressed_size: usize,
    /// Largest number of spans per trace request (0 = none).
    pub max_spans_per_request: usize,
    /// Attribute limits of trace requests (0 = none).
    pub attributes: scanner::AttributeLimits,
}

/// The shared back half of both receivers.
pub struct Pipeline {
    forward: Arc<dyn ForwardSink>,
    sink: Arc<dyn ObservationSink>,
    spec: ScanSpec,
    limits: Limits,
    registry: Registry,
    counters: Vec<SignalCounters>,
    tokens: Option<std::sync::RwLock<Arc<Vec<Vec<u8>>>>>,
    memory: Option<MemoryGate>,
    aggregates: Option<Arc<crate::aggregates::AggregatesIntake>>,
    aggregate_counters: AggregateCounters,
}

/// The counters of the partial-aggregates path.
#[derive(Debug)]
struct AggregateCounters {
    accepted: Arc<Counter>,
    duplicate: Arc<Counter>,
    refused: Arc<Counter>,
    bytes: Arc<Counter>,
}

/// Set by the memory monitor while slipstream is over its memory limit; requests are then
/// refused with a retryable answer before their body is read.
#[derive(Debug, Clone)]
pub struct MemoryGate {
    /// True while over the limit.
    pub over: Arc<std::sync::atomic::AtomicBool>,
    /// Delay suggested to refused clients.
    pub retry_after: Duration,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("spec", &self.spec)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn index(signal: Signal, transport: Transport) -> usize {
    let s = match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    };
    s * 2 + usize::from(transport == Transport::Http)
}

impl Pipeline {
    /// A pipeline that forwards accepted requests to `forward` and hands their spans to `sink`.
    pub fn new(
        forward: Arc<dyn ForwardSink>,
        sink: Arc<dyn ObservationSink>,
        spec: ScanSpec,
        limits: Limits,
        registry: Registry,
    ) -> Self {
        let mut counters = Vec::with_capacity(6);
        for signal in Signal::ALL {
            for transport in [Transport::Grpc, Transport::Http] {
                let l = [signal.as_str(), transport.as_str()];
                counters.push(SignalCounters {
                    items: registry.counter(&names::RECEIVED_ITEMS, &l),
                    accepted: registry
                        .counter(&names::RECEIVED_REQUESTS, &[l[0], l[1], "accepted"]),
                    refused: registry.counter(&names::RECEIVED_REQUESTS, &[l[0], l[1], "refused"]),
                    bytes: registry.counter(&names::RECEIVED_BYTES, &l),
                });
            }
        }
        let aggregate_counters = AggregateCounters {
            accepted: registry.counter(&names::AGGREGATES_REQUESTS, &["accepted"]),
            duplicate: registry.counter(&names::AGGREGATES_REQUESTS, &["duplicate"]),
            refused: registry.counter(&names::AGGREGATES_REQUESTS, &["refused"]),
            bytes: registry.counter(&names::AGGREGATES_BYTES, &[]),
        };
        Pipeline {
            forward,
            sink,
            spec,
            limits,
            registry,
            counters,
            tokens: None,
            memory: None,
            aggregates: None,
            aggregate_counters,
        }
    }

    /// Takes partial aggregates (two-tier mode, `POST /v1/slipstream/aggregates` on the HTTP
    /// port) from the senders `intake` authenticates, within its limits, and hands them to its
    /// sink; without it that path answers 404.
    pub fn with_aggregates(mut self, intake: Arc<crate::aggregates::AggregatesIntake>) -> Self {
        self.aggregates = Some(intake);
        self
    }

    /// Where partial aggregates go and who may send them, when they are taken.
    pub fn aggregates(&self) -> Option<&crate::aggregates::AggregatesIntake> {
        self.aggregates.as_deref()
    }

    /// Counts a partial-aggregates request taken (`accepted`) or recognized as a retry
    /// (`duplicate`).
    pub(crate) fn count_aggregates_answered(&self, outcome: &str) {
        let c = &self.aggregate_counters;
        match outcome {
            "duplicate" => c.duplicate.inc(),
            _ => c.accepted.inc(),
        }
    }

    /// Counts a partial-aggregates request refused, with its reason.
    pub(crate) fn count_aggregates_refused(&self, reason: &str) {
        self.aggregate_counters.refused.inc();
        self.registry
            .counter(&names::AGGREGATES_REFUSED, &[reason])
            .inc();
    }

    /// Counts partial-aggregates bytes as they arrived on the wire.
    pub(crate) fn count_aggregates_bytes(&self, n: usize) {
        self.aggregate_counters.bytes.add(n as u64);
    }

    /// Refuses requests while `gate` says slipstream is over its memory limit.
    pub fn with_memory_gate(mut self, gate: MemoryGate) -> Self {
        self.memory = Some(gate);
        self
    }

    /// `Err` while over the memory limit: one atomic load per request.
    pub(crate) fn admit_memory(&self) -> Result<(), ExportError> {
        match &self.memory {
            Some(g) if g.over.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(ExportError::MemoryLimit(g.retry_after))
            }
            _ => Ok(()),
        }
    }

    /// Requires `Authorization: Bearer <token>` with one of `tokens` on every request.
    pub fn with_bearer_tokens(mut self, tokens: Vec<String>) -> Self {
        self.tokens = Some(std::sync::RwLock::new(token_bytes(tokens)));
        self
    }

    /// Replaces the accepted tokens (a reload); requests already authorized are unaffected.
    /// Turning authentication on or off needs a restart: `Err` when it was off at start.
    pub fn replace_bearer_tokens(&self, tokens: Vec<String>) -> Result<(), &'static str> {
        let Some(lock) = &self.tokens else {
            return Err("authentication was off at start; turning it on needs a restart");
        };
        *lock.write().unwrap_or_else(|e| e.into_inner()) = token_bytes(tokens);
        Ok(())
    }

    /// Whether the request carries an accepted bearer token (always, without auth).
    pub(crate) fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(tokens) = &self.tokens else {
            return true;
        };
        let tokens = tokens.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| {
                let (scheme, rest) = v.split_at(v.len().min(7));
                scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
            })
        else {
            return false;
        };
        // Compare every token in full, whatever matches, so timing tells nothing.
        tokens
            .iter()
            .fold(false, |ok, t| ok | constant_time_eq(t, given))
    }

    /// The registry the pipeline's self-metrics live in.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts `n` bytes received on the wire.
    pub(crate) fn count_wire_bytes(&self, signal: Signal, transport: Transport, n: usize) {
        self.counters[index(signal, transport)].bytes.add(n as u64);
    }

    /// Counts a request refused before it reached [`Pipeline::export`] (wrong method, media
    /// type, size, encoding, ...), or by it.
    pub(crate) fn count_refused(&self, signal: Signal, transport: Transport, reason: &str) {
        self.counters[index(signal, transport)].refused.inc();
        self.registry
            .counter(
                &names::REFUSED_REQUESTS,
                &[signal.as_str(), transport.as_str(), reason],
            )
            .inc();
    }

    /// Handles one decoded protobuf request body: validates it, admits it to the forward
    /// queue, records its spans, counts it. On error nothing was forwarded or recorded.
    pub fn export(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
    ) -> Result<(), ExportError> {
        let result = self.export_inner(signal, body);
        let c = &self.counters[index(signal, transport)];
        match &result {
            Ok(items) => {
                c.accepted.inc();
                c.items.add(*items);
            }
            Err(e) => self.count_refused(signal, transport, e.reason()),
        }
        result.map(|_| ())
    }

    fn export_inner(&self, signal: Signal, body: Bytes) -> Result<u64, ExportError> {
        if body.len() > self.limits.max_decompressed_size {
            return Err(ExportError::TooLarge(format!(
                "request is {} bytes, more than the limit of {}",
                body.len(),
                self.limits.max_decompressed_size
            )));
        }
        match signal {
            Signal::Traces => {
                let mut spans: Vec<SpanRecord<'_>> = Vec::with_capacity(estimate_spans(body.len()));
                scanner::scan_traces_limited(&body, &self.spec, self.limits.attributes, &mut spans)
                    .map_err(|e| match e {
                        scanner::ScanError::TooManyAttributes { .. }
                        | scanner::ScanError::AttributeTooLarge { .. } => {
                            ExportError::AttributeLimit(format!("refused: {e}"))
                        }
                        e => {
                            ExportError::Invalid(format!("invalid ExportTraceServiceRequest: {e}"))
                        }
                    })?;
                let max = self.limits.max_spans_per_request;
                if max > 0 && spans.len() > max {
                    return Err(ExportError::TooLarge(format!(
                        "request holds {} spans, more than the limit of {max}",
                        spans.len()
                    )));
                }
                self.admit(signal, body.clone())?;
                self.sink.record(&spans);
                Ok(spans.len() as u64)
            }
            Signal::Metrics => {
                let req = ExportMetricsServiceRequest::decode(&body[..]).map_err(|e| {
                    ExportError::Invalid(format!("invalid ExportMetricsServiceRequest: {e}"))
                })?;
                let points = count_data_points(&req);
                self.admit(signal, body)?;
                Ok(points)
            }
            Signal::Logs => {
                let req = ExportLogsServiceRequest::decode(&body[..]).map_err(|e| {
                    ExportError::Invalid(format!("invalid ExportLogsServiceRequest: {e}"))
                })?;
                let records = req
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .map(|s| s.log_records.len() as u64)
                    .sum();
                self.admit(signal, body)?;
                Ok(records)
            }
        }
    }

    fn admit(&self, signal: Signal, body: Bytes) -> Result<(), ExportError> {
        self.forward
            .forward(signal, body)
            .map_err(|b| ExportError::Backpressure(b.retry_after))
    }

    /// Decodes an OTLP/JSON body (serde, once) and re-encodes it as protobuf for the rest of
    /// the pipeline; returns the protobuf bytes.
    pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<Bytes, ExportError> {
        fn conv<M: Message + serde::de::DeserializeOwned>(
            json: &[u8],
            what: &str,
        ) -> Result<Bytes, ExportError> {
            let msg: M = serde_json::from_slice(json)
                .map_err(|e| ExportError::Invalid(format!("invalid OTLP/JSON {what}: {e}")))?;
            Ok(Bytes::from(msg.encode_to_vec()))
        }
        match signal {
            Signal::Traces => conv::<ExportTraceServiceRequest>(json, "ExportTraceServiceRequest"),
            Signal::Metrics => {
                conv::<ExportMetricsServiceRequest>(json, "ExportMetricsServiceRequest")
            }
            Signal::Logs => conv::<ExportLogsServiceRequest>(json, "ExportLogsServiceRequest"),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A first guess at the number of spans in a request, to size the scan buffer once.
fn estimate_spans(len: usize) -> usize {
    (len / 256).clamp(4, 8192)
}

fn count_data_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

fn token_bytes(tokens: Vec<String>) -> Arc<Vec<Vec<u8>>> {
    Arc::new(tokens.into_iter().map(String::into_bytes).collect())
}
