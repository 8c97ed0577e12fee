//! Request bodies: reading with a size limit, bounded decompression, and the response body type.

use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};

use crate::pipeline::ExportError;

/// Content encodings the receivers accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    Zstd,
    Deflate,
}

impl Encoding {
    /// Parses a `Content-Encoding` / `grpc-encoding` value; `None` for unsupported ones.
    pub(crate) fn parse(value: Option<&http::HeaderValue>) -> Option<Encoding> {
        let Some(v) = value else {
            return Some(Encoding::Identity);
        };
        match v.to_str().ok()?.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Encoding::Identity),
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "zstd" => Some(Encoding::Zstd),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        }
    }
}

/// Reads a whole body, refusing one larger than `limit` bytes as it arrives.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ExportError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ExportError::TooLarge(format!(
                    "request body is larger than the limit of {limit} bytes"
                )))
            } else {
                Err(ExportError::Invalid(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
    }
}

/// Decompresses `data`, refusing output larger than `limit` bytes (a decompression bomb is
/// stopped after `limit` bytes of output, never expanded in full).
pub(crate) fn decompress(
    encoding: Encoding,
    data: Bytes,
    limit: usize,
) -> Result<Bytes, ExportError> {
    fn bounded(
        mut reader: impl Read,
        limit: usize,
        what: &str,
        hint: usize,
    ) -> Result<Bytes, ExportError> {
        let mut out = Vec::with_capacity(hint.min(limit).min(8 << 20));
        let n = reader
            .by_ref()
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ExportError::Invalid(format!("invalid {what} body: {e}")))?;
        if n > limit {
            return Err(ExportError::TooLarge(format!(
                "{what} body decompresses to more than the limit of {limit} bytes"
            )));
        }
        Ok(Bytes::from(out))
    }
    let hint = data.len().saturating_mul(4);
    match encoding {
        Encoding::Identity => {
            if data.len() > limit {
                return Err(ExportError::TooLarge(format!(
                    "body is larger than the limit of {limit} bytes"
                )));
            }
            Ok(data)
        }
        Encoding::Gzip => bounded(
            flate2::read::MultiGzDecoder::new(&data[..]),
            limit,
            "gzip",
            hint,
        ),
        Encoding::Deflate => bounded(
            flate2::read::ZlibDecoder::new(&data[..]),
            limit,
            "deflate",
            hint,
        ),
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&data[..])
                .map_err(|e| ExportError::Invalid(format!("invalid zstd body: {e}")))?;
            bounded(decoder, limit, "zstd", hint)
        }
    }
}

/// A response body: at most one data frame, then optional trailers (gRPC status).
#[derive(Debug, Default)]
pub struct ResponseBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl ResponseBody {
    /// A body of `data` alone.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        ResponseBody {
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody::default()
    }

    /// `data` followed by `trailers`.
    pub(crate) fn with_trailers(data: Bytes, trailers: HeaderMap) -> Self {
        ResponseBody {
            data: Some(data),
            trailers: Some(trailers),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, &self.trailers) {
            (Some(d), None) => SizeHint::with_exact(d.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (d, Some(_)) => {
                let mut h = SizeHint::new();
                h.set_lower(d.as_ref().map_or(0, |d| d.len() as u64));
                h
            }
        }
    }
}
