use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use super::{Announced, Encoding, decompress, read_limited, whole_gzip_size};
use crate::pipeline::{ExportError, InFlight, MemoryGate};
use crate::test_support::{Harness, gzip, harness};

/// A body arriving in `frames`, announcing `exact` bytes when set, counting its polls.
struct Frames {
    frames: VecDeque<Bytes>,
    exact: Option<u64>,
    polled: Arc<AtomicUsize>,
}

impl Frames {
    fn new(frames: &[&[u8]], exact: Option<u64>) -> (Frames, Arc<AtomicUsize>) {
        let polled = Arc::new(AtomicUsize::new(0));
        let body = Frames {
            frames: frames.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
            exact,
            polled: polled.clone(),
        };
        (body, polled)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        this.polled.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(this.frames.pop_front().map(|f| Ok(Frame::data(f))))
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn nothing_ahead(_: usize) -> usize {
    0
}

/// A pipeline whose requests share a memory budget of `cap` bytes, and the budget.
fn gated(cap: usize) -> (Harness, Arc<InFlight>) {
    let in_flight = Arc::new(InFlight::new(cap));
    let gate = MemoryGate {
        over: Arc::new(AtomicBool::new(false)),
        retry_after: Duration::from_secs(1),
        in_flight: in_flight.clone(),
    };
    (harness(|p| p.with_memory_gate(gate)), in_flight)
}

#[tokio::test]
async fn a_body_of_one_frame_is_kept_as_it_arrived() {
    let data = Bytes::from_static(b"one frame");
    let r = Default::default();
    let out = read_limited(
        Full::new(data.clone()),
        100,
        Announced::Header,
        nothing_ahead,
        &r,
    )
    .await
    .unwrap();
    assert_eq!(out, data);
    assert_eq!(out.as_ptr(), data.as_ptr(), "not copied");
}

#[tokio::test]
async fn frames_are_joined_in_order() {
    let (body, _) = Frames::new(&[b"ab", b"", b"cd", b"e"], None);
    let r = Default::default();
    let out = read_limited(body, 5, Announced::Header, nothing_ahead, &r)
        .await
        .unwrap();
    assert_eq!(&out[..], b"abcde");
}

#[tokio::test]
async fn an_announced_size_over_the_limit_is_refused_before_reading() {
    let (body, polled) = Frames::new(&[&[0; 10]], Some(101));
    let r = Default::default();
    let err = read_limited(body, 100, Announced::Header, nothing_ahead, &r)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    assert_eq!(polled.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_it_arrives() {
    // Unannounced, or announced smaller than it is: the bytes that arrive count.
    for exact in [None, Some(10)] {
        let frame: &[u8] = &[1; 10];
        let (body, polled) = Frames::new(&[frame; 5], exact);
        let r = Default::default();
        let err = read_limited(body, 35, Announced::Header, nothing_ahead, &r)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ExportError::TooLarge("request body is larger than the limit of 35 bytes".into())
        );
        assert_eq!(
            polled.load(Ordering::Relaxed),
            4,
            "stops at the frame past it"
        );
    }
}

#[tokio::test]
async fn a_grpc_prefix_reserves_the_message_at_once_or_refuses_it_unread() {
    let (h, budget) = gated(3000);
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&1000u32.to_be_bytes());
    let rest = [7u8; 1000];

    let r = h.pipeline.reserve();
    let (body, _) = Frames::new(&[&prefix, &rest[..500], &rest[500..]], None);
    let out = read_limited(body, 8192, Announced::GrpcPrefix, |n| n, &r)
        .await
        .unwrap();
    assert_eq!(out.len(), 1005);
    // The message and what decoding it is expected to take, reserved from the prefix on.
    assert_eq!(r.bytes(), 2010);

    // Another request finds too little left: refused before the rest of its body is read.
    let other = h.pipeline.reserve();
    let (body, polled) = Frames::new(&[&prefix, &rest], None);
    let err = read_limited(body, 8192, Announced::GrpcPrefix, |n| n, &other)
        .await
        .unwrap_err();
    assert_eq!(err, ExportError::MemoryLimit(Duration::from_secs(1)));
    assert_eq!(polled.load(Ordering::Relaxed), 1);
    assert_eq!(budget.held(), 2010, "the refused request holds nothing");
    drop(r);
    drop(other);
    assert_eq!(budget.held(), 0);
}

#[tokio::test]
async fn a_body_larger_than_the_whole_budget_is_too_large_not_retryable() {
    let (h, _) = gated(1000);
    let r = h.pipeline.reserve();
    let (body, _) = Frames::new(&[&[0; 10]], Some(2000));
    let err = read_limited(body, 4096, Announced::Header, nothing_ahead, &r)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(ref m) if m.contains("memory.max_in_flight")));
}

#[tokio::test]
async fn decompression_stops_at_the_limit_and_reports_bad_input() {
    let r = Default::default();
    let data = vec![3u8; 1000];
    let exact = decompress(Encoding::Gzip, gzip(&data), 1000, &r)
        .await
        .unwrap();
    assert_eq!(&exact[..], &data[..]);
    let err = decompress(Encoding::Gzip, gzip(&data), 999, &r)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExportError::TooLarge("gzip body decompresses to more than the limit of 999 bytes".into())
    );
    let err = decompress(Encoding::Gzip, Bytes::from_static(b"plain"), 1000, &r)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Invalid(ref m) if m.starts_with("invalid gzip body")));
    let err = decompress(Encoding::Identity, Bytes::from(data.clone()), 999, &r)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    let same = Bytes::from(data);
    let out = decompress(Encoding::Identity, same.clone(), 1000, &r)
        .await
        .unwrap();
    assert_eq!(out.as_ptr(), same.as_ptr(), "identity is not copied");
}

#[tokio::test]
async fn a_gzip_trailer_that_understates_the_size_is_refused_not_truncated() {
    let r = Default::default();
    let data = vec![5u8; 5000];
    let mut lying = gzip(&data).to_vec();
    let n = lying.len();
    lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
    // The output is sized from the trailer first, then grows; the decoder checks the
    // trailer at the end.
    let err = decompress(Encoding::Gzip, Bytes::from(lying), 8000, &r)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExportError::Invalid(ref m) if m.starts_with("invalid gzip body")),
        "{err:?}"
    );
}

#[test]
fn encodings_parse_as_the_receivers_accept_them() {
    let parse = |v: &'static str| Encoding::parse(Some(&HeaderValue::from_static(v)));
    assert_eq!(Encoding::parse(None), Some(Encoding::Identity));
    for (v, e) in [
        ("", Some(Encoding::Identity)),
        ("identity", Some(Encoding::Identity)),
        ("gzip", Some(Encoding::Gzip)),
        (" GZip ", Some(Encoding::Gzip)),
        ("x-gzip", Some(Encoding::Gzip)),
        ("zstd", Some(Encoding::Zstd)),
        ("deflate", Some(Encoding::Deflate)),
        ("br", None),
        ("gzip, zstd", None),
    ] {
        assert_eq!(parse(v), e, "{v:?}");
    }
}

/// `gz` with its trailer's size replaced by `size`.
fn with_trailer_size(gz: &[u8], size: u32) -> Bytes {
    let mut out = gz.to_vec();
    let n = out.len();
    out[n - 4..].copy_from_slice(&size.to_le_bytes());
    Bytes::from(out)
}

#[tokio::test]
async fn a_gzip_trailer_over_the_limit_is_streamed_and_bounded() {
    let (h, budget) = gated(1 << 20);
    let data = vec![4u8; 5000];
    // Honest and over the limit: refused after the limit, not allocated at the trailer's size.
    let r = h.pipeline.reserve();
    let err = decompress(Encoding::Gzip, gzip(&data), 4000, &r)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ExportError::TooLarge("gzip body decompresses to more than the limit of 4000 bytes".into())
    );
    assert!(r.bytes() <= 4001, "reserved {}", r.bytes());
    drop(r);
    // Claiming more than the limit for a small body: nothing of the claim is reserved, and the
    // trailer is found wrong at the end.
    let r = h.pipeline.reserve();
    let err = decompress(
        Encoding::Gzip,
        with_trailer_size(&gzip(&data), 900_000),
        8000,
        &r,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ExportError::Invalid(ref m) if m.starts_with("invalid gzip body")),
        "{err:?}"
    );
    assert!(r.bytes() <= 8001, "reserved {}", r.bytes());
    drop(r);
    assert_eq!(budget.held(), 0);
}

#[tokio::test]
async fn a_gzip_trailer_that_understates_the_size_stays_bounded() {
    let (h, _) = gated(1 << 20);
    let data = vec![5u8; 50_000];
    let r = h.pipeline.reserve();
    let err = decompress(
        Encoding::Gzip,
        with_trailer_size(&gzip(&data), 10),
        20_000,
        &r,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ExportError::TooLarge(
            "gzip body decompresses to more than the limit of 20000 bytes".into()
        )
    );
    assert!(r.bytes() <= 20_001, "reserved {}", r.bytes());
}

#[tokio::test]
async fn gzip_members_are_all_inflated() {
    let r = Default::default();
    let a: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let b = vec![9u8; 700];
    // Members of different sizes, and of the same size and content (the last trailer matches
    // what the first member alone inflates to).
    for (first, second) in [(&a, &b), (&a, &a), (&b, &b)] {
        let mut body = gzip(first).to_vec();
        body.extend_from_slice(&gzip(second));
        let out = decompress(Encoding::Gzip, Bytes::from(body), 1 << 20, &r)
            .await
            .unwrap();
        let mut want = first.clone();
        want.extend_from_slice(second);
        assert_eq!(out.len(), want.len());
        assert!(out[..] == want[..]);
    }
}

#[tokio::test]
async fn a_corrupt_gzip_body_is_refused_with_a_clear_error() {
    let r = Default::default();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let gz = gzip(&data);
    // The stream damaged in the middle, the checksum wrong, the body cut short.
    let mut middle = gz.to_vec();
    let mid = middle.len() / 2;
    for b in &mut middle[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let mut crc = gz.to_vec();
    let n = crc.len();
    crc[n - 8] ^= 1;
    let mut cut = gz.to_vec();
    cut.drain(mid..mid + 16);
    for body in [middle, crc, cut] {
        let err = decompress(Encoding::Gzip, Bytes::from(body), 1 << 20, &r)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ExportError::Invalid(ref m) if m.starts_with("invalid gzip body")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_large_gzip_body_inflates_whole_off_the_worker() {
    // Larger than what is inflated on the async worker: on a current-thread runtime this
    // still completes (the work goes to the blocking pool).
    let r = Default::default();
    let data: Vec<u8> = (0..(super::INLINE_DECOMPRESS as u32 + 4096))
        .map(|i| (i % 13) as u8)
        .collect();
    let out = decompress(Encoding::Gzip, gzip(&data), 4 << 20, &r)
        .await
        .unwrap();
    assert!(out[..] == data[..]);
}

#[test]
fn only_one_member_within_the_limit_is_inflated_whole() {
    let data = vec![6u8; 3000];
    let one = gzip(&data);
    assert_eq!(whole_gzip_size(&one, 3000), Some(3000));
    assert_eq!(whole_gzip_size(&one, 2999), None, "over the limit");
    let mut two = one.to_vec();
    two.extend_from_slice(&one);
    assert_eq!(whole_gzip_size(&two, 1 << 20), None, "two members");
    assert_eq!(whole_gzip_size(b"not gzip at all, not gzip", 1 << 20), None);
}
