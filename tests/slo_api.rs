//! The SLO side of the admin API: silences are created, listed and removed over HTTP; a
//! silenced incident sends no event but is counted, while the SLIs keep being computed.

use std::sync::Arc;

use slipstream::app::App;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, play_minute, scenario};
use slipstream_e2e::raw::{post_http, request_http};
use slipstream_e2e::{http_get, self_metric, test_config};

/// 2026-03-01T00:00:00Z.
const START: u64 = 1_772_323_200_000_000_000;

const SLO: &str = "slo:
  evaluation_interval: 1m
  templates: { availability: null, latency: null }
  objectives:
    - name: cart-availability
      service: cart
      sli: { kind: availability }
      objective: 99.9
";

async fn post_json(app: &App, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = post_http(
        app.admin_addr.unwrap(),
        path,
        &[("content-type", "application/json")],
        body.as_bytes().to_vec(),
    )
    .await;
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_from_the_api_suppresses_events_but_not_slis() {
    let clock = ManualClock::new(START);
    let app = App::start_with(test_config(None, SLO), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let admin = app.admin_addr.unwrap();

    // Refused silences say why.
    let (status, v) = post_json(&app, "/api/v1/silences", r#"{"comment":"all"}"#).await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("at least one of"),
        "{v}"
    );
    let (status, v) = post_json(&app, "/api/v1/silences", r#"{"service":"cart","bogus":1}"#).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("bogus"), "{v}");
    let (status, _) = post_json(
        &app,
        "/api/v1/silences",
        r#"{"service":"cart","starts_at":"2026-03-01T02:00:00Z","ends_at":"2026-03-01T01:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, 400);

    let (status, created) = post_json(
        &app,
        "/api/v1/silences",
        r#"{"service":"cart","kind":"maintenance","comment":"failover drill"}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kind"], "maintenance");
    let id = created["id"].as_u64().unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&http_get(admin, "/api/v1/silences").await.1).unwrap();
    assert_eq!(listed["silences"][0]["comment"], "failover drill");

    // An hour of traffic with ten minutes of total failure in the middle.
    let minutes = (0..60).map(|m| Minute {
        error_share: if (30..40).contains(&m) { 1.0 } else { 0.0 },
        version: "3.1.0",
    });
    let mut events = Vec::new();
    for (m, req) in scenario("cart", START, 60, minutes).into_iter().enumerate() {
        events.extend(play_minute(&app, &clock, START, m, &[&req]).await);
    }
    assert!(events.is_empty(), "silenced: {events:#?}");
    let suppressed = self_metric(
        admin,
        "slipstream_slo_suppressed_events_total",
        &["reason=\"maintenance\""],
    )
    .await;
    assert!(suppressed >= 1.0, "suppressed {suppressed}");
    let slos: serde_json::Value =
        serde_json::from_str(&http_get(admin, "/api/v1/slos").await.1).unwrap();
    let slo = &slos["slos"][0];
    assert_eq!(slo["period_total"], 3600.0);
    assert_eq!(slo["period_bad"], 600.0);
    // The 6h/30m page still fires (its short window holds the incident), silently.
    let page = &slo["alerts"][1];
    assert_eq!(page["long_window"], "6h");
    assert!(page["firing"].as_bool().unwrap(), "{page}");
    assert!(!page["notified"].as_bool().unwrap(), "{page}");

    // Removing the silence: 204, then 404 for a second time.
    let r = request_http(
        admin,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request_http(
        admin,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 404);
    app.shutdown().await;
}
