use prost::Message;
use slipstream_core::MetricsSnapshot;
use slipstream_core::export::{HistogramValue, MetricKind, Point, PointValue};

use super::*;
use crate::prometheus::tests::{family, point};

fn names(ts: &TimeSeries) -> Vec<(&str, &str)> {
    ts.labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[test]
fn wire_format_matches_the_prompb_field_numbers() {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".to_owned(),
                value: "a".to_owned(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: 5,
            }],
            histograms: Vec::new(),
        }],
    };
    let mut want = vec![0x0a, 28, 0x0a, 13, 0x0a, 8];
    want.extend_from_slice(b"__name__");
    want.extend_from_slice(&[0x12, 1, b'a', 0x12, 11, 0x09]);
    want.extend_from_slice(&1.0f64.to_le_bytes());
    want.extend_from_slice(&[0x10, 5]);
    assert_eq!(req.encode_to_vec(), want);
}

#[test]
fn series_are_named_like_the_text_format_with_sorted_labels() {
    let snap = MetricsSnapshot {
        at: 1_700_000_000_123_456_789,
        families: vec![
            family(
                "slipstream_sli_requests_total",
                MetricKind::Counter,
                vec![point(
                    Some("checkout"),
                    &[("slo", "a"), ("zone", "x")],
                    PointValue::Number(12.0),
                )],
            ),
            family(
                "slo:sli_error:ratio_rate5m",
                MetricKind::Gauge,
                vec![point(
                    Some("checkout"),
                    &[("Upper", "u")],
                    PointValue::Number(0.5),
                )],
            ),
            family(
                "lat_seconds",
                MetricKind::Histogram,
                vec![point(
                    Some("checkout"),
                    &[("a", "1"), ("z", "2")],
                    PointValue::Histogram(HistogramValue {
                        count: 3,
                        sum: 0.75,
                        buckets: vec![(0.0, 0.25, 1), (0.25, 1.0, 2)],
                    }),
                )],
            ),
        ],
    };
    let layout = Layout {
        histograms: Histograms::from_edges(vec![250_000_000, 1_000_000_000]),
        native: false,
    };
    let series = timeseries(&snap, 42, &layout);
    let got: Vec<(Vec<(&str, &str)>, f64)> = series
        .iter()
        .map(|ts| {
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(ts.samples[0].timestamp, 1_700_000_000_123);
            (names(ts), ts.samples[0].value)
        })
        .collect();
    let want: Vec<(Vec<(&str, &str)>, f64)> = vec![
        (
            vec![
                ("__name__", "slipstream_sli_requests_total"),
                ("slo", "a"),
                ("zone", "x"),
            ],
            12.0,
        ),
        (
            vec![("Upper", "u"), ("__name__", "slo:sli_error:ratio_rate5m")],
            0.5,
        ),
        (
            vec![
                ("__name__", "lat_seconds_bucket"),
                ("a", "1"),
                ("le", "0.25"),
                ("z", "2"),
            ],
            1.0,
        ),
        (
            vec![
                ("__name__", "lat_seconds_bucket"),
                ("a", "1"),
                ("le", "1.0"),
                ("z", "2"),
            ],
            3.0,
        ),
        (
            vec![
                ("__name__", "lat_seconds_bucket"),
                ("a", "1"),
                ("le", "+Inf"),
                ("z", "2"),
            ],
            3.0,
        ),
        (
            vec![("__name__", "lat_seconds_sum"), ("a", "1"), ("z", "2")],
            0.75,
        ),
        (
            vec![("__name__", "lat_seconds_count"), ("a", "1"), ("z", "2")],
            3.0,
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_snapshot_without_time_is_stamped_now() {
    let snap = MetricsSnapshot {
        at: 0,
        families: vec![family(
            "g",
            MetricKind::Gauge,
            vec![point(Some("checkout"), &[], PointValue::Number(1.0))],
        )],
    };
    assert_eq!(
        timeseries(&snap, 42, &Layout::default())[0].samples[0].timestamp,
        42
    );
}

#[test]
fn large_snapshots_split_into_batches_that_decode_back() {
    let points: Vec<Point> = (0..4500)
        .map(|i| {
            point(
                Some("checkout"),
                &[("i", &i.to_string())],
                PointValue::Number(f64::from(i)),
            )
        })
        .collect();
    let snap = MetricsSnapshot {
        at: 1_000_000,
        families: vec![family("g", MetricKind::Gauge, points)],
    };
    let bodies = encode(&snap, 0, &Layout::default(), MAX_SERIES_PER_REQUEST);
    let decoded: Vec<WriteRequest> = bodies.iter().map(|b| decode(b).unwrap()).collect();
    assert_eq!(
        decoded
            .iter()
            .map(|r| r.timeseries.len())
            .collect::<Vec<_>>(),
        [2000, 2000, 500]
    );
    let values: Vec<f64> = decoded
        .iter()
        .flat_map(|r| &r.timeseries)
        .map(|ts| ts.samples[0].value)
        .collect();
    assert_eq!(values, (0..4500).map(f64::from).collect::<Vec<_>>());
    // Snappy block format, not the framed stream format.
    assert!(!bodies[0].starts_with(b"\xff\x06\x00\x00sNaPpY"));
    assert_eq!(
        snap::raw::decompress_len(&bodies[0]).unwrap(),
        decoded[0].encoded_len()
    );
}

#[test]
fn an_empty_snapshot_is_one_empty_request() {
    let bodies = encode(
        &MetricsSnapshot::default(),
        0,
        &Layout::default(),
        MAX_SERIES_PER_REQUEST,
    );
    assert_eq!(bodies.len(), 1);
    assert_eq!(decode(&bodies[0]).unwrap(), WriteRequest::default());
}

#[test]
fn series_that_disappear_get_one_stale_marker() {
    let gauge = |names: &[&str]| MetricsSnapshot {
        at: 5_000_000,
        families: vec![family(
            "g",
            MetricKind::Gauge,
            names
                .iter()
                .map(|n| point(Some("checkout"), &[("k", n)], PointValue::Number(1.0)))
                .collect(),
        )],
    };
    let mut staleness = Staleness::default();
    let mut push = |names: &[&str], at: i64| {
        let mut series = timeseries(&gauge(names), 0, &Layout::default());
        staleness.mark(&mut series, at);
        series
            .iter()
            .map(|ts| {
                let v = ts.samples[0].value;
                let stale = v.to_bits() == STALE_NAN_BITS;
                assert!(stale || v == 1.0);
                (ts.labels[1].value.clone(), stale, ts.samples[0].timestamp)
            })
            .collect::<Vec<_>>()
    };
    let s = |k: &str, stale: bool, at: i64| (k.to_owned(), stale, at);
    assert_eq!(
        push(&["a", "b", "c"], 5),
        [s("a", false, 5), s("b", false, 5), s("c", false, 5)]
    );
    assert_eq!(
        push(&["b"], 7),
        [s("b", false, 5), s("a", true, 7), s("c", true, 7)]
    );
    assert_eq!(push(&["b"], 9), [s("b", false, 5)]);
    assert_eq!(push(&[], 11), [s("b", true, 11)]);
    assert_eq!(push(&[], 13), []);
    assert!(f64::from_bits(STALE_NAN_BITS).is_nan());
}

#[test]
fn native_histograms_are_one_series_with_a_histogram_sample() {
    let snap = MetricsSnapshot {
        at: 1_700_000_000_123_456_789,
        families: vec![family(
            "lat_seconds",
            MetricKind::Histogram,
            vec![point(
                Some("checkout"),
                &[("z", "2")],
                PointValue::Histogram(HistogramValue {
                    count: 4,
                    sum: 0.75,
                    buckets: vec![(0.0, 0.0, 1), (0.0, 0.25, 1), (0.25, 1.0, 2)],
                }),
            )],
        )],
    };
    let layout = Layout {
        native: true,
        ..Layout::default()
    };
    let series = timeseries(&snap, 0, &layout);
    assert_eq!(series.len(), 1);
    assert_eq!(names(&series[0]), [("__name__", "lat_seconds"), ("z", "2")]);
    assert!(series[0].samples.is_empty());
    let h = &series[0].histograms[0];
    assert_eq!((h.count_int, h.sum, h.zero_count_int), (4, 0.75, 1));
    assert_eq!((h.schema, h.timestamp), (8, 1_700_000_000_123));
    let first = crate::prometheus::native::index(0.125);
    let second = crate::prometheus::native::index(0.625);
    assert_eq!(
        h.positive_spans,
        [
            BucketSpan {
                offset: first,
                length: 1
            },
            BucketSpan {
                offset: second - first - 1,
                length: 1
            }
        ]
    );
    assert_eq!(h.positive_deltas, [1, 1]);
    // Field numbers: TimeSeries.histograms is 4; in Histogram count_int 1, sum 3, schema 4
    // (zigzag), zero_threshold 5, zero_count_int 6, positive_spans 11, positive_deltas 12,
    // timestamp 15.
    let bytes = series[0].encode_to_vec();
    let decoded = TimeSeries::decode(&bytes[..]).unwrap();
    assert_eq!(decoded, series[0]);
    let hb = h.encode_to_vec();
    assert_eq!(&hb[..2], &[0x08, 4]);
    assert!(hb.windows(2).any(|w| w == [0x20, 16]), "{hb:?}");
    assert!(bytes.contains(&0x22), "field 4, length-delimited");
}
