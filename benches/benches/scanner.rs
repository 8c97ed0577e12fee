//! criterion bench: the span scanner against a full prost decode of the same request.
//!
//! The request is what an instrumented HTTP service's SDK exports: 512 server and client spans
//! (about 390 bytes each) with the usual HTTP, network and user-agent attributes, under one
//! resource. Throughput is in spans. `scan_512_sampled_spans`: the same spans, each with a
//! W3C trace state holding an OpenTelemetry sampling threshold (`ot=...;th:c`) after another
//! vendor's member, which the scanner parses.
//!
//! `cargo bench -p slipstream-benches --bench scanner -- --measurement-time 3 --warm-up-time 1`
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;
use slipstream_core::{ScanSpec, SpanRecord};
use slipstream_receiver::scanner::scan_traces;
use slipstream_test_support::otlp::{kv, kv_int};

const SPANS: usize = 512;

/// A realistic request: one resource, one scope, `n` HTTP spans, each with `trace_state`.
fn request(n: usize, trace_state: &str) -> ExportTraceServiceRequest {
    const ROUTES: [&str; 4] = ["/api/cart", "/api/cart/{id}", "/api/checkout", "/health"];
    const METHODS: [&str; 3] = ["GET", "POST", "PUT"];
    let spans = (0..n)
        .map(|i| {
            let route = ROUTES[i % ROUTES.len()];
            let start = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
            Span {
                trace_id: (0..16).map(|b| (b * 7 + i) as u8).collect(),
                span_id: (0..8).map(|b| (b * 13 + i) as u8).collect(),
                parent_span_id: (0..8).map(|b| (b * 3 + i) as u8).collect(),
                flags: 0x301,
                trace_state: trace_state.to_owned(),
                name: format!("{} {route}", METHODS[i % METHODS.len()]),
                kind: if i % 5 == 0 { 3 } else { 2 },
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000 * (i as u64 % 9_000 + 100),
                attributes: vec![
                    kv("http.request.method", METHODS[i % METHODS.len()]),
                    kv("http.route", route),
                    kv_int(
                        "http.response.status_code",
                        if i % 50 == 0 { 503 } else { 200 },
                    ),
                    kv(
                        "url.full",
                        &format!("https://shop.example.com{route}?s={i:05}"),
                    ),
                    kv(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0",
                    ),
                    kv("net.peer.ip", &format!("10.1.{}.{}", i / 256, i % 256)),
                    kv("server.address", "shop.example.com"),
                    kv_int("server.port", 443),
                ],
                status: Some(Status {
                    message: String::new(),
                    code: if i % 50 == 0 { 2 } else { 0 },
                }),
                ..Default::default()
            }
        })
        .collect();
    let mut req = slipstream_test_support::otlp::request(
        vec![
            kv("service.name", "checkout"),
            kv("service.version", "2.14.1"),
            kv("deployment.environment", "production"),
            kv("host.name", "checkout-7d9f8c6b5-x2x9q"),
            kv("k8s.pod.name", "checkout-7d9f8c6b5-x2x9q"),
            kv("telemetry.sdk.language", "java"),
            kv("telemetry.sdk.version", "1.38.0"),
        ],
        spans,
    );
    let scope_spans = &mut req.resource_spans[0].scope_spans[0];
    scope_spans.scope = Some(InstrumentationScope {
        name: "io.opentelemetry.tomcat-10.0".into(),
        version: "2.4.0-alpha".into(),
        ..Default::default()
    });
    scope_spans.schema_url = "https://opentelemetry.io/schemas/1.24.0".into();
    req
}

fn scanner(c: &mut Criterion) {
    let buf = request(SPANS, "").encode_to_vec();
    // As an OpenTelemetry probability sampler at 1 in 4 writes it, after another vendor's.
    let sampled = request(SPANS, "rojo=00f067aa0ba902b7,ot=rv:6b3a2e0f81c7d4;th:c").encode_to_vec();
    eprintln!(
        "request: {SPANS} spans, {} bytes, {} bytes/span",
        buf.len(),
        buf.len() / SPANS
    );
    let spec = ScanSpec {
        resource_keys: vec!["deployment.environment".into()],
        span_keys: vec!["http.route".into(), "http.request.method".into()],
        ..ScanSpec::default()
    };

    let mut group = c.benchmark_group("scanner");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("scan_512_spans", |b| {
        let mut out: Vec<SpanRecord<'_>> = Vec::with_capacity(SPANS);
        b.iter(|| {
            scan_traces(black_box(&buf), &spec, &mut out).expect("valid request");
            black_box(out.len())
        })
    });
    group.bench_function("scan_512_sampled_spans", |b| {
        let mut out: Vec<SpanRecord<'_>> = Vec::with_capacity(SPANS);
        b.iter(|| {
            scan_traces(black_box(&sampled), &spec, &mut out).expect("valid request");
            black_box(out.len())
        })
    });
    group.bench_function("prost_decode_512_spans", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&buf[..])).expect("valid request"))
    });
    group.finish();
}

criterion_group!(benches, scanner);
criterion_main!(benches);
