//! The OTLP metrics exporter against a test server, over gRPC and over HTTP: what arrives
//! decodes to the snapshot's values, exponential histograms keep count and sum and place
//! every observation within the documented error, and failed pushes are retried.

mod metrics_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use metrics_support::{
    Log, Served, exporter_metric, now_nanos, point, respond, serve, wait_for_requests,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, Metric, metric, number_data_point,
};
use prost::Message;
use slipstream_config::exporters::OtlpExportConfig;
use slipstream_config::forward::ForwardProtocol;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, PointValue};
use slipstream_core::{MetricsSnapshot, Registry};
use slipstream_exporters::otlp_metrics::{
    OtlpMetricsExporter, exponential_buckets, lower_boundary,
};

/// An OTLP receiver (gRPC and HTTP) failing the first `fail_first` requests: 503, or
/// `grpc-status: 14` (UNAVAILABLE) over gRPC.
async fn receiver(fail_first: usize) -> (String, Log) {
    let (addr, log) = serve(move |n, r| {
        let fail = n < fail_first;
        if r.header("content-type") == "application/grpc" {
            let status = if fail { "14" } else { "0" };
            let headers = [
                ("content-type", "application/grpc"),
                ("grpc-status", status),
            ];
            respond(200, &headers, "")
        } else {
            let headers = [("content-type", "application/x-protobuf")];
            respond(if fail { 503 } else { 200 }, &headers, "")
        }
    })
    .await;
    (format!("http://{addr}"), log)
}

fn histogram() -> HistogramValue {
    HistogramValue {
        count: 14,
        sum: 4.2,
        buckets: vec![
            (0.0, 0.0, 1),
            (0.0, 0.005, 2),
            (0.005, 0.01, 3),
            (0.05, 0.1, 4),
            (0.25, 0.5, 2),
            (1.0, 2.5, 2),
        ],
    }
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        at: now_nanos(),
        families: vec![
            MetricFamily {
                name: "slipstream_sli_requests_total".to_owned(),
                help: "Requests.".to_owned(),
                unit: "{request}",
                kind: MetricKind::Counter,
                points: vec![
                    point(
                        Some("checkout"),
                        &[("slo", "availability")],
                        PointValue::Number(99.0),
                    ),
                    point(None, &[("slo", "internal")], PointValue::Number(7.0)),
                ],
            },
            MetricFamily {
                name: "slo:sli_error:ratio_rate5m".to_owned(),
                help: "Error ratio.".to_owned(),
                unit: "1",
                kind: MetricKind::Gauge,
                points: vec![point(
                    Some("checkout"),
                    &[("sloth_id", "c-a")],
                    PointValue::Number(0.02),
                )],
            },
            MetricFamily {
                name: "slipstream.sli.latency".to_owned(),
                help: "Latency.".to_owned(),
                unit: "s",
                kind: MetricKind::Histogram,
                points: vec![point(
                    Some("checkout"),
                    &[("slo", "latency")],
                    PointValue::Histogram(histogram()),
                )],
            },
        ],
    }
}

fn config(endpoint: String, protocol: ForwardProtocol) -> OtlpExportConfig {
    let mut cfg = OtlpExportConfig::default();
    cfg.endpoint = endpoint;
    cfg.protocol = protocol;
    cfg.interval = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(2);
    cfg.retry.initial_interval = Duration::from_millis(20);
    cfg.retry.max_interval = Duration::from_millis(100);
    cfg
}

fn decode(r: &Served, protocol: ForwardProtocol) -> ExportMetricsServiceRequest {
    match protocol {
        ForwardProtocol::Grpc => {
            assert_eq!(
                r.uri.path(),
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
            );
            assert_eq!(r.header("content-type"), "application/grpc");
            let mut b = r.body.clone();
            assert_eq!(b.get_u8(), 0, "uncompressed");
            let len = b.get_u32() as usize;
            assert_eq!(len, b.len());
            ExportMetricsServiceRequest::decode(b).unwrap()
        }
        ForwardProtocol::Http => {
            assert_eq!(r.uri.path(), "/v1/metrics");
            assert_eq!(r.header("content-type"), "application/x-protobuf");
            ExportMetricsServiceRequest::decode(r.body.clone()).unwrap()
        }
    }
}

fn service_of(rm: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics) -> String {
    let attr = &rm.resource.as_ref().unwrap().attributes[0];
    assert_eq!(attr.key, "service.name");
    match &attr.value.as_ref().unwrap().value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        v => panic!("{v:?}"),
    }
}

fn number(m: &Metric) -> f64 {
    let dp = match m.data.as_ref().unwrap() {
        metric::Data::Sum(s) => {
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            assert_eq!(s.data_points[0].start_time_unix_nano, 1_000);
            &s.data_points[0]
        }
        metric::Data::Gauge(g) => &g.data_points[0],
        d => panic!("{d:?}"),
    };
    match dp.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        v => panic!("{v:?}"),
    }
}

/// Every observation of the input lands in an exported bucket whose upper bound is at least
/// its own bucket's upper bound and below `base` times it (the documented error).
fn check_histogram(dp: &ExponentialHistogramDataPoint, input: &HistogramValue) {
    assert_eq!(dp.count, input.count);
    assert_eq!(dp.sum, Some(input.sum));
    assert_eq!(dp.start_time_unix_nano, 1_000);
    let exported: Vec<(f64, f64)> = exponential_buckets(dp)
        .into_iter()
        .flat_map(|(l, u, n)| std::iter::repeat_n((l, u), n as usize))
        .collect();
    let observations: Vec<(f64, f64)> = input
        .buckets
        .iter()
        .flat_map(|&(l, u, n)| std::iter::repeat_n((l, u), n as usize))
        .collect();
    assert_eq!(exported.len(), observations.len());
    let base = lower_boundary(1, dp.scale);
    for ((lower, upper), (el, eu)) in observations.iter().zip(&exported) {
        if *upper == 0.0 {
            assert_eq!((*el, *eu), (0.0, 0.0));
            continue;
        }
        assert!(
            el < upper && upper <= eu,
            "({lower}, {upper}] -> ({el}, {eu}]"
        );
        assert!(
            *eu < base * upper * (1.0 + 1e-12),
            "({lower}, {upper}] -> ({el}, {eu}]"
        );
    }
}

fn check_request(req: &ExportMetricsServiceRequest) {
    let services: Vec<String> = req.resource_metrics.iter().map(service_of).collect();
    assert_eq!(services, ["checkout", "slipstream"]);
    let checkout = &req.resource_metrics[0].scope_metrics[0];
    assert_eq!(checkout.scope.as_ref().unwrap().name, "slipstream");
    let names: Vec<&str> = checkout.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "slipstream_sli_requests_total",
            "slo:sli_error:ratio_rate5m",
            "slipstream.sli.latency"
        ]
    );
    assert_eq!(number(&checkout.metrics[0]), 99.0);
    assert_eq!(number(&checkout.metrics[1]), 0.02);
    match checkout.metrics[2].data.as_ref().unwrap() {
        metric::Data::ExponentialHistogram(h) => {
            assert_eq!(
                h.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            let dp = &h.data_points[0];
            assert_eq!(dp.attributes[0].key, "slo");
            check_histogram(dp, &histogram());
        }
        d => panic!("{d:?}"),
    }
    let internal = &req.resource_metrics[1].scope_metrics[0].metrics;
    assert_eq!(internal.len(), 1);
    assert_eq!(number(&internal[0]), 7.0);
}

async fn export_once(protocol: ForwardProtocol) {
    let (endpoint, log) = receiver(0).await;
    let registry = Registry::new();
    let exporter =
        OtlpMetricsExporter::start(&config(endpoint, protocol), Arc::new(snapshot), &registry)
            .unwrap();
    let got = wait_for_requests(&log, 1).await;
    check_request(&decode(&got[0], protocol));
    exporter.shutdown(Duration::from_secs(2)).await;
    assert!(exporter_metric(&registry, "slipstream_exporter_sent_total", "otlp_metrics") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_grpc() {
    export_once(ForwardProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_over_http() {
    export_once(ForwardProtocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exports_are_retried_and_counted() {
    for protocol in [ForwardProtocol::Http, ForwardProtocol::Grpc] {
        let (endpoint, log) = receiver(3).await;
        let registry = Registry::new();
        let mut cfg = config(endpoint, protocol);
        // Longer than the test: only retries can deliver after the failures.
        cfg.interval = Duration::from_secs(3600);
        let exporter = OtlpMetricsExporter::start(&cfg, Arc::new(snapshot), &registry).unwrap();
        let got = wait_for_requests(&log, 4).await;
        // The same request each time, the fourth delivered.
        assert!(got[1..4].iter().all(|r| r.body == got[0].body));
        check_request(&decode(&got[3], protocol));
        let failures = exporter_metric(
            &registry,
            "slipstream_exporter_failures_total",
            "otlp_metrics",
        );
        assert_eq!(failures, 3.0, "{}", registry.render_prometheus());
        exporter.shutdown(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_pushes_one_last_snapshot() {
    let (endpoint, log) = receiver(0).await;
    let mut cfg = config(endpoint, ForwardProtocol::Http);
    cfg.interval = Duration::from_secs(3600);
    let registry = Registry::new();
    let exporter = OtlpMetricsExporter::start(&cfg, Arc::new(snapshot), &registry).unwrap();
    // The first tick pushes at once; the next would be in an hour.
    wait_for_requests(&log, 1).await;
    assert_eq!(exporter.shutdown(Duration::from_secs(2)).await, 0);
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    check_request(&decode(&got[1], ForwardProtocol::Http));
}
