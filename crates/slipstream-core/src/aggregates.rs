//! Partial aggregates: the messages a sidecar ships to a gateway in two-tier mode, and the
//! hand-off from the gateway's receiver to its aggregator.
//!
//! The schema is `proto/slipstream/aggregates/v1/aggregates.proto`; the types here are its
//! prost messages written by hand (no protoc at build time), and a test checks every field
//! number, type and name against the `.proto` file. A sender fills in [`Header`] from its own
//! aggregator and ships, per [`Series`], what each slot gained since its previous shipment;
//! the receiver checks the header against its own aggregator ([`AggregatesSink::merge`]) and
//! adds the counts into the same series and slots that spans would have reached.

use std::time::Duration;

use prost::Message;

/// The HTTP path a gateway takes partial aggregates on (OTLP/HTTP port, `POST`, protobuf).
pub const HTTP_PATH: &str = "/v1/slipstream/aggregates";

/// The histogram layout of slipstream's aggregator: bucket `i < 64` holds `i` ns, above
/// that each power of two is split into 64 equal buckets.
pub const HISTOGRAM_LAYOUT: &str = "log-linear-ns-64/v1";

/// `ExportAggregatesRequest`: one shipment from one sender.
#[derive(Clone, PartialEq, Message)]
pub struct ExportAggregatesRequest {
    /// Who sends, and what the receiver checks before merging.
    #[prost(message, optional, tag = "1")]
    pub header: Option<Header>,
    /// The series that changed since the sender's previous shipment.
    #[prost(message, repeated, tag = "2")]
    pub series: Vec<Series>,
}

/// `Header`.
#[derive(Clone, PartialEq, Message)]
pub struct Header {
    /// The sender's name.
    #[prost(string, tag = "1")]
    pub instance: String,
    /// When the sender process started (Unix nanoseconds); names one run of the sender.
    #[prost(uint64, tag = "2")]
    pub instance_started_unix_nanos: u64,
    /// Increases with every request of the run, starting at 1; a receiver ignores one not
    /// above the last it merged from the run (0: none, always merged).
    #[prost(uint64, tag = "3")]
    pub sequence: u64,
    /// Width of an event-time slot, nanoseconds.
    #[prost(uint64, tag = "4")]
    pub slot_width_nanos: u64,
    /// The histogram bucket layout ([`HISTOGRAM_LAYOUT`]).
    #[prost(string, tag = "5")]
    pub histogram_layout: String,
    /// Latencies above this (nanoseconds) were clamped to it by the sender.
    #[prost(uint64, tag = "6")]
    pub histogram_max_value_nanos: u64,
    /// Label names of a series key in order, `service.name` first.
    #[prost(string, repeated, tag = "7")]
    pub dimensions: Vec<String>,
}

/// `Series`: what one series gained since the previous shipment.
#[derive(Clone, PartialEq, Message)]
pub struct Series {
    /// One value per entry of [`Header::dimensions`] (fewer for an overflow series).
    #[prost(message, repeated, tag = "1")]
    pub key: Vec<Value>,
    /// An [`Overflow`] number.
    #[prost(enumeration = "Overflow", tag = "2")]
    pub overflow: i32,
    /// The slots that gained requests, each with only what it gained.
    #[prost(message, repeated, tag = "3")]
    pub slots: Vec<Slot>,
    /// `service.version` values new to this series or that served requests since the
    /// previous shipment.
    #[prost(message, repeated, tag = "4")]
    pub versions: Vec<Version>,
}

/// `Overflow`: whether a series is an overflow series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Overflow {
    /// An ordinary series.
    None = 0,
    /// A service's overflow series: the key holds only `service.name`.
    Service = 1,
    /// The global overflow series: the key is empty.
    Global = 2,
}

/// `Value`: one typed part of a series key; `value: None` is an absent attribute.
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    /// The value.
    #[prost(oneof = "value::Value", tags = "1, 2, 3, 4, 5")]
    pub value: Option<value::Value>,
}

/// The `oneof` of [`Value`].
pub mod value {
    /// `Value.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A string attribute.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// An integer attribute.
        #[prost(int64, tag = "2")]
        IntValue(i64),
        /// A boolean attribute.
        #[prost(bool, tag = "3")]
        BoolValue(bool),
        /// A floating-point attribute.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// The `span.kind` dimension (OTLP `Span.SpanKind` number).
        #[prost(int32, tag = "5")]
        SpanKind(i32),
    }
}

/// `Slot`: counts added to one event-time slot.
#[derive(Clone, PartialEq, Message)]
pub struct Slot {
    /// Start of the slot, Unix nanoseconds.
    #[prost(uint64, tag = "1")]
    pub start_unix_nanos: u64,
    /// Requests added.
    #[prost(uint64, tag = "2")]
    pub total: u64,
    /// Bad requests added.
    #[prost(uint64, tag = "3")]
    pub bad: u64,
    /// Latency buckets that gained observations, strictly ascending.
    #[prost(uint32, repeated, tag = "4")]
    pub bucket_indexes: Vec<u32>,
    /// What each of those buckets gained.
    #[prost(uint64, repeated, tag = "5")]
    pub bucket_counts: Vec<u64>,
    /// The latency thresholds (nanoseconds, strictly ascending) the sender compared every
    /// request of the slot with; empty from a sender that counts none (or an older version):
    /// the receiver then estimates latency SLOs from the histogram for this slot.
    #[prost(uint64, repeated, tag = "6")]
    pub latency_thresholds_nanos: Vec<u64>,
    /// Requests added above each of those thresholds (same length).
    #[prost(uint64, repeated, tag = "7")]
    pub above_threshold: Vec<u64>,
    /// Spans the requests were counted from (a sampled span counts its adjusted count in the
    /// requests, once here); 0 from an older sender: one span per request.
    #[prost(uint64, tag = "8")]
    pub spans: u64,
    /// Of those, spans that carried an OpenTelemetry sampling threshold.
    #[prost(uint64, tag = "9")]
    pub sampled_spans: u64,
}

/// `Version`: a `service.version` seen on a series (new to it, or serving since the previous
/// shipment).
#[derive(Clone, PartialEq, Message)]
pub struct Version {
    /// The version.
    #[prost(string, tag = "1")]
    pub version: String,
    /// End time of the first span seen with it, Unix nanoseconds.
    #[prost(uint64, tag = "2")]
    pub first_seen_unix_nanos: u64,
    /// When a request with it was last recorded (the sender's tick time), Unix nanoseconds;
    /// 0 when the sender does not say.
    #[prost(uint64, tag = "3")]
    pub last_seen_unix_nanos: u64,
}

impl Series {
    /// The `service.name` of the series (its first key part); empty for the global overflow
    /// series or a span without one. What two-tier routing hashes.
    pub fn service(&self) -> &str {
        match self.key.first().and_then(|v| v.value.as_ref()) {
            Some(value::Value::StringValue(s)) => s,
            _ => "",
        }
    }
}

impl ExportAggregatesRequest {
    /// Requests (the sum of every slot's `total`) the request carries.
    pub fn observations(&self) -> u64 {
        self.series
            .iter()
            .flat_map(|s| &s.slots)
            .fold(0u64, |n, s| n.saturating_add(s.total))
    }
}

/// What became of a request the receiver took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// Queued for the aggregator's next tick.
    Accepted,
    /// A request of the same sender run already merged (a retry whose answer was lost);
    /// nothing was added again.
    Duplicate,
}

/// Why partial aggregates were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// They were built with another slot width, histogram layout or set of dimensions, and
    /// cannot be merged losslessly (HTTP 400; not retryable).
    #[error("incompatible partial aggregates: {0}")]
    Incompatible(String),
    /// They break the schema's rules (HTTP 400; not retryable).
    #[error("invalid partial aggregates: {0}")]
    Invalid(String),
    /// They claim what no sender could have seen: slots further in the future than the
    /// receiver's skew allows, or long before its retention (HTTP 400; not retryable).
    #[error("implausible partial aggregates: {0}")]
    Implausible(String),
    /// The aggregator holds as many merges as it takes between two ticks (HTTP 503 with
    /// `Retry-After`).
    #[error("the aggregator is busy merging; retry after {0:?}")]
    Busy(Duration),
}

impl MergeError {
    /// The `reason` label of the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            MergeError::Incompatible(_) => "incompatible",
            MergeError::Invalid(_) => "invalid",
            MergeError::Implausible(_) => "implausible",
            MergeError::Busy(_) => "busy",
        }
    }
}

/// Where the receiver hands decoded partial aggregates: the gateway's aggregator. Off the span
/// hot path (one call per shipment).
pub trait AggregatesSink: Send + Sync + 'static {
    /// Checks `request` against this aggregator and queues it for merging; on error nothing
    /// of it is merged.
    fn merge(&self, request: ExportAggregatesRequest) -> Result<Merged, MergeError>;
}

#[cfg(test)]
mod tests;
