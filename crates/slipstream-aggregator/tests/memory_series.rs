//! Memory per active series: resident set growth with every series holding an hour of
//! one-minute slots. Linux only (reads /proc/self/statm).
//!
//! The 100,000-series figure of docs/benchmarks.md:
//! `cargo test -p slipstream-aggregator --release --test memory_series -- --ignored --nocapture`
//! (`SPANS_PER_SLOT=20` for a busier hour; default 5). `IDS=1` gives every span a trace and
//! span id, as real spans have, so that the figure includes the exemplars kept; without it
//! the spans have none (the workload of the figures before exemplars).

use std::sync::Arc;

use slipstream_aggregator::Aggregator;
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, MAX_DIMENSIONS, ManualClock, ObservationSink, Registry, SpanKind, SpanRecord,
};

const SEC: u64 = 1_000_000_000;

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Fills `series` series with `per_slot` spans in each of 60 one-minute slots, ticking every
/// 5 s (the default), and returns the resident set growth per series.
fn bytes_per_series(series: usize, per_slot: usize) -> Option<f64> {
    let before = rss_bytes()?;
    let start = 1_700_000_000 / 60 * 60 * SEC;
    let clock = ManualClock::new(start);
    let mut cfg = AggregatorConfig::default();
    cfg.max_series = series;
    cfg.max_series_per_service = series;
    let agg = Aggregator::new(&cfg, Arc::new(clock.clone()), &Registry::new());
    let services: Vec<String> = (0..1000).map(|i| format!("service-{i:04}")).collect();
    let envs: Vec<String> = (0..series.div_ceil(1000))
        .map(|i| format!("env-{i}"))
        .collect();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let with_ids = std::env::var("IDS").is_ok_and(|v| v == "1");
    assert!(per_slot <= 32, "at most 32 spans per slot");
    let mut id_rng = 0x2545_F491_4F6C_DD1Du64;
    // The default tick interval, 5 s: each series' spans of a minute spread over 12 ticks.
    for minute in 0..60u64 {
        for tick in 0..12u64 {
            let now = start + minute * 60 * SEC + tick * 5 * SEC + 4 * SEC;
            clock.set(now);
            let end = now - SEC;
            for i in 0..series {
                // Ids from a generator of their own: the latencies are those without ids.
                let mut ids = [[0u8; 24]; 32];
                let mut req = Vec::with_capacity(per_slot);
                for id in ids.iter_mut().take(per_slot).filter(|_| with_ids) {
                    for c in id.chunks_mut(8) {
                        id_rng = id_rng.wrapping_mul(0x5851_F42D_4C95_7F2D).wrapping_add(1);
                        c.copy_from_slice(&id_rng.to_le_bytes());
                    }
                }
                let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                dims[0] = AttrValue::Str(&envs[i / 1000]);
                for j in 0..per_slot as u64 {
                    if (j + i as u64) % 12 != tick {
                        continue;
                    }
                    let r = next();
                    // 0.25 ms .. 64 ms, log-uniform: a realistic spread of latencies.
                    let dur = (250_000u64 << (r % 8)) + (r >> 40) % 250_000;
                    let id = &ids[j as usize];
                    req.push(SpanRecord {
                        service_name: Some(&services[i % 1000]),
                        kind: SpanKind::Server,
                        start_unix_nano: end - dur,
                        end_unix_nano: end,
                        dims,
                        trace_id: if with_ids { &id[..16] } else { &[] },
                        span_id: if with_ids { &id[16..] } else { &[] },
                        ..SpanRecord::default()
                    });
                }
                if !req.is_empty() {
                    agg.record(&req);
                }
            }
            agg.tick();
        }
    }
    let snap = agg.snapshot();
    assert_eq!(snap.series().len(), series);
    assert!(snap.series().iter().all(|s| s.slots().len() == 60));
    assert_eq!(snap.totals().overflow_observations, 0);
    let after = rss_bytes()?;
    drop(snap);
    drop(agg);
    Some(after.saturating_sub(before) as f64 / series as f64)
}

#[test]
fn memory_per_series_stays_small() {
    let Some(b) = bytes_per_series(10_000, 5) else {
        eprintln!("no /proc/self/statm: skipped");
        return;
    };
    eprintln!("10,000 series, 60 slots x 5 spans: {b:.0} bytes per series");
    assert!(b < 10_000.0, "{b} bytes per series");
}

#[test]
#[ignore = "100,000 series: run in release (see the module docs)"]
fn hundred_thousand_series_fit_in_one_gib() {
    // One measurement per process: freed memory stays resident and would skew a second one.
    let per_slot = std::env::var("SPANS_PER_SLOT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    {
        let Some(b) = bytes_per_series(100_000, per_slot) else {
            return;
        };
        let total = b * 100_000.0;
        eprintln!(
            "100,000 series, 60 slots x {per_slot} spans: {b:.0} bytes per series, {:.0} MiB",
            total / (1 << 20) as f64
        );
        assert!(total < (1u64 << 30) as f64, "{total} bytes");
    }
}
