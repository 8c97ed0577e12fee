//! SLI series for the Prometheus pull endpoint: the text exposition format 0.0.4,
//! OpenMetrics 1.0.0, and the protobuf format with native histograms.
//!
//! The binary serves `/metrics` with
//! `render(&source.collect(), negotiate(accept, native), &histograms)` and the `Content-Type`
//! of [`Format::content_type`]. Nothing here keeps state: each scrape renders the snapshot it
//! is given.
//!
//! Every format names samples the same way, and so does remote write
//! ([`crate::remote_write`]), which shares the sample iteration:
//!
//! - counters and gauges: one sample per point, named as the family (in OpenMetrics the
//!   family line drops a `_total` suffix and the sample carries it);
//! - histograms: cumulative `<name>_bucket{le="..."}` samples, `<name>_sum` (seconds) and
//!   `<name>_count`. The `le` values are the same for every series: the configured boundaries
//!   ([`Histograms`]), each the nearest edge of slipstream's latency buckets
//!   ([`slipstream_core::export::nearest_latency_edge`]), so the count at each is exact, then
//!   `+Inf`. Series of several instances or label sets therefore add up with `sum by (le)`.
//!   They are written as canonical OpenMetrics numbers (`0.099614719`, `1.0`, `+Inf`), the
//!   form Prometheus 3 normalises to, so scraped and remote-written series carry the same
//!   `le` values.
//! - in the protobuf format ([`Format::Protobuf`], asked for by a Prometheus with native
//!   histograms on), a histogram is one `io.prometheus.client.Histogram` holding the same
//!   classic buckets and a schema-8 native histogram ([`native`]).
//!
//! A point whose value does not match its family's kind (a histogram in a counter family) is
//! left out rather than rendered as something Prometheus would misread.
//!
//! Exemplars (a point's example requests, [`Point::exemplars`]) are written in OpenMetrics
//! and the protobuf format, never in the text format 0.0.4, which has no syntax for them:
//! a counter's sample carries its point's first one (`# {trace_id="...",span_id="..."} 1
//! <end time>`), each classic bucket of a histogram the first whose latency it holds and the
//! buckets below do not (valued at the latency in seconds); the protobuf format also lists
//! them all on the native histogram.

pub mod native;
pub mod proto;

use std::fmt::Write as _;

use prost::Message;
use slipstream_config::exporters::HistogramExportConfig;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, Point, PointValue};
use slipstream_core::{Exemplar, MetricsSnapshot};

/// `Content-Type` of the text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the protobuf format: length-delimited `io.prometheus.client.MetricFamily`
/// messages.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// How latency histograms are exported: the classic buckets' upper bounds, the same for every
/// series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histograms {
    /// The bounds in nanoseconds, each an edge of the latency bucket layout, ascending.
    edges_ns: Vec<u64>,
}

impl Histograms {
    /// The classic buckets of `cfg` (its boundaries, each moved to the nearest bucket edge).
    pub fn new(cfg: &HistogramExportConfig) -> Self {
        Self::from_edges(cfg.edges_ns())
    }

    /// Classic buckets with these upper bounds in nanoseconds (sorted and deduplicated;
    /// counts are exact where the bounds are edges of the latency bucket layout).
    pub fn from_edges(mut edges_ns: Vec<u64>) -> Self {
        edges_ns.sort_unstable();
        edges_ns.dedup();
        Histograms { edges_ns }
    }

    /// The upper bounds in seconds, ascending (`+Inf` not included).
    pub fn boundaries(&self) -> impl Iterator<Item = f64> + '_ {
        self.edges_ns.iter().map(|&ns| ns_to_seconds(ns))
    }
}

impl Default for Histograms {
    fn default() -> Self {
        Self::new(&HistogramExportConfig::default())
    }
}

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    #[default]
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The protobuf format with native histograms (length-delimited
    /// `io.prometheus.client.MetricFamily` messages).
    Protobuf,
}

impl Format {
    /// The `Content-Type` header value of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// Picks the format for a scrape from its `Accept` header. When `protobuf` is allowed, the
/// protobuf format if the header accepts
/// `application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
/// encoding=delimited` (what Prometheus asks for with native histograms on) with a quality at
/// least that of every other type it accepts; else OpenMetrics when the header accepts
/// `application/openmetrics-text` (any version; 1.0.0 is served) with a quality at least that
/// of every other type besides the protobuf one; the text format otherwise (also without a
/// header, or with one that cannot be read).
pub fn negotiate(accept: Option<&str>, protobuf: bool) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut protobuf_q = 0.0_f64;
    let mut openmetrics_q = 0.0_f64;
    let mut other_q = 0.0_f64;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let mut q = 1.0;
        let mut ours = true;
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("q") {
                q = v.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0);
            } else if k.eq_ignore_ascii_case("proto") {
                ours &= v == "io.prometheus.client.MetricFamily";
            } else if k.eq_ignore_ascii_case("encoding") {
                ours &= v.eq_ignore_ascii_case("delimited");
            }
        }
        if media == "application/vnd.google.protobuf" {
            if protobuf && ours {
                protobuf_q = protobuf_q.max(q);
            }
        } else if media == "application/openmetrics-text" {
            openmetrics_q = openmetrics_q.max(q);
        } else {
            other_q = other_q.max(q);
        }
    }
    if protobuf_q > 0.0 && protobuf_q >= openmetrics_q && protobuf_q >= other_q {
        Format::Protobuf
    } else if openmetrics_q > 0.0 && openmetrics_q >= other_q {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Renders every family of `snapshot` in `format`, histograms with the classic buckets of
/// `histograms`. Samples carry no timestamps: Prometheus stamps them with the scrape time.
pub fn render(snapshot: &MetricsSnapshot, format: Format, histograms: &Histograms) -> Vec<u8> {
    if format == Format::Protobuf {
        return render_protobuf(snapshot, histograms);
    }
    let mut out = String::with_capacity(4096);
    for family in &snapshot.families {
        render_family(&mut out, family, format, histograms);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out.into_bytes()
}

/// The protobuf format: one length-delimited `MetricFamily` per family that has points.
fn render_protobuf(snapshot: &MetricsSnapshot, histograms: &Histograms) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    for family in &snapshot.families {
        let metric: Vec<proto::Metric> = family
            .points
            .iter()
            .filter_map(|point| protobuf_metric(family.kind, point, histograms))
            .collect();
        if metric.is_empty() {
            // A family without points is not written: Prometheus' parser wants at least one.
            continue;
        }
        let r#type = match family.kind {
            MetricKind::Counter => proto::MetricType::Counter,
            MetricKind::Gauge => proto::MetricType::Gauge,
            MetricKind::Histogram => proto::MetricType::Histogram,
        };
        let mf = proto::MetricFamily {
            name: family.name.clone(),
            help: family.help.clone(),
            r#type: r#type as i32,
            metric,
        };
        mf.encode_length_delimited(&mut out)
            .expect("a Vec grows to hold any message");
    }
    out
}

fn protobuf_metric(
    kind: MetricKind,
    point: &Point,
    histograms: &Histograms,
) -> Option<proto::Metric> {
    let mut m = proto::Metric {
        label: point
            .labels
            .iter()
            .map(|(name, value)| proto::LabelPair {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    };
    match (&point.value, kind) {
        (PointValue::Number(v), MetricKind::Counter) => {
            m.counter = Some(proto::Counter {
                value: *v,
                exemplar: point.exemplars.first().map(|e| protobuf_exemplar(e, 1.0)),
            });
        }
        (PointValue::Number(v), MetricKind::Gauge) => m.gauge = Some(proto::Gauge { value: *v }),
        (PointValue::Histogram(h), MetricKind::Histogram) => {
            let n = native::native(h);
            let by_bucket = bucket_exemplars(point, histograms);
            let mut bucket: Vec<proto::Bucket> = classic_buckets(h, histograms)
                .into_iter()
                .zip(by_bucket)
                .map(|((upper_bound, cumulative_count), e)| proto::Bucket {
                    cumulative_count,
                    upper_bound,
                    exemplar: e.map(|e| protobuf_exemplar(e, latency_seconds(e))),
                })
                .collect();
            // `+Inf` is the sample count.
            bucket.pop();
            m.histogram = Some(proto::Histogram {
                sample_count: n.count,
                sample_sum: n.sum,
                bucket,
                schema: native::SCHEMA,
                zero_threshold: native::ZERO_THRESHOLD,
                zero_count: n.zero_count,
                positive_span: n
                    .spans
                    .iter()
                    .map(|&(offset, length)| proto::BucketSpan { offset, length })
                    .collect(),
                positive_delta: n.deltas,
                exemplars: point
                    .exemplars
                    .iter()
                    .map(|e| protobuf_exemplar(e, latency_seconds(e)))
                    .collect(),
            });
        }
        _ => return None,
    }
    Some(m)
}

/// An exemplar's value on a histogram: its latency in seconds.
fn latency_seconds(e: &Exemplar) -> f64 {
    ns_to_seconds(e.duration_nanos)
}

fn protobuf_exemplar(e: &Exemplar, value: f64) -> proto::Exemplar {
    let label = |name: &str, value: String| proto::LabelPair {
        name: name.to_owned(),
        value,
    };
    proto::Exemplar {
        label: vec![
            label("trace_id", e.trace_id_hex()),
            label("span_id", e.span_id_hex()),
        ],
        value,
        timestamp: Some(proto::Timestamp {
            seconds: (e.end_unix_nanos / 1_000_000_000) as i64,
            nanos: (e.end_unix_nanos % 1_000_000_000) as i32,
        }),
    }
}

/// For each classic bucket of `histograms` (then `+Inf`), the first of the point's exemplars
/// whose latency it holds and the bucket below does not.
fn bucket_exemplars<'p>(point: &'p Point, histograms: &Histograms) -> Vec<Option<&'p Exemplar>> {
    let mut out = vec![None; histograms.edges_ns.len() + 1];
    for e in &point.exemplars {
        let i = histograms
            .edges_ns
            .partition_point(|&edge| edge < e.duration_nanos);
        out[i].get_or_insert(e);
    }
    out
}

/// ` # {trace_id="...",span_id="..."} value timestamp`: an OpenMetrics exemplar (its label
/// set is 63 characters, within the 128 allowed).
fn write_exemplar(out: &mut String, e: &Exemplar, value: f64) {
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:09}",
        e.trace_id_hex(),
        e.span_id_hex(),
        format_value(value),
        e.end_unix_nanos / 1_000_000_000,
        e.end_unix_nanos % 1_000_000_000
    );
}

fn render_family(out: &mut String, family: &MetricFamily, format: Format, histograms: &Histograms) {
    let (family_name, sample_suffix) = match (format, family.kind) {
        (Format::OpenMetrics, MetricKind::Counter) => (
            family.name.strip_suffix("_total").unwrap_or(&family.name),
            "_total",
        ),
        _ => (family.name.as_str(), ""),
    };
    let help = match format {
        Format::OpenMetrics => escape(&family.help, true),
        Format::Text | Format::Protobuf => escape(&family.help, false),
    };
    let _ = writeln!(out, "# HELP {family_name} {help}");
    let _ = writeln!(out, "# TYPE {family_name} {}", family.kind.as_str());
    for point in &family.points {
        // The exemplar of each sample, in OpenMetrics only.
        let with_exemplars = format == Format::OpenMetrics && !point.exemplars.is_empty();
        let by_bucket = if with_exemplars && family.kind == MetricKind::Histogram {
            bucket_exemplars(point, histograms)
        } else {
            Vec::new()
        };
        let mut bucket = 0;
        for_each_sample(family, point, histograms, |suffix, le, value| {
            out.push_str(family_name);
            out.push_str(sample_suffix);
            out.push_str(suffix);
            let mut first = true;
            let mut label = |out: &mut String, name: &str, value: &str| {
                out.push(if first { '{' } else { ',' });
                first = false;
                let _ = write!(out, "{name}=\"{}\"", escape(value, true));
            };
            let mut le_written = le.is_none();
            for (name, value) in &point.labels {
                if !le_written && name.as_str() > "le" {
                    label(out, "le", &format_le(le.unwrap_or(f64::INFINITY)));
                    le_written = true;
                }
                label(out, name, value);
            }
            if !le_written {
                label(out, "le", &format_le(le.unwrap_or(f64::INFINITY)));
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(value));
            if with_exemplars {
                match (family.kind, suffix) {
                    (MetricKind::Counter, _) => write_exemplar(out, &point.exemplars[0], 1.0),
                    (MetricKind::Histogram, "_bucket") => {
                        if let Some(e) = by_bucket.get(bucket).copied().flatten() {
                            write_exemplar(out, e, latency_seconds(e));
                        }
                        bucket += 1;
                    }
                    _ => {}
                }
            }
            out.push('\n');
        });
    }
}

/// Calls `f(suffix, le, value)` for every sample of `point`: one with suffix `""` for a
/// counter or gauge; `_bucket` samples (with their `le`, those of `histograms` then `+Inf`),
/// then `_sum` and `_count`, for a histogram. Nothing for a point whose value does not match
/// the family's kind.
pub(crate) fn for_each_sample(
    family: &MetricFamily,
    point: &Point,
    histograms: &Histograms,
    mut f: impl FnMut(&'static str, Option<f64>, f64),
) {
    match (&point.value, family.kind) {
        (PointValue::Number(v), MetricKind::Counter | MetricKind::Gauge) => f("", None, *v),
        (PointValue::Histogram(h), MetricKind::Histogram) => {
            for (le, cumulative) in classic_buckets(h, histograms) {
                f("_bucket", Some(le), cumulative as f64);
            }
            f("_sum", None, h.sum);
            f("_count", None, h.count as f64);
        }
        _ => {}
    }
}

/// The cumulative `(le, count)` buckets of a histogram at the bounds of `histograms`, then
/// `+Inf` (whose count is `h.count`, or the bucket total if that is larger, so the series
/// stays monotonic). The count at a bound holds every input bucket whose upper end is at or
/// below it (compared in whole nanoseconds); slipstream's buckets never straddle a bound, so
/// the count is exact. An input bucket that does straddle one (only in hand-built input)
/// counts above it.
pub(crate) fn classic_buckets(h: &HistogramValue, histograms: &Histograms) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(histograms.edges_ns.len() + 1);
    let mut buckets = h.buckets.iter().peekable();
    let mut cumulative = 0u64;
    for &edge in &histograms.edges_ns {
        while let Some(&&(_, upper, count)) = buckets.peek() {
            if upper_ns(upper) > edge {
                break;
            }
            cumulative = cumulative.saturating_add(count);
            buckets.next();
        }
        out.push((ns_to_seconds(edge), cumulative));
    }
    let total = h
        .buckets
        .iter()
        .fold(0u64, |sum, b| sum.saturating_add(b.2));
    out.push((f64::INFINITY, h.count.max(total)));
    out
}

/// A bucket's upper end in whole nanoseconds (rounded: `hi * 1e-9` seconds is `hi` ns).
fn upper_ns(upper: f64) -> u64 {
    if upper.is_nan() || upper >= u64::MAX as f64 / 1e9 {
        u64::MAX
    } else {
        (upper * 1e9).round().max(0.0) as u64
    }
}

/// A sample value the way Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (as
/// Prometheus does): shortest round-trip digits, integers without a fraction or exponent,
/// an exponent only below 1e-4 or from 1e21, and `+Inf`, `-Inf`, `NaN`.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        // Rust writes `1.5e-7`; Go writes `1.5e-07`.
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').expect("LowerExp has an exponent");
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

/// An `le` value as a canonical OpenMetrics number: like [`format_value`], with `.0` on
/// integers (`1.0`, `0.25`, `+Inf`).
pub(crate) fn format_le(v: f64) -> String {
    let s = format_value(v);
    if v.is_finite() && !s.contains(['.', 'e']) {
        s + ".0"
    } else {
        s
    }
}

/// Escapes `\` and newlines, and `"` too when `quote` (label values; OpenMetrics HELP).
fn escape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\\', '\n', '"']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
pub(crate) mod tests;
