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

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `v` against an OpenAPI 3.0 schema (the subset the document uses); returns every
/// mismatch with its JSON path.
fn validate(spec: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        // One object schema holding every part's properties and required names.
        let mut merged = serde_json::json!({ "type": "object", "properties": {}, "required": [] });
        for part in all {
            let part = resolve(spec, part);
            for (k, p) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = p.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        validate(spec, &merged, v, path, errs);
        return;
    }
    if v.is_null() {
        if !schema["nullable"].as_bool().unwrap_or(false) {
            errs.push(format!("{path}: null but not nullable"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errs.push(format!("{path}: expected {ty}, got {v}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        errs.push(format!("{path}: {v} not in {allowed:?}"));
    }
    if let Some(obj) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errs.push(format!(
                    "{path}: missing required `{}`",
                    r.as_str().unwrap()
                ));
            }
        }
        let props = schema["properties"].as_object();
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(spec, s, val, &format!("{path}.{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) | None if props.is_some() => {
                        errs.push(format!("{path}: undocumented property `{k}`"))
                    }
                    Some(s @ Value::Object(_)) => {
                        validate(spec, s, val, &format!("{path}.{k}"), errs)
                    }
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            validate(spec, &schema["items"], item, &format!("{path}[{i}]"), errs);
        }
    }
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
    let mut errs = Vec::new();
    validate(spec, schema, &v, "$", &mut errs);
    assert!(
        errs.is_empty(),
        "{method} {route} ({status}):\n{}",
        errs.join("\n")
    );
    v
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
