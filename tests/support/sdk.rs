//! Spans from the real OpenTelemetry SDK (the Rust `opentelemetry-otlp` exporter).

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

/// Emits `n` server spans for `service` through `exporter` (span `i` answers HTTP 503 when
/// `bad(i)`, else 200), then flushes and shuts the provider down.
pub async fn emit(exporter: SpanExporter, service: &str, n: usize, bad: impl Fn(usize) -> bool) {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("e2e");
    for i in 0..n {
        let mut span = tracer
            .span_builder(format!("GET /item/{}", i % 7))
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new(
                "http.response.status_code",
                if bad(i) { 503 } else { 200 },
            )])
            .start(&tracer);
        span.end();
    }
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
}

/// An OTLP/HTTP protobuf span exporter to slipstream's HTTP receiver at `addr`.
pub fn http_exporter(addr: std::net::SocketAddr) -> SpanExporter {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("http://{addr}/v1/traces"))
        .build()
        .expect("exporter")
}
