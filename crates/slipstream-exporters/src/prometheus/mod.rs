//! SLI series for the Prometheus pull endpoint: the text exposition format 0.0.4 and
//! OpenMetrics 1.0.0.
//!
//! The binary serves `/metrics` with
//! `render(&source.collect(), negotiate(accept))` and the `Content-Type` of
//! [`Format::content_type`]. Nothing here keeps state: each scrape renders the snapshot it is
//! given.
//!
//! Both formats name samples the same way, and so does remote write
//! ([`crate::remote_write`]), which shares the sample iteration:
//!
//! - counters and gauges: one sample per point, named as the family (in OpenMetrics the
//!   family line drops a `_total` suffix and the sample carries it);
//! - histograms: cumulative `<name>_bucket{le="..."}` samples, `<name>_sum` (seconds) and
//!   `<name>_count`. The `le` values are the buckets' upper bounds, plus the lower bound of a
//!   bucket that does not start where the previous one ended (so `histogram_quantile` does
//!   not interpolate across an empty gap), and always `+Inf`. They are written as canonical
//!   OpenMetrics numbers (`1.0`, `0.25`, `+Inf`), the form Prometheus 3 normalises to, so
//!   scraped and remote-written series carry the same `le` values.
//!
//! A point whose value does not match its family's kind (a histogram in a counter family) is
//! left out rather than rendered as something Prometheus would misread.

use std::fmt::Write as _;

use slipstream_core::MetricsSnapshot;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, Point, PointValue};

/// `Content-Type` of the text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    #[default]
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Picks the format for a scrape from its `Accept` header: OpenMetrics when the header
/// accepts `application/openmetrics-text` (any version; 1.0.0 is served) with a quality at
/// least that of every other type it accepts, the text format otherwise (also without a
/// header, or with one that cannot be read).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut openmetrics_q = 0.0_f64;
    let mut other_q = 0.0_f64;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if media.is_empty() {
            continue;
        }
        let mut q = 1.0;
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0);
            }
        }
        if media == "application/openmetrics-text" {
            openmetrics_q = openmetrics_q.max(q);
        } else {
            other_q = other_q.max(q);
        }
    }
    if openmetrics_q > 0.0 && openmetrics_q >= other_q {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Renders every family of `snapshot` in `format`. Samples carry no timestamps: Prometheus
/// stamps them with the scrape time.
pub fn render(snapshot: &MetricsSnapshot, format: Format) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    for family in &snapshot.families {
        render_family(&mut out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out.into_bytes()
}

fn render_family(out: &mut String, family: &MetricFamily, format: Format) {
    let (family_name, sample_suffix) = match (format, family.kind) {
        (Format::OpenMetrics, MetricKind::Counter) => (
            family.name.strip_suffix("_total").unwrap_or(&family.name),
            "_total",
        ),
        _ => (family.name.as_str(), ""),
    };
    let help = match format {
        Format::Text => escape(&family.help, false),
        Format::OpenMetrics => escape(&family.help, true),
    };
    let _ = writeln!(out, "# HELP {family_name} {help}");
    let _ = writeln!(out, "# TYPE {family_name} {}", family.kind.as_str());
    for point in &family.points {
        for_each_sample(family, point, |suffix, le, value| {
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
            out.push('\n');
        });
    }
}

/// Calls `f(suffix, le, value)` for every sample of `point`: one with suffix `""` for a
/// counter or gauge; `_bucket` samples (with their `le`), then `_sum` and `_count`, for a
/// histogram. Nothing for a point whose value does not match the family's kind.
pub(crate) fn for_each_sample(
    family: &MetricFamily,
    point: &Point,
    mut f: impl FnMut(&'static str, Option<f64>, f64),
) {
    match (&point.value, family.kind) {
        (PointValue::Number(v), MetricKind::Counter | MetricKind::Gauge) => f("", None, *v),
        (PointValue::Histogram(h), MetricKind::Histogram) => {
            for (le, cumulative) in cumulative_buckets(h) {
                f("_bucket", Some(le), cumulative as f64);
            }
            f("_sum", None, h.sum);
            f("_count", None, h.count as f64);
        }
        _ => {}
    }
}

/// The cumulative `(le, count)` buckets of a histogram, ascending, ending with `+Inf`
/// (whose count is `h.count`, or the bucket total if that is larger, so the series stays
/// monotonic). A bucket's lower bound gets its own `le` (holding the count below it) when
/// it is above 0 and the previous bucket ended below it.
pub(crate) fn cumulative_buckets(h: &HistogramValue) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(h.buckets.len() + 2);
    let mut cumulative = 0u64;
    let mut previous_upper = f64::NEG_INFINITY;
    for &(lower, upper, count) in &h.buckets {
        if lower > 0.0 && lower > previous_upper && lower.is_finite() {
            out.push((lower, cumulative));
        }
        cumulative = cumulative.saturating_add(count);
        if upper == f64::INFINITY {
            break;
        }
        if upper > previous_upper {
            out.push((upper, cumulative));
            previous_upper = upper;
        } else if let Some(last) = out.last_mut() {
            // Out of order or repeated bound: fold it into the last one.
            last.1 = cumulative;
        }
    }
    out.push((f64::INFINITY, h.count.max(cumulative)));
    out
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
