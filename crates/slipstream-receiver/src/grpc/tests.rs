use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use slipstream_core::Signal;

use super::{handle, percent_encode};
use crate::body::ResponseBody;
use crate::pipeline::{Pipeline, Transport};
use crate::test_support::{Harness, gzip, harness, traces};

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const MAX_RECV: usize = 64 << 10;

/// A gRPC message: the compressed flag, the 4-byte length, the payload.
fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn request() -> http::request::Builder {
    Request::post(TRACES).header("content-type", "application/grpc")
}

async fn call(p: &Pipeline, req: http::request::Builder, body: Bytes) -> Response<ResponseBody> {
    handle(p, MAX_RECV, req.body(Full::new(body)).unwrap()).await
}

/// The response's status, headers, body bytes and trailers.
async fn parts(r: Response<ResponseBody>) -> (StatusCode, HeaderMap, Bytes, Option<HeaderMap>) {
    let (head, body) = r.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (head.status, head.headers, collected.to_bytes(), trailers)
}

/// `grpc-status` of a trailers-only answer.
fn grpc_status(h: &HeaderMap) -> Option<&str> {
    h.get("grpc-status").and_then(|v| v.to_str().ok())
}

fn grpc_message(h: &HeaderMap) -> &str {
    h.get("grpc-message").unwrap().to_str().unwrap()
}

#[tokio::test]
async fn an_export_is_forwarded_as_its_message_bytes_and_answered_ok() {
    let h = harness(|p| p);
    let message = traces(3);
    let body = frame(0, &message);
    let (status, headers, data, trailers) =
        parts(call(&h.pipeline, request(), body.clone()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(
        grpc_status(&headers),
        None,
        "the status comes in the trailers"
    );
    assert_eq!(&data[..], &[0, 0, 0, 0, 0], "one empty response message");
    assert_eq!(grpc_status(&trailers.unwrap()), Some("0"));
    assert_eq!(h.downstream.bodies(), [message]);
    assert_eq!(h.requests(Signal::Traces, Transport::Grpc, "accepted"), 1);
    assert_eq!(
        h.value("slipstream_receiver_bytes_total", &["traces", "grpc"]),
        body.len() as i128
    );
    assert_eq!(
        h.value(
            "slipstream_receiver_accepted_items_total",
            &["traces", "grpc"]
        ),
        3
    );
}

#[tokio::test]
async fn a_compressed_message_is_forwarded_decompressed() {
    let h = harness(|p| p);
    let message = traces(2);
    let body = frame(1, &gzip(&message));
    let req = request().header("grpc-encoding", "gzip");
    let (status, _, _, trailers) = parts(call(&h.pipeline, req, body).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grpc_status(&trailers.unwrap()), Some("0"));
    assert_eq!(h.downstream.bodies(), [message]);
}

/// Sends `body`; the trailers-only status and message, after checking nothing was forwarded.
async fn refused_with(h: &Harness, req: http::request::Builder, body: Bytes) -> (String, String) {
    let (status, headers, data, trailers) = parts(call(&h.pipeline, req, body).await).await;
    assert_eq!(status, StatusCode::OK, "gRPC errors travel in an HTTP 200");
    assert!(
        data.is_empty() && trailers.is_none(),
        "a trailers-only answer"
    );
    assert!(h.downstream.bodies().is_empty(), "nothing is forwarded");
    (
        grpc_status(&headers).unwrap().to_owned(),
        grpc_message(&headers).to_owned(),
    )
}

#[tokio::test]
async fn broken_frames_are_invalid_argument_and_counted() {
    let message = traces(1);
    let mut long = frame(0, &message).to_vec();
    long.extend_from_slice(&frame(0, &message));
    let cases: [(Bytes, &str); 5] = [
        (
            Bytes::from_static(&[0, 0, 0]),
            "shorter than a message header",
        ),
        (frame(2, &message), "invalid gRPC compression flag 2"),
        (frame(0, &message).slice(..message.len()), "the body holds"),
        (Bytes::from(long), "exactly one message"),
        (frame(1, &message), "without a grpc-encoding header"),
    ];
    for (i, (body, why)) in cases.into_iter().enumerate() {
        let h = harness(|p| p);
        let (code, message) = refused_with(&h, request(), body).await;
        assert_eq!(code, "3", "case {i}: INVALID_ARGUMENT");
        assert!(message.contains(why), "case {i}: {message}");
        assert_eq!(h.refused(Signal::Traces, Transport::Grpc, "invalid"), 1);
        assert_eq!(h.requests(Signal::Traces, Transport::Grpc, "refused"), 1);
    }
}

#[tokio::test]
async fn a_message_over_the_receive_limit_is_resource_exhausted() {
    let h = harness(|p| p);
    // The prefix claims more than the limit; the body is refused from it.
    let mut body = vec![0];
    body.extend_from_slice(&(MAX_RECV as u32 + 1).to_be_bytes());
    body.extend_from_slice(&[0; 16]);
    let body = Bytes::from(body);
    let (code, message) = refused_with(&h, request(), body).await;
    assert_eq!(code, "8", "{message}");
    assert_eq!(h.refused(Signal::Traces, Transport::Grpc, "too_large"), 1);

    // A message within the limit whose decompression is not.
    let h = harness(|p| p);
    let bomb = gzip(&vec![0; (1 << 20) + 1]);
    let body = frame(1, &bomb);
    let req = request().header("grpc-encoding", "gzip");
    let (code, message) = refused_with(&h, req, body).await;
    assert_eq!(code, "8", "{message}");
    assert!(message.contains("decompresses to more than"), "{message}");
}

#[tokio::test]
async fn a_full_queue_is_unavailable_with_retry_info() {
    let h = harness(|p| p);
    h.downstream
        .full
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let body = frame(0, &traces(1));
    let (status, headers, _, _) = parts(call(&h.pipeline, request(), body).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grpc_status(&headers), Some("14"), "UNAVAILABLE");
    assert!(
        headers.contains_key("grpc-status-details-bin"),
        "RetryInfo rides in the status details"
    );
    assert_eq!(h.refused(Signal::Traces, Transport::Grpc, "queue_full"), 1);
    assert_eq!(h.requests(Signal::Traces, Transport::Grpc, "accepted"), 0);
}

#[tokio::test]
async fn admission_refusals_answer_and_count_their_reason() {
    let body = frame(0, &traces(1));

    let h = harness(|p| p);
    let get = Request::get(TRACES).header("content-type", "application/grpc");
    let (status, headers, _, _) = parts(call(&h.pipeline, get, body.clone()).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(
        h.refused(Signal::Traces, Transport::Grpc, "method_not_allowed"),
        1
    );

    let json = Request::post(TRACES).header("content-type", "application/json");
    let (status, _, _, _) = parts(call(&h.pipeline, json, body.clone()).await).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        h.refused(Signal::Traces, Transport::Grpc, "unsupported_media_type"),
        1
    );

    let h = harness(|p| p.with_bearer_tokens(vec!["s3cret".into()]));
    let (code, _) = refused_with(&h, request(), body.clone()).await;
    assert_eq!(code, "16", "UNAUTHENTICATED");
    assert_eq!(
        h.refused(Signal::Traces, Transport::Grpc, "unauthenticated"),
        1
    );
    let authorized = request().header("authorization", "Bearer s3cret");
    let (status, _, _, trailers) = parts(call(&h.pipeline, authorized, body.clone()).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grpc_status(&trailers.unwrap()), Some("0"));

    let h = harness(|p| p);
    let brotli = request().header("grpc-encoding", "br");
    let (code, message) = refused_with(&h, brotli, body.clone()).await;
    assert_eq!(code, "12", "UNIMPLEMENTED");
    assert!(message.contains("gzip,zstd,deflate,identity"), "{message}");
    assert_eq!(
        h.refused(Signal::Traces, Transport::Grpc, "unsupported_encoding"),
        1
    );

    // An unknown method has no signal to count under.
    let h = harness(|p| p);
    let other = Request::post("/foo.Bar/Baz").header("content-type", "application/grpc");
    let (code, message) = refused_with(&h, other, body).await;
    assert_eq!(code, "12");
    assert_eq!(message, "unknown method /foo.Bar/Baz");
}

#[test]
fn grpc_messages_are_percent_encoded() {
    assert_eq!(percent_encode("plain text ok"), "plain text ok");
    assert_eq!(percent_encode("50% off\n"), "50%25 off%0A");
    assert_eq!(percent_encode("é"), "%C3%A9");
}

#[tokio::test]
async fn a_gzip_message_is_kept_to_forward_as_it_arrived() {
    let h = harness(|p| p);
    let message = traces(2);
    let member = gzip(&message);
    let req = request().header("grpc-encoding", "gzip");
    let (status, _, _, _) = parts(call(&h.pipeline, req, frame(1, &member)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.downstream.bodies(), std::slice::from_ref(&message));
    assert_eq!(
        *h.downstream.gzipped.lock().unwrap(),
        [member],
        "the member, byte for byte, without its gRPC prefix"
    );

    // Other encodings and uncompressed messages have no member to keep.
    let h = harness(|p| p);
    let zstd = Bytes::from(zstd::encode_all(&message[..], 1).unwrap());
    let req = request().header("grpc-encoding", "zstd");
    parts(call(&h.pipeline, req, frame(1, &zstd)).await).await;
    let req = request().header("grpc-encoding", "gzip");
    parts(call(&h.pipeline, req, frame(0, &message)).await).await;
    assert_eq!(h.downstream.bodies(), [message.clone(), message]);
    assert!(h.downstream.gzipped.lock().unwrap().is_empty());
}
