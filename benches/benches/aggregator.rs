//! criterion bench: the aggregator's hot path and its tick.
//!
//! `record`: requests of 512 server spans, each span of a series drawn at random among 1,000
//! or 100,000 (`service.name` x `deployment.environment`), so every span pays a full series
//! lookup (a real request shares one resource and hits the per-request cache instead). Each
//! series has its own typical latency and spreads over three octaves above it. One or
//! two threads, each with its own shard; the time is the recording thread's CPU time per
//! request (so that other load on the machine does not count), less what reading that clock
//! around nothing measures, throughput in spans. The shards are merged (untimed) after each sample, as the tick would.
//! No latency thresholds are counted, except in `{series}_series_3_thresholds`: 1 ms, 10 ms
//! and 100 ms, which most spans of the workload exceed at least one of (each then counted in
//! its accumulator's above counters). In `{series}_series_ids_exemplars_{on,off}` every span
//! carries a trace and span id, recorded with exemplars kept or not: the cost of offering
//! each span as an exemplar (a comparison, and a copy for the bad and the slowest).
//!
//! `tick`: merging one span per series from one shard into the window store and publishing
//! the snapshot; at 100,000 series also with every series holding the 60 one-minute slots
//! the default hour of retention keeps (the steady state of a long-running collector).
//!
//! `reference`: no slipstream code, the machine's own cost of a second thread for the kind of
//! work `record` does (see [`reference`]), to read `record`'s two-thread figures against.
//!
//! `cargo bench -p slipstream-benches --bench aggregator -- --measurement-time 3 --warm-up-time 1`
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use cpu_time::ThreadTime;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use slipstream_aggregator::Aggregator;
use slipstream_benches::{RecordWorkload, Rng};
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, Clock, MAX_DIMENSIONS, Registry, SpanKind, SpanRecord, SystemClock,
};

const SPANS: usize = RecordWorkload::SPANS;
const REQUESTS: usize = RecordWorkload::REQUESTS;

fn aggregator(series: usize, exemplars: bool) -> Aggregator {
    let cfg = AggregatorConfig {
        max_series: series * 2,
        max_series_per_service: series,
        ..AggregatorConfig::default()
    };
    Aggregator::with_exemplars(&cfg, Arc::new(SystemClock), &Registry::new(), exemplars)
}

/// What reading the thread's CPU clock around nothing measures (the clock is a system call,
/// part of whose own time lands inside the interval), subtracted from every timed request.
/// The median of many. What it comes to on the development machine: see docs/benchmarks.md,
/// "Current figures", "Aggregator".
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

/// The CPU time of this thread in `f`, less the clock's own `overhead`.
fn cpu_time(overhead: Duration, f: impl FnOnce()) -> Duration {
    let start = ThreadTime::now();
    f();
    start.elapsed().saturating_sub(overhead)
}

/// Runs `run(t, state)` on one thread per element of `states` (all at once) and returns the
/// mean of the times they return.
fn mean_over_threads<S: Send>(
    states: &mut [S],
    run: impl Fn(usize, &mut S) -> Duration + Sync,
) -> Duration {
    let run = &run;
    let totals: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = states
            .iter_mut()
            .enumerate()
            .map(|(t, state)| s.spawn(move || run(t, state)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    totals.iter().sum::<Duration>() / states.len() as u32
}

fn record(c: &mut Criterion) {
    let overhead = clock_overhead();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(SPANS as u64));
    for series in [1_000, 100_000] {
        let names = RecordWorkload::new(series);
        let plain = names.requests(series, SystemClock.now_unix_nanos());
        // The same requests with ids (24 random bytes per span).
        let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
        let ids: Vec<[u8; 24]> = (0..SPANS * REQUESTS)
            .map(|_| {
                let mut id = [0u8; 24];
                for c in id.chunks_mut(8) {
                    c.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                id
            })
            .collect();
        let with_ids: Vec<Vec<SpanRecord<'_>>> = plain
            .iter()
            .enumerate()
            .map(|(r, req)| {
                req.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let id = &ids[r * SPANS + i];
                        SpanRecord {
                            trace_id: &id[..16],
                            span_id: &id[16..],
                            ..*s
                        }
                    })
                    .collect()
            })
            .collect();
        for (threads, thresholds, exemplars) in [
            (1usize, 0, None),
            (2, 0, None),
            (1, 3, None),
            (1, 0, Some(false)),
            (1, 0, Some(true)),
        ] {
            let reqs = if exemplars.is_some() {
                &with_ids
            } else {
                &plain
            };
            let agg = aggregator(series, exemplars.unwrap_or(true));
            agg.set_latency_thresholds(
                [1, 10, 100]
                    .into_iter()
                    .take(thresholds)
                    .map(Duration::from_millis),
            );
            let mut shards: Vec<_> = (0..threads).map(|_| agg.shard()).collect();
            // Every series seen once: the bench measures steady state, not creation.
            for h in &shards {
                for r in reqs.iter() {
                    h.record(r);
                }
            }
            agg.tick();
            let name = match (thresholds, exemplars) {
                (_, Some(on)) => {
                    format!(
                        "{series}_series_ids_exemplars_{}",
                        if on { "on" } else { "off" }
                    )
                }
                (0, None) => format!("{series}_series"),
                (n, None) => format!("{series}_series_{n}_thresholds"),
            };
            g.bench_function(BenchmarkId::new(name, format!("{threads}_threads")), |b| {
                b.iter_custom(|iters| {
                    let mean = mean_over_threads(&mut shards, |t, h| {
                        // As after the scanner: the request's spans were just written, so
                        // they are in cache (copying them is not timed); the series they
                        // name are not.
                        let mut buf = Vec::with_capacity(SPANS);
                        let mut total = Duration::ZERO;
                        for i in 0..iters as usize {
                            buf.clear();
                            buf.extend_from_slice(&reqs[(i + t * 17) % REQUESTS]);
                            total += cpu_time(overhead, || h.record(&buf));
                        }
                        total
                    });
                    agg.tick();
                    mean
                })
            });
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
        let agg = aggregator(series, true);
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

/// Updates per operation of [`reference`]: about the cache lines a span's record touches at
/// 100,000 series (table slot, map entry, accumulator, histogram counter).
const REF_LINES: usize = 4;
/// Operations ahead that [`reference`] prefetches a line, as the record path's lookahead does.
const REF_AHEAD: usize = 16;
/// Rounds of arithmetic per operation of [`reference`]: about the time per span of
/// `record/1000_series/1_threads` when its lines are in the L2 (the figure it was set to:
/// docs/benchmarks.md, "Current figures", "Aggregator").
const REF_ROUNDS: u32 = 16;

/// The machine's own cost of a second thread, with nothing shared: each thread owns a region
/// and runs operations of [`REF_LINES`] updates of random cache lines in it (each prefetched
/// [`REF_AHEAD`] operations ahead) and [`REF_ROUNDS`] rounds of arithmetic, 512 operations per
/// timed call, timed as `record` is (thread CPU time). A region of 1 MiB stays in each core's
/// L2, like `record` at 1,000 series; one of 16 MiB fits the shared L3 once but not twice, like
/// the map and accumulators of `record`'s shards at 100,000 series (their size: see
/// docs/benchmarks.md, "Current figures", "Two threads at 100k series"); one of 64 MiB
/// is beyond the L3 whatever the threads. Whatever two threads cost more per thread than one
/// here is the shared caches' and memory's.
fn reference(c: &mut Criterion) {
    let overhead = clock_overhead();
    let mut g = c.benchmark_group("reference");
    g.throughput(Throughput::Elements(SPANS as u64));
    for mib in [1usize, 16, 64] {
        for threads in [1usize, 2] {
            let mut regions: Vec<Region> =
                (0..threads).map(|t| Region::new(mib << 20, t)).collect();
            g.bench_function(
                BenchmarkId::new(format!("{mib}_MiB"), format!("{threads}_threads")),
                |b| {
                    b.iter_custom(|iters| {
                        mean_over_threads(&mut regions, |_, r| {
                            (0..iters)
                                .map(|_| cpu_time(overhead, || r.run(SPANS)))
                                .sum()
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

/// One thread's memory and state in [`reference`].
struct Region {
    lines: Vec<[u64; 8]>,
    /// Lines prefetched and not yet updated, [`REF_LINES`] per operation.
    ahead: Vec<usize>,
    rng: Rng,
    mix: u64,
    op: usize,
}

impl Region {
    fn new(bytes: usize, t: usize) -> Self {
        let n = (bytes / 64).next_power_of_two();
        let mut r = Region {
            lines: vec![[1; 8]; n],
            ahead: vec![0; REF_AHEAD * REF_LINES],
            rng: Rng::new(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1)),
            mix: 0,
            op: 0,
        };
        for k in 0..r.ahead.len() {
            r.ahead[k] = r.next_line();
        }
        r
    }

    fn next_line(&mut self) -> usize {
        self.rng.next_u64() as usize & (self.lines.len() - 1)
    }

    fn run(&mut self, ops: usize) {
        for _ in 0..ops {
            let base = self.op % REF_AHEAD * REF_LINES;
            for k in 0..REF_LINES {
                let next = self.next_line();
                prefetch(&self.lines[next]);
                let line = std::mem::replace(&mut self.ahead[base + k], next);
                self.lines[line][self.mix as usize & 7] += 1;
            }
            for _ in 0..REF_ROUNDS {
                self.mix = (self.mix ^ (self.mix >> 29))
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                    .wrapping_add(self.op as u64);
            }
            self.op += 1;
        }
    }
}

/// A cache prefetch hint for `p`'s line.
#[allow(unsafe_code)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint that never faults and reads nothing into the program;
    // SSE, which it needs, is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(p).cast(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

criterion_group!(benches, record, tick, reference);
criterion_main!(benches);
