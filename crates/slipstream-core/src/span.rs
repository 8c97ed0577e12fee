//! Spans as the scanner hands them to the aggregator.

use std::fmt;

/// The most attribute dimensions (resource and span together) a series key may carry.
pub const MAX_DIMENSIONS: usize = 8;

/// The most candidate attributes ([`ScanSpec::candidate_keys`]) read per span.
pub const MAX_CANDIDATES: usize = 16;

/// OTLP `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED` (0), also used for values this version does not know.
    #[default]
    Unspecified = 0,
    /// `SPAN_KIND_INTERNAL` (1).
    Internal = 1,
    /// `SPAN_KIND_SERVER` (2).
    Server = 2,
    /// `SPAN_KIND_CLIENT` (3).
    Client = 3,
    /// `SPAN_KIND_PRODUCER` (4).
    Producer = 4,
    /// `SPAN_KIND_CONSUMER` (5).
    Consumer = 5,
}

impl SpanKind {
    /// Maps the wire value; unknown values become [`SpanKind::Unspecified`].
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => Self::Internal,
            2 => Self::Server,
            3 => Self::Client,
            4 => Self::Producer,
            5 => Self::Consumer,
            _ => Self::Unspecified,
        }
    }

    /// The lower-case name used in labels and config (`server`, `client`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }

    /// Parses the lower-case name used in config.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unspecified" => Self::Unspecified,
            "internal" => Self::Internal,
            "server" => Self::Server,
            "client" => Self::Client,
            "producer" => Self::Producer,
            "consumer" => Self::Consumer,
            _ => return None,
        })
    }
}

/// OTLP `Status.StatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET` (0), also used for unknown values.
    #[default]
    Unset = 0,
    /// `STATUS_CODE_OK` (1).
    Ok = 1,
    /// `STATUS_CODE_ERROR` (2).
    Error = 2,
}

impl StatusCode {
    /// Maps the wire value; unknown values become [`StatusCode::Unset`].
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => Self::Ok,
            2 => Self::Error,
            _ => Self::Unset,
        }
    }
}

/// An attribute value as a dimension sees it, borrowed from the request.
///
/// Arrays, maps and bytes are not useful as series dimensions and read as [`AttrValue::Absent`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AttrValue<'a> {
    /// The attribute is not present (or has a type dimensions do not use).
    #[default]
    Absent,
    /// `string_value`.
    Str(&'a str),
    /// `int_value`.
    Int(i64),
    /// `bool_value`.
    Bool(bool),
    /// `double_value`.
    Double(f64),
}

impl AttrValue<'_> {
    /// Whether the attribute was found.
    pub fn is_present(&self) -> bool {
        !matches!(self, AttrValue::Absent)
    }

    /// The value as an integer, for status-code attributes that some SDKs send as strings.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            AttrValue::Int(i) => Some(i),
            AttrValue::Str(s) => s.trim().parse().ok(),
            AttrValue::Double(d) if d.fract() == 0.0 => Some(d as i64),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Absent => Ok(()),
            AttrValue::Str(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Double(d) => write!(f, "{d}"),
        }
    }
}

/// Which attributes the scanner extracts as dimensions, besides the fields it always reads.
///
/// Values land in [`SpanRecord::dims`]: first the resource keys, in order, then the span keys.
/// Together they may name at most [`MAX_DIMENSIONS`] keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSpec {
    /// Resource attribute keys (for example `deployment.environment.name`), one per resource
    /// dimension: its preferred key.
    pub resource_keys: Vec<String>,
    /// Further keys of each resource dimension (by index, as `resource_keys`; missing entries
    /// have none), in order of preference: a dimension whose preferred key the resource lacks
    /// takes the value of the first of these it has.
    pub resource_alternatives: Vec<Vec<String>>,
    /// Span attribute keys (for example `http.route`).
    pub span_keys: Vec<String>,
    /// Candidate attributes (at most [`MAX_CANDIDATES`]), whose values say what the bad
    /// requests share: each is looked up on the span first, then on its resource, by
    /// [`crate::explain::CandidateKeys::values`] (the scanner only notes where the span and
    /// its resource are).
    pub candidate_keys: Vec<String>,
}

impl ScanSpec {
    /// Number of dimension slots used.
    pub fn len(&self) -> usize {
        self.resource_keys.len() + self.span_keys.len()
    }

    /// Whether no dimensions are extracted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One span, as the scanner found it; strings borrow from the request buffer.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpanRecord<'a> {
    /// Resource attribute `service.name`; `None` when the resource has none.
    pub service_name: Option<&'a str>,
    /// Resource attribute `service.version`, used for deploy-aware events.
    pub service_version: Option<&'a str>,
    /// Span name.
    pub name: &'a str,
    /// Span kind.
    pub kind: SpanKind,
    /// Status code.
    pub status: StatusCode,
    /// Start time, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End time, Unix nanoseconds.
    pub end_unix_nano: u64,
    /// `http.response.status_code`, or the older `http.status_code` when the new one is absent.
    pub http_status_code: Option<i64>,
    /// `rpc.grpc.status_code`.
    pub rpc_grpc_status_code: Option<i64>,
    /// Dimension values, laid out as [`ScanSpec`] says; unused slots are [`AttrValue::Absent`].
    pub dims: [AttrValue<'a>; MAX_DIMENSIONS],
    /// The OpenTelemetry sampling threshold `T` the span carries (`th` in the `ot` member of
    /// its W3C `tracestate`, right-padded to 56 bits): it was sampled with probability
    /// `(2^56 - T) / 2^56` and stands for `2^56 / (2^56 - T)` spans (its adjusted count).
    /// `None` when the trace state holds no valid threshold: the span counts as one.
    pub sampling_threshold: Option<u64>,
    /// The span's `trace_id` (16 bytes) when it has a valid one, else empty: exemplars name it.
    pub trace_id: &'a [u8],
    /// The span's `span_id` (8 bytes) when it has a valid one, else empty.
    pub span_id: &'a [u8],
    /// The request the span was read from, when [`ScanSpec::candidate_keys`] asked for
    /// values in it ([`crate::explain::CandidateKeys::values`]); else empty.
    pub request: &'a [u8],
    /// Where the span's own `Span` message is in `request` (start and end offsets; `[0, 0]`
    /// without a request). Offsets keep the record small; the candidate attributes are looked
    /// up only in the spans that are counted.
    pub span_at: [u32; 2],
    /// Where the fields of its `ResourceSpans` that hold the `Resource` are in `request`
    /// (from the first piece's key to the end of the last piece; other fields may lie
    /// between).
    pub resource_at: [u32; 2],
}

/// `2^56`: one more than the largest sampling threshold ([`SpanRecord::sampling_threshold`]).
pub const SAMPLING_THRESHOLD_RANGE: u64 = 1 << 56;

impl<'a> SpanRecord<'a> {
    /// `end - start` in nanoseconds, zero when the end precedes the start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// Where the receiver hands the spans of each accepted request.
///
/// Called on the worker thread that received the request, once per request, after the request
/// was fully scanned and accepted. Implementations aggregate into a per-worker shard: no locks
/// or shared atomics per span.
pub trait ObservationSink: Send + Sync + 'static {
    /// Records the spans of one accepted request.
    fn record(&self, spans: &[SpanRecord<'_>]);
}

/// A sink that ignores everything (forwarding only).
impl ObservationSink for () {
    fn record(&self, _spans: &[SpanRecord<'_>]) {}
}
