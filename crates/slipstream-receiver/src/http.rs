//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use prost::Message;
use slipstream_core::Signal;
use slipstream_core::rpc::{GrpcCode, RpcStatus};

use crate::body::{Encoding, ResponseBody, decompress, read_limited};
use crate::pipeline::{ExportError, Pipeline, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

fn signal_for_path(path: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| s.http_path() == path)
}

/// Handles one request on the HTTP port.
pub(crate) async fn handle<B>(
    pipeline: &Pipeline,
    max_body: usize,
    req: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(signal) = signal_for_path(req.uri().path()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs",
        );
    };
    if req.method() != Method::POST {
        pipeline.count_refused(signal, Transport::Http, "method_not_allowed");
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if !pipeline.authorized(req.headers()) {
        pipeline.count_refused(signal, Transport::Http, "unauthenticated");
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            "unauthenticated: send Authorization: Bearer <token>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let format = match content_type.as_deref() {
        Some("application/x-protobuf") | Some("application/protobuf") => Format::Protobuf,
        Some("application/json") => Format::Json,
        other => {
            pipeline.count_refused(signal, Transport::Http, "unsupported_media_type");
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "unsupported content-type {}: expected application/x-protobuf or application/json",
                    other.unwrap_or("(none)")
                ),
            );
        }
    };
    if let Err(e) = pipeline.admit_memory() {
        pipeline.count_refused(signal, Transport::Http, e.reason());
        return error_response(format, &e);
    }
    let Some(encoding) = Encoding::parse(req.headers().get(header::CONTENT_ENCODING)) else {
        pipeline.count_refused(signal, Transport::Http, "unsupported_encoding");
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content-encoding: expected gzip, zstd, deflate or none",
        );
    };
    let refuse = |e: ExportError| {
        pipeline.count_refused(signal, Transport::Http, e.reason());
        error_response(format, &e)
    };
    let raw = match read_limited(req.into_body(), max_body).await {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    pipeline.count_wire_bytes(signal, Transport::Http, raw.len());
    let body = match decompress(encoding, raw, pipeline.limits().max_decompressed_size) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    let protobuf = match format {
        Format::Protobuf => body,
        Format::Json => match Pipeline::json_to_protobuf(signal, &body) {
            Ok(b) => b,
            Err(e) => return refuse(e),
        },
    };
    match pipeline.export(signal, Transport::Http, protobuf) {
        Ok(()) => {
            // An empty Export*ServiceResponse: zero bytes in protobuf, `{}` in JSON.
            let body = match format {
                Format::Protobuf => ResponseBody::empty(),
                Format::Json => ResponseBody::full("{}"),
            };
            with_type(Response::new(body), format)
        }
        Err(e) => error_response(format, &e),
    }
}

fn with_type(mut r: Response<ResponseBody>, format: Format) -> Response<ResponseBody> {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An error as the OTLP/HTTP spec wants it: the status code, and a `google.rpc.Status` body in
/// the request's content type.
fn error_response(format: Format, e: &ExportError) -> Response<ResponseBody> {
    let (status, code) = match e {
        ExportError::Invalid(_) | ExportError::AttributeLimit(_) => {
            (StatusCode::BAD_REQUEST, GrpcCode::InvalidArgument)
        }
        ExportError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, GrpcCode::ResourceExhausted),
        ExportError::Backpressure(_) | ExportError::MemoryLimit(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, GrpcCode::Unavailable)
        }
    };
    let rpc = RpcStatus::new(code, e.to_string());
    let body = match format {
        Format::Protobuf => Bytes::from(rpc.encode_to_vec()),
        Format::Json => Bytes::from(
            serde_json::json!({ "code": rpc.code, "message": rpc.message, "details": [] })
                .to_string(),
        ),
    };
    let mut r = with_type(Response::new(ResponseBody::full(body)), format);
    *r.status_mut() = status;
    if let ExportError::Backpressure(d) | ExportError::MemoryLimit(d) = e {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    r
}
