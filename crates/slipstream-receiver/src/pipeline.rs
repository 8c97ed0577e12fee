//! What happens to an export request once its body is read, whatever the transport: validate,
//! admit, forward, aggregate, count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slipstream_core::telemetry::{Counter, names};
use slipstream_core::{ForwardSink, ObservationSink, Registry, ScanSpec, Signal, SpanRecord};

use crate::refusal::{Refusal, RefusalCounters};
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
    /// The request decodes but holds what a spec-following downstream refuses (ids of the wrong
    /// length), or what slipstream will not walk (values nested past its cap): HTTP 400, gRPC
    /// INVALID_ARGUMENT, refused up front rather than accepted and lost. Not retryable.
    #[error("{message}")]
    Unforwardable {
        /// The `reason` label: `invalid_id` or `nesting_limit`.
        reason: &'static str,
        /// What is wrong, and where.
        message: String,
    },
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
            ExportError::Unforwardable { reason, .. } => reason,
            ExportError::Backpressure(_) => "queue_full",
            ExportError::MemoryLimit(_) => "memory_limit",
        }
    }

    /// [`ExportError::reason`] as a slot of the refusal counters.
    pub(crate) fn refusal(&self) -> Refusal {
        match self {
            ExportError::Invalid(_) => Refusal::Invalid,
            ExportError::TooLarge(_) => Refusal::TooLarge,
            ExportError::AttributeLimit(_) => Refusal::AttributeLimit,
            ExportError::Unforwardable { reason, .. } => match *reason {
                "nesting_limit" => Refusal::NestingLimit,
                _ => Refusal::InvalidId,
            },
            ExportError::Backpressure(_) => Refusal::QueueFull,
            ExportError::MemoryLimit(_) => Refusal::MemoryLimit,
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
    /// `refused` by reason.
    reasons: RefusalCounters,
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
    aggregates: Option<Arc<crate::intake::AggregatesIntake>>,
    aggregate_counters: AggregateCounters,
}

/// The counters of the partial-aggregates path.
#[derive(Debug)]
struct AggregateCounters {
    accepted: Arc<Counter>,
    duplicate: Arc<Counter>,
    refused: Arc<Counter>,
    bytes: Arc<Counter>,
    /// `refused` by reason.
    reasons: RefusalCounters,
}

/// Set by the memory monitor while slipstream is over its memory limit; requests are then
/// refused with a retryable answer before their body is read. While under it, what a request
/// reads, decompresses and decodes is reserved in [`MemoryGate::in_flight`] before it is
/// allocated, so that a burst of requests admitted between two readings cannot take the
/// resident memory past the limit by more than the in-flight cap.
#[derive(Debug, Clone)]
pub struct MemoryGate {
    /// True while over the limit.
    pub over: Arc<std::sync::atomic::AtomicBool>,
    /// Delay suggested to refused clients.
    pub retry_after: Duration,
    /// The bytes requests hold or will hold, against a cap.
    pub in_flight: Arc<InFlight>,
}

/// The memory budget of requests in progress: bytes reserved by requests being read and
/// decoded, plus the bytes of accepted requests that stay resident (in the forward queue)
/// since the memory monitor last read the resident memory, which then accounts for them.
#[derive(Debug)]
pub struct InFlight {
    cap: usize,
    /// Reserved and retained bytes together: the one number reservations are checked against.
    held: AtomicUsize,
    /// The retained part of `held`, given back at the next reading.
    retained: AtomicUsize,
}

impl InFlight {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        InFlight {
            cap,
            held: AtomicUsize::new(0),
            retained: AtomicUsize::new(0),
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The bytes held now (reserved and retained).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Called after each reading of the resident memory: the bytes retained before it are in
    /// that reading, so they leave the budget.
    pub fn sampled(&self) {
        let r = self.retained.swap(0, Ordering::Relaxed);
        self.held.fetch_sub(r, Ordering::Relaxed);
    }

    fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                h.checked_add(n).filter(|t| *t <= self.cap)
            })
            .is_ok()
    }
}

/// The bytes one request has reserved on the memory gate; given back when the last clone is
/// dropped (minus what it marked as retained, given back at the next memory reading). Clones
/// share one reservation, so a part of the work can move to a blocking thread. Without a gate
/// it reserves nothing and always has room.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reservation(Option<Arc<Held>>);

#[derive(Debug)]
struct Held {
    gate: MemoryGate,
    bytes: AtomicUsize,
    retained: AtomicUsize,
    /// Part of `bytes` reserved ahead ([`Reservation::prepay`]) and not used yet.
    credit: AtomicUsize,
}

impl Reservation {
    /// Reserves `n` more bytes: `Err(MemoryLimit)` (retryable) when the budget has no room
    /// now, `Err(TooLarge)` when this request alone would need more than the whole budget.
    pub(crate) fn grow(&self, n: usize) -> Result<(), ExportError> {
        let Some(held) = &self.0 else {
            return Ok(());
        };
        // What was reserved ahead is used first.
        let from_credit = held
            .credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c - c.min(n)))
            .map_or(0, |c| c.min(n));
        let n = n - from_credit;
        if n == 0 {
            return Ok(());
        }
        let budget = &held.gate.in_flight;
        if budget.try_take(n) {
            held.bytes.fetch_add(n, Ordering::Relaxed);
            return Ok(());
        }
        let want = held.bytes.load(Ordering::Relaxed).saturating_add(n);
        if want > budget.cap {
            return Err(ExportError::TooLarge(format!(
                "decoding this request needs more than {} bytes, the memory budget of requests in flight (memory.max_in_flight)",
                budget.cap
            )));
        }
        Err(ExportError::MemoryLimit(held.gate.retry_after))
    }

    /// Reserves `n` bytes ahead, for what decoding the request will allocate later (used by
    /// [`Reservation::grow`] before the budget): a request admitted in a burst then has what
    /// it needs, instead of every request holding part of the budget and none enough.
    pub(crate) fn prepay(&self, n: usize) -> Result<(), ExportError> {
        self.grow(n)?;
        if let Some(held) = &self.0 {
            held.credit.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Marks `n` bytes as staying resident after the request (its body, queued to forward).
    pub(crate) fn retain(&self, n: usize) {
        if let Some(held) = &self.0 {
            held.retained.store(n, Ordering::Relaxed);
        }
    }

    /// The bytes reserved.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |h| h.bytes.load(Ordering::Relaxed))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let budget = &self.gate.in_flight;
        let bytes = *self.bytes.get_mut();
        // What stays resident stays in the budget until the next reading, within what was
        // reserved.
        let kept = (*self.retained.get_mut()).min(bytes);
        budget.held.fetch_sub(bytes - kept, Ordering::Relaxed);
        budget.retained.fetch_add(kept, Ordering::Relaxed);
    }
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
                    reasons: RefusalCounters::new(&registry, &names::REFUSED_REQUESTS, &l),
                });
            }
        }
        let aggregate_counters = AggregateCounters {
            accepted: registry.counter(&names::AGGREGATES_REQUESTS, &["accepted"]),
            duplicate: registry.counter(&names::AGGREGATES_REQUESTS, &["duplicate"]),
            refused: registry.counter(&names::AGGREGATES_REQUESTS, &["refused"]),
            bytes: registry.counter(&names::AGGREGATES_BYTES, &[]),
            reasons: RefusalCounters::new(&registry, &names::AGGREGATES_REFUSED, &[]),
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
    pub fn with_aggregates(mut self, intake: Arc<crate::intake::AggregatesIntake>) -> Self {
        self.aggregates = Some(intake);
        self
    }

    /// Where partial aggregates go and who may send them, when they are taken.
    pub fn aggregates(&self) -> Option<&crate::intake::AggregatesIntake> {
        self.aggregates.as_deref()
    }

    /// Counts a partial-aggregates request taken (`accepted`) or recognized as a retry
    /// (`duplicate`).
    pub(crate) fn count_aggregates_answered(&self, merged: slipstream_core::Merged) {
        let c = &self.aggregate_counters;
        match merged {
            slipstream_core::Merged::Duplicate => c.duplicate.inc(),
            slipstream_core::Merged::Accepted => c.accepted.inc(),
        }
    }

    /// Counts a partial-aggregates request refused, with its reason.
    pub(crate) fn count_aggregates_refused(&self, reason: Refusal) {
        let c = &self.aggregate_counters;
        c.refused.inc();
        c.reasons.inc(reason);
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
        slipstream_core::auth::bearer_accepted(
            headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            &tokens,
        )
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
    pub(crate) fn count_refused(&self, signal: Signal, transport: Transport, reason: Refusal) {
        let c = &self.counters[index(signal, transport)];
        c.refused.inc();
        c.reasons.inc(reason);
    }

    /// Handles one decoded protobuf request body: validates it, admits it to the forward
    /// queue, records its spans, counts it. On error nothing was forwarded or recorded.
    pub fn export(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
    ) -> Result<(), ExportError> {
        let reservation = self.reserve();
        self.export_reserved(signal, transport, body, &reservation)
    }

    /// A reservation on the memory gate for one request (an empty one without a gate).
    pub(crate) fn reserve(&self) -> Reservation {
        Reservation(self.memory.as_ref().map(|gate| {
            Arc::new(Held {
                gate: gate.clone(),
                bytes: AtomicUsize::new(0),
                retained: AtomicUsize::new(0),
                credit: AtomicUsize::new(0),
            })
        }))
    }

    /// [`Pipeline::export`] of a request whose memory is reserved in `reservation`: what the
    /// scan allocates is reserved there first, and an accepted body stays in it as retained.
    pub(crate) fn export_reserved(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
        reservation: &Reservation,
    ) -> Result<(), ExportError> {
        self.export_reserved_gzip(signal, transport, body, None, reservation)
    }

    /// [`Pipeline::export_reserved`] of a body that arrived as the one gzip member `gzip`
    /// (inflated whole to `body`): the forward queue may send those bytes as they arrived.
    pub(crate) fn export_reserved_gzip(
        &self,
        signal: Signal,
        transport: Transport,
        body: Bytes,
        gzip: Option<Bytes>,
        reservation: &Reservation,
    ) -> Result<(), ExportError> {
        let len = body.len() + gzip.as_ref().map_or(0, Bytes::len);
        let result = self.export_inner(signal, body, gzip, reservation);
        let c = &self.counters[index(signal, transport)];
        match &result {
            Ok(items) => {
                reservation.retain(len);
                c.accepted.inc();
                c.items.add(*items);
            }
            Err(e) => self.count_refused(signal, transport, e.refusal()),
        }
        result.map(|_| ())
    }

    fn export_inner(
        &self,
        signal: Signal,
        body: Bytes,
        gzip: Option<Bytes>,
        reservation: &Reservation,
    ) -> Result<u64, ExportError> {
        if body.len() > self.limits.max_decompressed_size {
            return Err(ExportError::TooLarge(format!(
                "request is {} bytes, more than the limit of {}",
                body.len(),
                self.limits.max_decompressed_size
            )));
        }
        // Under overload, refuse before the scan, the cost of an accepted request.
        if let Some(b) = self.forward.would_refuse(signal, body.len()) {
            return Err(ExportError::Backpressure(b.retry_after));
        }
        match signal {
            Signal::Traces => {
                let max = self.limits.max_spans_per_request;
                let mut first = estimate_spans(body.len()).min(8192);
                if max > 0 {
                    first = first.min(max);
                }
                reservation.grow(first * std::mem::size_of::<SpanRecord<'_>>())?;
                let mut spans: Vec<SpanRecord<'_>> = Vec::with_capacity(first);
                // Why the budget refused the span buffer more room, when it did.
                let refused = std::cell::Cell::new(None);
                let room = |n: usize| match reservation.grow(n) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.set(Some(e));
                        false
                    }
                };
                let checks = scanner::SpanChecks {
                    max_spans: max,
                    ids: true,
                    room: Some(&room),
                };
                scanner::scan_traces_checked(
                    &body,
                    &self.spec,
                    self.limits.attributes,
                    checks,
                    &mut spans,
                )
                .map_err(|e| match e {
                    scanner::ScanError::NoRoom { .. } => refused
                        .take()
                        .unwrap_or(ExportError::Invalid(e.to_string())),
                    e => scan_error(e, "ExportTraceServiceRequest"),
                })?;
                if max > 0 && spans.len() > max {
                    return Err(scan_error(
                        scanner::ScanError::TooManySpans { limit: max },
                        "ExportTraceServiceRequest",
                    ));
                }
                self.admit(signal, body.clone(), gzip)?;
                self.sink.record(&spans);
                Ok(spans.len() as u64)
            }
            Signal::Metrics => {
                let points = scanner::walk_metrics(&body)
                    .map_err(|e| scan_error(e, "ExportMetricsServiceRequest"))?;
                self.admit(signal, body, gzip)?;
                Ok(points)
            }
            Signal::Logs => {
                let records = scanner::walk_logs(&body)
                    .map_err(|e| scan_error(e, "ExportLogsServiceRequest"))?;
                self.admit(signal, body, gzip)?;
                Ok(records)
            }
        }
    }

    fn admit(&self, signal: Signal, body: Bytes, gzip: Option<Bytes>) -> Result<(), ExportError> {
        match gzip {
            Some(gzip) => self.forward.forward_gzipped(signal, body, gzip),
            None => self.forward.forward(signal, body),
        }
        .map_err(|b| ExportError::Backpressure(b.retry_after))
    }

    /// Decodes an OTLP/JSON body (serde, once) and re-encodes it as protobuf for the rest of
    /// the pipeline; returns the protobuf bytes.
    pub fn json_to_protobuf(signal: Signal, json: &[u8]) -> Result<Bytes, ExportError> {
        json_to_protobuf_reserved(signal, json, None)
    }
}

/// [`Pipeline::json_to_protobuf`], reserving on `reservation` a bound of what the decoded tree
/// takes (before decoding) and the protobuf encoding's exact size (before encoding).
pub(crate) fn json_to_protobuf_reserved(
    signal: Signal,
    json: &[u8],
    reservation: Option<&Reservation>,
) -> Result<Bytes, ExportError> {
    fn conv<M: Message + serde::de::DeserializeOwned>(
        json: &[u8],
        what: &str,
        reservation: Option<&Reservation>,
    ) -> Result<Bytes, ExportError> {
        if let Some(r) = reservation {
            r.grow(json_tree_bound(json))?;
        }
        let msg: M = serde_json::from_slice(json)
            .map_err(|e| ExportError::Invalid(format!("invalid OTLP/JSON {what}: {e}")))?;
        if let Some(r) = reservation {
            r.grow(msg.encoded_len())?;
        }
        Ok(Bytes::from(msg.encode_to_vec()))
    }
    match signal {
        Signal::Traces => {
            conv::<ExportTraceServiceRequest>(json, "ExportTraceServiceRequest", reservation)
        }
        Signal::Metrics => {
            conv::<ExportMetricsServiceRequest>(json, "ExportMetricsServiceRequest", reservation)
        }
        Signal::Logs => {
            conv::<ExportLogsServiceRequest>(json, "ExportLogsServiceRequest", reservation)
        }
    }
}

/// The largest prost message a JSON object can become (every OTLP message is at most this).
const LARGEST_MESSAGE: usize = {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
        SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
    use std::mem::size_of;
    let sizes = [
        size_of::<Span>(),
        size_of::<ResourceSpans>(),
        size_of::<LogRecord>(),
        size_of::<Metric>(),
        size_of::<NumberDataPoint>(),
        size_of::<HistogramDataPoint>(),
        size_of::<ExponentialHistogramDataPoint>(),
        size_of::<SummaryDataPoint>(),
        size_of::<KeyValue>(),
        size_of::<AnyValue>(),
    ];
    let mut max = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > max {
            max = sizes[i];
        }
        i += 1;
    }
    max
};

/// A bound of the heap a serde decode of `json` into an OTLP prost tree takes: each JSON object
/// becomes at most one message of [`LARGEST_MESSAGE`] bytes, held in a vector that may have
/// twice the room; strings and ids take at most their JSON length; a number in an array takes
/// 8 bytes for at least 2 of JSON (twice that with the vector's spare room).
fn json_tree_bound(json: &[u8]) -> usize {
    let objects = json.iter().filter(|b| **b == b'{').count();
    objects
        .saturating_mul(2 * LARGEST_MESSAGE)
        .saturating_add(json.len().saturating_mul(8))
}

/// The export error for a scan or walk error of a `what` request.
fn scan_error(e: scanner::ScanError, what: &str) -> ExportError {
    use scanner::ScanError as E;
    match e {
        E::TooManyAttributes { .. } | E::AttributeTooLarge { .. } => {
            ExportError::AttributeLimit(format!("refused: {e}"))
        }
        E::TooManySpans { .. } => ExportError::TooLarge(format!("refused: {e}")),
        E::InvalidId { .. } => ExportError::Unforwardable {
            reason: "invalid_id",
            message: format!("refused, a downstream would refuse it: {e}"),
        },
        E::NestingLimit { .. } => ExportError::Unforwardable {
            reason: "nesting_limit",
            message: format!("refused: {e}"),
        },
        e => ExportError::Invalid(format!("invalid {what}: {e}")),
    }
}

/// A first guess at the number of spans in a request, to size the scan buffer once.
fn estimate_spans(len: usize) -> usize {
    (len / 256).max(4)
}

/// What the span records of a trace request of `len` bytes are expected to take (one record
/// per 256 bytes), to reserve ahead of reading it.
pub(crate) fn span_records_estimate(len: usize) -> usize {
    estimate_spans(len).saturating_mul(std::mem::size_of::<SpanRecord<'_>>())
}

fn token_bytes(tokens: Vec<String>) -> Arc<Vec<Vec<u8>>> {
    Arc::new(tokens.into_iter().map(String::into_bytes).collect())
}

#[cfg(test)]
mod tests;
