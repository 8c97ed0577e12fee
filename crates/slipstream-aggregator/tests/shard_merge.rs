//! Property tests: merging shards equals aggregating in one thread, and quantiles stay within
//! the stated relative error of the exact quantiles.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use slipstream_aggregator::{Aggregator, Histogram, QUANTILES, Snapshot, rank};
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, MAX_DIMENSIONS, ManualClock, Registry, SpanKind, SpanRecord, StatusCode,
};

const SEC: u64 = 1_000_000_000;
const NOW: u64 = 1_700_000_000 * SEC;
const SERVICES: [&str; 3] = ["a", "b", "c"];
const ENVS: [&str; 2] = ["prod", "dev"];

#[derive(Debug, Clone)]
struct Obs {
    service: usize,
    env: usize,
    slots_back: u64,
    dur: u64,
    error: bool,
    shard: usize,
}

fn obs() -> impl Strategy<Value = Obs> {
    (
        0..3usize,
        0..2usize,
        0..5u64,
        0..40u32,
        0..1000u64,
        any::<bool>(),
        0..4usize,
    )
        .prop_map(|(service, env, slots_back, exp, mant, error, shard)| Obs {
            service,
            env,
            slots_back,
            // Log-uniform over 1 ns .. ~1 h.
            dur: (1u64 << exp) + mant * (1u64 << exp) / 1000,
            error,
            shard,
        })
}

fn span(o: &Obs) -> SpanRecord<'static> {
    let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
    dims[0] = AttrValue::Str(ENVS[o.env]);
    let end = NOW - o.slots_back * 60 * SEC - 1;
    SpanRecord {
        service_name: Some(SERVICES[o.service]),
        kind: SpanKind::Server,
        status: if o.error {
            StatusCode::Error
        } else {
            StatusCode::Ok
        },
        start_unix_nano: end.saturating_sub(o.dur),
        end_unix_nano: end,
        dims,
        ..SpanRecord::default()
    }
}

fn aggregate(observations: &[Obs], shards: usize, request: usize) -> Arc<Snapshot> {
    let clock = ManualClock::new(NOW);
    let agg = Aggregator::new(
        &AggregatorConfig::default(),
        Arc::new(clock),
        &Registry::new(),
    );
    let handles: Vec<_> = (0..shards).map(|_| agg.shard()).collect();
    for (i, h) in handles.iter().enumerate() {
        let mine: Vec<_> = observations
            .iter()
            .filter(|o| o.shard % shards == i)
            .map(span)
            .collect();
        for req in mine.chunks(request.max(1)) {
            h.record(req);
        }
    }
    agg.tick()
}

/// One slot as (start, total, bad, histogram buckets).
type SlotRow = (u64, u64, u64, Vec<(u32, u64)>);

/// Every series' labels and slots, in a comparable form.
fn contents(s: &Snapshot) -> Vec<(String, Vec<SlotRow>)> {
    let mut out: Vec<_> = s
        .series()
        .iter()
        .map(|series| {
            let slots = series
                .slots()
                .iter()
                .map(|sl| {
                    (
                        sl.start_unix_nanos,
                        sl.total,
                        sl.bad,
                        sl.histogram.iter().collect(),
                    )
                })
                .collect();
            (series.labels().to_string(), slots)
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #[test]
    fn merging_shards_equals_one_thread(
        observations in prop::collection::vec(obs(), 0..300),
        shards in 2..5usize,
        request in 1..40usize,
    ) {
        let one = aggregate(&observations, 1, 1000);
        let many = aggregate(&observations, shards, request);
        prop_assert_eq!(contents(&one), contents(&many));
        prop_assert_eq!(one.totals().observations, observations.len() as u64);
        let bad: u64 = one.series().iter().flat_map(|s| s.slots()).map(|s| s.bad).sum();
        prop_assert_eq!(bad, observations.iter().filter(|o| o.error).count() as u64);
    }

    #[test]
    fn quantiles_stay_within_one_percent(
        durations in prop::collection::vec((0..42u32, 0..1_000_000u64), 1..2000),
    ) {
        let values: Vec<u64> = durations
            .iter()
            .map(|&(e, m)| (1u64 << e) + (m as u128 * (1u128 << e) / 1_000_000) as u64)
            .map(|v| v.clamp(1_000, 3_600 * SEC))
            .collect();
        let mut h = Histogram::new();
        for &v in &values {
            h.record(v);
        }
        // Through the whole path too: shard, slot, window.
        let observations: Vec<Obs> = values
            .iter()
            .enumerate()
            .map(|(i, &dur)| Obs { service: 0, env: 0, slots_back: (i % 3) as u64, dur, error: false, shard: i })
            .collect();
        let snap = aggregate(&observations, 2, 64);
        let series = &snap.series()[0];
        let window = snap.window(series, Duration::from_secs(300));
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in QUANTILES {
            let exact = sorted[(rank(q, sorted.len() as u64) - 1) as usize] as f64;
            let got = h.quantile(q).unwrap() as f64;
            prop_assert!((got - exact).abs() / exact <= 0.01, "q={} got={} exact={}", q, got, exact);
            let got = window.quantile(q).unwrap().as_nanos() as f64;
            prop_assert!((got - exact).abs() / exact <= 0.01, "window q={} got={} exact={}", q, got, exact);
        }
    }
}
