//! criterion bench: what compressing and decompressing one 512-span trace request costs.
//!
//! The request is the load generator's (`Workload::default()`: 512 spans of about 390 bytes
//! each, protobuf). `inflate`: a gzip body as the load generator sends it (deflate level 1),
//! decompressed the way the receiver streams one (a `MultiGzDecoder` into a buffer of the
//! trailer's size); `inflate_libdeflate`: the same body inflated whole by libdeflate, as the
//! receiver does for a one-member body whose trailer is within the limit. `gzip_N` and
//! `zstd_N`: the body compressed at level N into a buffer of a quarter of its size, as the
//! forward exporter does (a new compressor each time: the exporter keeps
//! one per thread, so it pays a little less). Time is the thread's CPU time (other work on the
//! machine does not count) and throughput is in spans, so criterion's figure is spans per
//! CPU-second of one core. The compressed size of each level is printed once, on stderr, for
//! the ratio.
//!
//! `gzip_1_kept`: level 1 with one flate2 state reset per request, as the forward exporter
//! keeps one per thread; `libdeflate_N`: libdeflate at level N with its compressor kept, into
//! a scratch buffer of the bound kept with it, the compressed bytes copied out (what the
//! exporter would do with it).
//!
//! The gzip backend is flate2's, chosen workspace-wide by its feature in the workspace
//! `Cargo.toml`; compare two backends with `--save-baseline` on one and `--baseline` on the
//! other.
//!
//! `cargo bench -p slipstream-benches --bench compression -- --measurement-time 3 --warm-up-time 1`
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use cpu_time::ThreadTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipstream_benches::Workload;

/// The request's body, protobuf.
fn request() -> Bytes {
    let workload = Workload::default();
    workload
        .pool(1, 1_700_000_000_000_000_000, 7)
        .pop()
        .expect("one request")
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(level),
    );
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fn zstd(data: &[u8], level: i32) -> Vec<u8> {
    zstd::bulk::compress(data, level).expect("compressing into a Vec")
}

/// gzip at level 1 through a kept flate2 state, as the forward exporter compresses.
fn gzip_kept(deflate: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
    deflate.reset();
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
    loop {
        let read = deflate.total_in() as usize;
        let status = deflate
            .compress_vec(&data[read..], &mut out, flate2::FlushCompress::Finish)
            .expect("deflate of a whole buffer");
        if status == flate2::Status::StreamEnd {
            break;
        }
        out.reserve(out.capacity().max(4096));
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// gzip through a kept libdeflate compressor into a kept scratch buffer, copied out.
fn gzip_libdeflate(c: &mut libdeflater::Compressor, scratch: &mut Vec<u8>, data: &[u8]) -> Vec<u8> {
    let bound = c.gzip_compress_bound(data.len());
    if scratch.len() < bound {
        scratch.resize(bound, 0);
    }
    let n = c.gzip_compress(data, scratch).expect("the bound fits");
    scratch[..n].to_vec()
}

/// Inflates `gz` as the receiver does: one allocation of the trailer's size, then reads.
fn gunzip(gz: &[u8]) -> Vec<u8> {
    let n = gz.len();
    let hint = u32::from_le_bytes([gz[n - 4], gz[n - 3], gz[n - 2], gz[n - 1]]) as usize;
    let mut out = Vec::with_capacity(hint + 1);
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// Inflates `gz` as the receiver does for a one-member body: the body searched for a second
/// member's header, then libdeflate into a zeroed buffer of the trailer's size and one byte.
fn gunzip_whole(d: &mut libdeflater::Decompressor, gz: &[u8]) -> Vec<u8> {
    let n = gz.len();
    let hint = u32::from_le_bytes([gz[n - 4], gz[n - 3], gz[n - 2], gz[n - 1]]) as usize;
    assert!(memchr::memmem::find(&gz[10..n - 8], &[0x1f, 0x8b, 0x08]).is_none());
    let mut out = vec![0; hint + 1];
    let len = d.gzip_decompress(gz, &mut out).expect("valid gzip");
    out.truncate(len);
    out
}

/// The thread's CPU time for `iters` runs of `f`.
fn cpu<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let start = ThreadTime::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed()
}

fn compression(c: &mut Criterion) {
    let body = request();
    let spans = Workload::default().spans_per_request as u64;
    let mut group = c.benchmark_group("compression");
    group.throughput(Throughput::Elements(spans));

    let gz = gzip(&body, 1);
    assert_eq!(gunzip(&gz), body);
    group.bench_function("inflate", |b| {
        b.iter_custom(|n| cpu(n, || gunzip(black_box(&gz))))
    });

    let mut d = libdeflater::Decompressor::new();
    assert_eq!(gunzip_whole(&mut d, &gz), body);
    group.bench_function("inflate_libdeflate", |b| {
        b.iter_custom(|n| cpu(n, || gunzip_whole(&mut d, black_box(&gz))))
    });

    let zs = zstd(&body, 1);
    group.bench_function("zstd_decode", |b| {
        b.iter_custom(|n| {
            cpu(n, || {
                zstd::bulk::decompress(black_box(&zs[..]), body.len()).expect("valid zstd")
            })
        })
    });

    for level in [1, 2, 3, 6] {
        eprintln!(
            "gzip level {level}: {} -> {} bytes ({:.1}x)",
            body.len(),
            gzip(&body, level).len(),
            body.len() as f64 / gzip(&body, level).len() as f64
        );
        group.bench_function(format!("gzip_{level}"), |b| {
            b.iter_custom(|n| cpu(n, || gzip(black_box(&body), level)))
        });
    }
    let mut deflate = flate2::Compress::new(flate2::Compression::fast(), false);
    assert_eq!(gunzip(&gzip_kept(&mut deflate, &body)), body);
    group.bench_function("gzip_1_kept", |b| {
        b.iter_custom(|n| cpu(n, || gzip_kept(&mut deflate, black_box(&body))))
    });
    for level in [1, 2, 3, 6] {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
        let mut scratch = Vec::new();
        let out = gzip_libdeflate(&mut c, &mut scratch, &body);
        assert_eq!(gunzip(&out), body);
        eprintln!(
            "libdeflate level {level}: {} -> {} bytes ({:.1}x)",
            body.len(),
            out.len(),
            body.len() as f64 / out.len() as f64
        );
        group.bench_function(format!("libdeflate_{level}"), |b| {
            b.iter_custom(|n| {
                cpu(n, || {
                    gzip_libdeflate(&mut c, &mut scratch, black_box(&body))
                })
            })
        });
    }
    for level in [-1, 1, 3] {
        eprintln!(
            "zstd level {level}: {} -> {} bytes ({:.1}x)",
            body.len(),
            zstd(&body, level).len(),
            body.len() as f64 / zstd(&body, level).len() as f64
        );
        group.bench_function(format!("zstd_{level}"), |b| {
            b.iter_custom(|n| cpu(n, || zstd(black_box(&body), level)))
        });
    }
    group.finish();
}

criterion_group!(benches, compression);
criterion_main!(benches);
