//! The Alertmanager exporter against a real Alertmanager (the Debian package
//! `prometheus-alertmanager`; `scripts/test-deps.sh` installs it): a firing burn-rate event
//! shows up as an active alert with slipstream's labels and annotations, its resolved event
//! ends it, and an Alertmanager that comes up late gets the alert once it is up, with the
//! failures before counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use slipstream_config::exporters::AlertmanagerConfig;
use slipstream_config::forward::RetryConfig;
use slipstream_core::export::EventState;
use slipstream_core::{BurnRateEvent, Registry};
use slipstream_exporters::alertmanager::AlertmanagerExporter;
use slipstream_test_support::eventually_async;
use slipstream_test_support::procs::Alertmanager;
use slipstream_test_support::recorder::now_nanos;
use slipstream_test_support::relay::Relay;

/// A real Alertmanager ([`Alertmanager`]: clustering off, one route to a receiver that sends
/// nothing, a port of its own choosing), with the queries these tests make.
struct RealAlertmanager {
    addr: SocketAddr,
    _am: Alertmanager,
}

impl RealAlertmanager {
    /// Starts Alertmanager on `127.0.0.1:0` and waits until it is ready.
    async fn start() -> RealAlertmanager {
        let am = Alertmanager::start().await;
        RealAlertmanager {
            addr: am.addr,
            _am: am,
        }
    }

    /// `GET /api/v2/alerts` (Alertmanager lists the alerts that have not ended).
    async fn alerts(&self) -> Vec<Value> {
        let (status, body) = get(self.addr, "/api/v2/alerts?active=true").await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls the alert list until `done` holds (at most 10 s).
    async fn wait_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let done = &done;
        eventually_async(what, Duration::from_secs(10), || async move {
            let alerts = self.alerts().await;
            if done(&alerts) {
                Ok(alerts)
            } else {
                Err(format!("alerts: {alerts:#?}"))
            }
        })
        .await
    }
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        client.get(format!("http://{addr}{path}").parse().unwrap()),
    )
    .await
    .ok()?
    .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A page-severity burn-rate event as the binary builds it, timed now.
fn event(state: EventState) -> BurnRateEvent {
    let now = now_nanos();
    let labels = [
        ("alertname", "SLOBurnRateHigh"),
        ("service", "checkout"),
        ("slo", "checkout-availability"),
        ("severity", "page"),
        ("long_window", "1h"),
        ("short_window", "5m"),
        ("owner", "team-payments"),
    ];
    BurnRateEvent {
        state,
        slo: "checkout-availability".to_owned(),
        service: "checkout".to_owned(),
        severity: "page".to_owned(),
        long_window: Duration::from_secs(3600),
        short_window: Duration::from_secs(300),
        factor: 14.4,
        objective: 0.999,
        long_burn_rate: Some(18.0),
        short_burn_rate: Some(25.5),
        budget_remaining: Some(0.97),
        versions: vec!["2.0.0".to_owned()],
        newest_version: Some("2.0.0".to_owned()),
        newest_version_since: Some(now - 3_600_000_000_000),
        repeat: false,
        at: now,
        firing_since: now - 120_000_000_000,
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        annotations: BTreeMap::from([(
            "runbook_url".to_owned(),
            "http://runbooks.example/checkout".to_owned(),
        )]),
        example_traces: Vec::new(),
        bad_requests_share: Vec::new(),
    }
}

fn config(addr: SocketAddr) -> AlertmanagerConfig {
    AlertmanagerConfig {
        endpoints: vec![format!("http://{addr}")],
        resend_interval: Duration::from_secs(60),
        retry: RetryConfig {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(200),
            max_elapsed_time: None,
        },
        ..AlertmanagerConfig::default()
    }
}

fn counter(registry: &Registry, name: &str, labels: &[&str]) -> i128 {
    registry.value(name, labels).unwrap_or(0)
}

#[tokio::test]
async fn a_firing_alert_is_active_with_its_labels_until_resolved() {
    let am = RealAlertmanager::start().await;
    let registry = Registry::new();
    let exporter = AlertmanagerExporter::start(&config(am.addr), &registry).unwrap();

    exporter.publish(&[event(EventState::Firing)]);
    let alerts = am.wait_until("the firing alert", |a| a.len() == 1).await;
    let alert = &alerts[0];
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");
    let labels = &alert["labels"];
    for (k, v) in [
        ("alertname", "SLOBurnRateHigh"),
        ("service", "checkout"),
        ("slo", "checkout-availability"),
        ("severity", "page"),
        ("long_window", "1h"),
        ("short_window", "5m"),
        ("owner", "team-payments"),
    ] {
        assert_eq!(labels[k], v, "label {k} in {alert:#}");
    }
    let annotations = &alert["annotations"];
    assert_eq!(
        annotations["runbook_url"],
        "http://runbooks.example/checkout"
    );
    assert_eq!(annotations["long_burn_rate"], "18");
    assert_eq!(annotations["short_burn_rate"], "25.5");
    assert_eq!(annotations["burn_rate_threshold"], "14.4");
    assert_eq!(annotations["budget_remaining"], "0.97");
    assert_eq!(annotations["newest_version"], "2.0.0");
    assert_eq!(
        annotations["summary"],
        "checkout: SLO checkout-availability burns its error budget 18x over 1h and 25.5x over 5m (threshold 14.4x)"
    );
    // Firing alerts end four resend intervals out unless re-sent.
    let ends = humantime::parse_rfc3339(alert["endsAt"].as_str().unwrap())
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let now = now_nanos() / 1_000_000_000;
    assert!(
        (now + 200..=now + 245).contains(&ends),
        "endsAt {} is not about now + 4 min",
        alert["endsAt"]
    );

    exporter.publish(&[event(EventState::Resolved)]);
    am.wait_until("the resolved alert to end", |a| a.is_empty())
        .await;
    assert!(exporter.firing().is_empty());
    assert_eq!(exporter.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(
        counter(
            &registry,
            "slipstream_exporter_sent_total",
            &["alertmanager"]
        ),
        2
    );
}

#[tokio::test]
async fn an_alertmanager_that_starts_late_gets_the_alert_and_the_failures_are_counted() {
    // The exporter needs an address before Alertmanager has one: it sends through a relay
    // that turns connections away until Alertmanager is up.
    let relay = Relay::start().await;
    let registry = Registry::new();
    let exporter = AlertmanagerExporter::start(&config(relay.addr), &registry).unwrap();
    exporter.publish(&[event(EventState::Firing)]);
    let failures = || {
        counter(
            &registry,
            "slipstream_exporter_failures_total",
            &["alertmanager", "unreachable"],
        )
    };
    eventually_async("failed attempts counted", Duration::from_secs(5), || {
        std::future::ready(failures() >= 2)
    })
    .await;
    assert_eq!(
        counter(
            &registry,
            "slipstream_exporter_sent_total",
            &["alertmanager"]
        ),
        0
    );

    let am = RealAlertmanager::start().await;
    relay.forward_to(am.addr);
    let alerts = am.wait_until("the retried alert", |a| a.len() == 1).await;
    assert_eq!(alerts[0]["labels"]["slo"], "checkout-availability");
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert_eq!(
        counter(
            &registry,
            "slipstream_exporter_sent_total",
            &["alertmanager"]
        ),
        1
    );
    assert_eq!(exporter.shutdown(Duration::from_secs(2)).await, 0);
}
