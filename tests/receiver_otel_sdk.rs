//! A real OpenTelemetry SDK exporter sends spans to slipstream, which forwards them to a
//! downstream sink: every span arrives; protobuf bodies arrive byte for byte.

use std::time::Duration;

use opentelemetry_otlp::{
    Compression, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use slipstream_e2e::sdk::emit;
use slipstream_e2e::{Sink, otlp, raw, self_metric, spans_in, start, test_config};

const WAIT: Duration = Duration::from_secs(20);

async fn sdk_to_slipstream(
    exporter: impl FnOnce(&slipstream_app::app::App) -> SpanExporter,
    forward_protocol: &str,
) {
    let sink = Sink::start().await;
    let app = start(test_config(Some((forward_protocol, &sink.url())), "")).await;
    let n = 300;
    emit(exporter(&app), "checkout", n, |i| i % 10 == 0).await;
    let got = sink
        .wait_for(WAIT, "all spans downstream", |r| spans_in(r).len() >= n)
        .await;
    let spans = spans_in(&got);
    assert_eq!(spans.len(), n, "every span arrives once");
    assert!(
        spans
            .iter()
            .all(|(svc, name)| svc == "checkout" && name.starts_with("GET /item/"))
    );
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(
            admin,
            "slipstream_receiver_accepted_items_total",
            &["signal=\"traces\""]
        )
        .await,
        n as f64
    );
    assert_eq!(
        self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await,
        0.0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_grpc_with_gzip() {
    sdk_to_slipstream(
        |app| {
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{}", app.grpc_addr.unwrap()))
                .with_compression(Compression::Gzip)
                .build()
                .unwrap()
        },
        "grpc",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_http_protobuf() {
    sdk_to_slipstream(
        |app| {
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("http://{}/v1/traces", app.http_addr.unwrap()))
                .build()
                .unwrap()
        },
        "http",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_http_json_arrives_downstream_as_protobuf() {
    sdk_to_slipstream(
        |app| {
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(format!("http://{}/v1/traces", app.http_addr.unwrap()))
                .with_compression(Compression::Gzip)
                .build()
                .unwrap()
        },
        "grpc",
    )
    .await;
}

/// A protobuf request with an unknown field and a non-canonical varint: any decode and
/// re-encode would change these bytes, so arriving intact proves they were forwarded as they came.
fn non_canonical_request() -> Vec<u8> {
    let mut bytes = otlp::trace_request("payments", 5, |i| format!("charge {i}"));
    // Field 999, varint 1 written in two bytes (0x81 0x00): legal, unknown, non-canonical.
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x81, 0x00]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_are_forwarded_byte_for_byte() {
    let sink = Sink::start().await;
    let app = start(test_config(Some(("grpc", &sink.url())), "")).await;
    let body = non_canonical_request();
    let r = raw::post_traces(app.http_addr.unwrap(), body.clone()).await;
    assert_eq!(r.status, 200);
    let r = raw::post_grpc(
        app.grpc_addr.unwrap(),
        raw::TRACES,
        &[],
        raw::grpc_frame(&body),
    )
    .await;
    assert_eq!(r.grpc_status(), Some(0));
    // zstd over HTTP: forwarded decompressed, otherwise untouched.
    let zstd_body = zstd::encode_all(&body[..], 3).unwrap();
    let r = raw::post_http(
        app.http_addr.unwrap(),
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "zstd"),
        ],
        zstd_body,
    )
    .await;
    assert_eq!(r.status, 200);
    let got = sink
        .wait_for(WAIT, "three requests", |r| r.len() >= 3)
        .await;
    for r in &got {
        assert_eq!(
            r.path,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        assert_eq!(
            &r.body[..],
            &body[..],
            "forwarded bytes are the bytes that arrived"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_logs_are_forwarded_the_same_way() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use prost::Message;
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); 3],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 4],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let sink = Sink::start().await;
    let app = start(test_config(Some(("grpc", &sink.url())), "")).await;
    let pb = [("content-type", "application/x-protobuf")];
    assert_eq!(
        raw::post_http(app.http_addr.unwrap(), "/v1/metrics", &pb, metrics.clone())
            .await
            .status,
        200
    );
    assert_eq!(
        raw::post_http(app.http_addr.unwrap(), "/v1/logs", &pb, logs.clone())
            .await
            .status,
        200
    );
    let m = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    let l = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    assert_eq!(
        raw::post_grpc(app.grpc_addr.unwrap(), m, &[], raw::grpc_frame(&metrics))
            .await
            .grpc_status(),
        Some(0)
    );
    assert_eq!(
        raw::post_grpc(app.grpc_addr.unwrap(), l, &[], raw::grpc_frame(&logs))
            .await
            .grpc_status(),
        Some(0)
    );
    let got = sink.wait_for(WAIT, "four requests", |r| r.len() >= 4).await;
    assert_eq!(
        got.iter()
            .filter(|r| r.path == m && r.body[..] == metrics[..])
            .count(),
        2
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.path == l && r.body[..] == logs[..])
            .count(),
        2
    );
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(
            admin,
            "slipstream_receiver_accepted_items_total",
            &["signal=\"metrics\""]
        )
        .await,
        6.0
    );
    assert_eq!(
        self_metric(
            admin,
            "slipstream_receiver_accepted_items_total",
            &["signal=\"logs\""]
        )
        .await,
        8.0
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_grpc_and_http() {
    let python = slipstream_e2e::python::interpreter();
    let sink = Sink::start().await;
    let app = start(test_config(Some(("http", &sink.url())), "")).await;
    for (protocol, endpoint) in [
        ("grpc", format!("http://{}", app.grpc_addr.unwrap())),
        (
            "http/protobuf",
            format!("http://{}/v1/traces", app.http_addr.unwrap()),
        ),
    ] {
        let out = tokio::process::Command::new(&python)
            .arg(slipstream_e2e::python::script("send_spans.py"))
            .args([
                "--protocol",
                protocol,
                "--endpoint",
                &endpoint,
                "--spans",
                "120",
                "--service",
                protocol,
            ])
            .output()
            .await
            .expect("python runs");
        assert!(
            out.status.success(),
            "send_spans.py {protocol} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got = sink
        .wait_for(WAIT, "240 spans", |r| spans_in(r).len() >= 240)
        .await;
    let spans = spans_in(&got);
    assert_eq!(spans.len(), 240);
    assert_eq!(spans.iter().filter(|(s, _)| s == "grpc").count(), 120);
    assert_eq!(
        spans.iter().filter(|(s, _)| s == "http/protobuf").count(),
        120
    );
    assert!(
        got.iter().all(|r| r.path == "/v1/traces"),
        "forwarded over OTLP/HTTP"
    );
    app.shutdown().await;
}
