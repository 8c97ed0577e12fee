//! What tracking when each `service.version` last served costs the tick: 100,000 series, one
//! (or two) spans per series recorded between ticks, with no version, one version, or two
//! versions taking turns on every series (a rolling deploy seen on every tick). Prints the
//! median tick time of each case:
//!
//! ```sh
//! cargo run --release -p slipstream-benches --example tick_versions [series]
//! ```
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipstream_aggregator::Aggregator;
use slipstream_benches::RecordWorkload;
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, Clock, MAX_DIMENSIONS, Registry, SpanKind, SpanRecord, SystemClock,
};

const TICKS: usize = 31;

fn main() {
    let series: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |s| s.parse().expect("a number of series"));
    let names = RecordWorkload::new(series);
    let services = names.services.len();
    println!("{series} series, median of {TICKS} ticks");
    for (case, versions, spans_per_series) in [
        ("no version, 1 span", &[][..], 1),
        ("one version, 1 span", &["1.4.0"][..], 1),
        ("no version, 2 spans", &[][..], 2),
        ("two versions in turn, 2 spans", &["1.4.0", "1.5.0"][..], 2),
    ] {
        let cfg = AggregatorConfig {
            max_series: series * 2,
            max_series_per_service: series,
            ..AggregatorConfig::default()
        };
        let agg = Aggregator::new(&cfg, Arc::new(SystemClock), &Registry::new());
        let shard = agg.shard();
        let mut times = Vec::with_capacity(TICKS);
        for t in 0..=TICKS {
            let now = SystemClock.now_unix_nanos();
            let spans: Vec<SpanRecord<'_>> = (0..spans_per_series)
                .flat_map(|k| {
                    let names = &names;
                    (0..series).map(move |s| {
                        let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                        dims[0] = AttrValue::Str(&names.envs[s / services]);
                        SpanRecord {
                            service_name: Some(&names.services[s % services]),
                            service_version: versions.get((k + t) % versions.len().max(1)).copied(),
                            kind: SpanKind::Server,
                            start_unix_nano: now - 1_000_000_000 - 1_000,
                            end_unix_nano: now - 1_000_000_000,
                            dims,
                            ..SpanRecord::default()
                        }
                    })
                })
                .collect();
            for r in spans.chunks(RecordWorkload::SPANS) {
                shard.record(r);
            }
            let start = Instant::now();
            let snap = agg.tick();
            let took = start.elapsed();
            assert_eq!(snap.series().len(), series);
            // The first tick creates the series.
            if t > 0 {
                times.push(took);
            }
        }
        times.sort_unstable();
        let median: Duration = times[times.len() / 2];
        println!("{case:32} {:8.2} ms", median.as_secs_f64() * 1e3);
    }
}
