use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::pipeline::Pipeline;
use crate::test_support::{gzip, harness, traces};

async fn post(p: &Pipeline, content_type: &str, encoding: &str, body: Bytes) -> StatusCode {
    let req = Request::post("/v1/traces")
        .header("content-type", content_type)
        .header("content-encoding", encoding)
        .body(Full::new(body))
        .unwrap();
    super::handle(p, 1 << 20, req).await.status()
}

#[tokio::test]
async fn a_gzip_protobuf_body_is_kept_to_forward_as_it_arrived() {
    let h = harness(|p| p);
    let message = traces(3);
    let member = gzip(&message);
    let status = post(
        &h.pipeline,
        "application/x-protobuf",
        "gzip",
        member.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.downstream.bodies(), [message]);
    assert_eq!(*h.downstream.gzipped.lock().unwrap(), [member]);
}

#[tokio::test]
async fn what_is_not_one_gzip_member_of_the_protobuf_is_not_kept() {
    let h = harness(|p| p);
    let message = traces(2);
    // JSON: the member holds the JSON, not the protobuf that is forwarded.
    let json = Bytes::from(r#"{"resourceSpans":[]}"#);
    let status = post(&h.pipeline, "application/json", "gzip", gzip(&json)).await;
    assert_eq!(status, StatusCode::OK);
    // Two members (valid gzip, streamed): only one member inflated whole is kept.
    let half = message.len() / 2;
    let mut two = gzip(&message[..half]).to_vec();
    two.extend_from_slice(&gzip(&message[half..]));
    let status = post(
        &h.pipeline,
        "application/x-protobuf",
        "gzip",
        Bytes::from(two),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let zstd = Bytes::from(zstd::encode_all(&message[..], 1).unwrap());
    let status = post(&h.pipeline, "application/x-protobuf", "zstd", zstd).await;
    assert_eq!(status, StatusCode::OK);
    let bodies = h.downstream.bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[1..], [message.clone(), message]);
    assert!(h.downstream.gzipped.lock().unwrap().is_empty());
}
