use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, metric, number_data_point,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slipstream_core::MetricsSnapshot;
use slipstream_core::export::{HistogramValue, MetricKind, PointValue};

use super::*;
use crate::prometheus::tests::{family, point};

#[test]
fn indices_match_the_definition() {
    // (base^i, base^(i+1)]: powers of two are upper bounds.
    assert_eq!(bucket_index(1.0, 0), -1);
    assert_eq!(bucket_index(1.5, 0), 0);
    assert_eq!(bucket_index(2.0, 0), 0);
    assert_eq!(bucket_index(2.0000001, 0), 1);
    assert_eq!(bucket_index(0.5, 0), -2);
    assert_eq!(bucket_index(1.0, 3), -1);
    assert_eq!(bucket_index(2.0, 3), 7);
    assert_eq!(bucket_index(4.0, -1), 0);
    assert_eq!(bucket_index(4.5, -1), 1);
    assert_eq!(bucket_index(0.75, -1), -1);
    assert_eq!(bucket_index(0.25, -1), -2);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let v = 10f64.powf(rng.random_range(-7.0..4.0));
        let scale = rng.random_range(MIN_SCALE..=MAX_SCALE);
        let i = bucket_index(v, scale);
        assert!(
            lower_boundary(i, scale) < v && v <= lower_boundary(i + 1, scale),
            "{v} at scale {scale}: index {i}"
        );
    }
}

/// The exported buckets as (lower, upper] per observation, ascending.
fn expand(p: &ExponentialHistogramDataPoint) -> Vec<(f64, f64)> {
    exponential_buckets(p)
        .into_iter()
        .flat_map(|(l, u, n)| std::iter::repeat_n((l, u), n as usize))
        .collect()
}

#[test]
fn exponential_histograms_keep_count_sum_and_place_each_observation_within_the_stated_error() {
    let mut rng = StdRng::seed_from_u64(42);
    for round in 0..500 {
        // Random non-empty ascending buckets, sometimes with gaps, relative widths up to 50%,
        // over one to seven decades, sometimes with a bucket of zeros first.
        let mut buckets = Vec::new();
        let mut observations: Vec<(f64, f64, f64)> = Vec::new();
        if rng.random_bool(0.2) {
            let n = rng.random_range(1..5);
            buckets.push((0.0, 0.0, n));
            observations.extend(std::iter::repeat_n((0.0, 0.0, 0.0), n as usize));
        }
        let mut lower = 10f64.powf(rng.random_range(-5.0..-1.0));
        let decades = rng.random_range(1.0..7.0);
        let end = lower * 10f64.powf(decades);
        while lower < end {
            let upper = lower * rng.random_range(1.001..1.5);
            let n = rng.random_range(1..20u64);
            buckets.push((lower, upper, n));
            for _ in 0..n {
                let v = rng.random_range(lower..upper);
                observations.push((lower, upper, v));
            }
            lower = upper
                * if rng.random_bool(0.3) {
                    rng.random_range(1.0..3.0)
                } else {
                    1.0
                };
        }
        let count = observations.len() as u64;
        let sum: f64 = observations.iter().map(|o| o.2).sum();
        let h = HistogramValue {
            count,
            sum,
            buckets,
        };
        let p = exponential_point(&h);
        assert_eq!(p.count, count);
        assert_eq!(p.sum, Some(sum));
        assert!((MIN_SCALE..=MAX_SCALE).contains(&p.scale));
        let positive = p.positive.as_ref().unwrap();
        assert!(positive.bucket_counts.len() <= MAX_BUCKETS as usize);
        assert_ne!(positive.bucket_counts.first(), Some(&0));
        assert_ne!(positive.bucket_counts.last(), Some(&0));
        // The largest scale that fits: one step finer would not.
        if p.scale < MAX_SCALE {
            let finer = p.scale + 1;
            let (min, max) = (
                h.buckets.iter().find(|b| b.1 > 0.0).unwrap().1,
                h.buckets.last().unwrap().1,
            );
            assert!(bucket_index(max, finer) - bucket_index(min, finer) + 1 > MAX_BUCKETS);
        }
        let base = lower_boundary(1, p.scale);
        let exported = expand(&p);
        assert_eq!(exported.len(), observations.len());
        for ((lower, upper, v), (el, eu)) in observations.iter().zip(&exported) {
            if *upper == 0.0 {
                assert_eq!((*el, *eu), (0.0, 0.0));
                continue;
            }
            let tol = 1.0 + 1e-12;
            assert!(
                *eu * tol >= *v,
                "round {round}: {v} above its bucket ({el}, {eu}]"
            );
            assert!(*el < upper * tol && upper <= &(eu * tol), "round {round}");
            assert!(
                *eu / v <= base * upper / lower * tol,
                "round {round}: {v} exported as ({el}, {eu}], scale {}",
                p.scale
            );
        }
    }
}

#[test]
fn a_histogram_of_zeros_or_nothing_has_no_positive_buckets() {
    let p = exponential_point(&HistogramValue {
        count: 3,
        sum: 0.0,
        buckets: vec![(0.0, 0.0, 3)],
    });
    assert_eq!((p.count, p.zero_count, p.positive), (3, 3, None));
    let p = exponential_point(&HistogramValue::default());
    assert_eq!((p.count, p.zero_count, p.positive), (0, 0, None));
}

#[test]
fn narrow_histograms_use_a_fine_scale() {
    // log2(0.1001 / 0.1) * 2^16 = 94.5 indices fit in 160; at scale 17 they would be 189.
    let p = exponential_point(&HistogramValue {
        count: 2,
        sum: 0.2,
        buckets: vec![(0.09, 0.1, 1), (0.1, 0.1001, 1)],
    });
    assert_eq!(p.scale, 16);
    assert_eq!(p.positive.unwrap().bucket_counts.iter().sum::<u64>(), 2);
    let p = exponential_point(&HistogramValue {
        count: 1,
        sum: 0.1,
        buckets: vec![(0.09, 0.1, 1)],
    });
    assert_eq!(p.scale, MAX_SCALE);
    assert_eq!(p.positive.unwrap().bucket_counts, [1]);
}

#[test]
fn requests_group_points_by_service_and_map_kinds() {
    let snap = MetricsSnapshot {
        at: 5_000,
        families: vec![
            family(
                "slipstream_sli_requests_total",
                MetricKind::Counter,
                vec![
                    point(Some("checkout"), &[("slo", "a")], PointValue::Number(10.0)),
                    point(None, &[("slo", "b")], PointValue::Number(3.0)),
                    point(Some("cart"), &[("slo", "c")], PointValue::Number(4.0)),
                ],
            ),
            family(
                "slo:sli_error:ratio_rate5m",
                MetricKind::Gauge,
                vec![point(Some("cart"), &[], PointValue::Number(0.25))],
            ),
            family(
                "slipstream.sli.latency",
                MetricKind::Histogram,
                vec![point(
                    Some("checkout"),
                    &[("slo", "a")],
                    PointValue::Histogram(HistogramValue {
                        count: 2,
                        sum: 0.3,
                        buckets: vec![(0.0, 0.1, 1), (0.1, 0.2, 1)],
                    }),
                )],
            ),
        ],
    };
    let req = to_request(&snap);
    let services: Vec<String> = req
        .resource_metrics
        .iter()
        .map(|rm| {
            let attrs = &rm.resource.as_ref().unwrap().attributes;
            assert_eq!(attrs.len(), 1);
            assert_eq!(attrs[0].key, "service.name");
            match &attrs[0].value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                v => panic!("{v:?}"),
            }
        })
        .collect();
    assert_eq!(services, ["checkout", "slipstream", "cart"]);
    for rm in &req.resource_metrics {
        assert_eq!(rm.scope_metrics.len(), 1);
        assert_eq!(
            rm.scope_metrics[0].scope.as_ref().unwrap().name,
            "slipstream"
        );
    }
    let metrics = |i: usize| &req.resource_metrics[i].scope_metrics[0].metrics;
    let checkout = metrics(0);
    assert_eq!(
        checkout.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["slipstream_sli_requests_total", "slipstream.sli.latency"]
    );
    assert_eq!(
        checkout[0].description,
        "Help of slipstream_sli_requests_total."
    );
    assert_eq!(checkout[0].unit, "s");
    match checkout[0].data.as_ref().unwrap() {
        metric::Data::Sum(s) => {
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            assert_eq!(s.data_points.len(), 1);
            let dp = &s.data_points[0];
            assert_eq!(dp.value, Some(number_data_point::Value::AsDouble(10.0)));
            assert_eq!((dp.start_time_unix_nano, dp.time_unix_nano), (111, 5_000));
            assert_eq!(dp.attributes.len(), 1);
            assert_eq!(dp.attributes[0].key, "slo");
        }
        d => panic!("{d:?}"),
    }
    match checkout[1].data.as_ref().unwrap() {
        metric::Data::ExponentialHistogram(h) => {
            assert_eq!(
                h.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            let dp = &h.data_points[0];
            assert_eq!((dp.count, dp.sum), (2, Some(0.3)));
            assert_eq!((dp.start_time_unix_nano, dp.time_unix_nano), (111, 5_000));
        }
        d => panic!("{d:?}"),
    }
    let cart = metrics(2);
    assert_eq!(cart.len(), 2);
    match cart[1].data.as_ref().unwrap() {
        metric::Data::Gauge(g) => {
            assert_eq!(
                g.data_points[0].value,
                Some(number_data_point::Value::AsDouble(0.25))
            );
            assert_eq!(g.data_points[0].start_time_unix_nano, 0);
            assert!(g.data_points[0].attributes.is_empty());
        }
        d => panic!("{d:?}"),
    }
    assert_eq!(metrics(1).len(), 1);
}

#[test]
fn an_empty_snapshot_is_an_empty_request() {
    assert!(
        to_request(&MetricsSnapshot::default())
            .resource_metrics
            .is_empty()
    );
}

#[test]
fn exemplars_carry_the_ids_of_the_requests() {
    let e = slipstream_core::Exemplar::new(
        &[7; 16],
        &[8; 8],
        1_700_000_000_000_000_123,
        250_000_000,
        true,
    )
    .unwrap();
    let mut requests = point(Some("cart"), &[], PointValue::Number(3.0));
    requests.exemplars = vec![e];
    let mut ratio = point(Some("cart"), &[], PointValue::Number(0.5));
    ratio.exemplars = vec![e];
    let mut latency = point(
        Some("cart"),
        &[],
        PointValue::Histogram(HistogramValue {
            count: 1,
            sum: 0.25,
            buckets: vec![(0.2, 0.25, 1)],
        }),
    );
    latency.exemplars = vec![e];
    let snap = MetricsSnapshot {
        at: 1_700_000_001_000_000_000,
        families: vec![
            family("requests_total", MetricKind::Counter, vec![requests]),
            family("ratio", MetricKind::Gauge, vec![ratio]),
            family("latency", MetricKind::Histogram, vec![latency]),
        ],
    };
    let req = to_request(&snap);
    let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
    let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!("a sum")
    };
    let x = &sum.data_points[0].exemplars;
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].trace_id, vec![7; 16]);
    assert_eq!(x[0].span_id, vec![8; 8]);
    assert_eq!(x[0].time_unix_nano, 1_700_000_000_000_000_123);
    assert_eq!(
        x[0].value,
        Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(1.0))
    );
    let Some(metric::Data::Gauge(gauge)) = &metrics[1].data else {
        panic!("a gauge")
    };
    assert!(gauge.data_points[0].exemplars.is_empty());
    let Some(metric::Data::ExponentialHistogram(h)) = &metrics[2].data else {
        panic!("a histogram")
    };
    let x = &h.data_points[0].exemplars;
    assert_eq!(x.len(), 1);
    assert_eq!(
        x[0].value,
        Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(0.25))
    );
    assert_eq!(x[0].trace_id, vec![7; 16]);
}
