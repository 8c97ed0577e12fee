//! The `record` bench's 1,000-series workload, for counting instructions under valgrind:
//! every series is created and ticked once, then `N` requests (the argument, default 200)
//! are recorded. The difference between two runs, divided by the extra spans, is the
//! instructions per recorded span, free of the timing noise of a shared machine:
//!
//! ```sh
//! cargo build --release -p slipstream-benches --example record_icount
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/a target/release/examples/record_icount 100
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/b target/release/examples/record_icount 300
//! # (Ir of b - Ir of a) / (200 * 512)
//! ```
#![allow(missing_docs)]

use std::sync::Arc;

use slipstream_aggregator::Aggregator;
use slipstream_benches::RecordWorkload;
use slipstream_config::AggregatorConfig;
use slipstream_core::{Clock, Registry, SystemClock};

fn main() {
    let series = 1_000;
    let n: usize = std::env::args()
        .nth(1)
        .map_or(200, |s| s.parse().expect("a number of requests"));
    let names = RecordWorkload::new(series);
    let reqs = names.requests(series, SystemClock.now_unix_nanos());
    let cfg = AggregatorConfig {
        max_series: series * 2,
        max_series_per_service: series,
        ..AggregatorConfig::default()
    };
    let agg = Aggregator::new(&cfg, Arc::new(SystemClock), &Registry::new());
    let shard = agg.shard();
    for r in &reqs {
        shard.record(r);
    }
    agg.tick();
    for i in 0..n {
        shard.record(&reqs[i % reqs.len()]);
    }
}
