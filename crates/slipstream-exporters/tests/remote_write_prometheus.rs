//! Against a real Prometheus (the Debian package; `scripts/test-deps.sh` installs it): SLI
//! series pushed with remote write and scraped from `render()` land with exactly the values
//! of the snapshot, in both exposition formats; a Prometheus that comes up late gets the
//! series once it is up, and the failures before are counted.

mod metrics_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_support::{Log, exporter_metric, now_nanos, point, respond, serve};
use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, PointValue};
use slipstream_core::{MetricsSnapshot, Registry};
use slipstream_exporters::prometheus::{Format, Histograms, negotiate, render};
use slipstream_exporters::remote_write::RemoteWriter;
use slipstream_test_support::eventually_async;
use slipstream_test_support::procs::{Prometheus, urlencode};
use slipstream_test_support::relay::Relay;

// === queries ===

/// Every series matching `selector` at the latest instant: labels to value.
async fn series(prom: &Prometheus, selector: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    let url = format!(
        "http://{}/api/v1/query?query={}",
        prom.addr,
        urlencode(selector)
    );
    let (status, body) = get(&url).await.expect("query");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let labels = r["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let value: f64 = match r["value"][1].as_str().unwrap() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap(),
        };
        out.insert(labels, value);
    }
    out
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse().unwrap()))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// === the snapshot and what Prometheus must hold ===

const SELECTOR: &str = r#"{__name__=~"rwtest_.+|slo:sli_error:ratio_rate5m"}"#;

/// A counter, a gauge with a colon name and a histogram, stamped now.
fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        at: now_nanos(),
        families: vec![
            MetricFamily {
                name: "rwtest_requests_total".to_owned(),
                help: "Requests.".to_owned(),
                unit: "{request}",
                kind: MetricKind::Counter,
                points: vec![
                    point(
                        Some("checkout"),
                        &[("service", "checkout"), ("slo", "availability")],
                        PointValue::Number(1234.0),
                    ),
                    point(
                        Some("checkout"),
                        &[("service", "cart \"x\"\\y"), ("slo", "availability")],
                        PointValue::Number(0.5),
                    ),
                ],
            },
            MetricFamily {
                name: "slo:sli_error:ratio_rate5m".to_owned(),
                help: "Sloth's error ratio over 5m.".to_owned(),
                unit: "1",
                kind: MetricKind::Gauge,
                points: vec![point(
                    Some("checkout"),
                    &[
                        ("sloth_id", "checkout-availability"),
                        ("sloth_slo", "availability"),
                    ],
                    PointValue::Number(0.0125),
                )],
            },
            MetricFamily {
                name: "rwtest_latency_seconds".to_owned(),
                help: "Latency.".to_owned(),
                unit: "s",
                kind: MetricKind::Histogram,
                points: vec![point(
                    Some("checkout"),
                    &[("service", "checkout"), ("slo", "latency")],
                    PointValue::Histogram(HistogramValue {
                        count: 10,
                        sum: 3.1,
                        // Upper ends on the default boundaries (100, 250 and 1000 ms,
                        // each the nearest edge of slipstream's buckets).
                        buckets: vec![
                            (0.0, 0.099614719, 3),
                            (0.099614719, 0.249561087, 5),
                            (0.499122175, 0.998244351, 2),
                        ],
                    }),
                )],
            },
        ],
    }
}

/// What the snapshot must read as, written out by hand.
fn expected() -> BTreeMap<BTreeMap<String, String>, f64> {
    let series: &[(&[(&str, &str)], f64)] = &[
        (
            &[
                ("__name__", "rwtest_requests_total"),
                ("service", "checkout"),
                ("slo", "availability"),
            ],
            1234.0,
        ),
        (
            &[
                ("__name__", "rwtest_requests_total"),
                ("service", "cart \"x\"\\y"),
                ("slo", "availability"),
            ],
            0.5,
        ),
        (
            &[
                ("__name__", "slo:sli_error:ratio_rate5m"),
                ("sloth_id", "checkout-availability"),
                ("sloth_slo", "availability"),
            ],
            0.0125,
        ),
        (&[("le", "0.004980735")], 0.0),
        (&[("le", "0.009961471")], 0.0),
        (&[("le", "0.024903679")], 0.0),
        (&[("le", "0.049807359")], 0.0),
        (&[("le", "0.099614719")], 3.0),
        (&[("le", "0.249561087")], 8.0),
        (&[("le", "0.499122175")], 8.0),
        (&[("le", "0.998244351")], 10.0),
        (&[("le", "2.516582399")], 10.0),
        (&[("le", "5.033164799")], 10.0),
        (&[("le", "10.066329599")], 10.0),
        (&[("le", "+Inf")], 10.0),
        (&[("__name__", "rwtest_latency_seconds_sum")], 3.1),
        (&[("__name__", "rwtest_latency_seconds_count")], 10.0),
    ];
    series
        .iter()
        .map(|(labels, v)| {
            let mut m: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            if !m.contains_key("__name__") || m.contains_key("le") {
                m.entry("__name__".to_owned())
                    .or_insert_with(|| "rwtest_latency_seconds_bucket".to_owned());
            }
            if m["__name__"].starts_with("rwtest_latency") {
                m.insert("service".to_owned(), "checkout".to_owned());
                m.insert("slo".to_owned(), "latency".to_owned());
            }
            (m, *v)
        })
        .collect()
}

/// The series of one source: those whose `job` is `job` (`""`: remote written), without
/// `job` and `instance`.
fn of_job(
    all: &BTreeMap<BTreeMap<String, String>, f64>,
    job: &str,
) -> BTreeMap<BTreeMap<String, String>, f64> {
    all.iter()
        .filter(|(l, _)| l.get("job").map_or("", String::as_str) == job)
        .map(|(l, v)| {
            let mut l = l.clone();
            l.remove("job");
            l.remove("instance");
            (l, *v)
        })
        .collect()
}

/// Polls `selector` until `check` holds for what Prometheus returns, for at most `limit`.
async fn wait_for(
    prom: &Prometheus,
    limit: Duration,
    what: &str,
    check: impl Fn(&BTreeMap<BTreeMap<String, String>, f64>) -> bool,
) -> BTreeMap<BTreeMap<String, String>, f64> {
    let check = &check;
    eventually_async(what, limit, || async move {
        let got = series(prom, SELECTOR).await;
        if check(&got) {
            Ok(got)
        } else {
            Err(format!("Prometheus holds\n{got:#?}\nlog:\n{}", prom.log()))
        }
    })
    .await
}

// === the scrape endpoint ===

/// Serves `render()` of a fresh snapshot on `/metrics` (format negotiated from `Accept`, or
/// forced with `?format=text`), as the binary does.
async fn serve_metrics() -> (SocketAddr, Log) {
    serve(|_, r| {
        let format = if r.uri.query() == Some("format=text") {
            Format::Text
        } else {
            negotiate(r.headers.get("accept").and_then(|v| v.to_str().ok()), false)
        };
        let content_type = [("content-type", format.content_type())];
        respond(
            200,
            &content_type,
            render(&snapshot(), format, &Histograms::default()),
        )
    })
    .await
}

fn scrape_configs(target: SocketAddr) -> String {
    format!(
        "  - job_name: scrape_negotiated\n    static_configs:\n      - targets: ['{target}']\n\
         \x20 - job_name: scrape_text\n    params:\n      format: [text]\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

fn remote_write_config(prometheus: SocketAddr, interval: Duration) -> RemoteWriteConfig {
    let mut cfg = RemoteWriteConfig::default();
    cfg.endpoint = format!("http://{prometheus}/api/v1/write");
    cfg.interval = interval;
    cfg.timeout = Duration::from_secs(2);
    cfg.retry.initial_interval = Duration::from_millis(100);
    cfg.retry.max_interval = Duration::from_millis(400);
    cfg
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_written_and_scraped_series_hold_exactly_the_snapshot_values() {
    let (target, scrapes) = serve_metrics().await;
    let prom = Prometheus::start_scraping(&scrape_configs(target)).await;
    let registry = Registry::new();
    let writer = RemoteWriter::start(
        &remote_write_config(prom.addr, Duration::from_millis(200)),
        Arc::new(snapshot),
        &registry,
    )
    .unwrap();
    let want = expected();
    let got = wait_for(&prom, Duration::from_secs(20), "all three sources", |got| {
        ["", "scrape_negotiated", "scrape_text"]
            .iter()
            .all(|job| of_job(got, job) == want)
    })
    .await;
    assert_eq!(of_job(&got, ""), want, "remote written");
    assert_eq!(
        of_job(&got, "scrape_negotiated"),
        want,
        "scraped (OpenMetrics)"
    );
    assert_eq!(of_job(&got, "scrape_text"), want, "scraped (text 0.0.4)");
    writer.shutdown(Duration::from_secs(2)).await;
    assert!(exporter_metric(&registry, "slipstream_exporter_sent_total", "remote_write") > 0.0);
    // Prometheus' Accept header got OpenMetrics on the job without the `format` parameter.
    let negotiated: BTreeSet<Format> = scrapes
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.uri.query().is_none())
        .map(|r| negotiate(r.headers.get("accept").and_then(|v| v.to_str().ok()), false))
        .collect();
    assert_eq!(negotiated, BTreeSet::from([Format::OpenMetrics]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_starts_late_gets_the_series_and_the_failures_are_counted() {
    // The writer needs an address before Prometheus has one: it writes through a relay that
    // turns connections away until Prometheus is up.
    let relay = Relay::start().await;
    let registry = Registry::new();
    let gauge_gone = Arc::new(AtomicBool::new(false));
    let gone = gauge_gone.clone();
    let source = move || {
        let mut s = snapshot();
        if gone.load(Ordering::SeqCst) {
            s.families.retain(|f| f.kind != MetricKind::Gauge);
        }
        s
    };
    let writer = RemoteWriter::start(
        &remote_write_config(relay.addr, Duration::from_millis(200)),
        Arc::new(source),
        &registry,
    )
    .unwrap();
    let failures = || {
        exporter_metric(
            &registry,
            "slipstream_exporter_failures_total",
            "remote_write",
        )
    };
    eventually_async(
        "failures counted while Prometheus is down",
        Duration::from_secs(10),
        || std::future::ready(failures() >= 2.0),
    )
    .await;
    let prom = Prometheus::start_scraping("").await;
    relay.forward_to(prom.addr);
    let mut want = expected();
    wait_for(
        &prom,
        Duration::from_secs(20),
        "remote written after the outage",
        |got| of_job(got, "") == want,
    )
    .await;
    assert!(failures() >= 2.0);
    // A series that leaves the snapshot is marked stale, as a scrape would: it disappears at
    // once rather than after the 5-minute lookback.
    gauge_gone.store(true, Ordering::SeqCst);
    want.retain(|labels, _| labels["__name__"] != "slo:sli_error:ratio_rate5m");
    assert_eq!(want.len(), expected().len() - 1);
    wait_for(
        &prom,
        Duration::from_secs(10),
        "the gauge marked stale",
        |got| of_job(got, "") == want,
    )
    .await;
    writer.shutdown(Duration::from_secs(2)).await;
}
