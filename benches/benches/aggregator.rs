//! criterion bench: the aggregator's hot path and its tick.
//!
//! `record`: requests of 512 server spans, each span of a series drawn at random among 1,000
//! or 100,000 (`service.name` x `deployment.environment`), so every span pays a full series
//! lookup (a real request shares one resource and hits the per-request cache instead). Each
//! series has its own typical latency and spreads over three octaves above it. One or
//! two threads, each with its own shard; the time is the recording thread's CPU time per
//! request (so that other load on the machine does not count), less what reading that clock
//! around nothing measures, throughput in spans. The shards are merged (untimed) after each sample, as the tick would.
//!
//! `tick`: merging one span per series from one shard into the window store and publishing
//! the snapshot; at 100,000 series also with every series holding the 60 one-minute slots
//! the default hour of retention keeps (the steady state of a long-running collector).
//!
//! `cargo bench -p slipstream-benches --bench aggregator -- --measurement-time 3 --warm-up-time 1`
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use cpu_time::ThreadTime;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use slipstream_aggregator::Aggregator;
use slipstream_benches::RecordWorkload;
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, Clock, MAX_DIMENSIONS, Registry, SpanKind, SpanRecord, SystemClock,
};

const SPANS: usize = RecordWorkload::SPANS;
const REQUESTS: usize = RecordWorkload::REQUESTS;

fn aggregator(series: usize) -> Aggregator {
    let cfg = AggregatorConfig {
        max_series: series * 2,
        max_series_per_service: series,
        ..AggregatorConfig::default()
    };
    Aggregator::new(&cfg, Arc::new(SystemClock), &Registry::new())
}

/// What reading the thread's CPU clock around nothing measures (the clock is a system call,
/// part of whose own time lands inside the interval): about 0.5 us on this machine, 1 ns per
/// span of a 512-span request, subtracted from every timed request. The median of many.
fn clock_overhead() -> Duration {
    let mut d: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = ThreadTime::now();
            start.elapsed()
        })
        .collect();
    d.sort_unstable();
    d[d.len() / 2]
}

fn record(c: &mut Criterion) {
    let overhead = clock_overhead();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(SPANS as u64));
    for series in [1_000, 100_000] {
        let names = RecordWorkload::new(series);
        let reqs = names.requests(series, SystemClock.now_unix_nanos());
        for threads in [1usize, 2] {
            let agg = aggregator(series);
            let shards: Vec<_> = (0..threads).map(|_| agg.shard()).collect();
            // Every series seen once: the bench measures steady state, not creation.
            for h in &shards {
                for r in &reqs {
                    h.record(r);
                }
            }
            agg.tick();
            g.bench_function(
                BenchmarkId::new(format!("{series}_series"), format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| {
                        let per_thread: Vec<Duration> = std::thread::scope(|s| {
                            let handles: Vec<_> = shards
                                .iter()
                                .enumerate()
                                .map(|(t, h)| {
                                    let reqs = &reqs;
                                    s.spawn(move || {
                                        // As after the scanner: the request's spans were just
                                        // written, so they are in cache (copying them is not
                                        // timed); the series they name are not.
                                        let mut buf = Vec::with_capacity(SPANS);
                                        let mut total = Duration::ZERO;
                                        for i in 0..iters as usize {
                                            buf.clear();
                                            buf.extend_from_slice(&reqs[(i + t * 17) % REQUESTS]);
                                            let start = ThreadTime::now();
                                            h.record(&buf);
                                            total += start.elapsed().saturating_sub(overhead);
                                        }
                                        total
                                    })
                                })
                                .collect();
                            handles.into_iter().map(|h| h.join().unwrap()).collect()
                        });
                        agg.tick();
                        per_thread.iter().sum::<Duration>() / threads as u32
                    })
                },
            );
        }
    }
    g.finish();
}

/// Earlier one-minute slots each series holds in the `tick` bench's full-retention case: with
/// the current one, the 60 the default hour of retention keeps.
const HISTORY_SLOTS: u64 = 59;

fn tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(20);
    for (series, history) in [(1_000, 0), (100_000, 0), (100_000, HISTORY_SLOTS)] {
        let names = RecordWorkload::new(series);
        let services = names.services.len();
        let agg = aggregator(series);
        let shard = agg.shard();
        let now = SystemClock.now_unix_nanos();
        // One span per series, in requests of 512.
        let all: Vec<SpanRecord<'_>> = (0..series)
            .map(|s| {
                let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                dims[0] = AttrValue::Str(&names.envs[s / services]);
                SpanRecord {
                    service_name: Some(&names.services[s % services]),
                    kind: SpanKind::Server,
                    start_unix_nano: now - 1_000_000_000 - (s as u64 % 1000) * 10_000,
                    end_unix_nano: now - 1_000_000_000,
                    dims,
                    ..SpanRecord::default()
                }
            })
            .collect();
        let fill = || {
            for r in all.chunks(SPANS) {
                shard.record(r);
            }
        };
        // Earlier slots, one span per series in each, as an hour of traffic leaves them.
        for k in 1..=history {
            let back = k * 60_000_000_000;
            let earlier: Vec<SpanRecord<'_>> = all
                .iter()
                .map(|s| SpanRecord {
                    start_unix_nano: s.start_unix_nano - back,
                    end_unix_nano: s.end_unix_nano - back,
                    ..*s
                })
                .collect();
            for r in earlier.chunks(SPANS) {
                shard.record(r);
            }
        }
        fill();
        agg.tick();
        g.throughput(Throughput::Elements(series as u64));
        let name = match history {
            0 => format!("{series}_series"),
            h => format!("{series}_series_{}_slots", h + 1),
        };
        g.bench_function(BenchmarkId::new("merge", name), |b| {
            b.iter_batched(fill, |()| agg.tick(), BatchSize::PerIteration)
        });
    }
    g.finish();
}

criterion_group!(benches, record, tick);
criterion_main!(benches);
