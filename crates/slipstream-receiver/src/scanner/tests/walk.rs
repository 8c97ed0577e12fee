//! The wire walk of metrics and logs against a prost decode (counts, truncation, corruption),
//! `AnyValue` nesting and the ids of log records and exemplars.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;

use crate::scanner::{MAX_ANY_VALUE_DEPTH, ScanError, walk_logs, walk_metrics};
use crate::test_support::{logs_with, nested_body};

// === generated requests ===

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        ".{0,8}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        any::<f64>().prop_map(any_value::Value::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
    ];
    leaf.prop_map(|v| AnyValue { value: Some(v) })
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
                }),
                prop::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|kvs| AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                }),
            ]
        })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(("[a-z.]{1,8}", any_value()), 0..3).prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: Some(v),
                ..Default::default()
            })
            .collect()
    })
}

/// An id of `len` bytes, or none.
fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), len)]
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        any::<u64>(),
        0i32..25,
        ".{0,6}",
        prop::option::of(any_value()),
        attributes(),
        id(16),
        id(8),
        any::<u32>(),
    )
        .prop_map(
            |(t, sev, text, body, attributes, trace_id, span_id, flags)| LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t / 2,
                severity_number: sev,
                severity_text: text,
                body,
                attributes,
                dropped_attributes_count: 1,
                flags,
                trace_id,
                span_id,
                event_name: String::new(),
            },
        )
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    prop::option::of(attributes().prop_map(|attributes| Resource {
        attributes,
        ..Default::default()
    }))
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    prop::option::of(("[a-z]{0,5}", attributes()).prop_map(|(name, attributes)| {
        InstrumentationScope {
            name,
            version: "1".into(),
            attributes,
            dropped_attributes_count: 0,
        }
    }))
}

fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope_logs =
        (scope(), prop::collection::vec(log_record(), 0..5)).prop_map(|(scope, log_records)| {
            ScopeLogs {
                scope,
                log_records,
                schema_url: String::new(),
            }
        });
    let resource_logs =
        (resource(), prop::collection::vec(scope_logs, 0..3)).prop_map(|(resource, scope_logs)| {
            ResourceLogs {
                resource,
                scope_logs,
                schema_url: "s".into(),
            }
        });
    prop::collection::vec(resource_logs, 0..3)
        .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    prop::collection::vec(
        (attributes(), id(8), id(16), any::<f64>()).prop_map(
            |(filtered_attributes, span_id, trace_id, v)| Exemplar {
                filtered_attributes,
                time_unix_nano: 3,
                span_id,
                trace_id,
                value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(v)),
            },
        ),
        0..2,
    )
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (attributes(), exemplars(), any::<i64>()).prop_map(|(attributes, exemplars, v)| {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars,
            flags: 0,
            value: Some(number_data_point::Value::AsInt(v)),
        }
    })
}

fn metric_data() -> impl Strategy<Value = Option<metric::Data>> {
    let histogram = (
        attributes(),
        exemplars(),
        prop::collection::vec(any::<u64>(), 0..5),
    )
        .prop_map(
            |(attributes, exemplars, bucket_counts)| HistogramDataPoint {
                attributes,
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 9,
                sum: Some(1.5),
                explicit_bounds: vec![1.0; bucket_counts.len().saturating_sub(1)],
                bucket_counts,
                exemplars,
                flags: 1,
                min: Some(0.5),
                max: None,
            },
        );
    let exp = (
        attributes(),
        prop::collection::vec(any::<u64>(), 0..5),
        any::<i32>(),
    )
        .prop_map(
            |(attributes, bucket_counts, offset)| ExponentialHistogramDataPoint {
                attributes,
                count: 4,
                scale: -3,
                zero_count: 1,
                positive: Some(Buckets {
                    offset,
                    bucket_counts,
                }),
                negative: None,
                zero_threshold: 0.001,
                ..Default::default()
            },
        );
    let summary = attributes().prop_map(|attributes| SummaryDataPoint {
        attributes,
        count: 3,
        sum: 2.0,
        quantile_values: vec![ValueAtQuantile {
            quantile: 0.5,
            value: 1.0,
        }],
        ..Default::default()
    });
    prop_oneof![
        Just(None),
        prop::collection::vec(number_point(), 0..4)
            .prop_map(|data_points| Some(metric::Data::Gauge(Gauge { data_points }))),
        prop::collection::vec(number_point(), 0..4).prop_map(|data_points| Some(
            metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: 2,
                is_monotonic: true,
            })
        )),
        prop::collection::vec(histogram, 0..4).prop_map(|data_points| Some(
            metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: 1,
            })
        )),
        prop::collection::vec(exp, 0..4).prop_map(|data_points| Some(
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: 1,
            })
        )),
        prop::collection::vec(summary, 0..4)
            .prop_map(|data_points| Some(metric::Data::Summary(Summary { data_points }))),
    ]
}

fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let metric =
        ("[a-z]{1,6}", attributes(), metric_data()).prop_map(|(name, metadata, data)| Metric {
            name,
            description: "d".into(),
            unit: "s".into(),
            metadata,
            data,
        });
    let scope_metrics =
        (scope(), prop::collection::vec(metric, 0..4)).prop_map(|(scope, metrics)| ScopeMetrics {
            scope,
            metrics,
            schema_url: String::new(),
        });
    let resource_metrics = (resource(), prop::collection::vec(scope_metrics, 0..3)).prop_map(
        |(resource, scope_metrics)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url: String::new(),
        },
    );
    prop::collection::vec(resource_metrics, 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

/// Data points as read from the decoded tree.
fn points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

fn records(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_walk_counts_log_records_as_a_full_decode_does(req in logs_request()) {
        let buf = req.encode_to_vec();
        prop_assert_eq!(walk_logs(&buf).unwrap(), records(&req));
    }

    #[test]
    fn the_walk_counts_data_points_as_a_full_decode_does(req in metrics_request()) {
        let buf = req.encode_to_vec();
        prop_assert_eq!(walk_metrics(&buf).unwrap(), points(&req));
    }

    /// Every prefix of a valid request: the walk accepts it exactly when prost does, with the
    /// same count.
    #[test]
    fn truncated_logs_are_refused_where_prost_refuses_them(req in logs_request(), cut in any::<prop::sample::Index>()) {
        let buf = req.encode_to_vec();
        let prefix = &buf[..cut.index(buf.len() + 1)];
        let walked = walk_logs(prefix).ok();
        let decoded = ExportLogsServiceRequest::decode(prefix).ok().map(|r| records(&r));
        prop_assert_eq!(walked, decoded);
    }

    #[test]
    fn truncated_metrics_are_refused_where_prost_refuses_them(req in metrics_request(), cut in any::<prop::sample::Index>()) {
        let buf = req.encode_to_vec();
        let prefix = &buf[..cut.index(buf.len() + 1)];
        let walked = walk_metrics(prefix).ok();
        let decoded = ExportMetricsServiceRequest::decode(prefix).ok().map(|r| points(&r));
        prop_assert_eq!(walked, decoded);
    }

    /// A byte flipped anywhere: the walk never accepts what prost refuses for a reason other
    /// than nesting (they agree on acceptance, and on the count when both accept).
    #[test]
    fn corrupted_logs_agree_with_prost(req in logs_request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = req.encode_to_vec();
        if buf.is_empty() {
            return Ok(());
        }
        let i = at.index(buf.len());
        buf[i] = byte;
        let walked = walk_logs(&buf);
        let decoded = ExportLogsServiceRequest::decode(&buf[..]);
        match (walked, decoded) {
            (Ok(n), Ok(r)) => prop_assert_eq!(n, records(&r)),
            (Err(_), Err(_)) => {}
            // The walk refuses ids of the wrong length that prost takes.
            (Err(ScanError::InvalidId { .. }), Ok(_)) => {}
            (w, d) => prop_assert!(false, "walk {:?}, prost {:?}", w, d.map(|r| records(&r))),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn corrupted_metrics_agree_with_prost(req in metrics_request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = req.encode_to_vec();
        if buf.is_empty() {
            return Ok(());
        }
        let i = at.index(buf.len());
        buf[i] = byte;
        let walked = walk_metrics(&buf);
        let decoded = ExportMetricsServiceRequest::decode(&buf[..]);
        match (walked, decoded) {
            (Ok(n), Ok(r)) => prop_assert_eq!(n, points(&r)),
            (Err(_), Err(_)) => {}
            (Err(ScanError::InvalidId { .. }), Ok(_)) => {}
            (w, d) => prop_assert!(false, "walk {:?}, prost {:?}", w, d.map(|r| points(&r))),
        }
    }
}

// === logs: nesting and ids ===

#[test]
fn deeply_nested_valid_values_are_taken_up_to_the_cap_and_refused_past_it() {
    for depth in [50, 100, MAX_ANY_VALUE_DEPTH as usize] {
        let buf = logs_with(LogRecord {
            body: Some(nested_body(depth)),
            ..Default::default()
        });
        assert_eq!(walk_logs(&buf), Ok(1), "{depth} levels");
    }
    // prost's recursion limit refuses 50 levels already: the walk is what lets them through.
    let fifty = logs_with(LogRecord {
        body: Some(nested_body(50)),
        ..Default::default()
    });
    assert!(ExportLogsServiceRequest::decode(&fifty[..]).is_err());
    let past = logs_with(LogRecord {
        body: Some(nested_body(MAX_ANY_VALUE_DEPTH as usize + 1)),
        ..Default::default()
    });
    let err = walk_logs(&past).unwrap_err();
    assert!(
        matches!(err, ScanError::NestingLimit { limit: 128, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("nested more than 128 levels"),
        "{err}"
    );
    // In an attribute's key-value list as well.
    let mut kvlist = nested_body(MAX_ANY_VALUE_DEPTH as usize);
    for _ in 0..1 {
        kvlist = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(kvlist),
                    ..Default::default()
                }],
            })),
        };
    }
    let buf = logs_with(LogRecord {
        attributes: vec![KeyValue {
            key: "a".into(),
            value: Some(kvlist),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!(matches!(
        walk_logs(&buf),
        Err(ScanError::NestingLimit { .. })
    ));
}

#[test]
fn log_record_ids_when_present_have_their_lengths() {
    let with = |trace_id: usize, span_id: usize| {
        walk_logs(&logs_with(LogRecord {
            trace_id: vec![1; trace_id],
            span_id: vec![2; span_id],
            ..Default::default()
        }))
    };
    assert_eq!(with(0, 0), Ok(1));
    assert_eq!(with(16, 8), Ok(1));
    assert_eq!(with(16, 0), Ok(1));
    for (t, s, what) in [(15, 8, "trace_id"), (17, 8, "trace_id"), (16, 7, "span_id")] {
        match with(t, s) {
            Err(ScanError::InvalidId { item, what: w, .. }) => {
                assert_eq!((item, w), ("log record", what));
            }
            other => panic!("{t}/{s}: {other:?}"),
        }
    }
}

#[test]
fn exemplar_ids_when_present_have_their_lengths() {
    let req = |trace_id: usize| {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                exemplars: vec![Exemplar {
                                    trace_id: vec![1; trace_id],
                                    span_id: vec![2; 8],
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    assert_eq!(walk_metrics(&req(16)), Ok(1));
    assert!(matches!(
        walk_metrics(&req(15)),
        Err(ScanError::InvalidId {
            item: "exemplar",
            ..
        })
    ));
}

#[test]
fn a_metric_oneof_set_twice_counts_as_the_decoded_tree_holds_it() {
    let gauge = |n: usize| Metric {
        name: "m".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); n],
        })),
        ..Default::default()
    };
    let sum = Metric {
        name: "m".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint::default(); 5],
            ..Default::default()
        })),
        ..Default::default()
    };
    // Concatenated encodings of one message merge: gauge(2) + gauge(3) is a gauge of 5; a sum
    // after them replaces it; a gauge after the sum replaces that.
    for parts in [
        vec![gauge(2), gauge(3)],
        vec![gauge(2), sum.clone()],
        vec![sum.clone(), gauge(1)],
    ] {
        let mut m = Vec::new();
        for p in &parts {
            m.extend(p.encode_to_vec());
        }
        let mut scope = Vec::new();
        prost::encoding::bytes::encode(2, &m, &mut scope);
        let mut resource = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut resource);
        let mut req = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut req);
        let decoded = ExportMetricsServiceRequest::decode(&req[..]).unwrap();
        assert_eq!(walk_metrics(&req), Ok(points(&decoded)));
    }
}
