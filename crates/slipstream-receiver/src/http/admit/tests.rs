use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use prost::Message;
use slipstream_core::Signal;
use slipstream_core::rpc::{GrpcCode, RpcStatus};

use super::{Counting, Format, admit, error_response, status_response};
use crate::body::ResponseBody;
use crate::pipeline::{ExportError, InFlight, MemoryGate, Pipeline, Transport};
use crate::test_support::{Harness, gzip, harness, traces};

const MAX_BODY: usize = 4096;

async fn post(
    p: &Pipeline,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Bytes,
) -> Response<ResponseBody> {
    let mut req = Request::post("/v1/traces");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    crate::http::handle(p, MAX_BODY, req.body(Full::new(body)).unwrap()).await
}

async fn body_of(r: Response<ResponseBody>) -> Bytes {
    r.into_body().collect().await.unwrap().to_bytes()
}

fn refused(h: &Harness, reason: &str) -> i128 {
    h.refused(Signal::Traces, Transport::Http, reason)
}

#[tokio::test]
async fn protobuf_and_json_media_types_are_taken_with_parameters_and_any_case() {
    for ct in [
        "application/x-protobuf",
        "application/protobuf",
        "Application/X-Protobuf; charset=binary",
    ] {
        let h = harness(|p| p);
        let r = post(&h.pipeline, Some(ct), None, traces(1)).await;
        assert_eq!(r.status(), StatusCode::OK, "{ct}");
        assert_eq!(r.headers()["content-type"], "application/x-protobuf");
        assert!(body_of(r).await.is_empty(), "an empty response message");
        assert_eq!(h.downstream.bodies(), [traces(1)], "{ct}");
    }
    for ct in ["application/json", "application/json; charset=utf-8"] {
        let h = harness(|p| p);
        let json = Bytes::from_static(br#"{"resourceSpans":[]}"#);
        let r = post(&h.pipeline, Some(ct), None, json).await;
        assert_eq!(r.status(), StatusCode::OK, "{ct}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(&body_of(r).await[..], b"{}");
        // Forwarded as protobuf: the empty request encodes to no bytes.
        assert_eq!(h.downstream.bodies(), [Bytes::new()]);
    }
}

#[tokio::test]
async fn other_media_types_are_refused_with_415_and_counted() {
    let h = harness(|p| p);
    for (ct, shown) in [(Some("text/plain"), "text/plain"), (None, "(none)")] {
        let r = post(&h.pipeline, ct, None, traces(1)).await;
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let text = String::from_utf8(body_of(r).await.to_vec()).unwrap();
        assert!(
            text.contains(&format!("unsupported content-type {shown}")),
            "{text}"
        );
        assert!(text.contains("application/json"), "{text}");
    }
    assert_eq!(refused(&h, "unsupported_media_type"), 2);
    assert_eq!(h.requests(Signal::Traces, Transport::Http, "refused"), 2);
    assert!(h.downstream.bodies().is_empty());
}

#[tokio::test]
async fn a_path_that_takes_no_json_refuses_it() {
    let h = harness(|p| p);
    let count = Counting {
        refused: &|_| {},
        bytes: &|_| {},
    };
    let req = Request::post("/v1/slipstream/aggregates")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let Err(r) = admit(&h.pipeline, MAX_BODY, req, false, false, &count).await else {
        panic!("JSON was admitted");
    };
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let text = String::from_utf8(body_of(r).await.to_vec()).unwrap();
    assert!(text.contains("expected application/x-protobuf\n"), "{text}");
}

#[tokio::test]
async fn compressed_bodies_are_forwarded_decompressed() {
    let message = traces(2);
    let zstd = Bytes::from(zstd::encode_all(&message[..], 1).unwrap());
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut zlib, &message).unwrap();
    let deflate = Bytes::from(zlib.finish().unwrap());
    for (encoding, body) in [
        ("gzip", gzip(&message)),
        ("GZIP", gzip(&message)),
        ("x-gzip", gzip(&message)),
        ("zstd", zstd),
        ("deflate", deflate),
        ("identity", message.clone()),
    ] {
        let h = harness(|p| p);
        let r = post(
            &h.pipeline,
            Some("application/x-protobuf"),
            Some(encoding),
            body.clone(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{encoding}");
        assert_eq!(
            h.downstream.bodies(),
            std::slice::from_ref(&message),
            "{encoding}"
        );
        // Wire bytes are counted as they arrived, compressed.
        assert_eq!(
            h.value("slipstream_receiver_bytes_total", &["traces", "http"]),
            body.len() as i128
        );
    }
}

#[tokio::test]
async fn an_unknown_encoding_is_refused_with_415_and_counted() {
    let h = harness(|p| p);
    let r = post(
        &h.pipeline,
        Some("application/x-protobuf"),
        Some("br"),
        traces(1),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let text = String::from_utf8(body_of(r).await.to_vec()).unwrap();
    assert!(text.contains("unsupported content-encoding"), "{text}");
    assert_eq!(refused(&h, "unsupported_encoding"), 1);
}

#[tokio::test]
async fn a_bad_gzip_body_is_a_400_in_the_request_format() {
    let h = harness(|p| p);
    let r = post(
        &h.pipeline,
        Some("application/json"),
        Some("gzip"),
        Bytes::from_static(b"not gzip at all"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/json");
    let status: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
    assert_eq!(status["code"], GrpcCode::InvalidArgument as i32);
    assert_eq!(refused(&h, "invalid"), 1);
}

#[tokio::test]
async fn bearer_tokens_are_required_when_configured() {
    let h = harness(|p| p.with_bearer_tokens(vec!["s3cret".into()]));
    for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
        let mut req = Request::post("/v1/traces").header("content-type", "application/x-protobuf");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(traces(1))).unwrap();
        let r = crate::http::handle(&h.pipeline, MAX_BODY, req).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(refused(&h, "unauthenticated"), 3);
    let req = Request::post("/v1/traces")
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer s3cret")
        .body(Full::new(traces(1)))
        .unwrap();
    let r = crate::http::handle(&h.pipeline, MAX_BODY, req).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.downstream.bodies().len(), 1);
}

#[tokio::test]
async fn only_post_is_allowed() {
    let h = harness(|p| p);
    let req = Request::get("/v1/traces")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = crate::http::handle(&h.pipeline, MAX_BODY, req).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(refused(&h, "method_not_allowed"), 1);
}

#[tokio::test]
async fn an_unknown_path_is_404_and_counts_nothing() {
    let h = harness(|p| p);
    let req = Request::post("/v1/spans")
        .body(Full::new(traces(1)))
        .unwrap();
    let r = crate::http::handle(&h.pipeline, MAX_BODY, req).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!h.registry.render_prometheus().contains("reason="));
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_the_status_in_the_request_format() {
    let h = harness(|p| p);
    let big = Bytes::from(vec![b' '; MAX_BODY + 1]);
    let r = post(
        &h.pipeline,
        Some("application/x-protobuf"),
        None,
        big.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let status = RpcStatus::decode(body_of(r).await).unwrap();
    assert_eq!(status.code, GrpcCode::ResourceExhausted as i32);
    assert!(status.message.contains("4096"), "{}", status.message);

    let r = post(&h.pipeline, Some("application/json"), None, big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let status: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
    assert_eq!(status["code"], GrpcCode::ResourceExhausted as i32);
    assert_eq!(refused(&h, "too_large"), 2);
    assert!(h.downstream.bodies().is_empty());
}

#[tokio::test]
async fn over_the_memory_limit_requests_are_503_with_retry_after() {
    let over = Arc::new(AtomicBool::new(true));
    let gate = MemoryGate {
        over: over.clone(),
        retry_after: Duration::from_millis(1500),
        in_flight: Arc::new(InFlight::new(1 << 20)),
    };
    let h = harness(|p| p.with_memory_gate(gate));
    let r = post(&h.pipeline, Some("application/x-protobuf"), None, traces(1)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "2", "whole seconds, rounded up");
    assert_eq!(refused(&h, "memory_limit"), 1);
    over.store(false, std::sync::atomic::Ordering::Relaxed);
    let r = post(&h.pipeline, Some("application/x-protobuf"), None, traces(1)).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn retry_after_is_in_whole_seconds_and_at_least_one() {
    for (delay, header) in [
        (0, "1"),
        (999, "1"),
        (1000, "1"),
        (1001, "2"),
        (30_000, "30"),
    ] {
        let r = status_response(
            Format::Protobuf,
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            "later",
            Some(Duration::from_millis(delay)),
        );
        assert_eq!(r.headers()["retry-after"], header, "{delay} ms");
    }
    let r = status_response(
        Format::Json,
        StatusCode::BAD_REQUEST,
        GrpcCode::InvalidArgument,
        "no",
        None,
    );
    assert!(!r.headers().contains_key("retry-after"));
}

#[test]
fn export_errors_map_onto_the_otlp_http_statuses() {
    let d = Duration::from_secs(1);
    for (e, status, code) in [
        (
            ExportError::Invalid("x".into()),
            400,
            GrpcCode::InvalidArgument,
        ),
        (
            ExportError::AttributeLimit("x".into()),
            400,
            GrpcCode::InvalidArgument,
        ),
        (
            ExportError::Unforwardable {
                reason: "invalid_id",
                message: "x".into(),
            },
            400,
            GrpcCode::InvalidArgument,
        ),
        (
            ExportError::TooLarge("x".into()),
            413,
            GrpcCode::ResourceExhausted,
        ),
        (ExportError::Backpressure(d), 503, GrpcCode::Unavailable),
        (ExportError::MemoryLimit(d), 503, GrpcCode::Unavailable),
    ] {
        let r = error_response(Format::Protobuf, &e);
        assert_eq!(r.status().as_u16(), status, "{e:?}");
        assert_eq!(
            r.headers().contains_key("retry-after"),
            status == 503,
            "{e:?}"
        );
        let body = futures_body(r);
        assert_eq!(RpcStatus::decode(body).unwrap().code, code as i32, "{e:?}");
    }
}

/// The body of a response whose body is one frame already in memory.
fn futures_body(r: Response<ResponseBody>) -> Bytes {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(body_of(r))
}
