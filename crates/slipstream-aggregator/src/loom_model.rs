//! loom model of the shard hand-off: a worker recording into its shard while the ticker swaps
//! the pending counts out and merges them. Run with (as `scripts/test.sh` does; the model
//! finishes in well under a second in a debug build)
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p slipstream-aggregator --lib loom`.

use std::sync::Arc as StdArc;

use slipstream_core::{SpanKind, SpanRecord};

use crate::loom::{Arc, lock};
use crate::store::{ShardCell, Store, StoreConfig};

const SLOT: u64 = 10_000_000_000;
const NOW: u64 = 1_000 * SLOT + 5;

fn span(service: &'static str, dur: u64) -> SpanRecord<'static> {
    SpanRecord {
        service_name: Some(service),
        kind: SpanKind::Server,
        start_unix_nano: NOW - 1 - dur,
        end_unix_nano: NOW - 1,
        ..SpanRecord::default()
    }
}

#[test]
fn loom_shard_handoff_loses_and_duplicates_nothing() {
    loom::model(|| {
        let mut agg_cfg = slipstream_config::AggregatorConfig::default();
        agg_cfg.slot_width = std::time::Duration::from_secs(10);
        let cfg = StdArc::new(crate::shard_config(&agg_cfg));
        let none = StdArc::default();
        let cell = Arc::new(ShardCell::new(&cfg, &none));
        let mut store = Store::new(
            cfg.clone(),
            StoreConfig {
                max_series: 10,
                max_per_service: 10,
                idle_ns: 3_600 * 1_000_000_000,
            },
        );
        store.register(cell.clone());
        let worker = {
            let cfg = cfg.clone();
            loom::thread::spawn(move || {
                lock(&cell.shard).record(&cfg, NOW, &[span("a", 1_000)]);
                lock(&cell.shard).record(&cfg, NOW, &[span("a", 2_000), span("b", 3_000)]);
                drop(cell);
            })
        };
        let first = store.tick(NOW, &[], &none);
        worker.join().unwrap();
        let last = store.tick(NOW, &[], &none);
        assert!(first.totals().observations <= 3);
        assert_eq!(last.totals().observations, 3);
        assert_eq!(
            last.totals().shards,
            0,
            "the finished worker's shard is forgotten"
        );
        let a = last
            .find(&[("service.name", "a"), ("deployment.environment", "")])
            .unwrap();
        let w = last.window(a, std::time::Duration::from_secs(60));
        assert_eq!((w.total, w.histogram.total()), (2, 2));
        assert_eq!(
            w.histogram.quantile(1.0),
            Some(crate::bucket_value(crate::bucket_of(2_000)))
        );
    });
}
