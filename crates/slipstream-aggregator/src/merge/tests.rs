//! Two tiers: what sidecar aggregators ship (the difference between two of their snapshots)
//! and a gateway aggregator merges ends up as the same series, slots and histograms as one
//! aggregator fed every span.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use slipstream_config::AggregatorConfig;
use slipstream_core::aggregates::{ExportAggregatesRequest, Overflow, Series, Slot, Value, value};
use slipstream_core::{
    AttrValue, Clock, ManualClock, MergeError, Merged, ObservationSink, Registry, SpanKind,
    SpanRecord, StatusCode,
};

use crate::tests::{SEC, T0, span};
use crate::{Aggregator, Snapshot};

/// One aggregator and the snapshot it last shipped from.
struct Sender {
    agg: Aggregator,
    shipped: Arc<Snapshot>,
    sequence: u64,
    name: &'static str,
}

impl Sender {
    fn new(cfg: &AggregatorConfig, clock: &ManualClock, name: &'static str) -> Self {
        Sender {
            agg: Aggregator::new(cfg, Arc::new(clock.clone()), &Registry::new()),
            shipped: Arc::new(Snapshot::default()),
            sequence: 0,
            name,
        }
    }

    /// Ticks and returns what changed since the previous shipment.
    fn ship(&mut self) -> ExportAggregatesRequest {
        let snap = self.agg.tick();
        let series = snap.aggregates_since(&self.shipped);
        self.shipped = snap;
        self.sequence += 1;
        let mut header = self.agg.aggregates_header();
        header.instance = self.name.to_owned();
        header.instance_started_unix_nanos = T0;
        header.sequence = self.sequence;
        ExportAggregatesRequest {
            header: Some(header),
            series,
        }
    }
}

fn aggregator(cfg: &AggregatorConfig, clock: &ManualClock) -> (Aggregator, Registry) {
    let registry = Registry::new();
    (
        Aggregator::new(cfg, Arc::new(clock.clone()), &registry),
        registry,
    )
}

/// Every series of a snapshot by its labels, with its slots as
/// `(start, total, bad, buckets, above each latency threshold)`.
type Flat = Vec<(String, Vec<FlatSlot>)>;
type FlatSlot = (u64, u64, u64, Vec<(u32, u64)>, Vec<(u64, u64)>, (u64, u64));

fn flat(snap: &Snapshot) -> Flat {
    let mut out: Flat = snap
        .series()
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.slots()
                    .iter()
                    .map(|x| {
                        (
                            x.start_unix_nanos,
                            x.total,
                            x.bad,
                            x.histogram.iter().collect(),
                            x.above.iter().collect(),
                            (x.spans(), x.sampled_spans()),
                        )
                    })
                    .collect(),
            )
        })
        .filter(|(_, slots): &(String, Vec<_>)| !slots.is_empty())
        .collect();
    out.sort();
    out
}

fn request(series: Vec<Series>, sequence: u64, agg: &Aggregator) -> ExportAggregatesRequest {
    let mut header = agg.aggregates_header();
    header.instance = "test".into();
    header.sequence = sequence;
    ExportAggregatesRequest {
        header: Some(header),
        series,
    }
}

fn string(s: &str) -> Value {
    Value {
        value: Some(value::Value::StringValue(s.into())),
    }
}

fn slot(start: u64, total: u64, bad: u64, buckets: &[(u32, u64)]) -> Slot {
    Slot {
        start_unix_nanos: start,
        total,
        bad,
        bucket_indexes: buckets.iter().map(|b| b.0).collect(),
        bucket_counts: buckets.iter().map(|b| b.1).collect(),
        ..Slot::default()
    }
}

/// A slot of two requests (3 ns and 900's bucket) with latency-threshold counts.
fn above(start: u64, thresholds: &[u64], above: &[u64]) -> Slot {
    Slot {
        latency_thresholds_nanos: thresholds.to_vec(),
        above_threshold: above.to_vec(),
        ..slot(start, 2, 0, &[(3, 1), (900, 1)])
    }
}

#[test]
fn a_slot_without_threshold_counts_is_estimated_and_counted() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let (gateway, metrics) = aggregator(&cfg, &clock);
    let t = crate::bucket_low(900) + 1;
    gateway.set_latency_thresholds([Duration::from_nanos(t)]);
    gateway.tick();
    let minute = 60 * SEC;
    let start = T0 / minute * minute - minute;
    let key = vec![string("cart"), string("prod")];
    let series = |slots| Series {
        key: key.clone(),
        slots,
        ..Series::default()
    };
    // An older sender: no counts. A current one: exact, in the next slot.
    let old = series(vec![slot(start, 2, 0, &[(3, 1), (900, 1)])]);
    let new = series(vec![above(start + minute, &[1, t], &[1, 0])]);
    assert_eq!(
        gateway.merge(request(vec![old, new], 0, &gateway)),
        Ok(Merged::Accepted)
    );
    let snap = gateway.tick();
    let slots = snap.find(&[("service.name", "cart"), ("deployment.environment", "prod")]);
    let slots = slots.unwrap().slots();
    assert_eq!(slots[0].good_within(t), (2, false));
    assert_eq!(slots[1].good_within(t), (2, true));
    assert_eq!(
        slots[1].above.thresholds(),
        [t],
        "only the gateway's threshold is kept"
    );
    assert_eq!(snap.totals().merged_slots_estimated, 1);
    assert_eq!(
        metrics.value("slipstream_aggregator_merged_slots_estimated_total", &[]),
        Some(1)
    );
}

#[test]
fn three_sidecars_merged_equal_one_aggregator_fed_every_span() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let mut sidecars: Vec<Sender> = ["a", "b", "c"]
        .into_iter()
        .map(|n| Sender::new(&cfg, &clock, n))
        .collect();
    let (gateway, gateway_metrics) = aggregator(&cfg, &clock);
    let (reference, _) = aggregator(&cfg, &clock);
    // The gateway counts 40ms and 70ms exactly; the sidecars also count 10ms, which the
    // gateway leaves out.
    let ms = Duration::from_millis;
    for a in sidecars.iter().map(|s| &s.agg) {
        a.set_latency_thresholds([ms(10), ms(40), ms(70)]);
    }
    gateway.set_latency_thresholds([ms(40), ms(70)]);
    reference.set_latency_thresholds([ms(40), ms(70)]);
    for minute in 0..5u64 {
        clock.set(T0 + minute * 60 * SEC);
        for i in 0..30u64 {
            let now = clock.now_unix_nanos();
            // "cart" goes through every sidecar, "pay" through two.
            let service = if i % 3 == 0 { "pay" } else { "cart" };
            let mut s = span(service, "prod", now - i * SEC, (i + 1) * 3_000_000);
            if i % 7 == 0 {
                s.status = StatusCode::Error;
            }
            let v = if minute < 2 { "1.0" } else { "1.1" };
            s.service_version = Some(v);
            // Some spans were sampled at 1 in 4 (th:c), some at 1 in 2 (th:8).
            s.sampling_threshold = match i % 5 {
                1 => Some(0xc0_0000_0000_0000),
                2 => Some(0x80_0000_0000_0000),
                _ => None,
            };
            let sidecar = if service == "pay" { i % 2 } else { i % 3 } as usize;
            sidecars[sidecar].agg.record(&[s]);
            reference.record(&[s]);
        }
        for sc in &mut sidecars {
            let req = sc.ship();
            assert_eq!(gateway.merge(req), Ok(Merged::Accepted));
        }
        let (g, r) = (gateway.tick(), reference.tick());
        assert_eq!(flat(&g), flat(&r), "minute {minute}");
        assert!(
            g.series()
                .iter()
                .flat_map(|s| s.slots())
                .all(|x| x.above.thresholds() == [40_000_000, 70_000_000]),
            "every slot is exact at the gateway's thresholds"
        );
    }
    assert_eq!(gateway.snapshot().totals().merged_slots_estimated, 0);
    let (g, r) = (gateway.snapshot(), reference.snapshot());
    assert_eq!(g.totals().observations, 150);
    assert_eq!(g.totals().merged_observations, 150);
    assert_eq!(
        gateway_metrics.value("slipstream_aggregator_merged_observations_total", &[]),
        Some(150)
    );
    let versions = |s: &Snapshot, svc: &str| -> Vec<String> {
        s.find(&[("service.name", svc), ("deployment.environment", "prod")])
            .unwrap()
            .versions()
            .iter()
            .map(|v| v.version.to_string())
            .collect()
    };
    assert_eq!(versions(&g, "cart"), ["1.0", "1.1"]);
    assert_eq!(versions(&g, "pay"), versions(&r, "pay"));
    // Nothing changed: nothing to ship.
    assert!(sidecars[0].ship().series.is_empty());
}

#[test]
fn a_retried_request_is_merged_once() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let mut sidecar = Sender::new(&cfg, &clock, "a");
    let (gateway, _) = aggregator(&cfg, &clock);
    sidecar.agg.record(&[span("cart", "prod", T0, 1_000)]);
    let req = sidecar.ship();
    assert_eq!(gateway.merge(req.clone()), Ok(Merged::Accepted));
    assert_eq!(gateway.merge(req.clone()), Ok(Merged::Duplicate));
    // Another run of the same instance starts counting again.
    let mut restarted = req.clone();
    restarted
        .header
        .as_mut()
        .unwrap()
        .instance_started_unix_nanos += 1;
    assert_eq!(gateway.merge(restarted), Ok(Merged::Accepted));
    // Without a sequence nothing is deduplicated.
    let mut unsequenced = req;
    unsequenced.header.as_mut().unwrap().sequence = 0;
    assert_eq!(gateway.merge(unsequenced.clone()), Ok(Merged::Accepted));
    assert_eq!(gateway.merge(unsequenced), Ok(Merged::Accepted));
    assert_eq!(gateway.tick().totals().observations, 4);
}

#[test]
fn incompatible_headers_are_refused_with_the_reason() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let (gateway, _) = aggregator(&cfg, &clock);
    let mut other = cfg.clone();
    other.slot_width = Duration::from_secs(10);
    let (sidecar, _) = aggregator(&other, &clock);
    let refused = |h: slipstream_core::aggregates::Header| {
        gateway.merge(ExportAggregatesRequest {
            header: Some(h),
            series: vec![],
        })
    };
    match refused(sidecar.aggregates_header()) {
        Err(MergeError::Incompatible(m)) => assert!(m.contains("10s") && m.contains("60s"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut h = gateway.aggregates_header();
    h.histogram_layout = "exponential/v9".into();
    assert!(matches!(refused(h), Err(MergeError::Incompatible(m)) if m.contains("exponential/v9")));
    let mut h = gateway.aggregates_header();
    h.dimensions.push("http.route".into());
    assert!(matches!(refused(h), Err(MergeError::Incompatible(m)) if m.contains("http.route")));
    let mut h = gateway.aggregates_header();
    h.histogram_max_value_nanos = 10 * SEC;
    assert!(matches!(refused(h), Err(MergeError::Incompatible(m)) if m.contains("10s")));
    assert!(matches!(
        gateway.merge(ExportAggregatesRequest::default()),
        Err(MergeError::Invalid(_))
    ));
    // A larger histogram range on the sender is fine.
    let mut h = gateway.aggregates_header();
    h.histogram_max_value_nanos *= 2;
    assert_eq!(refused(h), Ok(Merged::Accepted));
}

#[test]
fn malformed_series_and_slots_are_refused_and_nothing_is_merged() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let (gateway, _) = aggregator(&cfg, &clock);
    let start = T0 / (60 * SEC) * 60 * SEC;
    let key = vec![string("cart"), string("prod")];
    let good = Series {
        key: key.clone(),
        slots: vec![slot(start, 2, 1, &[(3, 1), (900, 1)])],
        ..Series::default()
    };
    let bad_slots = [
        slot(start, 2, 1, &[(3, 1)]),             // buckets add up to 1
        slot(start, 2, 3, &[(3, 2)]),             // bad above total
        slot(start, 2, 0, &[(9, 1), (3, 1)]),     // out of order
        slot(start, 2, 0, &[(3, 1), (3, 1)]),     // repeated
        slot(start + 1, 1, 0, &[(3, 1)]),         // not on a slot boundary
        slot(start, 1, 0, &[(1_000_000, 1)]),     // beyond the last bucket
        slot(start, 1 << 41, 0, &[(3, 1 << 41)]), // more than one slot takes
        above(start, &[5], &[]),                  // a threshold without its count
        above(start, &[5], &[3]),                 // more above than total
        above(start, &[9, 5], &[1, 1]),           // thresholds out of order
        above(start, &[5, 9], &[1, 2]),           // more above the higher one
        Slot {
            spans: 3, // more spans than requests
            ..slot(start, 2, 0, &[(3, 2)])
        },
        Slot {
            spans: 2,
            sampled_spans: 3, // more sampled spans than spans
            ..slot(start, 2, 0, &[(3, 2)])
        },
    ];
    for (i, bad) in bad_slots.into_iter().enumerate() {
        let series = Series {
            slots: vec![bad],
            ..good.clone()
        };
        let r = gateway.merge(request(vec![good.clone(), series], 0, &gateway));
        assert!(
            matches!(&r, Err(MergeError::Invalid(m)) if m.contains("series[1]")),
            "{i}: {r:?}"
        );
    }
    let int = Value {
        value: Some(value::Value::IntValue(3)),
    };
    let kind = Value {
        value: Some(value::Value::SpanKind(2)),
    };
    for key in [
        vec![string("cart")],              // too short
        vec![int.clone(), string("prod")], // the service is a string
        vec![string("cart"), kind],        // no span.kind dimension here
    ] {
        let series = Series {
            key: key.clone(),
            ..good.clone()
        };
        let r = gateway.merge(request(vec![series], 0, &gateway));
        assert!(matches!(r, Err(MergeError::Invalid(_))), "{key:?}: {r:?}");
    }
    let global_with_key = Series {
        overflow: Overflow::Global as i32,
        ..good.clone()
    };
    assert!(
        gateway
            .merge(request(vec![global_with_key], 0, &gateway))
            .is_err()
    );
    let unknown_overflow = Series {
        overflow: 7,
        ..good.clone()
    };
    assert!(
        gateway
            .merge(request(vec![unknown_overflow], 0, &gateway))
            .is_err()
    );
    assert_eq!(gateway.tick().totals().observations, 0);
    // The good series alone is taken.
    assert_eq!(
        gateway.merge(request(vec![good], 0, &gateway)),
        Ok(Merged::Accepted)
    );
    assert_eq!(gateway.tick().totals().observations, 2);
}

#[test]
fn slots_just_before_the_retention_are_dropped_late_long_latencies_clamped() {
    let mut cfg = AggregatorConfig::default();
    cfg.retention = Duration::from_secs(600);
    cfg.histogram_max_value = Duration::from_secs(10);
    let clock = ManualClock::new(T0);
    let (gateway, registry) = aggregator(&cfg, &clock);
    let (direct, _) = aggregator(&cfg, &clock);
    let slot_of = |t: u64| t / (60 * SEC) * 60 * SEC;
    let mut sidecar_cfg = cfg.clone();
    sidecar_cfg.histogram_max_value = Duration::from_secs(3600);
    sidecar_cfg.retention = Duration::from_secs(3600);
    let mut sidecar = Sender::new(&sidecar_cfg, &clock, "a");
    let spans = [
        // Before the gateway's retention, within its skew: dropped late, as the span is.
        span("cart", "prod", T0 - 10 * 60 * SEC, 1_000),
        span("cart", "prod", T0 + 60 * SEC, 1_000), // as far ahead as the skew allows
        span("cart", "prod", T0, 30 * SEC),         // beyond the gateway's range
        span("cart", "prod", T0, 2 * SEC),
    ];
    sidecar.agg.record(&spans);
    direct.record(&spans);
    assert_eq!(gateway.merge(sidecar.ship()), Ok(Merged::Accepted));
    let (g, d) = (gateway.tick(), direct.tick());
    assert_eq!(flat(&g), flat(&d));
    let s = g
        .find(&[("service.name", "cart"), ("deployment.environment", "prod")])
        .unwrap();
    let slots: Vec<(u64, u64)> = s
        .slots()
        .iter()
        .map(|x| (x.start_unix_nanos, x.total))
        .collect();
    assert_eq!(
        slots,
        [(slot_of(T0), 2), (slot_of(T0 + 60 * SEC), 1)],
        "{slots:?}"
    );
    for (t, want) in [(g.totals(), 1), (d.totals(), 1)] {
        assert_eq!(t.dropped_late, want);
        assert_eq!(t.clamped_future, 0);
        assert_eq!(t.clamped_duration, 1);
    }
    assert_eq!(
        registry.value("slipstream_aggregator_dropped_spans_total", &["late"]),
        Some(1)
    );
}

#[test]
fn slots_beyond_the_skew_or_long_gone_are_refused_whole() {
    let mut cfg = AggregatorConfig::default();
    cfg.retention = Duration::from_secs(600);
    let clock = ManualClock::new(T0);
    let (gateway, _) = aggregator(&cfg, &clock);
    let now_slot = T0 / (60 * SEC) * 60 * SEC;
    let good = Series {
        key: vec![string("cart"), string("prod")],
        slots: vec![slot(now_slot, 2, 1, &[(3, 1), (900, 1)])],
        ..Series::default()
    };
    let implausible = [
        // Two slots ahead: past T0 + 60s.
        (now_slot + 120 * SEC, "ahead of this aggregator's clock"),
        // A day ahead, the slot every window would read once it came.
        (now_slot + 86_400 * SEC, "aggregator.max_future_skew"),
        // Eleven slots back: before the ten of the retention and the one of the skew.
        (
            now_slot - 11 * 60 * SEC,
            "before this aggregator's retention",
        ),
        (0, "before this aggregator's retention"),
    ];
    for (start, why) in implausible {
        let other = Series {
            key: vec![string("pay"), string("prod")],
            slots: vec![slot(start, 1 << 30, 0, &[(3, 1 << 30)])],
            ..Series::default()
        };
        match gateway.merge(request(vec![good.clone(), other], 0, &gateway)) {
            Err(MergeError::Implausible(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("slot at {start}: {other:?}"),
        }
        assert_eq!(
            MergeError::Implausible(String::new()).reason(),
            "implausible"
        );
    }
    // Nothing of any of them was merged, not even the good series beside the bad slot.
    let snap = gateway.tick();
    assert_eq!(snap.totals().observations, 0);
    assert_eq!(snap.totals().merged_observations, 0);
    assert!(snap.series().is_empty());
    // At the edges: the last slot the skew allows, the first the grace keeps.
    let edges = Series {
        slots: vec![
            slot(now_slot + 60 * SEC, 1, 0, &[(3, 1)]),
            slot(now_slot - 10 * 60 * SEC, 1, 0, &[(3, 1)]),
        ],
        ..good.clone()
    };
    assert_eq!(
        gateway.merge(request(vec![good, edges], 0, &gateway)),
        Ok(Merged::Accepted)
    );
    let t = gateway.tick();
    assert_eq!(t.totals().merged_observations, 4);
    assert_eq!(t.totals().dropped_late, 1);
    assert_eq!(t.totals().clamped_future, 0);
}

#[test]
fn typed_keys_land_in_the_series_a_span_would_reach() {
    let mut cfg = AggregatorConfig::default();
    cfg.resource_dimensions = vec!["k8s.namespace.name".into()];
    cfg.span_dimensions = vec!["retry".into(), "ratio".into(), "cached".into()];
    cfg.span_name_dimension = true;
    cfg.span_kind_dimension = true;
    let clock = ManualClock::new(T0);
    let mut sidecar = Sender::new(&cfg, &clock, "a");
    let (gateway, _) = aggregator(&cfg, &clock);
    let mut s = span("api", "shop", T0, 1_000);
    s.dims[1] = AttrValue::Int(3);
    s.dims[2] = AttrValue::Double(0.5);
    s.dims[3] = AttrValue::Bool(true);
    s.name = "GET /users/{id}";
    s.kind = SpanKind::Consumer;
    let mut t = s;
    // The same labels as `s` would print, but a string: another series.
    t.dims[1] = AttrValue::Str("3");
    t.service_name = None;
    sidecar.agg.record(&[s, t]);
    assert_eq!(gateway.merge(sidecar.ship()), Ok(Merged::Accepted));
    // The same spans straight into the gateway join the merged series.
    gateway.record(&[s, t]);
    let snap = gateway.tick();
    assert_eq!(snap.series().len(), 2, "{:?}", flat(&snap));
    assert!(snap.series().iter().all(|x| x.slots()[0].total == 2));
    assert!(
        snap.series()
            .iter()
            .any(|x| x.labels().service().is_empty())
    );
}

#[test]
fn versions_reach_the_gateway_with_when_they_last_served() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let mut sidecar = Sender::new(&cfg, &clock, "a");
    let (gateway, _) = aggregator(&cfg, &clock);
    let seen = |snap: &Snapshot| -> Vec<(String, u64, u64)> {
        snap.find(&[("service.name", "api"), ("deployment.environment", "prod")])
            .unwrap()
            .versions()
            .iter()
            .map(|v| {
                let (first, last) = (v.first_seen_unix_nanos, v.last_seen_unix_nanos);
                (v.version.to_string(), first, last)
            })
            .collect()
    };
    // 1.4.0, 1.5.0, then back to 1.4.0, a shipment each.
    for (k, version) in ["1.4.0", "1.5.0", "1.4.0"].into_iter().enumerate() {
        let now = T0 + k as u64 * 60 * SEC;
        clock.set(now);
        let mut s = span("api", "prod", now - SEC, 1_000);
        s.service_version = Some(version);
        sidecar.agg.record(&[s]);
        assert_eq!(gateway.merge(sidecar.ship()), Ok(Merged::Accepted));
        gateway.tick();
    }
    let at = |k: u64| T0 + k * 60 * SEC;
    let want = vec![
        ("1.4.0".to_owned(), at(0) - SEC, at(2)),
        ("1.5.0".to_owned(), at(1) - SEC, at(1)),
    ];
    assert_eq!(seen(&sidecar.agg.snapshot()), want);
    assert_eq!(seen(&gateway.snapshot()), want);

    // A sender's clock is not trusted past the gateway's; one that does not say when it last
    // saw a version (0) is read as when it first did.
    clock.set(at(3));
    let mut s = span("api", "prod", at(3) - SEC, 1_000);
    s.service_version = Some("1.5.0");
    sidecar.agg.record(&[s]);
    let mut req = sidecar.ship();
    let v = &mut req.series[0].versions;
    assert_eq!(v.len(), 1, "only the version that served is shipped: {v:?}");
    v[0].last_seen_unix_nanos = at(3) + 3_600 * SEC;
    v.push(slipstream_core::aggregates::Version {
        version: "1.6.0".into(),
        first_seen_unix_nanos: at(3) - 2 * SEC,
        last_seen_unix_nanos: 0,
    });
    assert_eq!(gateway.merge(req), Ok(Merged::Accepted));
    let got = seen(&gateway.tick());
    assert_eq!(got[1], ("1.5.0".to_owned(), at(1) - SEC, at(3)));
    assert_eq!(
        got[2],
        ("1.6.0".to_owned(), at(3) - 2 * SEC, at(3) - 2 * SEC)
    );
}

#[test]
fn overflow_series_merge_into_the_gateways_overflow_series() {
    let mut small = AggregatorConfig::default();
    small.max_series_per_service = 1;
    small.max_series = 5;
    let clock = ManualClock::new(T0);
    let mut sidecar = Sender::new(&small, &clock, "a");
    let (gateway, _) = aggregator(&AggregatorConfig::default(), &clock);
    let spans: Vec<SpanRecord<'_>> = ["e0", "e1", "e2"]
        .into_iter()
        .flat_map(|e| {
            [
                span("a", e, T0, 1_000),
                span("b", e, T0, 1_000),
                span("c", e, T0, 1_000),
            ]
        })
        .collect();
    sidecar.agg.record(&spans);
    let req = sidecar.ship();
    let kinds: Vec<Overflow> = req
        .series
        .iter()
        .map(|s| Overflow::try_from(s.overflow).unwrap())
        .collect();
    assert!(
        kinds.contains(&Overflow::Service) && kinds.contains(&Overflow::Global),
        "{kinds:?}"
    );
    assert_eq!(gateway.merge(req), Ok(Merged::Accepted));
    let (g, s) = (gateway.tick(), sidecar.agg.snapshot());
    assert_eq!(flat(&g), flat(&s));
    assert_eq!(
        g.totals().overflow_observations,
        s.totals().overflow_observations
    );
}

#[test]
fn merges_wait_for_room_between_ticks() {
    let mut cfg = AggregatorConfig::default();
    cfg.max_pending_per_shard = 2;
    let clock = ManualClock::new(T0);
    let (gateway, _) = aggregator(&cfg, &clock);
    let start = T0 / (60 * SEC) * 60 * SEC;
    let series = |n: u64| Series {
        key: vec![string("cart"), string("prod")],
        slots: (0..n)
            .map(|i| slot(start - i * 60 * SEC, 1, 0, &[(5, 1)]))
            .collect(),
        ..Series::default()
    };
    // One batch is taken whatever its size; the next must wait for the tick.
    assert_eq!(
        gateway.merge(request(vec![series(3)], 0, &gateway)),
        Ok(Merged::Accepted)
    );
    let busy = gateway.merge(request(vec![series(1)], 0, &gateway));
    assert_eq!(busy, Err(MergeError::Busy(gateway.tick_interval())));
    gateway.tick();
    assert_eq!(
        gateway.merge(request(vec![series(1)], 0, &gateway)),
        Ok(Merged::Accepted)
    );
    assert_eq!(gateway.tick().totals().observations, 4);
}

// === property: any spans, any split, any tick points ===

/// A span of the generated traffic: (service, env, seconds before now it ended, duration in
/// µs, bad, version, which sidecar records it).
type Gen = (u8, u8, u64, u64, bool, u8, u8);

fn traffic() -> impl Strategy<Value = Vec<Vec<Gen>>> {
    let span = (
        0u8..4,
        0u8..3,
        0u64..900,
        0u64..5_000_000,
        any::<bool>(),
        0u8..3,
        0u8..3,
    );
    proptest::collection::vec(proptest::collection::vec(span, 0..40), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Spans split at random over three sidecars, shipped after every round of traffic (the
    /// clock moving on between rounds, so slots fill late, age out and get dropped as late),
    /// merged into a gateway: after every round the gateway holds what one aggregator fed
    /// every span holds, slot for slot, bucket for bucket.
    #[test]
    fn delta_then_merge_reproduces_direct_aggregation(rounds in traffic(), step in 1u64..400) {
        let mut cfg = AggregatorConfig::default();
        cfg.slot_width = Duration::from_secs(10);
        cfg.retention = Duration::from_secs(600);
        cfg.histogram_max_value = Duration::from_secs(4);
        let clock = ManualClock::new(T0);
        let mut sidecars: Vec<Sender> = ["a", "b", "c"]
            .into_iter()
            .map(|n| Sender::new(&cfg, &clock, n))
            .collect();
        let (gateway, _) = aggregator(&cfg, &clock);
        let (reference, _) = aggregator(&cfg, &clock);
        let services = ["cart", "pay", "search", "auth"];
        let envs = ["prod", "canary", "dev"];
        let versions = ["1", "2", "3"];
        for (r, round) in rounds.iter().enumerate() {
            clock.set(T0 + r as u64 * step * SEC);
            let now = clock.now_unix_nanos();
            for &(svc, env, ago, us, bad, v, to) in round {
                let mut s = span(services[svc as usize], envs[env as usize], now - ago * SEC, us * 1_000);
                if bad {
                    s.status = StatusCode::Error;
                }
                s.service_version = Some(versions[v as usize]);
                sidecars[to as usize].agg.record(&[s]);
                reference.record(&[s]);
            }
            for sc in &mut sidecars {
                let req = sc.ship();
                prop_assert_eq!(gateway.merge(req), Ok(Merged::Accepted));
            }
            let (g, d) = (gateway.tick(), reference.tick());
            prop_assert_eq!(flat(&g), flat(&d));
            let (gt, dt) = (g.totals(), d.totals());
            prop_assert_eq!(gt.observations, dt.observations);
            let at_sidecars = |f: fn(&crate::Totals) -> u64| -> u64 {
                sidecars.iter().map(|s| f(s.agg.snapshot().totals())).sum()
            };
            prop_assert_eq!(gt.clamped_duration + at_sidecars(|t| t.clamped_duration), dt.clamped_duration);
            prop_assert_eq!(gt.dropped_late + at_sidecars(|t| t.dropped_late), dt.dropped_late);
            for s in d.series() {
                let mut want: Vec<&str> = s.versions().iter().map(|v| &*v.version).collect();
                let got = g.find(&s.labels().iter().collect::<Vec<_>>());
                let mut have: Vec<&str> = got
                    .map(|x| x.versions().iter().map(|v| &*v.version).collect())
                    .unwrap_or_default();
                want.sort_unstable();
                have.sort_unstable();
                prop_assert_eq!(have, want);
            }
        }
    }
}

/// Every slot's exemplars by series labels and slot start.
fn exemplars(snap: &Snapshot) -> Vec<(String, u64, Option<slipstream_core::Exemplars>)> {
    let mut out: Vec<_> = snap
        .series()
        .iter()
        .flat_map(|s| {
            s.slots().iter().map(|x| {
                (
                    s.labels().to_string(),
                    x.start_unix_nanos,
                    s.slot_exemplars(x.start_unix_nanos).copied(),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

#[test]
fn exemplars_cross_to_the_gateway_within_the_bound() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let mut sidecars: Vec<Sender> = ["a", "b"]
        .into_iter()
        .map(|n| Sender::new(&cfg, &clock, n))
        .collect();
    let (gateway, _) = aggregator(&cfg, &clock);
    let mut n = 0;
    for minute in 0..3u64 {
        clock.set(T0 + minute * 60 * SEC);
        // Two shipments a minute: a slot's set is sent again whole when it changes.
        for _ in 0..2 {
            for i in 0..10u64 {
                let now = clock.now_unix_nanos();
                let mut s = crate::tests::with_ids(
                    span(
                        "cart",
                        "prod",
                        now - i * SEC,
                        (n as u64 % 7 + 1) * 1_000_000 + n as u64,
                    ),
                    n,
                );
                if n % 3 == 0 {
                    s.status = StatusCode::Error;
                }
                sidecars[n % 2].agg.record(&[s]);
                n += 1;
            }
            for sc in &mut sidecars {
                let req = sc.ship();
                assert!(
                    req.series
                        .iter()
                        .flat_map(|s| &s.slots)
                        .all(|s| s.exemplars.len() <= 4)
                );
                assert_eq!(gateway.merge(req), Ok(Merged::Accepted));
            }
            // Each slot of the gateway holds the sidecars' sets of that slot, merged.
            let mut want: std::collections::BTreeMap<(String, u64), slipstream_core::Exemplars> =
                Default::default();
            for sc in &sidecars {
                for (labels, start, set) in exemplars(&sc.shipped) {
                    if let Some(set) = set {
                        want.entry((labels, start)).or_default().merge(&set);
                    }
                }
            }
            let got: std::collections::BTreeMap<_, _> = exemplars(&gateway.tick())
                .into_iter()
                .filter_map(|(labels, start, set)| Some(((labels, start), set?)))
                .collect();
            assert_eq!(got, want, "minute {minute}");
        }
    }
    assert!(
        exemplars(&gateway.snapshot())
            .iter()
            .all(|(_, _, e)| e.is_some())
    );
}

#[test]
fn malformed_exemplars_are_refused() {
    let cfg = AggregatorConfig::default();
    let clock = ManualClock::new(T0);
    let (gateway, _) = aggregator(&cfg, &clock);
    let start = (T0 / (60 * SEC)) * 60 * SEC;
    let ex = |trace: Vec<u8>| slipstream_core::aggregates::Exemplar {
        trace_id: trace,
        span_id: vec![1; 8],
        end_unix_nanos: start,
        duration_nanos: 3,
        bad: true,
    };
    for exemplars in [
        vec![ex(vec![1; 15])],
        vec![ex(vec![0; 16])],
        vec![ex(vec![1; 16]); 5],
    ] {
        let s = Series {
            key: vec![string("cart"), string("prod")],
            slots: vec![Slot {
                exemplars,
                ..slot(start, 1, 1, &[(3, 1)])
            }],
            ..Series::default()
        };
        let err = gateway.merge(request(vec![s], 0, &gateway)).unwrap_err();
        assert!(
            matches!(&err, MergeError::Invalid(m) if m.contains("exemplars")),
            "{err:?}"
        );
    }
}
