//! What the exporters receive: SLI series as metric families, and burn-rate events.
//!
//! The binary turns the aggregator's and the SLO engine's snapshots into these types once per
//! export cycle; each exporter (Prometheus text, remote write, OTLP metrics, Alertmanager,
//! webhook, OTLP logs, stdout) only renders and delivers them. Keeping the model here lets the
//! exporters depend on core alone.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::UnixNanos;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A monotonically increasing total (Prometheus counter, OTLP cumulative monotonic sum).
    Counter,
    /// A value that goes up and down (Prometheus gauge, OTLP gauge).
    Gauge,
    /// A latency distribution (Prometheus histogram, OTLP exponential histogram).
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// A distribution of latencies, in seconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HistogramValue {
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Non-empty buckets in ascending order: `(lower, upper, count)` in seconds, each holding
    /// the observations `v` with `lower < v <= upper` (the first bucket may start at 0).
    /// Renderers derive cumulative `le` buckets or exponential buckets from them.
    pub buckets: Vec<(f64, f64, u64)>,
}

/// The value of one point.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PointValue {
    /// Counter or gauge value.
    Number(f64),
    /// Histogram.
    Histogram(HistogramValue),
}

/// One labelled point of a family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Label names and values, sorted by name, unique; names are Prometheus-safe
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`).
    pub labels: Vec<(String, String)>,
    /// The `service.name` the point belongs to, when it belongs to one: OTLP exporters group
    /// points into one resource per service with it.
    pub service: Option<String>,
    /// The value.
    pub value: PointValue,
    /// For counters and histograms: when the accumulation started (OTLP start time).
    pub start_time: UnixNanos,
    /// Example requests behind the value, rendered as exemplars where the format has them
    /// (OpenMetrics, the Prometheus protobuf format, OTLP): a counter's sample carries the
    /// first; a histogram's bucket carries the first whose latency it holds.
    #[serde(skip)]
    pub exemplars: Vec<crate::Exemplar>,
}

/// One metric family: a name and its points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricFamily {
    /// Full metric name as exported (e.g. `slipstream_sli_requests_total`,
    /// `slo:sli_error:ratio_rate5m`).
    pub name: String,
    /// One-line help text.
    pub help: String,
    /// UCUM-ish unit for OTLP (`s`, `1`, `{request}`); empty when none.
    pub unit: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its points.
    pub points: Vec<Point>,
}

/// Every SLI series at one export instant. Immutable once built.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetricsSnapshot {
    /// When the values were computed.
    pub at: UnixNanos,
    /// The families, in a stable order.
    pub families: Vec<MetricFamily>,
}

/// Whether a burn-rate event announces a firing or a resolved alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Both windows burn above the factor.
    Firing,
    /// The short window no longer does.
    Resolved,
}

/// A burn-rate alert event, as every event exporter sends it. Its JSON form (serde) is the
/// webhook body and the stdout line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnRateEvent {
    /// Firing or resolved.
    pub state: EventState,
    /// The SLO's name.
    pub slo: String,
    /// The service.
    pub service: String,
    /// `page` or `ticket`.
    pub severity: String,
    /// The policy row's long window.
    #[serde(with = "duration_string")]
    pub long_window: Duration,
    /// The policy row's short window.
    #[serde(with = "duration_string")]
    pub short_window: Duration,
    /// The burn-rate factor both windows must exceed.
    pub factor: f64,
    /// The SLO objective as a fraction (0.999).
    pub objective: f64,
    /// Burn rate over the long window (`null` without traffic).
    pub long_burn_rate: Option<f64>,
    /// Burn rate over the short window (`null` without traffic).
    pub short_burn_rate: Option<f64>,
    /// Share of the period's error budget left (negative when overspent).
    pub budget_remaining: Option<f64>,
    /// `service.version` values with requests in the long window, least recently seen first.
    pub versions: Vec<String>,
    /// The version running at the event: of them, the one seen most recently.
    pub newest_version: Option<String>,
    /// When that version was first seen (Unix nanoseconds).
    pub newest_version_since: Option<UnixNanos>,
    /// True for a firing event re-sent on the repeat interval.
    pub repeat: bool,
    /// When the event was produced (evaluation time, Unix nanoseconds).
    pub at: UnixNanos,
    /// When the alert started firing (Unix nanoseconds).
    pub firing_since: UnixNanos,
    /// Labels: `alertname`, `slo`, `service`, `severity`, `long_window`, `short_window`, then
    /// the SLO's and the catalog's (`owner`, `tier`, ...).
    pub labels: BTreeMap<String, String>,
    /// Annotations: `summary`, `description`, `runbook_url`, catalog links, and
    /// `example_traces` (the example requests, one per line, linked where a trace URL
    /// template is set).
    pub annotations: BTreeMap<String, String>,
    /// Example bad requests of the SLO's series in the short window, most recent first; left
    /// out of the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub example_traces: Vec<ExampleTrace>,
    /// The attribute values that concentrate the bad requests of the short window, best
    /// ranked first (what the `bad_requests_share` annotation renders as text); left out of
    /// the JSON when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_requests_share: Vec<crate::explain::ValueShare>,
}

/// An example request of a burn-rate event, as the JSON of an event names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleTrace {
    /// W3C trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// End time (Unix nanoseconds).
    pub end_unix_nanos: UnixNanos,
    /// Latency in seconds.
    pub duration_seconds: f64,
    /// Whether the request was bad (per the outcome rules; a latency SLO's slow requests may
    /// not be).
    pub bad: bool,
    /// The link to its trace from `exemplars.trace_url`; `null` without a template.
    pub url: Option<String>,
}

impl ExampleTrace {
    /// The example request `e`, linked through `trace_url` ([`crate::Exemplar::link`]) when
    /// a template is given.
    pub fn linked(e: &crate::Exemplar, trace_url: Option<&str>) -> Self {
        ExampleTrace {
            trace_id: e.trace_id_hex(),
            span_id: e.span_id_hex(),
            end_unix_nanos: e.end_unix_nanos,
            duration_seconds: e.duration_nanos as f64 / 1e9,
            bad: e.bad,
            url: trace_url.map(|t| e.link(t)),
        }
    }
}

impl From<&crate::Exemplar> for ExampleTrace {
    /// Without a link.
    fn from(e: &crate::Exemplar) -> Self {
        ExampleTrace::linked(e, None)
    }
}

impl BurnRateEvent {
    /// A key identifying the alert (SLO and policy row) across its events.
    pub fn alert_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.slo,
            format_duration(self.long_window),
            format_duration(self.short_window)
        )
    }
}

/// Formats a window the way Prometheus and the docs write it: `5m`, `1h`, `3d`, `1h30m`.
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

mod duration_string {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

/// Where the SLI series are read from, once per export cycle.
pub trait MetricsSource: Send + Sync + 'static {
    /// The series as of now.
    fn collect(&self) -> MetricsSnapshot;
}

impl<F> MetricsSource for F
where
    F: Fn() -> MetricsSnapshot + Send + Sync + 'static,
{
    fn collect(&self) -> MetricsSnapshot {
        self()
    }
}

// === latency bucket layout ===

/// Sub-buckets per power of two of the latency histograms slipstream records (in whole
/// nanoseconds: one bucket per value below 64 ns, then 64 equal buckets per power of two, so
/// a bucket above 64 ns holds `[k * w, (k + 1) * w - 1]` with `w = 2^(e - 6)` for values in
/// `[2^e, 2^(e + 1))`). The [`HistogramValue`]s the binary builds have these buckets.
pub const LATENCY_SUB_BUCKETS: u64 = 64;

/// The edge of the latency bucket layout nearest to `ns` nanoseconds (the lower one on a tie):
/// the highest value of some bucket, so "at most the edge" holds for exactly the observations
/// of that bucket and the ones below it. A count of the values at or below an edge is exact;
/// at any other bound it is not. Below 128 ns every value is an edge; above, an edge is at most
/// half a bucket (1/128 of the value) away.
pub fn nearest_latency_edge(ns: u64) -> u64 {
    if ns < 2 * LATENCY_SUB_BUCKETS {
        return ns;
    }
    let e = 63 - ns.leading_zeros();
    let width = 1u64 << (e - LATENCY_SUB_BUCKETS.trailing_zeros());
    // Edges are the values k * width - 1; `below` is the largest at or below `ns`.
    let below = (ns + 1) / width * width - 1;
    let above = below.saturating_add(width);
    if ns - below <= above - ns {
        below
    } else {
        above
    }
}

#[cfg(test)]
mod tests;
