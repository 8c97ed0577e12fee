//! TLS and mutual TLS on the OTLP receivers, with the real OpenTelemetry SDK as the client
//! (tonic with rustls for gRPC, reqwest with rustls for HTTP), and the forward exporter to a
//! TLS downstream. Certificates are made here with rcgen.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use slipstream_app::app::App;
use slipstream_config::Config;
use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_config::receiver::AuthConfig;
use slipstream_config::tls::{ClientTlsConfig as ForwardTls, ServerTlsConfig};
use slipstream_e2e::sdk::{emit, http_exporter};
use slipstream_e2e::tls::{
    Ca, Files, Pem, client_config, plain_get, server_config, tls_get, tls_request,
};
use slipstream_e2e::{Sink, eventually_async, http_get, self_metric, spans_in, start, test_config};

const WAIT: Duration = Duration::from_secs(20);
const FAILURES: &str = "slipstream_receiver_tls_handshake_failures_total";

/// The receivers' `tls` section serving `server`, requiring client certificates issued by
/// `client_ca` when given.
fn server_tls(files: &Files, server: &Pem, client_ca: Option<&Ca>) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file: files.write("server.crt", &server.cert),
        key_file: files.write("server.key", &server.key),
        client_ca_file: client_ca.map(|ca| files.write("client-ca.crt", &ca.pem())),
    }
}

/// A slipstream forwarding to `sink` whose two receivers serve `tls`.
fn tls_config(sink: &Sink, tls: ServerTlsConfig) -> Config {
    let mut cfg = test_config(Some(("grpc", &sink.url())), "");
    cfg.receivers.otlp.grpc.as_mut().unwrap().tls = Some(tls.clone());
    cfg.receivers.otlp.http.as_mut().unwrap().tls = Some(tls);
    cfg
}

/// The SDK's gRPC exporter to `addr` over TLS, trusting `ca`, presenting `identity`.
fn grpc_exporter(addr: std::net::SocketAddr, ca: &Ca, identity: Option<&Pem>) -> SpanExporter {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://{addr}"))
        .with_tls_config(tls)
        .build()
        .expect("exporter")
}

/// The SDK's HTTP/protobuf exporter to `addr` over TLS, through a hyper-rustls client
/// trusting `ca`, sending `authorization` when given.
fn https_exporter(
    addr: std::net::SocketAddr,
    ca: &Ca,
    authorization: Option<&str>,
) -> SpanExporter {
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&ca.pem(), None))
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    let client = opentelemetry_http::hyper::HyperClient::new(
        connector,
        WAIT,
        authorization.map(|a| http::HeaderValue::from_str(a).unwrap()),
    );
    SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("https://{addr}/v1/traces"))
        .build()
        .expect("exporter")
}

fn spans_of(sink: &Sink, service: &str) -> usize {
    spans_in(&sink.received())
        .iter()
        .filter(|(s, _)| s == service)
        .count()
}

/// Waits until the self-metric `name{labels}` reaches `at_least`, and returns it.
async fn wait_metric(app: &App, name: &str, labels: &[&str], at_least: f64) -> f64 {
    let admin = app.admin_addr.unwrap();
    let what = format!("{name}{labels:?} at least {at_least}");
    eventually_async(&what, WAIT, || async move {
        let v = self_metric(admin, name, labels).await;
        if v >= at_least { Ok(v) } else { Err(v) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_spans_over_tls_reach_the_downstream_and_plain_text_is_refused() {
    let (ca, files) = (Ca::new("test CA"), Files::new());
    let sink = Sink::start().await;
    let app = start(tls_config(&sink, server_tls(&files, &ca.server(), None))).await;
    let (grpc, http) = (app.grpc_addr.unwrap(), app.http_addr.unwrap());

    emit(grpc_exporter(grpc, &ca, None), "over-grpc", 40, |_| false).await;
    emit(https_exporter(http, &ca, None), "over-http", 40, |i| {
        i % 4 == 0
    })
    .await;
    sink.wait_for(WAIT, "spans from both receivers", |r| {
        spans_in(r).len() >= 80
    })
    .await;
    assert_eq!(spans_of(&sink, "over-grpc"), 40);
    assert_eq!(spans_of(&sink, "over-http"), 40);
    for transport in ["grpc", "http"] {
        let label = format!("transport=\"{transport}\"");
        assert_eq!(
            self_metric(app.admin_addr.unwrap(), FAILURES, &[&label]).await,
            0.0,
            "no failed handshake yet on {transport}"
        );
    }

    // Plain text on a TLS port gets no HTTP answer, is counted, and the listener stays up.
    for (addr, transport) in [(grpc, "grpc"), (http, "http")] {
        let answer = plain_get(addr).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{transport}: a plain-text request got an HTTP answer"
        );
        wait_metric(
            &app,
            FAILURES,
            &[&format!("transport=\"{transport}\"")],
            1.0,
        )
        .await;
    }
    emit(https_exporter(http, &ca, None), "after-refusal", 5, |_| {
        false
    })
    .await;
    sink.wait_for(WAIT, "spans after the refusal", |r| {
        spans_in(r)
            .iter()
            .filter(|(s, _)| s == "after-refusal")
            .count()
            == 5
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let (ca, other, files) = (Ca::new("test CA"), Ca::new("other CA"), Files::new());
    let sink = Sink::start().await;
    let app = start(tls_config(
        &sink,
        server_tls(&files, &ca.server(), Some(&ca)),
    ))
    .await;
    let (grpc, http) = (app.grpc_addr.unwrap(), app.http_addr.unwrap());
    let http_failures = ["transport=\"http\""];

    let refused = |r: std::io::Result<Vec<u8>>| match r {
        Ok(answer) => !answer.starts_with(b"HTTP/"),
        Err(_) => true,
    };
    assert!(
        refused(tls_get(http, client_config(&ca.pem(), None)).await),
        "a client without a certificate was served"
    );
    wait_metric(&app, FAILURES, &http_failures, 1.0).await;
    let intruder = other.client("intruder");
    assert!(
        refused(tls_get(http, client_config(&ca.pem(), Some(&intruder))).await),
        "a client certificate from another CA was accepted"
    );
    wait_metric(&app, FAILURES, &http_failures, 2.0).await;

    let good = ca.client("good-client");
    let answer = tls_get(http, client_config(&ca.pem(), Some(&good)))
        .await
        .expect("a client certificate from the CA is accepted");
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    emit(grpc_exporter(grpc, &ca, Some(&good)), "mtls", 25, |_| false).await;
    sink.wait_for(WAIT, "spans over mutual TLS", |r| spans_in(r).len() >= 25)
        .await;
    assert_eq!(spans_of(&sink, "mtls"), 25);
    assert_eq!(
        self_metric(app.admin_addr.unwrap(), FAILURES, &http_failures).await,
        2.0,
        "accepted clients are not counted as failures"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_work_unchanged_over_tls() {
    let (ca, files) = (Ca::new("test CA"), Files::new());
    let sink = Sink::start().await;
    let mut cfg = tls_config(&sink, server_tls(&files, &ca.server(), None));
    cfg.receivers.otlp.auth = Some(AuthConfig {
        bearer_tokens: vec!["tls-token".into()],
        bearer_tokens_file: None,
    });
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();

    let answer = tls_request(
        http,
        client_config(&ca.pem(), None),
        b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("the TLS exchange completes");
    assert!(
        answer.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    let exporter = https_exporter(http, &ca, Some("Bearer tls-token"));
    emit(exporter, "with-token", 10, |_| false).await;
    sink.wait_for(WAIT, "spans sent with the token", |r| {
        spans_in(r).len() >= 10
    })
    .await;
    assert_eq!(spans_of(&sink, "with-token"), 10);
    app.shutdown().await;
}

fn forward_tls(ca_file: PathBuf) -> Option<ForwardTls> {
    Some(ForwardTls {
        ca_file: Some(ca_file),
        ..ForwardTls::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_reaches_a_tls_downstream_trusting_its_ca() {
    let (ca, files) = (Ca::new("downstream CA"), Files::new());
    let sink = Sink::start_tls(server_config(&ca.server(), None)).await;
    assert!(sink.url().starts_with("https://"));
    for protocol in ["grpc", "http"] {
        let mut cfg = test_config(Some((protocol, &sink.url())), "");
        cfg.forward.tls = forward_tls(files.write("ca.crt", &ca.pem()));
        let app = start(cfg).await;
        emit(http_exporter(app.http_addr.unwrap()), protocol, 30, |_| {
            false
        })
        .await;
        sink.wait_for(WAIT, "forwarded spans", |r| {
            spans_in(r).iter().filter(|(s, _)| s == protocol).count() >= 30
        })
        .await;
        assert_eq!(spans_of(&sink, protocol), 30, "{protocol}: each span once");
        assert_eq!(
            self_metric(
                app.admin_addr.unwrap(),
                "slipstream_forward_dropped_requests_total",
                &[]
            )
            .await,
            0.0
        );
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_a_downstream_of_another_ca_is_retried_and_nothing_dropped() {
    let (ca, other, files) = (Ca::new("downstream CA"), Ca::new("other CA"), Files::new());
    let sink = Sink::start_tls(server_config(&ca.server(), None)).await;
    let mut cfg = test_config(
        Some(("grpc", &sink.url())),
        "shutdown:\n  drain_timeout: 1s\n",
    );
    cfg.forward.tls = forward_tls(files.write("other.crt", &other.pem()));
    let app = start(cfg).await;
    emit(
        http_exporter(app.http_addr.unwrap()),
        "untrusted",
        10,
        |_| false,
    )
    .await;
    wait_metric(&app, "slipstream_forward_retries_total", &[], 3.0).await;
    assert_eq!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_forward_dropped_requests_total",
            &[]
        )
        .await,
        0.0,
        "an untrusted downstream holds the queue; nothing is dropped"
    );
    assert!(
        sink.received().is_empty(),
        "nothing reached the untrusted downstream"
    );
    assert!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_forward_queue_requests",
            &[]
        )
        .await
            >= 1.0,
        "the request waits in the queue"
    );
    // The downstream takes TCP connections but not our trust: not ready, and it stays so
    // (the readiness probe goes through the TLS handshake, not just a TCP connect).
    for _ in 0..3 {
        let (status, body) = http_get(app.admin_addr.unwrap(), "/readyz").await;
        assert_eq!(status, 503, "{body}");
        // Wall time passing is the point: the probe runs again meanwhile and still fails.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_pushes_to_an_https_target_with_a_client_certificate() {
    let (ca, files) = (Ca::new("prometheus CA"), Files::new());
    let sink = Sink::start_tls(server_config(&ca.server(), Some(&ca))).await;
    let client = ca.client("slipstream");
    let remote_write = |tls: ForwardTls| {
        let mut cfg = test_config(None, "shutdown:\n  drain_timeout: 1s\n");
        cfg.exporters.remote_write = Some(RemoteWriteConfig {
            endpoint: format!("{}/api/v1/write", sink.url()),
            interval: Duration::from_millis(200),
            tls: Some(tls),
            ..RemoteWriteConfig::default()
        });
        cfg
    };
    let ca_file = files.write("ca.crt", &ca.pem());

    // Without a client certificate the target refuses the handshake: counted, retried.
    let app = start(remote_write(ForwardTls {
        ca_file: Some(ca_file.clone()),
        ..ForwardTls::default()
    }))
    .await;
    wait_metric(
        &app,
        "slipstream_exporter_failures_total",
        &["exporter=\"remote_write\""],
        1.0,
    )
    .await;
    assert!(sink.received().is_empty());
    app.shutdown().await;

    let app = start(remote_write(ForwardTls {
        ca_file: Some(ca_file),
        cert_file: Some(files.write("client.crt", &client.cert)),
        key_file: Some(files.write("client.key", &client.key)),
        insecure_skip_verify: false,
    }))
    .await;
    sink.wait_for(WAIT, "a remote-write push over mutual TLS", |r| {
        r.iter().any(|r| r.path == "/api/v1/write")
    })
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_read_stops_the_start_naming_the_field() {
    let (ca, files) = (Ca::new("test CA"), Files::new());
    let sink = Sink::start().await;
    let mut tls = server_tls(&files, &ca.server(), None);
    tls.cert_file = files.missing("absent.crt");
    let mut cfg = test_config(Some(("grpc", &sink.url())), "");
    cfg.receivers.otlp.http.as_mut().unwrap().tls = Some(tls);
    let err = match App::start(cfg).await {
        Ok(_) => panic!("slipstream started with a missing certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("receivers.otlp.http.tls.cert_file") && err.contains("absent.crt"),
        "{err}"
    );

    let mut cfg = test_config(Some(("grpc", "https://127.0.0.1:9")), "");
    cfg.forward.tls = forward_tls(files.write("not-a-ca.crt", "no PEM here\n"));
    let err = match App::start(cfg).await {
        Ok(_) => panic!("slipstream started with an unusable forward CA"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("forward.tls.ca_file") && err.contains("not-a-ca.crt"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_picks_up_rotated_certificates_and_keeps_them_when_the_new_ones_are_bad() {
    let (old_ca, new_ca, files) = (Ca::new("old CA"), Ca::new("new CA"), Files::new());
    let sink = Sink::start().await;
    let tls = server_tls(&files, &old_ca.server(), None);
    let cfg = tls_config(&sink, tls.clone());
    let config_file = files.write("slipstream.yaml", &cfg.to_yaml());
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();
    let served = |r: std::io::Result<Vec<u8>>| r.is_ok_and(|a| a.starts_with(b"HTTP/1.1 "));
    assert!(served(
        tls_get(http, client_config(&old_ca.pem(), None)).await
    ));
    assert!(!served(
        tls_get(http, client_config(&new_ca.pem(), None)).await
    ));

    // The certificate is rotated in place (as cert-manager does) and SIGHUP reloads it.
    let rotated = new_ca.server();
    files.write("server.crt", &rotated.cert);
    files.write("server.key", &rotated.key);
    app.reload(&config_file);
    assert!(
        served(tls_get(http, client_config(&new_ca.pem(), None)).await),
        "new connections get the rotated certificate"
    );
    assert!(!served(
        tls_get(http, client_config(&old_ca.pem(), None)).await
    ));

    // A broken rotation (a key that does not match) is refused; the running certificate stays.
    files.write("server.key", &old_ca.server().key);
    app.reload(&config_file);
    assert!(
        served(tls_get(http, client_config(&new_ca.pem(), None)).await),
        "a bad reload keeps the certificate in use"
    );
    app.shutdown().await;
}
