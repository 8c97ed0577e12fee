use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use slipstream_config::exporters::WebhookConfig;
use slipstream_core::Registry;
use slipstream_core::export::EventState;

use super::{WebhookExporter, signature};
use crate::events::fixture::{Recorder, event, fast_retry};

#[test]
fn the_signature_is_hmac_sha256_in_lowercase_hex() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

fn config(url: String, secret: Option<&str>) -> WebhookConfig {
    WebhookConfig {
        url,
        secret: secret.map(str::to_owned),
        headers: BTreeMap::from([("Authorization".to_owned(), "Bearer t0ken".to_owned())]),
        retry: fast_retry(),
        ..WebhookConfig::default()
    }
}

fn header<'a>(r: &'a crate::events::fixture::Received, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_signed_event_carries_a_verifiable_signature_and_the_event_json() {
    let server = Recorder::start([]).await;
    let hook = WebhookExporter::start(
        &config(format!("{}/hooks/slo", server.url()), Some("s3cret")),
        &Registry::new(),
    )
    .unwrap();
    let (firing, resolved) = (event(EventState::Firing), event(EventState::Resolved));
    hook.publish(&[firing.clone(), resolved.clone()]);
    let got = server.wait_for(2).await;
    for (r, sent, state) in [
        (&got[0], &firing, "firing"),
        (&got[1], &resolved, "resolved"),
    ] {
        assert_eq!(r.path, "/hooks/slo");
        assert_eq!(header(r, "content-type"), Some("application/json"));
        assert_eq!(header(r, "x-slipstream-event"), Some(state));
        assert_eq!(header(r, "authorization"), Some("Bearer t0ken"));
        // Verify as a receiver would: HMAC-SHA256 of the raw body under the shared secret.
        let given = header(r, "x-slipstream-signature").expect("signed");
        let hex_mac = given.strip_prefix("sha256=").expect("sha256= prefix");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&r.body);
        mac.verify_slice(&hex::decode(hex_mac).unwrap())
            .expect("the signature matches the body");
        assert_eq!(hex_mac, hex_mac.to_lowercase());
        let mut body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        // The event's JSON, plus the key that names its alert on every replica.
        let key = body
            .as_object_mut()
            .unwrap()
            .remove("incident_key")
            .expect("an incident key");
        assert_eq!(key, crate::alertmanager::incident_key(sent));
        assert_eq!(body, serde_json::to_value(sent).unwrap());
        assert_eq!(body["state"], state);
        assert_eq!(body["slo"], "checkout-availability");
        assert_eq!(body["service"], "checkout");
        assert_eq!(body["long_window"], "1h");
        assert_eq!(body["short_window"], "5m");
        assert_eq!(body["labels"]["owner"], "payments");
    }
    assert_eq!(hook.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_503_is_retried_and_counted() {
    let server = Recorder::start([503]).await;
    let registry = Registry::new();
    let hook = WebhookExporter::start(&config(server.url(), None), &registry).unwrap();
    hook.send(&event(EventState::Firing));
    let got = server.wait_for(2).await;
    assert_eq!(got[0].body, got[1].body, "the same event, retried");
    assert_eq!(hook.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(
        registry.value(
            "slipstream_exporter_failures_total",
            &["webhook", "http_status"]
        ),
        Some(1)
    );
    assert_eq!(
        registry.value("slipstream_exporter_sent_total", &["webhook"]),
        Some(1)
    );
}

#[tokio::test]
async fn an_unsigned_event_has_no_signature_header() {
    let server = Recorder::start([]).await;
    let mut cfg = config(server.url(), None);
    cfg.signature_header = "X-Hub-Signature-256".to_owned();
    let hook = WebhookExporter::start(&cfg, &Registry::new()).unwrap();
    hook.send(&event(EventState::Firing));
    let got = server.wait_for(1).await;
    assert!(got[0].headers.get("x-slipstream-signature").is_none());
    assert!(got[0].headers.get("x-hub-signature-256").is_none());
    assert_eq!(header(&got[0], "x-slipstream-event"), Some("firing"));
    hook.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_custom_signature_header_and_a_4xx_drop() {
    let server = Recorder::start([400]).await;
    let registry = Registry::new();
    let mut cfg = config(server.url(), Some("k"));
    cfg.signature_header = "X-Hub-Signature-256".to_owned();
    let hook = WebhookExporter::start(&cfg, &registry).unwrap();
    hook.send(&event(EventState::Firing));
    hook.send(&event(EventState::Resolved));
    let got = server.wait_for(2).await;
    assert_eq!(
        header(&got[0], "x-hub-signature-256"),
        Some(signature(b"k", &got[0].body).as_str())
    );
    assert_eq!(hook.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(
        registry.value(
            "slipstream_exporter_dropped_total",
            &["webhook", "rejected"]
        ),
        Some(1)
    );
    assert_eq!(
        server.received().len(),
        2,
        "the rejected event is not retried"
    );
}

#[test]
fn a_url_that_is_not_http_is_refused_with_the_field_named() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let err = WebhookExporter::start(
        &config("hooks.example/x".to_owned(), None),
        &Registry::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("exporters.webhook.url"), "{err}");
    let mut https = config("https://hooks.example/x".to_owned(), None);
    https.tls = Some(slipstream_config::tls::ClientTlsConfig {
        cert_file: Some("/nonexistent/client.crt".into()),
        key_file: Some("/nonexistent/client.key".into()),
        ..Default::default()
    });
    let err = WebhookExporter::start(&https, &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("exporters.webhook.tls.cert_file: cannot read"),
        "{err}"
    );
}

#[test]
fn the_event_json_lists_its_example_traces() {
    let e = crate::events::fixture::event_with_example_traces(EventState::Firing);
    let v: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(v["example_traces"][0]["trace_id"], "01".repeat(16));
    assert_eq!(v["example_traces"][0]["span_id"], "01".repeat(8));
    assert_eq!(v["example_traces"][0]["duration_seconds"], 1.5);
    assert_eq!(v["example_traces"][0]["bad"], true);
    assert_eq!(v["example_traces"].as_array().unwrap().len(), 2);
    assert!(v["annotations"]["example_traces"].is_string());
    // None: the field is left out, as before.
    let plain = serde_json::to_value(event(EventState::Firing)).unwrap();
    assert!(plain.get("example_traces").is_none());
}

#[tokio::test]
async fn the_body_carries_shares_and_example_traces_as_structured_json() {
    let server = Recorder::start([]).await;
    let hook = WebhookExporter::start(&config(server.url(), None), &Registry::new()).unwrap();
    hook.publish(&[crate::events::fixture::event_with_example_traces(
        EventState::Firing,
    )]);
    let got = server.wait_for(1).await;
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        body["bad_requests_share"],
        serde_json::json!([
            { "attribute": "http.route", "value": "/pay", "bad_share": 0.92, "all_share": 0.07 }
        ])
    );
    assert_eq!(
        body["example_traces"][0],
        serde_json::json!({
            "trace_id": "01".repeat(16),
            "span_id": "01".repeat(8),
            "end_unix_nanos": crate::events::fixture::AT - 1,
            "duration_seconds": 1.5,
            "bad": true,
            "url": format!("https://tempo.example/trace/{}", "01".repeat(16)),
        })
    );
    assert_eq!(body["example_traces"].as_array().unwrap().len(), 2);
    // The annotations still render both as text.
    assert_eq!(
        body["annotations"]["bad_requests_share"],
        "http.route=/pay: 92% of bad, 7% of all"
    );
    assert!(body["annotations"]["example_traces"].is_string());
    // Without them, neither key is there.
    let plain = serde_json::to_value(event(EventState::Firing)).unwrap();
    assert!(plain.get("bad_requests_share").is_none());
    assert_eq!(hook.shutdown(Duration::from_secs(1)).await, 0);
}
