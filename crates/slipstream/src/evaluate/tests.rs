use std::sync::Arc;
use std::time::Duration;

use slipstream_aggregator::Aggregator;
use slipstream_config::Config;
use slipstream_core::{AttrValue, ManualClock, ObservationSink, Registry, SpanKind, SpanRecord};
use slipstream_slo::SloEngine;

use super::*;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_040 * SEC;

const CONFIG: &str = "
slo:
  templates:
    availability: null
    latency: { objective: 99, threshold: 137ms }
  objectives:
    - name: cart-fast
      service: cart
      objective: 99
      sli: { kind: latency, threshold: 50ms }
    - name: cart-up
      service: cart
      objective: 99.9
      sli: { kind: availability }
";

fn span(service: &str, end: u64, dur: u64) -> SpanRecord<'_> {
    let mut dims = [AttrValue::Absent; slipstream_core::MAX_DIMENSIONS];
    dims[0] = AttrValue::Str("prod");
    SpanRecord {
        service_name: Some(service),
        kind: SpanKind::Server,
        start_unix_nano: end - dur,
        end_unix_nano: end,
        dims,
        ..SpanRecord::default()
    }
}

fn evaluator(cfg: &Config, clock: &ManualClock) -> (Arc<Aggregator>, Evaluator) {
    let clock: Arc<dyn slipstream_core::Clock> = Arc::new(clock.clone());
    let registry = Registry::new();
    let agg = Arc::new(Aggregator::new(&cfg.aggregator, clock.clone(), &registry));
    agg.set_latency_thresholds(latency_thresholds(&cfg.slo));
    let engine = SloEngine::new(&cfg.slo, clock.clone(), &registry).unwrap();
    (agg.clone(), Evaluator::new(agg, engine, clock))
}

#[test]
fn the_thresholds_are_those_of_the_objectives_and_the_latency_template() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    assert_eq!(
        latency_thresholds(&cfg.slo),
        [Duration::from_millis(50), Duration::from_millis(137)]
    );
}

#[test]
fn latency_slos_count_good_and_bad_exactly_at_the_threshold() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let clock = ManualClock::new(T0);
    let (agg, mut ev) = evaluator(&cfg, &clock);
    let t = 137 * MS;
    let b = slipstream_aggregator::bucket_of(t);
    let top = slipstream_aggregator::bucket_high(b);
    // "shop" has only the templated SLO, created when its first requests are fed: they are
    // counted exactly all the same.
    agg.record(&[
        span("shop", T0 - SEC, t),
        span("shop", T0 - SEC, t + 1),
        span("shop", T0 - SEC, (t + top) / 2),
        span("shop", T0 - SEC, t - 1),
        span("cart", T0 - SEC, 50 * MS),
        span("cart", T0 - SEC, 50 * MS + 1),
        span("cart", T0 - SEC, t + 1),
    ]);
    let step = ev.step(true);
    let totals = &step.slo_totals;
    assert_eq!(totals["shop-latency"], (2, 4), "good within 137ms, total");
    assert_eq!(totals["cart-fast"], (1, 3));
    assert!(
        !totals.contains_key("cart-latency"),
        "cart has explicit SLOs"
    );
    assert_eq!(totals["cart-up"], (3, 3));
    // Late spans into the same slot add exactly too.
    agg.record(&[span("shop", T0 - SEC, t + 2), span("shop", T0 - SEC, 1)]);
    let step = ev.step(true);
    assert_eq!(step.slo_totals["shop-latency"], (3, 6));
}

#[test]
fn a_slot_not_compared_with_a_threshold_is_estimated_from_its_histogram() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let clock = ManualClock::new(T0);
    let (agg, mut ev) = evaluator(&cfg, &clock);
    // As before a reload added the threshold: none counted.
    agg.set_latency_thresholds([]);
    agg.tick();
    let t = 137 * MS;
    agg.record(&[span("shop", T0 - SEC, t), span("shop", T0 - SEC, t + 1)]);
    let step = ev.step(true);
    assert_eq!(
        step.slo_totals["shop-latency"],
        (2, 2),
        "the bucket counts as good"
    );
    // With the threshold back, the next slot is exact; the first stays estimated.
    agg.set_latency_thresholds(latency_thresholds(&cfg.slo));
    agg.record(&[span("shop", T0 - SEC, t + 1)]);
    ev.step(true);
    clock.set(T0 + 60 * SEC);
    agg.record(&[
        span("shop", T0 + 30 * SEC, t),
        span("shop", T0 + 30 * SEC, t + 1),
    ]);
    let step = ev.step(true);
    assert_eq!(step.slo_totals["shop-latency"], (4, 5));
}
