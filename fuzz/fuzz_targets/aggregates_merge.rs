//! Fuzzes a gateway taking partial aggregates: arbitrary bytes as an `ExportAggregatesRequest`
//! must decode or fail, and a decoded one (given the gateway's own header, so that it gets past
//! the compatibility check) must be merged or refused, and the tick that merges it must not
//! panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use slipstream_aggregator::Aggregator;
use slipstream_config::AggregatorConfig;
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::{ManualClock, Registry};

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = ExportAggregatesRequest::decode(data) else {
        return;
    };
    let mut cfg = AggregatorConfig::default();
    cfg.span_dimensions = vec!["http.route".into()];
    cfg.span_kind_dimension = true;
    cfg.max_series = 64;
    cfg.max_series_per_service = 8;
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let agg = Aggregator::new(&cfg, Arc::new(clock), &Registry::new());
    let _ = agg.merge(req.clone());
    req.header = Some(agg.aggregates_header());
    let _ = agg.merge(req);
    agg.tick();
});
