//! criterion bench: what an overloaded receiver spends per refused request.
//!
//! Two threads export trace requests to one [`Pipeline`] whose forward queue is full, so every
//! request is refused with `reason="queue_full"` and counted. The time criterion reports is
//! the process CPU time per refusal (both threads together), so its throughput is refusals per
//! CPU-second. The request is empty, so what is measured is the refusal and its accounting,
//! not the scan. `pipeline_registry`: the registry holds only the pipeline's own series;
//! `busy_registry`: it also holds 200 other series, as in a running process.
//!
//! Against what an accepted request costs: `request_512_*` export the load generator's
//! 512-span request (about 200 KB). `accepted`: forwarding off, every request scanned and
//! recorded. `refused`: the queue is full and says so when asked before the scan
//! (`ForwardSink::would_refuse`). `refused_after_scan`: the queue refuses only when the request
//! is queued, after the scan (what a refusal cost before the early check). Their ratio is
//! what a refused request costs next to an accepted one.
//!
//! `cargo bench -p slipstream-benches --bench refusals -- --measurement-time 3 --warm-up-time 1`
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cpu_time::ProcessTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipstream_core::telemetry::names;
use slipstream_core::{Backpressure, ForwardSink, Registry, ScanSpec, Signal, SpanRecord};
use slipstream_receiver::scanner::AttributeLimits;
use slipstream_receiver::{Limits, Pipeline, Transport};

const THREADS: u64 = 2;

/// A forward queue that is always full.
struct Full;

impl ForwardSink for Full {
    fn forward(&self, _signal: Signal, _body: Bytes) -> Result<(), Backpressure> {
        Err(Backpressure {
            retry_after: Duration::from_secs(1),
        })
    }

    fn would_refuse(&self, _signal: Signal, _len: usize) -> Option<Backpressure> {
        Some(Backpressure {
            retry_after: Duration::from_secs(1),
        })
    }
}

/// A forward queue that is always full but refuses only when a request is queued.
struct FullLate;

impl ForwardSink for FullLate {
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure> {
        Full.forward(signal, body)
    }
}

struct Discard;

impl slipstream_core::ObservationSink for Discard {
    fn record(&self, _spans: &[SpanRecord<'_>]) {}
}

fn pipeline(registry: Registry) -> Pipeline {
    pipeline_to(Arc::new(Full), registry)
}

fn pipeline_to(forward: Arc<dyn ForwardSink>, registry: Registry) -> Pipeline {
    let limits = Limits {
        max_decompressed_size: 1 << 20,
        max_spans_per_request: 0,
        attributes: AttributeLimits::default(),
    };
    Pipeline::new(
        forward,
        Arc::new(Discard),
        ScanSpec::default(),
        limits,
        registry,
    )
}

/// CPU time of the whole process for `iters` refusals, spread over [`THREADS`] threads.
fn refuse(pipeline: &Pipeline, iters: u64) -> Duration {
    export(pipeline, &Bytes::new(), false, iters)
}

/// CPU time of the whole process for `iters` exports of `body`, spread over [`THREADS`]
/// threads, each accepted or refused as `accepted` says.
fn export(pipeline: &Pipeline, body: &Bytes, accepted: bool, iters: u64) -> Duration {
    let start = ProcessTime::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let n = iters / THREADS + u64::from(t < iters % THREADS);
            s.spawn(move || {
                for _ in 0..n {
                    let r = pipeline.export(Signal::Traces, Transport::Grpc, body.clone());
                    assert_eq!(r.is_ok(), accepted, "{r:?}");
                }
            });
        }
    });
    start.elapsed()
}

fn refusals(c: &mut Criterion) {
    let mut group = c.benchmark_group("refusals");
    group.throughput(Throughput::Elements(1));

    let own = pipeline(Registry::new());
    group.bench_function("pipeline_registry", |b| b.iter_custom(|n| refuse(&own, n)));

    let registry = Registry::new();
    for i in 0..200 {
        registry.counter(&names::ACCEPT_ERRORS, &["bench", &format!("other_{i}")]);
    }
    let busy = pipeline(registry);
    group.bench_function("busy_registry", |b| b.iter_custom(|n| refuse(&busy, n)));

    let body = slipstream_benches::Workload::default()
        .pool(1, 1_700_000_000_000_000_000, 7)
        .pop()
        .expect("one request");
    let open = pipeline_to(Arc::new(()), Registry::new());
    group.bench_function("request_512_accepted", |b| {
        b.iter_custom(|n| export(&open, &body, true, n))
    });
    group.bench_function("request_512_refused", |b| {
        b.iter_custom(|n| export(&own, &body, false, n))
    });
    let late = pipeline_to(Arc::new(FullLate), Registry::new());
    group.bench_function("request_512_refused_after_scan", |b| {
        b.iter_custom(|n| export(&late, &body, false, n))
    });
    group.finish();
}

criterion_group!(benches, refusals);
criterion_main!(benches);
