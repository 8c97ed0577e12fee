//! The remote writer against a recording test server: the request's headers and body, batches
//! of at most 2000 series, retries of 5xx and no retries of 4xx.

mod metrics_support;

use std::sync::Arc;
use std::time::Duration;

use metrics_support::{Log, exporter_metric, now_nanos, point, respond, serve, wait_for_requests};
use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_core::export::{MetricFamily, MetricKind, PointValue};
use slipstream_core::{MetricsSnapshot, Registry};
use slipstream_exporters::remote_write::{RemoteWriter, WriteRequest, decode};
use slipstream_test_support::eventually_async;

/// A remote-write endpoint answering the `n`-th request with `status(n)`.
async fn receiver(status: fn(usize) -> u16) -> (String, Log) {
    let (addr, log) = serve(move |n, _| respond(status(n), &[], "")).await;
    (format!("http://{addr}/api/v1/write"), log)
}

fn snapshot_of(n: usize) -> MetricsSnapshot {
    MetricsSnapshot {
        at: now_nanos(),
        families: vec![MetricFamily {
            name: "slo:sli_error:ratio_rate5m".to_owned(),
            help: String::new(),
            unit: "1",
            kind: MetricKind::Gauge,
            points: (0..n)
                .map(|i| {
                    point(
                        None,
                        &[("sloth_id", &format!("s{i}"))],
                        PointValue::Number(i as f64 / 8.0),
                    )
                })
                .collect(),
        }],
    }
}

fn config(endpoint: String) -> RemoteWriteConfig {
    let mut cfg = RemoteWriteConfig::default();
    cfg.endpoint = endpoint;
    // Longer than any test: only the first push and retries happen.
    cfg.interval = Duration::from_secs(3600);
    cfg.timeout = Duration::from_secs(2);
    cfg.retry.initial_interval = Duration::from_millis(10);
    cfg.retry.max_interval = Duration::from_millis(50);
    cfg.headers
        .insert("Authorization".to_owned(), "Bearer t0ken".to_owned());
    cfg
}

fn metric(registry: &Registry, name: &str) -> f64 {
    exporter_metric(registry, name, "remote_write")
}

#[tokio::test]
async fn requests_carry_the_remote_write_headers_and_batches_of_2000_series() {
    let (endpoint, seen) = receiver(|_| 204).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(4500)), &registry).unwrap();
    let requests = wait_for_requests(&seen, 3).await;
    let mut values = Vec::new();
    for r in &requests[..3] {
        let h = |name: &str| r.header(name);
        assert_eq!(h("content-encoding"), "snappy");
        assert_eq!(h("content-type"), "application/x-protobuf");
        assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
        assert_eq!(
            h("user-agent"),
            format!("slipstream/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(h("authorization"), "Bearer t0ken");
        let req: WriteRequest = decode(&r.body).unwrap();
        assert!(req.timeseries.len() <= 2000);
        for ts in &req.timeseries {
            assert_eq!(ts.labels[0].name, "__name__");
            assert_eq!(ts.labels[0].value, "slo:sli_error:ratio_rate5m");
            values.push(ts.samples[0].value);
        }
    }
    assert_eq!(
        values,
        (0..4500).map(|i| f64::from(i) / 8.0).collect::<Vec<_>>()
    );
    writer.shutdown(Duration::from_secs(2)).await;
    assert!(metric(&registry, "slipstream_exporter_sent_total") >= 3.0);
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let (endpoint, seen) = receiver(|n| if n < 3 { 503 } else { 200 }).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(3)), &registry).unwrap();
    let requests = wait_for_requests(&seen, 4).await;
    // The same request each time.
    assert!(requests[1..4].iter().all(|r| r.body == requests[0].body));
    assert_eq!(metric(&registry, "slipstream_exporter_failures_total"), 3.0);
    writer.shutdown(Duration::from_secs(2)).await;
    assert_eq!(metric(&registry, "slipstream_exporter_dropped_total"), 0.0);
}

#[tokio::test]
async fn client_errors_drop_the_request_without_retrying() {
    let (endpoint, seen) = receiver(|_| 400).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(3)), &registry).unwrap();
    wait_for_requests(&seen, 1).await;
    // Once the request counts as dropped the writer is done with it: any retry would have
    // come before.
    eventually_async(
        "the request counted as dropped",
        Duration::from_secs(10),
        || std::future::ready(metric(&registry, "slipstream_exporter_dropped_total") >= 1.0),
    )
    .await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(metric(&registry, "slipstream_exporter_dropped_total"), 1.0);
    assert_eq!(metric(&registry, "slipstream_exporter_sent_total"), 0.0);
    writer.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn shutdown_pushes_one_last_snapshot() {
    let (endpoint, seen) = receiver(|_| 200).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(1)), &registry).unwrap();
    wait_for_requests(&seen, 1).await;
    assert_eq!(writer.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn bad_endpoints_are_refused_with_the_field_path() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = RemoteWriter::start(
        &config("example.com/api/v1/write".to_owned()),
        Arc::new(|| snapshot_of(1)),
        &Registry::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("exporters.remote_write.endpoint"), "{err}");
}
