//! `docs/openapi.yaml` is the truth about the admin API: every route the server has is in it
//! and nothing else, and every answer of a server fed real traffic (with an incident, so there
//! are events and firing alerts) validates against the documented schema.

use std::sync::Arc;

use serde_json::Value;
use slipstream_app::api::ROUTES;
use slipstream_app::app::App;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, play_minute, scenario};
use slipstream_e2e::raw::{post_http, request_http};
use slipstream_e2e::test_config;

/// 2026-04-01T00:00:00Z.
const START: u64 = 1_775_001_600_000_000_000;

fn spec() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Validates `v` against a response schema of the document (OpenAPI 3.1 schemas are JSON
/// Schema 2020-12), with `format` checked; returns every mismatch with its JSON path. The
/// schema is compiled with the document's `components` beside it, so its `$ref`s resolve.
fn validate(spec: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut root = schema.clone();
    root["components"] = spec["components"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the documented schema does not compile: {e}"));
    validator
        .iter_errors(v)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn check(spec: &Value, route: &str, method: &str, status: u16, body: &[u8]) -> Value {
    let op = &spec["paths"][route][method];
    assert!(op.is_object(), "{method} {route} is not documented");
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {route} answered {status}, which is not documented: {}",
        String::from_utf8_lossy(body)
    );
    let Some(schema) = resp["content"]["application/json"].get("schema") else {
        assert!(body.is_empty());
        return Value::Null;
    };
    let v: Value = serde_json::from_slice(body).unwrap();
    let errs = validate(spec, schema, &v);
    assert!(
        errs.is_empty(),
        "{method} {route} ({status}):\n{}",
        errs.join("\n")
    );
    v
}

/// The validator is strict where the document is: a wrong type, a value outside an enum, a
/// malformed date-time and a missing required field are each reported at their path.
#[test]
fn answers_that_break_the_schema_are_reported_where_they_break_it() {
    let spec = spec();
    let schema = &spec["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let event = |at: &str, state: &str| {
        serde_json::json!({
            "at": at, "state": state, "slo": "orders-availability", "service": "orders",
            "severity": "page", "long_window": "1h", "short_window": "5m", "factor": 14.4,
            "long_burn_rate": null, "short_burn_rate": 20.0, "budget_remaining": 0.5,
            "versions": ["1.0.0"], "newest_version": null, "newest_version_since": null,
            "firing_since": "2026-04-01T00:00:00Z", "repeat": false, "superseded_by_page": false
        })
    };
    let good = serde_json::json!({ "events": [event("2026-04-01T00:00:00Z", "firing")] });
    assert_eq!(validate(&spec, schema, &good), Vec::<String>::new());

    let mut missing = event("2026-04-01T00:00:00Z", "firing");
    missing.as_object_mut().unwrap().remove("slo");
    let mut wrong_type = event("2026-04-01T00:00:00Z", "firing");
    wrong_type["factor"] = "fast".into();
    let bad = serde_json::json!({ "events": [
        event("yesterday", "firing"),
        event("2026-04-01T00:00:00Z", "burning"),
        missing,
        wrong_type,
    ] });
    let errs = validate(&spec, schema, &bad).join("\n");
    for path in [
        "/events/0/at",
        "/events/1/state",
        "/events/2",
        "/events/3/factor",
    ] {
        assert!(
            errs.contains(&format!("{path}: ")),
            "{path} not reported in:\n{errs}"
        );
    }
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let spec = spec();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    routes.sort();
    assert_eq!(documented, routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_documented_schema() {
    let spec = spec();
    let slo_yaml = "slo:
  evaluation_interval: 1m
  catalog:
    orders: { owner: team-orders }
  templates: { latency: null }
";
    let clock = ManualClock::new(START);
    let app = App::start_with(test_config(None, slo_yaml), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let admin = app.admin_addr.unwrap();
    let minutes = (0..40).map(|m| Minute {
        error_share: if (20..30).contains(&m) { 1.0 } else { 0.0 },
        version: if m < 20 { "1.0.0" } else { "1.1.0" },
    });
    for (m, req) in scenario("orders", START, 30, minutes)
        .into_iter()
        .enumerate()
    {
        play_minute(&app, &clock, START, m, &[&req]).await;
    }

    let get =
        |path: String| async move { request_http(admin, "GET", &path, &[], Vec::new()).await };
    let r = get("/api/v1/slos".into()).await;
    let slos = check(&spec, "/api/v1/slos", "get", r.status, &r.body);
    assert_eq!(slos["slos"].as_array().unwrap().len(), 1);
    assert_eq!(slos["uncataloged_services"].as_array().unwrap().len(), 0);

    let r = get("/api/v1/slos/orders-availability".into()).await;
    let detail = check(&spec, "/api/v1/slos/{name}", "get", r.status, &r.body);
    assert_eq!(detail["history"].as_array().unwrap().len(), 40);
    assert!(!detail["events"].as_array().unwrap().is_empty());
    let r = get("/api/v1/slos/nope".into()).await;
    check(&spec, "/api/v1/slos/{name}", "get", r.status, &r.body);
    assert_eq!(r.status, 404);

    let r = get("/api/v1/events".into()).await;
    let events = check(&spec, "/api/v1/events", "get", r.status, &r.body);
    let first = &events["events"][0];
    assert_eq!(first["state"], "firing");
    assert_eq!(first["newest_version"], "1.1.0");

    let r = get("/api/v1/series?sort=errors&limit=5&window=1h".into()).await;
    let series = check(&spec, "/api/v1/series", "get", r.status, &r.body);
    assert_eq!(series["series"][0]["labels"]["service.name"], "orders");
    assert_eq!(series["series"][0]["bad"], 300);
    let r = get("/api/v1/series?limit=0".into()).await;
    check(&spec, "/api/v1/series", "get", r.status, &r.body);
    assert_eq!(r.status, 400);

    let r = post_http(
        admin,
        "/api/v1/silences",
        &[("content-type", "application/json")],
        br#"{"slo":"orders-availability","severity":"ticket","ends_at":"2026-04-02T00:00:00Z"}"#
            .to_vec(),
    )
    .await;
    let created = check(&spec, "/api/v1/silences", "post", r.status, &r.body);
    let json = [("content-type", "application/json")];
    let r = post_http(admin, "/api/v1/silences", &json, b"{}".to_vec()).await;
    check(&spec, "/api/v1/silences", "post", r.status, &r.body);
    assert_eq!(r.status, 400);
    let r = post_http(admin, "/api/v1/silences", &[], b"{}".to_vec()).await;
    check(&spec, "/api/v1/silences", "post", r.status, &r.body);
    assert_eq!(r.status, 415);
    let r = get("/api/v1/silences".into()).await;
    check(&spec, "/api/v1/silences", "get", r.status, &r.body);
    let id = created["id"].as_u64().unwrap();
    for want in [204, 404] {
        let r = request_http(
            admin,
            "DELETE",
            &format!("/api/v1/silences/{id}"),
            &json,
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, want);
        check(&spec, "/api/v1/silences/{id}", "delete", r.status, &r.body);
    }
    app.shutdown().await;
}
