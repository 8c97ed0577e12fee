use std::collections::BTreeMap;
use std::time::Duration;

use slipstream_config::exporters::AlertmanagerConfig;
use slipstream_core::Registry;
use slipstream_core::export::EventState;

use super::{AlertmanagerExporter, DEFAULT_ALERTNAME, alert, incident_key, render, rfc3339};
use crate::events::fixture::{AT, Recorder, event, fast_retry};

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn an_alert_has_the_event_labels_and_its_numbers_as_annotations() {
    let e = event(EventState::Firing);
    let a = alert(&e);
    assert_eq!(a.labels, e.labels);
    assert_eq!(a.starts_at, e.firing_since);
    assert_eq!(a.ends_at, None);
    let expected = strings(&[
        ("budget_remaining", "0.75"),
        ("burn_rate_threshold", "14.4"),
        ("long_burn_rate", "20.5"),
        ("newest_version", "1.5.0"),
        ("newest_version_since", "2025-01-02T02:54:05.000Z"),
        ("objective", "0.999"),
        ("runbook_url", "http://runbooks.example/checkout"),
        ("short_burn_rate", "31.25"),
        // The event's own summary wins.
        ("summary", "checkout burns its error budget 20x"),
        ("versions", "1.4.0, 1.5.0"),
    ]);
    assert_eq!(a.annotations, expected);
}

#[test]
fn the_incident_key_names_the_label_set_not_the_evaluation() {
    let e = event(EventState::Firing);
    let key = incident_key(&e);
    assert_eq!(key.len(), 32);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Another replica evaluates a few seconds later, with other numbers: the same key, as
    // Alertmanager sees the same alert; so does the resolved event that ends it.
    let mut later = e.clone();
    later.at += 7_000_000_000;
    later.firing_since += 7_000_000_000;
    later.long_burn_rate = Some(21.0);
    later.budget_remaining = Some(0.7);
    later.repeat = true;
    later
        .annotations
        .insert("summary".into(), "other words".into());
    assert_eq!(incident_key(&later), key);
    assert_eq!(incident_key(&event(EventState::Resolved)), key);
    // Another row, severity, SLO or label is another alert.
    for (name, value) in [
        ("short_window", "30m"),
        ("severity", "ticket"),
        ("slo", "checkout-latency"),
        ("owner", "search"),
    ] {
        let mut other = e.clone();
        other.labels.insert(name.into(), value.into());
        assert_ne!(incident_key(&other), key, "{name}");
    }
}

#[test]
fn missing_identifying_labels_are_filled_in_and_names_made_safe() {
    let mut e = event(EventState::Resolved);
    e.labels = strings(&[("team.name", "pay"), ("empty", "")]);
    e.annotations.clear();
    let a = alert(&e);
    assert_eq!(
        a.labels,
        strings(&[
            ("alertname", DEFAULT_ALERTNAME),
            ("long_window", "1h"),
            ("service", "checkout"),
            ("severity", "page"),
            ("short_window", "5m"),
            ("slo", "checkout-availability"),
            ("team_name", "pay"),
        ])
    );
    assert_eq!(a.ends_at, Some(AT));
    assert_eq!(
        a.annotations["summary"],
        "checkout: SLO checkout-availability burns its error budget 20.5x over 1h and -x over 5m (threshold 14.4x)"
    );
    assert!(!a.annotations.contains_key("short_burn_rate"));
}

#[test]
fn firing_alerts_end_four_resend_intervals_after_sending_and_resolved_ones_at_the_event() {
    let alerts = [
        alert(&event(EventState::Firing)),
        alert(&event(EventState::Resolved)),
    ];
    let now = AT + 1_000_000_000;
    let body = render(&alerts, now, Duration::from_secs(60));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["startsAt"], "2025-01-02T03:02:05.000Z");
    assert_eq!(list[0]["endsAt"], "2025-01-02T03:08:06.000Z");
    assert_eq!(list[1]["endsAt"], rfc3339(AT));
    assert_eq!(list[1]["endsAt"], "2025-01-02T03:04:05.000Z");
    assert_eq!(list[0]["labels"]["alertname"], "SlipstreamBurnRate");
    assert_eq!(list[0]["annotations"]["long_burn_rate"], "20.5");
    assert!(list[0].get("generatorURL").is_none());
}

fn config(endpoints: Vec<String>, resend: Duration) -> AlertmanagerConfig {
    AlertmanagerConfig {
        endpoints,
        resend_interval: resend,
        retry: fast_retry(),
        ..AlertmanagerConfig::default()
    }
}

fn alerts_in(r: &crate::events::fixture::Received) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn firing_alerts_are_resent_to_every_endpoint_until_resolved() {
    let (a, b) = (Recorder::start([]).await, Recorder::start([]).await);
    let am = AlertmanagerExporter::start(
        &config(
            vec![a.url(), format!("{}/", b.url())],
            Duration::from_millis(40),
        ),
        &Registry::new(),
    )
    .unwrap();
    am.publish(&[event(EventState::Firing)]);
    assert_eq!(am.firing().len(), 1);
    // The first send and at least two re-sends, on both endpoints.
    for server in [&a, &b] {
        let got = server.wait_for(3).await;
        for r in &got {
            assert_eq!(r.path, "/api/v2/alerts");
            assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
            let alerts = alerts_in(r);
            assert_eq!(alerts.len(), 1);
            assert_eq!(alerts[0]["labels"]["slo"], "checkout-availability");
        }
    }
    am.publish(&[event(EventState::Resolved)]);
    assert!(am.firing().is_empty());
    // Wait for the resolved alert, then make sure nothing more is re-sent.
    let resolved_at = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let got = a.received();
            if let Some(i) = got
                .iter()
                .position(|r| alerts_in(r)[0]["endsAt"] == rfc3339(AT))
            {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the resolved alert arrives");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        a.received().len(),
        resolved_at + 1,
        "no re-sends after resolve"
    );
    assert_eq!(am.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_service_handed_off_is_forgotten_without_a_resolved_alert() {
    let a = Recorder::start([]).await;
    let am = AlertmanagerExporter::start(
        &config(vec![a.url()], Duration::from_millis(20)),
        &Registry::new(),
    )
    .unwrap();
    am.publish(&[event(EventState::Firing)]);
    a.wait_for(2).await;
    assert_eq!(am.forget_service("other"), 0);
    assert_eq!(am.forget_service("checkout"), 1);
    assert!(am.firing().is_empty());
    // One re-send may have been queued before the alert was forgotten; after it, nothing for
    // ten re-send intervals, and no post ever says the alert resolved.
    let settled = a.received().len() + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = a.received();
    assert!(
        got.len() <= settled,
        "re-sent after forgetting: {}",
        got.len()
    );
    for r in &got {
        for alert in alerts_in(r) {
            assert_ne!(alert["endsAt"], rfc3339(AT), "a resolved alert was posted");
        }
    }
    assert_eq!(am.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_dead_endpoint_does_not_hold_up_a_live_one() {
    let live = Recorder::start([]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let registry = Registry::new();
    let am = AlertmanagerExporter::start(
        &config(vec![dead, live.url()], Duration::from_secs(60)),
        &registry,
    )
    .unwrap();
    am.publish(&[event(EventState::Firing)]);
    am.publish(&[event(EventState::Resolved)]);
    live.wait_for(2).await;
    assert!(
        registry
            .value(
                "slipstream_exporter_failures_total",
                &["alertmanager", "unreachable"]
            )
            .unwrap_or(0)
            >= 1
    );
    // The dead endpoint's two batches (one retrying, one queued) are dropped at shutdown.
    assert_eq!(am.shutdown(Duration::from_millis(50)).await, 2);
    assert_eq!(
        registry.value(
            "slipstream_exporter_dropped_total",
            &["alertmanager", "shutdown"]
        ),
        Some(2)
    );
}

#[test]
fn example_traces_reach_the_alert_as_an_annotation() {
    let e = crate::events::fixture::event_with_example_traces(EventState::Firing);
    let a = alert(&e);
    let links = &a.annotations["example_traces"];
    assert!(links.starts_with(&format!("https://tempo.example/trace/{}", "01".repeat(16))));
    assert_eq!(links.lines().count(), 2);
}

#[test]
fn budget_rows_keep_their_labels_and_say_what_they_fire_on() {
    let mut e = event(EventState::Firing);
    e.annotations.remove("summary");
    e.short_window = e.long_window;
    e.labels
        .insert("exhausts_within".to_owned(), "4h".to_owned());
    let a = alert(&e);
    assert_eq!(a.labels["exhausts_within"], "4h");
    assert_eq!(
        a.annotations["summary"],
        "checkout: SLO checkout-availability runs out of error budget within 4h at 20.5x over 1h \
         (budget remaining 0.75)"
    );
    e.labels.remove("exhausts_within");
    e.labels
        .insert("budget_drop_percent".to_owned(), "10".to_owned());
    e.long_window = Duration::from_secs(7200);
    let a = alert(&e);
    assert_eq!(a.labels["budget_drop_percent"], "10");
    assert_eq!(
        a.annotations["summary"],
        "checkout: SLO checkout-availability spent at least 10% of its error budget in 2h \
         (20.5x over 2h)"
    );
}
