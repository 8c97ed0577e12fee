//! The remote writer against a recording test server: the request's headers and body, batches
//! of at most 2000 series, retries of 5xx and no retries of 4xx.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_core::export::{MetricFamily, MetricKind, Point, PointValue};
use slipstream_core::{MetricsSnapshot, Registry};
use slipstream_exporters::remote_write::{RemoteWriter, WriteRequest, decode};

/// What the server saw.
#[derive(Debug, Default)]
struct Seen {
    requests: Vec<(HeaderMap, Bytes)>,
}

/// Answers every request with `status(n)` (n counts from 0), recording each.
async fn serve(status: fn(usize) -> u16) -> (String, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counter = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, counter) = (seen2.clone(), counter.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (seen, counter) = (seen.clone(), counter.clone());
                    async move {
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await?.to_bytes();
                        seen.lock().unwrap().requests.push((headers, body));
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(status(n))
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/api/v1/write"), seen)
}

fn snapshot_of(n: usize) -> MetricsSnapshot {
    MetricsSnapshot {
        at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        families: vec![MetricFamily {
            name: "slo:sli_error:ratio_rate5m".to_owned(),
            help: String::new(),
            unit: "1",
            kind: MetricKind::Gauge,
            points: (0..n)
                .map(|i| Point {
                    labels: vec![("sloth_id".to_owned(), format!("s{i}"))],
                    service: None,
                    value: PointValue::Number(i as f64 / 8.0),
                    start_time: 0,
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

async fn wait_for_requests(seen: &Mutex<Seen>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().requests.len() < n {
        assert!(Instant::now() < deadline, "fewer than {n} requests in 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-metric of the remote writer, summed over its other labels (`reason`).
fn metric(registry: &Registry, name: &str) -> f64 {
    let prefix = format!("{name}{{exporter=\"remote_write\"");
    registry
        .render_prometheus()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn requests_carry_the_remote_write_headers_and_batches_of_2000_series() {
    let (endpoint, seen) = serve(|_| 204).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(4500)), &registry).unwrap();
    wait_for_requests(&seen, 3).await;
    let requests: Vec<(HeaderMap, Bytes)> = seen.lock().unwrap().requests.drain(..).collect();
    let mut values = Vec::new();
    for (headers, body) in &requests[..3] {
        let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("content-encoding"), "snappy");
        assert_eq!(h("content-type"), "application/x-protobuf");
        assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
        assert_eq!(
            h("user-agent"),
            format!("slipstream/{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(h("authorization"), "Bearer t0ken");
        let req: WriteRequest = decode(body).unwrap();
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
    let (endpoint, seen) = serve(|n| if n < 3 { 503 } else { 200 }).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(3)), &registry).unwrap();
    wait_for_requests(&seen, 4).await;
    {
        let seen = seen.lock().unwrap();
        // The same request each time.
        assert!(
            seen.requests[1..4]
                .iter()
                .all(|r| r.1 == seen.requests[0].1)
        );
    }
    assert_eq!(metric(&registry, "slipstream_exporter_failures_total"), 3.0);
    writer.shutdown(Duration::from_secs(2)).await;
    assert_eq!(metric(&registry, "slipstream_exporter_dropped_total"), 0.0);
}

#[tokio::test]
async fn client_errors_drop_the_request_without_retrying() {
    let (endpoint, seen) = serve(|_| 400).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(3)), &registry).unwrap();
    wait_for_requests(&seen, 1).await;
    // Retries would come within 10-50 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().requests.len(), 1);
    assert_eq!(metric(&registry, "slipstream_exporter_dropped_total"), 1.0);
    assert_eq!(metric(&registry, "slipstream_exporter_sent_total"), 0.0);
    writer.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn shutdown_pushes_one_last_snapshot() {
    let (endpoint, seen) = serve(|_| 200).await;
    let registry = Registry::new();
    let writer =
        RemoteWriter::start(&config(endpoint), Arc::new(|| snapshot_of(1)), &registry).unwrap();
    wait_for_requests(&seen, 1).await;
    assert_eq!(writer.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(seen.lock().unwrap().requests.len(), 2);
}

#[test]
fn bad_endpoints_are_refused_with_the_field_path() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = RemoteWriter::start(
        &config("https://example.com/api/v1/write".to_owned()),
        Arc::new(|| snapshot_of(1)),
        &Registry::new(),
    )
    .unwrap_err();
    assert!(err.contains("exporters.remote_write.endpoint"), "{err}");
}
