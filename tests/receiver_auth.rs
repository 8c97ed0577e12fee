//! Bearer-token authentication: requests without an accepted token are refused with 401 /
//! UNAUTHENTICATED and counted, nothing of them is forwarded or counted in an SLI; the real
//! OTel SDK configured with the token gets through.

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use slipstream_config::receiver::AuthConfig;
use slipstream_e2e::sdk::emit;
use slipstream_e2e::{Sink, otlp, raw, self_metric, spans_in, start, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_with_an_accepted_bearer_token_get_in() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# rotated monthly\nfile-token-2\n\n").unwrap();
    let mut cfg = test_config(Some(("grpc", &sink.url())), "");
    cfg.receivers.otlp.auth = Some(AuthConfig {
        bearer_tokens: vec!["inline-token-1".into()],
        bearer_tokens_file: Some(file),
    });
    let app = start(cfg).await;
    let (http, grpc, admin) = (
        app.http_addr.unwrap(),
        app.grpc_addr.unwrap(),
        app.admin_addr.unwrap(),
    );
    let body = || otlp::trace_request("checkout", 3, |_| "GET /".to_owned());
    let pb = ("content-type", "application/x-protobuf");

    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic aW5saW5lLXRva2VuLTE="),
        Some("Bearer "),
    ] {
        let mut h = vec![pb];
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let r = raw::post_http(http, "/v1/traces", &h, body()).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
        let g = raw::post_grpc(
            grpc,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            &h[1..],
            raw::grpc_frame(&body()),
        )
        .await;
        assert_eq!(g.grpc_status(), Some(16), "{auth:?}: UNAUTHENTICATED");
    }
    let refused = self_metric(
        admin,
        "slipstream_receiver_refused_requests_total",
        &["reason=\"unauthenticated\""],
    )
    .await;
    assert_eq!(refused, 8.0);

    // Both tokens work, whatever the case of the scheme.
    for auth in ["Bearer inline-token-1", "bearer file-token-2"] {
        let r = raw::post_http(http, "/v1/traces", &[pb, ("authorization", auth)], body()).await;
        assert_eq!(r.status, 200, "{auth}");
        let g = raw::post_grpc(
            grpc,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            &[("authorization", auth)],
            raw::grpc_frame(&body()),
        )
        .await;
        assert_eq!(g.grpc_status(), Some(0), "{auth}");
    }

    // The real SDK with the token in its headers.
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{http}/v1/traces"))
        .with_headers(
            [(
                "authorization".to_owned(),
                "Bearer inline-token-1".to_owned(),
            )]
            .into(),
        )
        .build()
        .unwrap();
    emit(exporter, "cart", 20, |_| false).await;

    // Downstream got the 4 authorized requests (12 spans) and the SDK's 20, nothing else.
    let got = sink
        .wait_for(
            std::time::Duration::from_secs(20),
            "authorized spans",
            |r| spans_in(r).len() >= 32,
        )
        .await;
    assert_eq!(spans_in(&got).len(), 32);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "old-token\n").unwrap();
    let mut cfg = test_config(None, "");
    cfg.receivers.otlp.auth = Some(AuthConfig {
        bearer_tokens: vec![],
        bearer_tokens_file: Some(file.clone()),
    });
    let config_file = dir.path().join("slipstream.yaml");
    std::fs::write(&config_file, cfg.to_yaml()).unwrap();
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();
    let status = |token: &'static str| async move {
        let auth = format!("Bearer {token}");
        raw::post_http(
            http,
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("authorization", &auth),
            ],
            otlp::trace_request("checkout", 1, |_| "GET /".to_owned()),
        )
        .await
        .status
    };
    assert_eq!(
        (status("old-token").await, status("new-token").await),
        (200, 401)
    );

    // The token is rotated in the file; SIGHUP (here: the reload it triggers) applies it.
    std::fs::write(&file, "new-token\n").unwrap();
    app.reload(&config_file);
    assert_eq!(
        (status("old-token").await, status("new-token").await),
        (401, 200)
    );

    // An unreadable file on reload keeps the running tokens.
    std::fs::remove_file(&file).unwrap();
    app.reload(&config_file);
    assert_eq!(status("new-token").await, 200);
    app.shutdown().await;
}
