//! The admission every POST on the HTTP port goes through, OTLP and partial aggregates alike:
//! method, bearer token, media type, memory gate, content encoding, bounded read and bounded
//! decompression ([`admit`]), and the answers it gives: `google.rpc.Status` bodies in the
//! request's format with the OTLP/HTTP status codes ([`error_response`], [`status_response`]).
//! It depends on the pipeline and the body reader only; the endpoints depend on it.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use prost::Message;
use slipstream_core::Signal;
use slipstream_core::rpc::{GrpcCode, RpcStatus};

use crate::body::{Announced, Encoding, ResponseBody, decompress_keeping, read_limited};
use crate::pipeline::{ExportError, Pipeline, Reservation, span_records_estimate};
use crate::refusal::Refusal;

/// The body format of a request, from its media type; answers are in the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Protobuf,
    Json,
}

impl Format {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The signal an OTLP/HTTP path is for.
pub(super) fn signal_for_path(path: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|s| s.http_path() == path)
}

/// How a request path counts what happens to its requests.
pub(crate) struct Counting<'a> {
    /// Counts a refusal with its reason.
    pub(crate) refused: &'a (dyn Fn(Refusal) + Sync),
    /// Counts body bytes as they arrived on the wire.
    pub(crate) bytes: &'a (dyn Fn(usize) + Sync),
}

/// A request that passed admission: its format and decompressed body, and the memory they
/// hold, reserved on the memory gate until it is dropped.
pub(crate) struct Admitted {
    pub(crate) format: Format,
    pub(crate) body: Bytes,
    /// The gzip member `body` was inflated from, whole, as it arrived (see
    /// [`crate::body::Decoded`]).
    pub(crate) gzip: Option<Bytes>,
    pub(crate) reservation: Reservation,
}

/// What every POST on the HTTP port goes through before its body is looked at: method, bearer
/// token of the OTLP receivers (when `otlp_auth`; the partial-aggregates path checks its own
/// before), media type (JSON only when `json`), memory gate, content encoding, then the body
/// read within `max_body` and decompressed within the decompressed-size limit. A refusal is
/// counted and answered here.
pub(crate) async fn admit<B>(
    pipeline: &Pipeline,
    max_body: usize,
    req: Request<B>,
    json: bool,
    otlp_auth: bool,
    count: &Counting<'_>,
) -> Result<Admitted, Response<ResponseBody>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        (count.refused)(Refusal::MethodNotAllowed);
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(r);
    }
    if otlp_auth && !pipeline.authorized(req.headers()) {
        (count.refused)(Refusal::Unauthenticated);
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            "unauthenticated: send Authorization: Bearer <token>",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(r);
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
        Some("application/json") if json => Format::Json,
        other => {
            (count.refused)(Refusal::UnsupportedMediaType);
            let expected = if json {
                "application/x-protobuf or application/json"
            } else {
                "application/x-protobuf"
            };
            return Err(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "unsupported content-type {}: expected {expected}",
                    other.unwrap_or("(none)")
                ),
            ));
        }
    };
    let refuse = |e: ExportError| {
        (count.refused)(e.refusal());
        error_response(format, &e)
    };
    if let Err(e) = pipeline.admit_memory() {
        return Err(refuse(e));
    }
    let Some(encoding) = Encoding::parse(req.headers().get(header::CONTENT_ENCODING)) else {
        (count.refused)(Refusal::UnsupportedEncoding);
        return Err(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content-encoding: expected gzip, zstd, deflate or none",
        ));
    };
    let reservation = pipeline.reserve();
    // What a protobuf trace body's span records are expected to take is reserved with it.
    let ahead: fn(usize) -> usize = match (signal_for_path(req.uri().path()), format) {
        (Some(Signal::Traces), Format::Protobuf) => span_records_estimate,
        _ => |_| 0,
    };
    let raw = read_limited(
        req.into_body(),
        max_body,
        Announced::Header,
        ahead,
        &reservation,
    )
    .await
    .map_err(refuse)?;
    (count.bytes)(raw.len());
    let decoded = decompress_keeping(
        encoding,
        raw,
        pipeline.limits().max_decompressed_size,
        &reservation,
    )
    .await
    .map_err(refuse)?;
    Ok(Admitted {
        format,
        body: decoded.body,
        gzip: decoded.gzip,
        reservation,
    })
}

pub(crate) fn with_type(mut r: Response<ResponseBody>, format: Format) -> Response<ResponseBody> {
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

/// A plain-text answer with `status`.
pub(super) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
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
pub(crate) fn error_response(format: Format, e: &ExportError) -> Response<ResponseBody> {
    let (status, code) = match e {
        ExportError::Invalid(_)
        | ExportError::AttributeLimit(_)
        | ExportError::Unforwardable { .. } => (StatusCode::BAD_REQUEST, GrpcCode::InvalidArgument),
        ExportError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, GrpcCode::ResourceExhausted),
        ExportError::Backpressure(_) | ExportError::MemoryLimit(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, GrpcCode::Unavailable)
        }
    };
    let retry_after = match e {
        ExportError::Backpressure(d) | ExportError::MemoryLimit(d) => Some(*d),
        _ => None,
    };
    status_response(format, status, code, &e.to_string(), retry_after)
}

/// `status` with a `google.rpc.Status` body of `code` and `message` in `format`, and a
/// `Retry-After` in whole seconds (at least 1) when `retry_after` is set.
pub(crate) fn status_response(
    format: Format,
    status: StatusCode,
    code: GrpcCode,
    message: &str,
    retry_after: Option<std::time::Duration>,
) -> Response<ResponseBody> {
    let rpc = RpcStatus::new(code, message);
    let body = match format {
        Format::Protobuf => Bytes::from(rpc.encode_to_vec()),
        Format::Json => Bytes::from(
            serde_json::json!({ "code": rpc.code, "message": rpc.message, "details": [] })
                .to_string(),
        ),
    };
    let mut r = with_type(Response::new(ResponseBody::full(body)), format);
    *r.status_mut() = status;
    if let Some(d) = retry_after {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    r
}

#[cfg(test)]
mod tests;
