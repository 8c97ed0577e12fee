//! Request bodies: reading with a size limit, bounded decompression, and the response body type.

use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::pipeline::{ExportError, Reservation};

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

/// Decompressed output produced on the async worker before the rest of a decompression moves
/// to a blocking thread: small enough that a worker is held well under a millisecond, large
/// enough that the `spawn_blocking` round trip is paid only by bodies it adds little to
/// (`block_in_place` is not used: it panics on a current-thread runtime and stalls whatever
/// else the worker's task drives). The measurements behind it are in `docs/benchmarks.md`,
/// "Receiver: work handed to blocking threads".
pub(crate) const INLINE_DECOMPRESS: usize = 1 << 20;

/// How a request body announces its size before it has all arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announced {
    /// By its `Content-Length`, when it has one.
    Header,
    /// Also by a gRPC message prefix (a flag byte and a 4-byte length) at its start.
    GrpcPrefix,
}

/// Reads a whole body, refusing one larger than `limit` bytes as it arrives, with its bytes
/// reserved on `reservation` before they are kept. A body whose size is announced (see
/// [`Announced`]) reserves that size at once, all or nothing, with `ahead(size)` more for what
/// decoding it is expected to take: in a burst, the requests that fit are read and decoded in
/// full and the others refused before their bodies are read, rather than all holding part of
/// the budget and none getting enough. A body of one frame is kept as it
/// arrived; one of several is copied into one buffer of the announced size (or grown in
/// steps, each reserved first). The reservation covers the larger of the frame kept and the
/// buffer, not the one frame that briefly overlaps them.
pub(crate) async fn read_limited<B>(
    body: B,
    limit: usize,
    announced: Announced,
    ahead: fn(usize) -> usize,
    reservation: &Reservation,
) -> Result<Bytes, ExportError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        ExportError::TooLarge(format!(
            "request body is larger than the limit of {limit} bytes"
        ))
    };
    let declared = body.size_hint().exact();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut declared = declared.map_or(0, |n| n as usize);
    // Bytes reserved for the body so far.
    let mut held = 0usize;
    let hold = |n: usize, held: &mut usize| -> Result<(), ExportError> {
        if n > *held {
            reservation.grow(n - *held)?;
            *held = n;
        }
        Ok(())
    };
    hold(declared, &mut held)?;
    if declared > 0 {
        reservation.prepay(ahead(declared))?;
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ExportError::Invalid(format!("could not read the request body: {}", e.into()))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let len = first.as_ref().map_or(joined.len(), Bytes::len);
        if len + data.len() > limit {
            return Err(too_large());
        }
        if first.is_none() && joined.capacity() == 0 {
            if declared == 0
                && announced == Announced::GrpcPrefix
                && let [_, a, b, c, d, ..] = data[..]
            {
                // The message and its prefix; a larger claim is refused when unframed.
                declared = (u32::from_be_bytes([a, b, c, d]) as usize)
                    .saturating_add(5)
                    .min(limit);
                hold(declared, &mut held)?;
                reservation.prepay(ahead(declared))?;
            }
            hold(data.len(), &mut held)?;
            first = Some(data);
            continue;
        }
        let need = len + data.len();
        if joined.capacity() < need {
            let want = if joined.capacity() == 0 && declared >= need {
                declared
            } else {
                need.max(
                    joined
                        .capacity()
                        .saturating_add(joined.capacity().clamp(64 << 10, 4 << 20)),
                )
                .min(limit)
            };
            hold(want, &mut held)?;
            joined.reserve_exact(want - joined.len());
        }
        if let Some(f) = first.take() {
            joined.extend_from_slice(&f);
        }
        joined.extend_from_slice(&data);
    }
    Ok(match first {
        Some(f) => f,
        None => Bytes::from(joined),
    })
}

/// Decompresses `data`, refusing output larger than `limit` bytes (a decompression bomb is
/// stopped after `limit` bytes of output, never expanded in full). The output buffer is
/// reserved on `reservation` before each time it grows; past [`INLINE_DECOMPRESS`] bytes of
/// output the rest runs on a blocking thread, so a large body does not hold an async worker.
///
/// A gzip body of one member whose trailer announces a size within the limit is inflated
/// whole by libdeflate into a buffer of that size (in three quarters of the CPU of streaming
/// it); one that is not, or that libdeflate cannot inflate into that buffer, is streamed by
/// flate2, which enforces the limit and gives the errors. Bodies announcing more than
/// [`INLINE_DECOMPRESS`] are inflated whole on a blocking thread. (The receivers call
/// [`decompress_keeping`], which also keeps the gzip member.)
#[cfg(test)]
pub(crate) async fn decompress(
    encoding: Encoding,
    data: Bytes,
    limit: usize,
    reservation: &Reservation,
) -> Result<Bytes, ExportError> {
    Ok(decompress_keeping(encoding, data, limit, reservation)
        .await?
        .body)
}

/// A decompressed body, and the gzip member it came from when that member was inflated whole
/// (one member whose trailer matches its output): those bytes, as they arrived, can be
/// forwarded as the gzip encoding of `body` without compressing it again.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) body: Bytes,
    pub(crate) gzip: Option<Bytes>,
}

/// [`decompress`], keeping the gzip member (see [`Decoded`]); no copy, the same `Bytes`.
pub(crate) async fn decompress_keeping(
    encoding: Encoding,
    data: Bytes,
    limit: usize,
    reservation: &Reservation,
) -> Result<Decoded, ExportError> {
    let plain = |body| Decoded { body, gzip: None };
    let whole = match encoding {
        Encoding::Gzip => whole_gzip_size(&data, limit),
        _ => None,
    };
    let mut inflate = match Inflate::new(encoding, data, limit)? {
        Ok(inflate) => inflate,
        Err(identity) => return Ok(plain(identity)),
    };
    if let Some(size) = whole {
        if size > INLINE_DECOMPRESS {
            let reservation = reservation.clone();
            return tokio::task::spawn_blocking(move || {
                if inflate.whole(size, &reservation)? {
                    return Ok(inflate.finish_whole());
                }
                inflate.run(usize::MAX, &reservation)?;
                Ok(plain(inflate.finish()))
            })
            .await
            .map_err(|e| ExportError::Invalid(format!("decompression failed: {e}")))?;
        }
        if inflate.whole(size, reservation)? {
            return Ok(inflate.finish_whole());
        }
    }
    if inflate.run(INLINE_DECOMPRESS, reservation)? {
        return Ok(plain(inflate.finish()));
    }
    let reservation = reservation.clone();
    tokio::task::spawn_blocking(move || {
        inflate.run(usize::MAX, &reservation)?;
        Ok(plain(inflate.finish()))
    })
    .await
    .map_err(|e| ExportError::Invalid(format!("decompression failed: {e}")))?
}

/// The size a gzip body announces in its trailer, when it can be inflated whole: it is within
/// `limit`, and the body holds one member. A second member would start with the gzip magic and
/// method (`1f 8b 08`); compressed data holds those three bytes now and then by chance, and
/// such a body is streamed, which is only slower. (libdeflate inflates one member and checks
/// that member's own trailer, so the size alone cannot tell one member from several of equal
/// size.)
fn whole_gzip_size(data: &[u8], limit: usize) -> Option<usize> {
    const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
    let n = data.len();
    if n < 18 || data[..3] != MAGIC {
        return None;
    }
    let size = u32::from_le_bytes([data[n - 4], data[n - 3], data[n - 2], data[n - 1]]) as usize;
    if size > limit || memchr::memmem::find(&data[10..n - 8], &MAGIC).is_some() {
        return None;
    }
    Some(size)
}

thread_local! {
    /// libdeflate's inflate state, one per thread (allocated once, not per request).
    static GUNZIP: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

/// A decompression in progress.
struct Inflate {
    reader: Box<dyn Read + Send>,
    out: Vec<u8>,
    limit: usize,
    what: &'static str,
    /// The output size the body announces (gzip's trailer), 0 when unknown.
    hint: usize,
    /// The compressed body, for an inflate of it whole.
    data: Bytes,
}

impl Inflate {
    /// A decompression of `data`; `Ok(Err(data))` for an identity body within the limit.
    fn new(
        encoding: Encoding,
        data: Bytes,
        limit: usize,
    ) -> Result<Result<Inflate, Bytes>, ExportError> {
        // The body is in memory, so the decoders read it in place (`bufread`), not through a
        // buffer of their own that each request would allocate, zero and copy into.
        let reader = data.clone().reader();
        let (reader, what): (Box<dyn Read + Send>, _) = match encoding {
            Encoding::Identity => {
                if data.len() > limit {
                    return Err(ExportError::TooLarge(format!(
                        "body is larger than the limit of {limit} bytes"
                    )));
                }
                return Ok(Err(data));
            }
            Encoding::Gzip => (
                Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
                "gzip",
            ),
            Encoding::Deflate => (
                Box::new(flate2::bufread::ZlibDecoder::new(reader)),
                "deflate",
            ),
            Encoding::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(reader)
                    .map_err(|e| ExportError::Invalid(format!("invalid zstd body: {e}")))?;
                (Box::new(decoder), "zstd")
            }
        };
        // A gzip member ends with its uncompressed size (mod 2^32): when it is honest the
        // output is allocated once, at its size; when not, the buffer grows in steps.
        let hint = match (encoding, data.len()) {
            (Encoding::Gzip, n) if n >= 18 => {
                let t = &data[n - 4..];
                u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize
            }
            _ => 0,
        };
        Ok(Ok(Inflate {
            reader,
            out: Vec::new(),
            limit,
            what,
            hint,
            data,
        }))
    }

    /// Inflates a one-member gzip body whole into a buffer of the `size` its trailer announces
    /// (and one byte more, as [`Inflate::run`] sizes it), reserved first: `Ok(true)` when the
    /// output is that size. Otherwise (the trailer lies, the body is corrupt) `Ok(false)`, and
    /// the buffer, emptied, is left for [`Inflate::run`] to stream into from the start.
    fn whole(&mut self, size: usize, reservation: &Reservation) -> Result<bool, ExportError> {
        let want = size.saturating_add(1).min(self.limit + 1);
        reservation.grow(want)?;
        self.out.reserve_exact(want);
        self.out.resize(want, 0);
        let data = &self.data;
        let inflated = GUNZIP.with_borrow_mut(|d| d.gzip_decompress(data, &mut self.out));
        if let Ok(n) = inflated
            && n == size
        {
            self.out.truncate(n);
            return Ok(true);
        }
        self.out.clear();
        Ok(false)
    }

    /// Decompresses until the end (`Ok(true)`) or until at least `upto` bytes of output
    /// (`Ok(false)`), reserving the output buffer before it grows.
    fn run(&mut self, upto: usize, reservation: &Reservation) -> Result<bool, ExportError> {
        loop {
            if self.out.len() >= upto {
                return Ok(false);
            }
            if self.out.len() == self.out.capacity() {
                let cap = self.out.capacity();
                // The announced size and one byte more (to see the end without growing),
                // else steps that double up to 4 MiB, then add 4 MiB: never more than one
                // byte past the limit, to tell "exactly the limit" from "more".
                let want = if cap == 0 && self.hint > 0 {
                    self.hint.saturating_add(1)
                } else {
                    cap.saturating_add(cap.clamp(64 << 10, 4 << 20))
                }
                .min(self.limit + 1);
                if want <= cap {
                    return Err(ExportError::TooLarge(format!(
                        "{} body decompresses to more than the limit of {} bytes",
                        self.what, self.limit
                    )));
                }
                reservation.grow(want - cap)?;
                self.out.reserve_exact(want - self.out.len());
            }
            let room = self.out.capacity() - self.out.len();
            let n = self
                .reader
                .by_ref()
                .take(room as u64)
                .read_to_end(&mut self.out)
                .map_err(|e| ExportError::Invalid(format!("invalid {} body: {e}", self.what)))?;
            if n < room {
                if self.out.len() > self.limit {
                    return Err(ExportError::TooLarge(format!(
                        "{} body decompresses to more than the limit of {} bytes",
                        self.what, self.limit
                    )));
                }
                return Ok(true);
            }
        }
    }

    fn finish(self) -> Bytes {
        Bytes::from(self.out)
    }

    /// The output of [`Inflate::whole`], with the member it inflated.
    fn finish_whole(self) -> Decoded {
        Decoded {
            body: Bytes::from(self.out),
            gzip: Some(self.data),
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

#[cfg(test)]
mod tests;
