//! [`MetricsSnapshot`] to `ExportMetricsServiceRequest`.
//!
//! A point's example requests ([`Point::exemplars`]) become OTLP exemplars with their trace
//! and span ids and end time: on a counter's point the first, valued 1; on a histogram's
//! every one, valued at its latency in seconds.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use slipstream_core::MetricsSnapshot;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, Point, PointValue};

/// The `service.name` of the resource holding points that belong to no service.
pub const DEFAULT_SERVICE: &str = "slipstream";
/// The instrumentation scope of every metric.
pub const SCOPE: &str = "slipstream";
/// Most buckets of an exported exponential histogram (the OpenTelemetry SDKs' default).
pub const MAX_BUCKETS: i32 = 160;
/// Highest scale used (the OTLP maximum).
pub const MAX_SCALE: i32 = 20;
/// Lowest scale used; at it any two positive doubles fall within two buckets.
pub const MIN_SCALE: i32 = -10;

/// The snapshot as one OTLP request: one `ResourceMetrics` per distinct [`Point::service`]
/// (in order of first appearance; points without one under `service.name=slipstream`), each
/// with one scope `slipstream` holding the families that have points for that service.
pub fn to_request(snapshot: &MetricsSnapshot) -> ExportMetricsServiceRequest {
    let mut services: Vec<&str> = Vec::new();
    for family in &snapshot.families {
        for point in &family.points {
            let s = point.service.as_deref().unwrap_or(DEFAULT_SERVICE);
            if !services.contains(&s) {
                services.push(s);
            }
        }
    }
    let resource_metrics = services
        .into_iter()
        .map(|service| ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_attribute("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics: snapshot
                    .families
                    .iter()
                    .filter_map(|f| to_metric(f, service, snapshot.at))
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

/// An example request as an OTLP exemplar of `value`.
fn exemplar(e: &slipstream_core::Exemplar, value: f64) -> Exemplar {
    Exemplar {
        time_unix_nano: e.end_unix_nanos,
        span_id: e.span_id.to_vec(),
        trace_id: e.trace_id.to_vec(),
        value: Some(exemplar::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The family's points of `service` as one metric; `None` when it has none (or only points
/// whose value does not match the family's kind).
fn to_metric(family: &MetricFamily, service: &str, at: u64) -> Option<Metric> {
    let points = family
        .points
        .iter()
        .filter(move |p| p.service.as_deref().unwrap_or(DEFAULT_SERVICE) == service);
    let attributes = |p: &Point| -> Vec<KeyValue> {
        p.labels
            .iter()
            .map(|(k, v)| string_attribute(k, v))
            .collect()
    };
    let number_points = |start: bool| -> Vec<NumberDataPoint> {
        points
            .clone()
            .filter_map(|p| match p.value {
                PointValue::Number(v) => Some(NumberDataPoint {
                    attributes: attributes(p),
                    start_time_unix_nano: if start { p.start_time } else { 0 },
                    time_unix_nano: at,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    // Counters only: a gauge's value is no count of requests.
                    exemplars: p
                        .exemplars
                        .iter()
                        .take(usize::from(start))
                        .map(|e| exemplar(e, 1.0))
                        .collect(),
                    ..Default::default()
                }),
                PointValue::Histogram(_) => None,
            })
            .collect()
    };
    let data = match family.kind {
        MetricKind::Counter => {
            let data_points = number_points(true);
            (!data_points.is_empty()).then_some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }))
        }
        MetricKind::Gauge => {
            let data_points = number_points(false);
            (!data_points.is_empty()).then_some(metric::Data::Gauge(Gauge { data_points }))
        }
        MetricKind::Histogram => {
            let data_points: Vec<_> = points
                .clone()
                .filter_map(|p| match &p.value {
                    PointValue::Histogram(h) => Some(ExponentialHistogramDataPoint {
                        attributes: attributes(p),
                        start_time_unix_nano: p.start_time,
                        time_unix_nano: at,
                        exemplars: p
                            .exemplars
                            .iter()
                            .map(|e| exemplar(e, e.duration_nanos as f64 / 1e9))
                            .collect(),
                        ..exponential_point(h)
                    }),
                    PointValue::Number(_) => None,
                })
                .collect();
            (!data_points.is_empty()).then_some(metric::Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                },
            ))
        }
    }?;
    Some(Metric {
        name: family.name.clone(),
        description: family.help.clone(),
        unit: family.unit.to_owned(),
        data: Some(data),
        ..Default::default()
    })
}

// === exponential histograms ===

/// The value standing for a bucket's observations: its upper bound (or, for a bucket without
/// one, its lower bound, or the largest double). `None` for a bucket of zeros.
fn representative(lower: f64, upper: f64) -> Option<f64> {
    if upper <= 0.0 || upper.is_nan() {
        None
    } else if upper.is_finite() {
        Some(upper)
    } else if lower > 0.0 && lower.is_finite() {
        Some(lower)
    } else {
        Some(f64::MAX)
    }
}

/// A histogram as an exponential histogram point (count, sum, scale, zero count and positive
/// buckets; no attributes or times). Every `(lower, upper, count)` bucket goes whole to the
/// exponential bucket that holds its upper bound, at the largest scale (at most
/// [`MAX_SCALE`]) where the buckets span at most [`MAX_BUCKETS`] indices; buckets ending at
/// or below 0 go to `zero_count`. An observation `v` of input bucket `(lower, upper]` so
/// lands in `(base^i, base^(i+1)]` with `base^i < upper <= base^(i+1) < base * upper`,
/// `base = 2^(2^-scale)`: the exported upper bound is never below `v` and at most
/// `base * upper / lower` times it.
pub fn exponential_point(h: &HistogramValue) -> ExponentialHistogramDataPoint {
    let mut zero_count = 0u64;
    let (mut min, mut max) = (f64::INFINITY, 0.0f64);
    for &(lower, upper, count) in &h.buckets {
        match representative(lower, upper) {
            Some(v) if count > 0 => {
                min = min.min(v);
                max = max.max(v);
            }
            Some(_) => {}
            None => zero_count += count,
        }
    }
    let mut point = ExponentialHistogramDataPoint {
        count: h.count,
        sum: Some(h.sum),
        zero_count,
        ..Default::default()
    };
    if max == 0.0 {
        point.scale = MAX_SCALE;
        return point;
    }
    let scale = (MIN_SCALE..=MAX_SCALE)
        .rev()
        .find(|&s| {
            i64::from(bucket_index(max, s)) - i64::from(bucket_index(min, s))
                < i64::from(MAX_BUCKETS)
        })
        .unwrap_or(MIN_SCALE);
    let offset = bucket_index(min, scale);
    let len = (bucket_index(max, scale) - offset + 1) as usize;
    let mut counts = vec![0u64; len];
    for &(lower, upper, count) in &h.buckets {
        if let Some(v) = representative(lower, upper) {
            counts[(bucket_index(v, scale) - offset) as usize] += count;
        }
    }
    point.scale = scale;
    point.positive = Some(Buckets {
        offset,
        bucket_counts: counts,
    });
    point
}

/// The buckets of an exponential histogram point as `(lower, upper, count)`: the zero bucket
/// as `(0, 0, zero_count)` when it holds anything, then every positive bucket
/// `(base^i, base^(i+1)]` from the offset on (empty ones included). Negative buckets are not
/// read (latencies have none).
pub fn exponential_buckets(p: &ExponentialHistogramDataPoint) -> Vec<(f64, f64, u64)> {
    let mut out = Vec::new();
    if p.zero_count > 0 {
        out.push((0.0, 0.0, p.zero_count));
    }
    if let Some(b) = &p.positive {
        for (k, &n) in b.bucket_counts.iter().enumerate() {
            let i = b.offset + k as i32;
            out.push((
                lower_boundary(i, p.scale),
                lower_boundary(i + 1, p.scale),
                n,
            ));
        }
    }
    out
}

/// The index `i` of the exponential bucket `(base^i, base^(i+1)]` holding `v > 0` at
/// `scale`, `base = 2^(2^-scale)`. Exact at powers of two; for positive scales the
/// logarithm's rounding is corrected against the bucket boundaries.
pub fn bucket_index(v: f64, scale: i32) -> i32 {
    if scale <= 0 {
        // Index at scale 0 from the binary exponent, then halve per scale step down.
        let bits = v.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let mantissa = bits & ((1u64 << 52) - 1);
        let index0 = if exp == 0 {
            // Subnormal: below every boundary that matters here.
            (v.log2().ceil() as i32) - 1
        } else if mantissa == 0 {
            exp - 1023 - 1
        } else {
            exp - 1023
        };
        return index0 >> -scale;
    }
    let factor = f64::from(1u32 << scale);
    let mut i = ((v.log2() * factor).ceil() - 1.0) as i32;
    if v <= lower_boundary(i, scale) {
        i -= 1;
    } else if v > lower_boundary(i + 1, scale) {
        i += 1;
    }
    i
}

/// The lower boundary `base^index` of bucket `index` at `scale`.
pub fn lower_boundary(index: i32, scale: i32) -> f64 {
    if scale <= 0 {
        (f64::from(index) * f64::from(1u32 << -scale)).exp2()
    } else {
        (f64::from(index) / f64::from(1u32 << scale)).exp2()
    }
}
