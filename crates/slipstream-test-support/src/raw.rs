//! Raw HTTP/1.1 and HTTP/2 requests, for bodies and headers no SDK would send.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The gRPC method path of the trace service.
pub const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// What came back.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
    /// Trailers, when any.
    pub trailers: HeaderMap,
}

impl RawResponse {
    /// `grpc-status`, from the trailers or (trailers-only responses) the headers.
    pub fn grpc_status(&self) -> Option<i32> {
        self.trailers
            .get("grpc-status")
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok()?.parse().ok())
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    h2: bool,
) -> Result<RawResponse, String> {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Ok(RawResponse {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// POST over HTTP/1.1; a connection that fails or breaks before the answer is an `Err`.
pub async fn try_post_http(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<RawResponse, String> {
    try_send(addr, "POST", path, headers, body, false).await
}

/// POST over HTTP/1.1.
pub async fn post_http(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawResponse {
    try_send(addr, "POST", path, headers, body, false)
        .await
        .expect("request sent and answered")
}

/// POST of a protobuf trace request to `/v1/traces` over HTTP/1.1.
pub async fn post_traces(addr: SocketAddr, body: Vec<u8>) -> RawResponse {
    post_http(
        addr,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await
}

/// Any method over HTTP/1.1.
pub async fn request_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawResponse {
    try_send(addr, method, path, headers, body, false)
        .await
        .expect("request sent and answered")
}

/// A gRPC call over HTTP/2 (prior knowledge); `content-type: application/grpc` is added.
pub async fn post_grpc(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    framed: Vec<u8>,
) -> RawResponse {
    let mut h = vec![("content-type", "application/grpc"), ("te", "trailers")];
    h.extend_from_slice(headers);
    try_send(addr, "POST", path, &h, framed, true)
        .await
        .expect("request sent and answered")
}

/// Frames one uncompressed gRPC message.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    frame_with_flag(0, message)
}

/// Frames one gRPC message with the given compression flag.
pub fn frame_with_flag(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(message.len() + 5);
    b.put_u8(flag);
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.to_vec()
}
