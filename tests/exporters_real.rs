//! The exporters against the real thing: a real Prometheus scrapes slipstream's SLI endpoint
//! and receives its remote writes, and both give the values slipstream computed; a real
//! Alertmanager shows a burn-rate incident produced by real OTLP traffic, then its recovery,
//! and the time-to-exhaustion page the same incident fires, with its labels.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_e2e::otlp::{Minute, scenario};
use slipstream_e2e::procs::{Alertmanager, Prometheus};
use slipstream_e2e::sdk::{emit, http_exporter};
use slipstream_e2e::{eventually_async, http_get, one_slo, start};

const MIN: u64 = 60_000_000_000;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The value of the first sample of `name` whose line contains every `labels` entry.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_receives_the_values_slipstream_computed() {
    let mut cfg = one_slo("checkout")
        .tick_interval("1s")
        .evaluation_interval("1s")
        .catalog("{ owner: team-payments, tier: tier-1 }")
        .config();
    cfg.exporters.prometheus.naming = slipstream_config::exporters::MetricNaming::Sloth;
    // The same Prometheus scrapes slipstream and receives its remote writes.
    let prom = Prometheus::start(&[]).await;
    cfg.exporters.remote_write = Some(RemoteWriteConfig {
        endpoint: prom.remote_write_url(),
        interval: Duration::from_millis(500),
        naming: slipstream_config::exporters::MetricNaming::Sloth,
        ..Default::default()
    });
    let app = start(cfg).await;
    prom.set_targets(&[app.prometheus_addr.unwrap()]);

    // Five minutes of recorded traffic ending now: 60 requests a minute, half of the fourth
    // minute failing.
    let minutes = (0..5).map(|m| Minute {
        error_share: if m == 3 { 0.5 } else { 0.0 },
        version: "2.0.0",
    });
    for req in scenario("checkout", now_nanos() - 6 * MIN, 60, minutes) {
        slipstream_e2e::otlp::export(app.http_addr.unwrap(), &req).await;
    }
    app.step().await;

    // What slipstream computed, on its own endpoint and in its API.
    let scrape = http_get(app.prometheus_addr.unwrap(), "/metrics").await.1;
    let svc = "service_name=\"checkout\"";
    assert_eq!(
        sample(
            &scrape,
            "slipstream_sli_requests_total",
            &[svc, "owner=\"team-payments\""]
        ),
        Some(300.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "slipstream_sli_errors_total", &[svc]),
        Some(30.0)
    );
    let slo = "slo=\"checkout-availability\"";
    let ratio_1h = sample(
        &scrape,
        "slipstream_slo_error_ratio",
        &[slo, "window=\"1h\""],
    )
    .unwrap();
    assert!((ratio_1h - 0.1).abs() < 1e-12, "{ratio_1h}");
    let burn_1h = sample(&scrape, "slipstream_slo_burn_rate", &[slo, "window=\"1h\""]).unwrap();
    assert!((burn_1h - 100.0).abs() < 1e-9, "{burn_1h}");
    let sloth = sample(
        &scrape,
        "slo:sli_error:ratio_rate1h",
        &["sloth_slo=\"checkout-availability\"", "sloth_window=\"1h\""],
    )
    .unwrap();
    assert_eq!(sloth, ratio_1h);
    let api: serde_json::Value =
        serde_json::from_str(&http_get(app.admin_addr.unwrap(), "/api/v1/slos").await.1).unwrap();
    let api_slo = &api["slos"][0];
    assert_eq!(api_slo["name"], "checkout-availability");
    assert_eq!(api_slo["period_total"], 300.0);
    assert_eq!(api_slo["period_bad"], 30.0);

    // A real Prometheus scraping that endpoint sees the same values, and so do the series
    // slipstream remote-writes to it (no `job` label).
    let within = Duration::from_secs(20);
    for (how, job) in [
        ("scraped", "job=\"slipstream\""),
        ("remote-written", "job=\"\""),
    ] {
        let got = prom
            .wait_for(
                &format!("slipstream_sli_errors_total{{{job},service_name=\"checkout\"}}"),
                within,
                |r| r.first().is_some_and(|x| x.1 == 30.0),
            )
            .await;
        assert_eq!(got.len(), 1, "{how}: {got:?}");
        let got = prom
            .wait_for(
                &format!(
                    "slipstream_slo_burn_rate{{{job},slo=\"checkout-availability\",window=\"1h\"}}"
                ),
                within,
                |r| !r.is_empty(),
            )
            .await;
        assert_eq!(got[0].1, burn_1h, "{how}");
        let got = prom
            .wait_for(
                &format!("slo:sli_error:ratio_rate1h{{{job},sloth_service=\"checkout\"}}"),
                within,
                |r| !r.is_empty(),
            )
            .await;
        assert_eq!(got[0].1, ratio_1h, "{how}");
    }
    let got = prom
        .wait_for(
            "slipstream_sli_requests_total{job=\"slipstream\",service_name=\"checkout\"}",
            within,
            |r| !r.is_empty(),
        )
        .await;
    assert_eq!(got[0].1, 300.0);
    assert_eq!(got[0].0["owner"], "team-payments");
    assert_eq!(got[0].0["tier"], "tier-1");
    let got = prom
        .wait_for(
            "slipstream_sli_latency_seconds_count{job=\"slipstream\",service_name=\"checkout\"}",
            within,
            |r| !r.is_empty(),
        )
        .await;
    assert_eq!(got[0].1, 300.0);
    // Every span took 20 ms: all 300 are counted in the default bucket between the 10 ms and
    // 25 ms bounds (exported as the bucket edges 0.009961471 and 0.024903679), and Prometheus
    // interpolates the median halfway between them.
    let got = prom
        .query("slipstream_sli_latency_seconds_bucket{job=\"slipstream\",le=\"0.024903679\"}")
        .await;
    assert_eq!(got[0].1, 300.0, "{got:?}");
    let got = prom
        .query("slipstream_sli_latency_seconds_bucket{job=\"slipstream\",le=\"0.009961471\"}")
        .await;
    assert_eq!(got[0].1, 0.0, "{got:?}");
    let got = prom
        .query("histogram_quantile(0.5, slipstream_sli_latency_seconds_bucket{job=\"slipstream\"})")
        .await;
    let halfway = 0.009961471 + (0.024903679 - 0.009961471) / 2.0;
    assert!((got[0].1 - halfway).abs() < 1e-12, "{got:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burn_rate_incident_from_real_otlp_traffic_fires_and_resolves_in_alertmanager() {
    let am = Alertmanager::start().await;
    let cfg = one_slo("checkout")
        .tick_interval("1s")
        .evaluation_interval("1s")
        .catalog("{ owner: team-payments, runbook_url: https://runbooks.example/checkout }")
        .alert("{ severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }")
        .alert("{ severity: page, exhausts_within: 4h, window: 1h }")
        .alertmanager(am.addr)
        .config();
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();

    // The incident: 50 requests, every one answered 503, from the real OTel SDK.
    emit(http_exporter(http), "checkout", 50, |_| true).await;
    let named = |a: &serde_json::Value, name: &str| {
        a["labels"]["slo"] == "checkout-availability" && a["labels"]["alertname"] == name
    };
    let ours = |a: &serde_json::Value| named(a, "SlipstreamErrorBudgetBurn");
    let (alert, exhaustion) = eventually_async(
        "our burn-rate and exhaustion alerts in Alertmanager",
        Duration::from_secs(20),
        || async {
            let alerts = am.alerts().await;
            let burn = alerts.iter().find(|a| ours(a)).cloned();
            let exhaustion = alerts
                .iter()
                .find(|a| named(a, "SlipstreamErrorBudgetExhaustion"))
                .cloned();
            burn.zip(exhaustion).ok_or(alerts)
        },
    )
    .await;
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "SlipstreamErrorBudgetBurn");
    assert_eq!(labels["service"], "checkout");
    assert_eq!(labels["severity"], "page");
    assert_eq!(labels["long_window"], "1h");
    assert_eq!(labels["short_window"], "5m");
    assert_eq!(labels["owner"], "team-payments");
    assert_eq!(
        alert["annotations"]["runbook_url"],
        "https://runbooks.example/checkout"
    );
    assert!(
        alert["labels"].get("exhausts_within").is_none(),
        "{alert:#}"
    );
    // The budget is spent (every request failed): the exhaustion page fires, named by its
    // parameter, over its one window.
    assert_eq!(exhaustion["status"]["state"], "active", "{exhaustion:#}");
    let labels = &exhaustion["labels"];
    assert_eq!(labels["exhausts_within"], "4h");
    assert_eq!(labels["service"], "checkout");
    assert_eq!(labels["severity"], "page");
    assert_eq!(labels["long_window"], "1h");
    assert_eq!(labels["short_window"], "1h");
    assert_eq!(labels["owner"], "team-payments");

    // Recovery: enough good requests that the 5m window burns below 14.4 (50 bad of 10,050
    // is a burn rate of 5).
    for _ in 0..5 {
        emit(http_exporter(http), "checkout", 2000, |_| false).await;
    }
    eventually_async(
        "the alert no longer active after recovery",
        Duration::from_secs(20),
        || async {
            let alerts = am.alerts().await;
            let active = alerts
                .iter()
                .any(|a| ours(a) && a["status"]["state"] == "active");
            if active { Err(alerts) } else { Ok(()) }
        },
    )
    .await;
    let events: serde_json::Value =
        serde_json::from_str(&http_get(app.admin_addr.unwrap(), "/api/v1/events").await.1).unwrap();
    let states = |kind: &str| -> Vec<&str> {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["state"].as_str().unwrap())
            .collect()
    };
    assert_eq!(states("burn_rate"), ["firing", "resolved"]);
    // The budget stays overspent and the hour holds the bad requests: still firing.
    assert_eq!(states("exhaustion"), ["firing"]);
    app.shutdown().await;
}
