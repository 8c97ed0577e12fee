//! No number of `service.name` values grows the SLO state without bound: 5,000 distinct
//! names against `max_series: 1000` and `slo.discovery.max_services: 100` give templated SLOs
//! to 100 services, list the rest as over the limit, keep `/metrics` and the saved state at
//! the cap's size, restore only the capped set after a restart, and expire quiet services
//! with their saved state.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use slipstream_app::app::App;
use slipstream_config::Config;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{export, kv, resource_spans, server_span};
use slipstream_e2e::{http_get, self_metric, test_config};

const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
/// 2026-06-01T00:00:00Z.
const START: u64 = 1_780_272_000_000_000_000;
const NAMES: usize = 5_000;
const CAP: usize = 100;

const EXTRA: &str = "aggregator:
  max_series: 1000
slo:
  evaluation_interval: 1m
  discovery: { max_services: 100, expire_after: 2h, expire_transient_after: 30m }
";

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = test_config(None, EXTRA);
    cfg.state.dir = Some(dir.to_owned());
    cfg
}

/// One server span per service, ending at `end`.
fn request(services: &[String], end: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let trace_id = [(end / SEC).to_be_bytes(), (i as u64 + 1).to_be_bytes()].concat();
                let span_id = (i as u64 + 1).to_be_bytes().to_vec();
                let span = server_span(trace_id, span_id, "GET /", end - 20_000_000, end);
                resource_spans(vec![kv("service.name", s)], vec![span])
            })
            .collect(),
    }
}

/// Sends one span for each of `services` in the minute starting at `minute`, moves the
/// clock to the minute's end and steps.
async fn play(app: &App, clock: &ManualClock, minute: u64, services: &[String]) {
    clock.set(minute + MIN - SEC);
    for chunk in services.chunks(100) {
        export(app.http_addr.unwrap(), &request(chunk, minute + 30 * SEC)).await;
    }
    clock.set(minute + MIN);
    app.step().await;
}

async fn slos(app: &App) -> serde_json::Value {
    let (status, body) = http_get(app.admin_addr.unwrap(), "/api/v1/slos").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The services the SLOs of `v` (a `/api/v1/slos` answer) are about.
fn slo_services(v: &serde_json::Value) -> BTreeSet<String> {
    v["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap().to_owned())
        .collect()
}

/// The `/metrics` body of the SLI-series endpoint, and the distinct service label values in it.
async fn scrape(app: &App) -> (usize, BTreeSet<String>) {
    let (status, body) = http_get(app.prometheus_addr.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    let mut services = BTreeSet::new();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        for key in ["service_name=\"", "service=\""] {
            if let Some(at) = line.find(key) {
                let rest = &line[at + key.len()..];
                services.insert(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
    }
    (body.len(), services)
}

async fn metric(app: &App, name: &str, labels: &[&str]) -> f64 {
    self_metric(app.admin_addr.unwrap(), name, labels).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_service_names_is_held_to_the_cap_across_restarts_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let junk: Vec<String> = (0..NAMES).map(|i| format!("junk-{i:05}")).collect();
    play(&app, &clock, START, &junk).await;

    // 100 services with their two templated SLOs; the rest that hold a series of their own
    // (the aggregator keeps 1,000) are over the limit; those only in the overflow series get
    // nothing, not even a place on the list.
    let v = slos(&app).await;
    let services = slo_services(&v);
    assert_eq!(services.len(), CAP, "{services:?}");
    assert_eq!(v["slos"].as_array().unwrap().len(), 2 * CAP);
    let over = &v["services_over_limit"];
    let over_count = over["count"].as_u64().unwrap() as usize;
    assert!(
        (800..=1000 - CAP).contains(&over_count),
        "over the limit: {over_count}"
    );
    assert_eq!(over["names"].as_array().unwrap().len(), 100);
    assert!(
        over["names"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| !services.contains(n.as_str().unwrap()))
    );
    assert_eq!(
        metric(&app, "slipstream_slo_services_discovered", &[]).await,
        CAP as f64
    );
    assert_eq!(
        metric(&app, "slipstream_slo_services_over_limit", &[]).await,
        over_count as f64
    );
    assert!(
        metric(
            &app,
            "slipstream_slo_services_refused_total",
            &["over_limit"]
        )
        .await
            >= over_count as f64
    );
    // `/metrics` names only the capped services.
    let (metrics_bytes, scraped) = scrape(&app).await;
    assert!(
        scraped.is_subset(&services) && !scraped.is_empty(),
        "{} services in /metrics",
        scraped.len()
    );
    // The saved state holds the capped set.
    assert!(app.save_state().await.unwrap());
    let capped_bytes = metric(&app, "slipstream_state_snapshot_bytes", &[]).await;
    eprintln!(
        "after {NAMES} names: /metrics {metrics_bytes} bytes, /api/v1/slos {} bytes, snapshot {capped_bytes} bytes",
        serde_json::to_vec(&v).unwrap().len()
    );
    app.shutdown().await;

    // A restart restores only the capped set.
    clock.set(START + 2 * MIN);
    let started = Instant::now();
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    eprintln!("restart took {:?}", started.elapsed());
    assert_eq!(
        metric(&app, "slipstream_state_restored_slos", &[]).await,
        (2 * CAP) as f64
    );
    app.step().await;
    assert_eq!(slo_services(&slos(&app).await), services);

    // One service keeps sending; the others were seen once and go 30 minutes after.
    let keeper = services.iter().next().unwrap().clone();
    let mut minute = START + 2 * MIN;
    let deadline = START + 40 * MIN;
    let mut left = services.len();
    while left > 1 {
        assert!(
            minute < deadline,
            "quiet services not expired by minute {}: {left} services hold SLOs",
            (minute - START) / MIN
        );
        play(&app, &clock, minute, std::slice::from_ref(&keeper)).await;
        left = slo_services(&slos(&app).await).len();
        minute += 5 * MIN;
    }
    let v = slos(&app).await;
    assert_eq!(slo_services(&v), BTreeSet::from([keeper.clone()]));
    assert_eq!(v["services_over_limit"]["count"], 0);
    assert_eq!(
        metric(
            &app,
            "slipstream_slo_services_expired_total",
            &["transient"]
        )
        .await,
        (CAP - 1) as f64
    );
    let (_, scraped) = scrape(&app).await;
    assert_eq!(scraped, BTreeSet::from([keeper.clone()]));
    // Their saved state went with them.
    assert!(app.save_state().await.unwrap());
    let expired_bytes = metric(&app, "slipstream_state_snapshot_bytes", &[]).await;
    assert!(
        expired_bytes * 20.0 < capped_bytes,
        "snapshot {expired_bytes} bytes after expiry, {capped_bytes} before"
    );
    // A name that was over the limit gets its SLOs now that there is room.
    let late = over["names"][0].as_str().unwrap().to_owned();
    play(&app, &clock, minute, &[keeper.clone(), late.clone()]).await;
    assert_eq!(
        slo_services(&slos(&app).await),
        BTreeSet::from([keeper.clone(), late])
    );
    app.shutdown().await;

    // And a restart brings back only those.
    clock.set(minute + 2 * MIN);
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    app.step().await;
    assert_eq!(slo_services(&slos(&app).await).len(), 2);
    app.shutdown().await;
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Measures the flood: `FLOOD_NAMES` (50,000) distinct names in requests of 100, with
/// the default aggregator limits and `slo.discovery.max_services` from `FLOOD_CAP` (2,000;
/// 100000 approximates the behaviour without a cap). Prints step times, RSS and sizes.
/// `cargo test -p slipstream-e2e --test slo_discovery -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures, asserts nothing about them"]
async fn measure_the_flood() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (names, cap) = (env("FLOOD_NAMES", 50_000), env("FLOOD_CAP", 2_000));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(
        None,
        &format!("slo:\n  discovery: {{ max_services: {cap} }}\n"),
    );
    cfg.state.dir = Some(dir.path().to_owned());
    let clock = ManualClock::new(START);
    let app = App::start_with(cfg.clone(), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    eprintln!(
        "{names} names, cap {cap}: RSS at start {} KiB",
        rss_kib("VmRSS:")
    );
    let junk: Vec<String> = (0..names).map(|i| format!("junk-{i:05}")).collect();
    clock.set(START + MIN - SEC);
    let sent = Instant::now();
    for chunk in junk.chunks(100) {
        export(app.http_addr.unwrap(), &request(chunk, START + 30 * SEC)).await;
    }
    eprintln!("sent in {:?}", sent.elapsed());
    clock.set(START + MIN);
    for i in 0..3 {
        let t = Instant::now();
        app.step().await;
        eprintln!("step {i}: {:?}, RSS {} KiB", t.elapsed(), rss_kib("VmRSS:"));
        clock.set(START + (i + 2) * MIN);
    }
    let (status, body) = http_get(app.admin_addr.unwrap(), "/api/v1/slos").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    eprintln!(
        "/api/v1/slos {status}: {} bytes, {} SLOs, over the limit {}; peak RSS {} KiB",
        body.len(),
        v["slos"].as_array().map_or(0, Vec::len),
        v["services_over_limit"]["count"],
        rss_kib("VmHWM:")
    );
    let (metrics_bytes, services) = scrape(&app).await;
    eprintln!(
        "/metrics: {metrics_bytes} bytes, {} services; peak RSS {} KiB",
        services.len(),
        rss_kib("VmHWM:")
    );
    let t = Instant::now();
    app.save_state().await.unwrap();
    eprintln!(
        "snapshot {} bytes in {:?}; peak RSS {} KiB",
        metric(&app, "slipstream_state_snapshot_bytes", &[]).await,
        t.elapsed(),
        rss_kib("VmHWM:")
    );
    app.shutdown().await;
    let t = Instant::now();
    let app = App::start_with(cfg, Arc::new(clock.clone()), false)
        .await
        .unwrap();
    app.step().await;
    eprintln!(
        "restart and first step {:?}; peak RSS {} KiB",
        t.elapsed(),
        rss_kib("VmHWM:")
    );
    app.shutdown().await;
}
