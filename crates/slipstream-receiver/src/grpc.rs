//! OTLP/gRPC: unary `Export` calls of the trace, metrics and logs services, framed by hand on
//! hyper's HTTP/2 so that size limits hold before decompression and the message bytes reach
//! the forward queue as they arrived.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use prost::Message;
use slipstream_core::Signal;
use slipstream_core::rpc::{GrpcCode, RpcStatus, base64_encode};

use crate::body::{Announced, Decoded, Encoding, ResponseBody, decompress_keeping, read_limited};
use crate::pipeline::{ExportError, Pipeline, Reservation, Transport, span_records_estimate};
use crate::refusal::Refusal;

/// The encodings advertised in `grpc-accept-encoding`.
const ACCEPT_ENCODING: &str = "gzip,zstd,deflate,identity";

fn signal_for_path(path: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| s.grpc_path() == path)
}

/// Handles one HTTP/2 request on the gRPC port.
pub(crate) async fn handle<B>(
    pipeline: &Pipeline,
    max_recv: usize,
    req: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(signal) = signal_for_path(req.uri().path()) else {
        return status_only(&RpcStatus::new(
            GrpcCode::Unimplemented,
            format!("unknown method {}", req.uri().path()),
        ));
    };
    let refuse = |reason: Refusal, status: RpcStatus| {
        pipeline.count_refused(signal, Transport::Grpc, reason);
        status_only(&status)
    };
    if req.method() != Method::POST {
        pipeline.count_refused(signal, Transport::Grpc, Refusal::MethodNotAllowed);
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        pipeline.count_refused(signal, Transport::Grpc, Refusal::UnsupportedMediaType);
        let mut r = Response::new(ResponseBody::full("expected content-type application/grpc"));
        *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return r;
    }
    if !pipeline.authorized(req.headers()) {
        return refuse(
            Refusal::Unauthenticated,
            RpcStatus::new(
                GrpcCode::Unauthenticated,
                "missing or invalid bearer token (authorization: Bearer <token>)",
            ),
        );
    }
    if let Err(e) = pipeline.admit_memory() {
        return refuse(e.refusal(), status_for(&e));
    }
    let Some(encoding) = Encoding::parse(req.headers().get("grpc-encoding")) else {
        return refuse(
            Refusal::UnsupportedEncoding,
            RpcStatus::new(
                GrpcCode::Unimplemented,
                format!("unsupported grpc-encoding; accepted: {ACCEPT_ENCODING}"),
            ),
        );
    };
    let reservation = pipeline.reserve();
    let raw = match read_limited(
        req.into_body(),
        max_recv.saturating_add(5),
        Announced::GrpcPrefix,
        match signal {
            Signal::Traces => span_records_estimate,
            _ => |_| 0,
        },
        &reservation,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return refuse(e.refusal(), status_for(&e)),
    };
    pipeline.count_wire_bytes(signal, Transport::Grpc, raw.len());
    let message = match unframe(
        raw,
        encoding,
        max_recv,
        pipeline.limits().max_decompressed_size,
        &reservation,
    )
    .await
    {
        Ok(m) => m,
        Err(e) => return refuse(e.refusal(), status_for(&e)),
    };
    match pipeline.export_reserved_gzip(
        signal,
        Transport::Grpc,
        message.body,
        message.gzip,
        &reservation,
    ) {
        Ok(()) => ok_response(),
        Err(e) => status_only(&status_for(&e)),
    }
}

/// Takes the single length-prefixed message out of a unary request body and decompresses it,
/// its output reserved on `reservation`. A gzip message is the same member an HTTP gzip body
/// is, so one inflated whole is kept to be forwarded as it arrived.
async fn unframe(
    raw: Bytes,
    encoding: Encoding,
    max_recv: usize,
    max_decompressed: usize,
    reservation: &Reservation,
) -> Result<Decoded, ExportError> {
    if raw.len() < 5 {
        return Err(ExportError::Invalid(format!(
            "gRPC body of {} bytes is shorter than a message header (5 bytes)",
            raw.len()
        )));
    }
    let compressed = match raw[0] {
        0 => false,
        1 => true,
        f => {
            return Err(ExportError::Invalid(format!(
                "invalid gRPC compression flag {f}"
            )));
        }
    };
    let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    if len > max_recv {
        return Err(ExportError::TooLarge(format!(
            "gRPC message of {len} bytes is larger than the limit of {max_recv}"
        )));
    }
    if raw.len() - 5 != len {
        return Err(ExportError::Invalid(format!(
            "gRPC message header says {len} bytes but the body holds {} (a unary call carries exactly one message)",
            raw.len() - 5
        )));
    }
    let payload = raw.slice(5..);
    if !compressed {
        return Ok(Decoded {
            body: payload,
            gzip: None,
        });
    }
    if encoding == Encoding::Identity {
        return Err(ExportError::Invalid(
            "compressed gRPC message without a grpc-encoding header".to_owned(),
        ));
    }
    decompress_keeping(encoding, payload, max_decompressed, reservation).await
}

/// The gRPC status for an export error (OTLP spec: INVALID_ARGUMENT, RESOURCE_EXHAUSTED,
/// UNAVAILABLE with RetryInfo).
fn status_for(e: &ExportError) -> RpcStatus {
    match e {
        ExportError::Invalid(m)
        | ExportError::AttributeLimit(m)
        | ExportError::Unforwardable { message: m, .. } => {
            RpcStatus::new(GrpcCode::InvalidArgument, m.clone())
        }
        ExportError::TooLarge(m) => RpcStatus::new(GrpcCode::ResourceExhausted, m.clone()),
        ExportError::Backpressure(d) | ExportError::MemoryLimit(d) => {
            RpcStatus::new(GrpcCode::Unavailable, e.to_string()).with_retry_delay(*d)
        }
    }
}

fn base_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(ACCEPT_ENCODING),
    );
}

/// A successful response: one empty `Export*ServiceResponse` message, then `grpc-status: 0`.
fn ok_response() -> Response<ResponseBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut r = Response::new(ResponseBody::with_trailers(
        Bytes::from_static(&[0, 0, 0, 0, 0]),
        trailers,
    ));
    base_headers(r.headers_mut());
    r
}

/// A "trailers-only" error response: the status travels in the headers, the body is empty.
fn status_only(status: &RpcStatus) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::empty());
    let h = r.headers_mut();
    base_headers(h);
    h.insert("grpc-status", HeaderValue::from(status.code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&status.message)) {
        h.insert("grpc-message", v);
    }
    if !status.details.is_empty()
        && let Ok(v) = HeaderValue::from_str(&base64_encode(&status.encode_to_vec()))
    {
        h.insert("grpc-status-details-bin", v);
    }
    r
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
