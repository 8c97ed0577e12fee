//! The SLO side of the admin API: silences are created, listed and removed over HTTP; a
//! silenced incident sends no event but is counted, while the SLIs keep being computed.

use std::sync::Arc;

use slipstream_app::app::App;
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
        &[("content-type", "application/json")],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = request_http(
        admin,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &[("content-type", "application/json")],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 404);
    app.shutdown().await;
}

// === writes are safe by default ===

const SILENCE: &str = r#"{"service":"cart","severity":"page","comment":"drill"}"#;

async fn silence_count(app: &App) -> usize {
    let listed: serde_json::Value = serde_json::from_str(
        &http_get(app.admin_addr.unwrap(), "/api/v1/silences")
            .await
            .1,
    )
    .unwrap();
    listed["silences"].as_array().unwrap().len()
}

async fn start_manual(cfg: slipstream_config::Config) -> App {
    App::start_with(cfg, Arc::new(ManualClock::new(START)), false)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_another_origin_or_without_json_are_refused() {
    let app = start_manual(test_config(None, SLO)).await;
    let admin = app.admin_addr.unwrap();
    let own = format!("http://{admin}");
    let json = ("content-type", "application/json");
    // What a web page can send without a preflight: a form or fetch with text/plain.
    for headers in [
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "application/jsonx")],
        vec![],
    ] {
        let r = post_http(admin, "/api/v1/silences", &headers, SILENCE.into()).await;
        assert_eq!(r.status, 415, "{headers:?}");
    }
    // JSON from another origin, as a browser sends it.
    for headers in [
        vec![json, ("origin", "http://evil.example")],
        vec![json, ("origin", "http://evil.example:8888")],
        vec![json, ("origin", "null")],
        vec![json, ("origin", "https://127.0.0.1")],
        vec![json, ("sec-fetch-site", "cross-site")],
    ] {
        let r = post_http(admin, "/api/v1/silences", &headers, SILENCE.into()).await;
        assert_eq!(r.status, 403, "{headers:?}");
        let r = request_http(admin, "DELETE", "/api/v1/silences/1", &headers, Vec::new()).await;
        assert_eq!(r.status, 403, "DELETE {headers:?}");
    }
    let r = request_http(admin, "DELETE", "/api/v1/silences/1", &[], Vec::new()).await;
    assert_eq!(r.status, 415);
    assert_eq!(silence_count(&app).await, 0);

    // The same origin (the status page), or no Origin at all (curl, scripts), may write.
    let r = post_http(
        admin,
        "/api/v1/silences",
        &[json, ("origin", &own), ("sec-fetch-site", "same-origin")],
        SILENCE.into(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = post_http(
        admin,
        "/api/v1/silences",
        &[("content-type", "application/json; charset=utf-8")],
        SILENCE.into(),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(silence_count(&app).await, 2);

    let refused = |reason: &'static str| async move {
        self_metric(
            admin,
            "slipstream_admin_refused_requests_total",
            &[&format!("reason=\"{reason}\"")],
        )
        .await
    };
    assert_eq!(refused("content_type").await, 5.0);
    assert_eq!(refused("cross_origin").await, 10.0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_auth_every_write_needs_the_token() {
    let mut cfg = test_config(None, SLO);
    cfg.admin.auth = Some(slipstream_config::receiver::AuthConfig {
        bearer_tokens: vec!["admin-s3cret".into()],
        bearer_tokens_file: None,
    });
    let app = start_manual(cfg).await;
    let admin = app.admin_addr.unwrap();
    let json = ("content-type", "application/json");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer admin-s3cre"),
        Some("Bearer admin-s3cret2"),
        Some("Basic admin-s3cret"),
    ] {
        let mut headers = vec![json];
        headers.extend(auth.map(|a| ("authorization", a)));
        let r = post_http(admin, "/api/v1/silences", &headers, SILENCE.into()).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
        let r = request_http(admin, "DELETE", "/api/v1/silences/1", &headers, Vec::new()).await;
        assert_eq!(r.status, 401, "DELETE {auth:?}");
    }
    assert_eq!(silence_count(&app).await, 0);
    let with_token = [json, ("authorization", "bearer admin-s3cret")];
    let r = post_http(admin, "/api/v1/silences", &with_token, SILENCE.into()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"]
        .as_u64()
        .unwrap();
    // Reads, probes and self-metrics need no token.
    for path in ["/api/v1/silences", "/api/v1/slos", "/healthz", "/metrics"] {
        assert_eq!(http_get(admin, path).await.0, 200, "{path}");
    }
    let r = request_http(
        admin,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        &with_token,
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 204);
    let unauthenticated = self_metric(
        admin,
        "slipstream_admin_refused_requests_total",
        &["reason=\"unauthenticated\""],
    )
    .await;
    assert_eq!(unauthenticated, 10.0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_limited_in_number_size_and_duration() {
    let mut cfg = test_config(None, SLO);
    cfg.admin.silences.max_count = 3;
    let app = start_manual(cfg).await;
    let admin = app.admin_addr.unwrap();

    let long_comment = format!(r#"{{"service":"cart","comment":"{}"}}"#, "x".repeat(1025));
    let (status, v) = post_json(&app, "/api/v1/silences", &long_comment).await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("max_comment_size"),
        "{v}"
    );
    let long_name = format!(r#"{{"service":"{}"}}"#, "s".repeat(257));
    let (status, v) = post_json(&app, "/api/v1/silences", &long_name).await;
    assert_eq!(status, 400, "{v}");
    // 2026-03-01 plus 31 days: past the 30-day cap.
    let (status, v) = post_json(
        &app,
        "/api/v1/silences",
        r#"{"severity":"page","ends_at":"2026-04-01T00:00:01Z"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("max_duration"), "{v}");

    // No end: it ends 30 days after it starts (now, on the test's clock; or its start).
    let (status, v) = post_json(&app, "/api/v1/silences", r#"{"severity":"page"}"#).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["ends_at"], "2026-03-31T00:00:00Z");
    let (status, v) = post_json(
        &app,
        "/api/v1/silences",
        r#"{"service":"cart","starts_at":"2026-03-10T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["ends_at"], "2026-04-09T00:00:00Z");
    let (status, _) = post_json(
        &app,
        "/api/v1/silences",
        r#"{"service":"cart","ends_at":"2026-03-31T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(status, 201);

    // The fourth is one too many.
    let (status, v) = post_json(&app, "/api/v1/silences", SILENCE).await;
    assert_eq!(status, 409);
    assert!(v["error"].as_str().unwrap().contains("max_count"), "{v}");
    assert_eq!(silence_count(&app).await, 3);
    let counted = |reason: &'static str| async move {
        self_metric(
            admin,
            "slipstream_admin_refused_requests_total",
            &[&format!("reason=\"{reason}\"")],
        )
        .await
    };
    assert_eq!(counted("too_many_silences").await, 1.0);
    assert_eq!(counted("invalid_silence").await, 3.0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_are_read_again_on_reload() {
    let dir = std::env::temp_dir().join(format!("slipstream-admin-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "# operators\nfirst-token\n").unwrap();
    let mut cfg = test_config(None, SLO);
    cfg.admin.auth = Some(slipstream_config::receiver::AuthConfig {
        bearer_tokens: Vec::new(),
        bearer_tokens_file: Some(tokens.clone()),
    });
    let path = dir.join("slipstream.yaml");
    std::fs::write(&path, cfg.to_yaml()).unwrap();
    let app = start_manual(cfg).await;
    let admin = app.admin_addr.unwrap();
    let post = |token: &'static str| async move {
        let auth = format!("Bearer {token}");
        post_http(
            admin,
            "/api/v1/silences",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            SILENCE.into(),
        )
        .await
        .status
    };
    assert_eq!(post("first-token").await, 201);
    assert_eq!(post("second-token").await, 401);
    std::fs::write(&tokens, "second-token\n").unwrap();
    app.reload(&path);
    assert_eq!(post("second-token").await, 201);
    assert_eq!(post("first-token").await, 401);
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
