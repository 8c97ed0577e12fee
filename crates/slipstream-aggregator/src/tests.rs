use std::sync::Arc;
use std::time::Duration;

use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, ManualClock, ObservationSink, Registry, SpanKind, SpanRecord, StatusCode,
};

use super::*;

pub(crate) const SEC: u64 = 1_000_000_000;
pub(crate) const T0: u64 = 1_700_000_000 * SEC;

fn setup(cfg: AggregatorConfig) -> (Aggregator, ManualClock, Registry) {
    let clock = ManualClock::new(T0);
    let registry = Registry::new();
    let agg = Aggregator::new(&cfg, Arc::new(clock.clone()), &registry);
    (agg, clock, registry)
}

pub(crate) fn span<'a>(service: &'a str, env: &'a str, end: u64, dur: u64) -> SpanRecord<'a> {
    let mut dims = [AttrValue::Absent; slipstream_core::MAX_DIMENSIONS];
    dims[0] = AttrValue::Str(env);
    SpanRecord {
        service_name: Some(service),
        name: "GET /",
        kind: SpanKind::Server,
        start_unix_nano: end - dur,
        end_unix_nano: end,
        dims,
        ..SpanRecord::default()
    }
}

fn labels<'a>(service: &'a str, env: &'a str) -> [(&'a str, &'a str); 2] {
    [("service.name", service), ("deployment.environment", env)]
}

#[test]
fn counts_requests_and_bad_ones_per_series() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    let mut error = span("checkout", "prod", T0 - SEC, 5_000_000);
    error.status = StatusCode::Error;
    let mut http500 = span("checkout", "prod", T0 - SEC, 7_000_000);
    http500.http_status_code = Some(503);
    let mut client500 = http500;
    client500.kind = SpanKind::Client;
    let mut internal = span("checkout", "prod", T0 - SEC, 1);
    internal.kind = SpanKind::Internal;
    let mut consumer = span("checkout", "prod", T0 - SEC, 2_000_000);
    consumer.kind = SpanKind::Consumer;
    consumer.rpc_grpc_status_code = Some(14);
    agg.record(&[
        span("checkout", "prod", T0 - SEC, 1_000_000),
        error,
        http500,
        client500,
        internal,
        consumer,
        span("cart", "prod", T0 - SEC, 3_000_000),
    ]);
    let snap = agg.tick();
    let checkout = snap.find(&labels("checkout", "prod")).unwrap();
    let w = snap.window(checkout, Duration::from_secs(60));
    // Client and internal spans are not requests by default.
    assert_eq!((w.total, w.bad), (4, 3));
    assert_eq!(w.success_ratio(), Some(0.25));
    let cart = snap.find(&labels("cart", "prod")).unwrap();
    assert_eq!(snap.window(cart, Duration::from_secs(60)).total, 1);
    assert_eq!(snap.totals().filtered, 2);
    assert_eq!(snap.totals().observations, 5);
    assert_eq!(
        snap.series().len(),
        2,
        "no empty overflow series is published"
    );
}

#[test]
fn rolling_windows_merge_slots() {
    let mut cfg = AggregatorConfig::default();
    cfg.slot_width = Duration::from_secs(10);
    let (agg, clock, _) = setup(cfg);
    // One request per 10 s slot for 20 minutes, latency growing with time.
    for i in 0..120u64 {
        let now = T0 + i * 10 * SEC;
        clock.set(now);
        agg.record(&[span("api", "prod", now, (i + 1) * 1_000_000)]);
        if i % 7 == 0 {
            agg.tick();
        }
    }
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    assert_eq!(snap.window(s, Duration::from_secs(60)).total, 6);
    assert_eq!(snap.window(s, Duration::from_secs(300)).total, 30);
    assert_eq!(snap.window(s, Duration::from_secs(3600)).total, 120);
    // The 1m window holds requests 115..=120 ms: p50 is the 3rd of 6, 117 ms (within 0.79%).
    let p50 = snap
        .window(s, Duration::from_secs(60))
        .quantile(0.5)
        .unwrap();
    let err = (p50.as_nanos() as f64 - 117e6).abs() / 117e6;
    assert!(err <= 1.0 / 128.0, "{p50:?}");
    let q = snap
        .window(s, Duration::from_secs(3600))
        .quantiles()
        .unwrap();
    assert!(q.windows(2).all(|w| w[0] <= w[1]), "{q:?}");
    // Per-slot data for the SLO engine: 120 slots of one request each.
    assert_eq!(s.slots().len(), 120);
    assert!(
        s.slots()
            .iter()
            .all(|sl| sl.total == 1 && sl.start_unix_nanos % (10 * SEC) == 0)
    );
}

#[test]
fn late_spans_update_their_slot_older_ones_are_dropped_future_ones_clamped() {
    let mut cfg = AggregatorConfig::default();
    cfg.retention = Duration::from_secs(600);
    let (agg, clock, registry) = setup(cfg);
    agg.record(&[span("api", "prod", T0 - 5 * 60 * SEC, 1_000)]);
    agg.tick();
    clock.advance(30 * SEC);
    agg.record(&[
        // Late but retained: lands in the slot five minutes back.
        span("api", "prod", T0 - 5 * 60 * SEC, 2_000),
        // Older than the retention.
        span("api", "prod", T0 - 11 * 60 * SEC, 1_000),
        // Far in the future: clamped to now.
        span("api", "prod", T0 + 3600 * SEC, 1_000),
    ]);
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    let slot5 = (T0 - 5 * 60 * SEC) / (60 * SEC) * 60 * SEC;
    let old = s
        .slots()
        .iter()
        .find(|x| x.start_unix_nanos == slot5)
        .unwrap();
    assert_eq!(old.total, 2);
    assert_eq!(snap.window(s, Duration::from_secs(60)).total, 1);
    assert_eq!(snap.totals().dropped_late, 1);
    assert_eq!(snap.totals().clamped_future, 1);
    assert_eq!(
        registry.value("slipstream_aggregator_dropped_spans_total", &["late"]),
        Some(1)
    );
    // Ten minutes on, that slot has left the retention.
    clock.advance(10 * 60 * SEC);
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    assert!(s.slots().iter().all(|x| x.start_unix_nanos > slot5));
}

#[test]
fn a_span_past_the_future_limit_is_clamped_even_in_the_slot_of_the_span_before() {
    let mut cfg = AggregatorConfig::default();
    cfg.max_future_skew = Duration::from_secs(1);
    let (agg, clock, _) = setup(cfg);
    // Early in a one-minute slot: the spans below all end in it.
    clock.advance((60 - T0 / SEC % 60) * SEC + 5 * SEC);
    let now = T0 + (60 - T0 / SEC % 60) * SEC + 5 * SEC;
    agg.record(&[
        span("api", "prod", now, 1_000),
        span("api", "prod", now + 500_000_000, 1_000),
        span("api", "prod", now + 20 * SEC, 1_000),
        span("api", "prod", now + 30 * SEC, 1_000),
    ]);
    let snap = agg.tick();
    assert_eq!(snap.totals().clamped_future, 2);
    let s = snap.find(&labels("api", "prod")).unwrap();
    assert_eq!(snap.window(s, Duration::from_secs(60)).total, 4);
}

#[test]
fn series_limits_send_new_series_to_overflow() {
    let mut cfg = AggregatorConfig::default();
    cfg.max_series = 4;
    cfg.max_series_per_service = 2;
    let (agg, _clock, registry) = setup(cfg);
    let envs = ["e0", "e1", "e2", "e3"];
    let mut spans = Vec::new();
    for e in envs {
        spans.push(span("a", e, T0, 1_000));
    }
    agg.record(&spans);
    let snap = agg.tick();
    // Two series of a, the rest in a's overflow series.
    assert!(snap.find(&labels("a", "e0")).is_some());
    assert!(snap.find(&labels("a", "e1")).is_some());
    let a_over = snap
        .find(&[("service.name", "a"), ("otel.metric.overflow", "true")])
        .unwrap();
    assert_eq!(snap.window(a_over, Duration::from_secs(60)).total, 2);
    // b gets one series; then the global limit (4 with a's overflow) is reached.
    spans.clear();
    for e in envs {
        spans.push(span("b", e, T0, 1_000));
    }
    agg.record(&spans);
    let snap = agg.tick();
    assert!(snap.find(&labels("b", "e0")).is_some());
    let global = snap.find(&[("otel.metric.overflow", "true")]).unwrap();
    assert!(global.labels().is_overflow());
    assert_eq!(snap.window(global, Duration::from_secs(60)).total, 3);
    assert_eq!(snap.totals().overflow_observations, 5);
    assert_eq!(
        registry.value("slipstream_aggregator_overflow_observations_total", &[]),
        Some(5)
    );
    assert_eq!(
        registry.value("slipstream_aggregator_series_active", &[]),
        Some(5)
    );
}

#[test]
fn idle_series_expire_and_come_back() {
    let mut cfg = AggregatorConfig::default();
    cfg.series_idle_timeout = Duration::from_secs(120);
    cfg.retention = Duration::from_secs(600);
    let (agg, clock, registry) = setup(cfg);
    agg.record(&[
        span("old", "prod", T0, 1_000),
        span("new", "prod", T0, 1_000),
    ]);
    agg.tick();
    for _ in 0..4 {
        clock.advance(60 * SEC);
        let now = clock.now_unix_nanos();
        agg.record(&[span("new", "prod", now, 1_000)]);
        agg.tick();
    }
    let snap = agg.snapshot();
    assert!(snap.find(&labels("old", "prod")).is_none());
    assert!(snap.find(&labels("new", "prod")).is_some());
    assert_eq!(snap.totals().series_expired, 1);
    assert_eq!(
        registry.value("slipstream_aggregator_series_expired_total", &[]),
        Some(1)
    );
    // The expired series returns, as a new series, on this thread's shard too.
    let now = clock.now_unix_nanos();
    agg.record(&[span("old", "prod", now, 1_000)]);
    agg.tick();
    agg.record(&[span("old", "prod", now, 1_000)]);
    let snap = agg.tick();
    let old = snap.find(&labels("old", "prod")).unwrap();
    assert_eq!(snap.window(old, Duration::from_secs(60)).total, 2);
    assert_eq!(snap.window(old, Duration::from_secs(600)).total, 2);
}

#[test]
fn a_series_retired_while_its_shard_still_records_is_recreated() {
    let mut cfg = AggregatorConfig::default();
    cfg.series_idle_timeout = Duration::from_secs(60);
    let (agg, clock, _) = setup(cfg);
    let shard = agg.shard();
    shard.record(&[span("s", "prod", T0, 1_000)]);
    agg.tick();
    clock.advance(61 * SEC);
    // The series is retired on this tick; the shard still maps its key to it.
    let snap = agg.tick();
    assert_eq!(snap.totals().series_expired, 1);
    let now = clock.now_unix_nanos();
    shard.record(&[span("s", "prod", now, 1_000)]);
    let snap = agg.tick();
    let s = snap.find(&labels("s", "prod")).unwrap();
    assert_eq!(snap.window(s, Duration::from_secs(60)).total, 1);
    assert_eq!(snap.totals().series_created, 2);
}

#[test]
fn shards_of_different_ages_count_every_span_across_ticks() {
    // The ticker recycles the deltas it takes from one shard into others, whose epochs
    // differ when they started at different ticks: nothing recorded may land in what a
    // recycled delta holds from its earlier owner. Which delta a shard gets at which epoch
    // depends on the ticks before, hence the several head starts.
    let envs: Vec<String> = (0..16).map(|i| format!("e{i}")).collect();
    for head_start in 1..12 {
        let (agg, _clock, _) = setup(AggregatorConfig::default());
        let old = agg.shard();
        let mut sent = 0;
        for _ in 0..head_start {
            for e in &envs {
                old.record(&[span("old", e, T0 - SEC, 1_000)]);
                sent += 1;
            }
            agg.tick();
        }
        // The young shard creates one series per tick, at a young epoch the old shard once
        // used, in whatever delta it holds then.
        let young = agg.shard();
        for (round, e) in envs.iter().enumerate() {
            young.record(&[span("young", e, T0 - SEC, 1_000)]);
            sent += 1;
            let snap = agg.tick();
            assert_eq!(snap.totals().observations, sent, "{head_start} {round}");
        }
    }
}

#[test]
fn versions_are_tracked_per_series() {
    let mut cfg = AggregatorConfig::default();
    cfg.max_versions_per_series = 2;
    let (agg, _clock, _) = setup(cfg);
    let mut spans = Vec::new();
    for (i, v) in ["1.0", "1.1", "1.0", "1.2"].iter().enumerate() {
        let mut s = span("api", "prod", T0 - 10 * SEC + i as u64, 1_000);
        s.service_version = Some(v);
        spans.push(s);
    }
    agg.record(&spans);
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    let seen: Vec<_> = s.versions().iter().map(|v| &*v.version).collect();
    assert_eq!(seen, ["1.1", "1.2"]);
    assert_eq!(s.versions()[1].first_seen_unix_nanos, T0 - 10 * SEC + 3);
}

/// `(version, last seen)` of a series, in the snapshot's order.
fn versions_seen(snap: &Snapshot, service: &str) -> Vec<(String, u64)> {
    let s = snap.find(&labels(service, "prod")).unwrap();
    s.versions()
        .iter()
        .map(|v| (v.version.to_string(), v.last_seen_unix_nanos))
        .collect()
}

#[test]
fn a_version_rolled_back_to_is_seen_again_and_the_one_rolled_back_is_not() {
    let (agg, clock, _) = setup(AggregatorConfig::default());
    let send = |version: &str, n: u64| {
        let now = clock.now_unix_nanos();
        let spans: Vec<_> = (0..n)
            .map(|i| {
                let mut s = span("api", "prod", now - SEC + i, 1_000);
                s.service_version = Some(version);
                s
            })
            .collect();
        agg.record(&spans);
    };
    let t = |k: u64| T0 + k * 5 * SEC;
    // 1.4.0, then 1.5.0, then back to 1.4.0, one tick each.
    send("1.4.0", 3);
    agg.tick();
    clock.set(t(1));
    send("1.5.0", 3);
    agg.tick();
    clock.set(t(2));
    send("1.4.0", 3);
    let snap = agg.tick();
    let want = |a: u64, b: u64| vec![("1.4.0".to_owned(), a), ("1.5.0".to_owned(), b)];
    assert_eq!(versions_seen(&snap, "api"), want(t(2), t(1)));
    // Traffic on 1.4.0 alone keeps it seen; 1.5.0 stays where it was last seen.
    clock.set(t(3));
    send("1.4.0", 2);
    let snap = agg.tick();
    assert_eq!(versions_seen(&snap, "api"), want(t(3), t(1)));
    // A tick without traffic sees no version.
    clock.set(t(4));
    let snap = agg.tick();
    assert_eq!(versions_seen(&snap, "api"), want(t(3), t(1)));
    // Both within one tick, ending on 1.5.0: both served, and 1.5.0 alone serves on.
    clock.set(t(5));
    send("1.4.0", 1);
    send("1.5.0", 1);
    send("1.4.0", 1);
    send("1.5.0", 1);
    let snap = agg.tick();
    assert_eq!(versions_seen(&snap, "api"), want(t(5), t(5)));
    clock.set(t(6));
    send("1.5.0", 1);
    let snap = agg.tick();
    assert_eq!(versions_seen(&snap, "api"), want(t(5), t(6)));
    // A change of version with the series' first span of a tick: the version before did
    // not serve in it.
    clock.set(t(7));
    send("1.4.0", 1);
    let snap = agg.tick();
    assert_eq!(versions_seen(&snap, "api"), want(t(7), t(6)));
}

#[test]
fn versions_served_through_different_shards_are_all_seen() {
    let (agg, clock, _) = setup(AggregatorConfig::default());
    let (a, b) = (agg.shard(), agg.shard());
    for k in 0..3 {
        let now = T0 + k * 5 * SEC;
        clock.set(now);
        let mut old = span("api", "prod", now - SEC, 1_000);
        old.service_version = Some("1.4.0");
        let mut new = span("api", "prod", now - SEC, 1_000);
        new.service_version = Some("1.5.0");
        a.record(&[old]);
        b.record(&[new]);
        let snap = agg.tick();
        assert_eq!(
            versions_seen(&snap, "api"),
            [("1.4.0".to_owned(), now), ("1.5.0".to_owned(), now)],
            "tick {k}"
        );
    }
}

#[test]
fn a_version_is_reported_once_however_long_and_wherever_its_bytes_live() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    // A commit hash, as deploy pipelines set it, in three separate buffers: the shard must
    // compare versions by value, not by where the request held them.
    let sha = "9f2c4e1d7b3a85c6e0f4d2b19a7c3e5f8d1b6a04";
    let copies: Vec<String> = (0..3).map(|_| sha.to_owned()).collect();
    let next = "0b7e5d3c1a9f8e2d4c6b0a1f3e5d7c9b2a4f6e8d".to_owned();
    for (i, v) in copies.iter().enumerate() {
        let mut a = span("api", "prod", T0 - 10 * SEC + i as u64, 1_000);
        a.service_version = Some(v);
        let mut b = span("web", "prod", T0 - 10 * SEC + i as u64, 1_000);
        b.service_version = Some(v);
        agg.record(&[a, b]);
    }
    let mut a = span("api", "prod", T0 - 10 * SEC + 7, 1_000);
    a.service_version = Some(&next);
    agg.record(&[a]);
    let snap = agg.tick();
    let api = snap.find(&labels("api", "prod")).unwrap();
    let seen: Vec<_> = api.versions().iter().map(|v| &*v.version).collect();
    assert_eq!(seen, [sha, next.as_str()]);
    assert_eq!(api.versions()[0].first_seen_unix_nanos, T0 - 10 * SEC);
    assert_eq!(api.versions()[1].first_seen_unix_nanos, T0 - 10 * SEC + 7);
    let web = snap.find(&labels("web", "prod")).unwrap();
    let seen: Vec<_> = web.versions().iter().map(|v| &*v.version).collect();
    assert_eq!(seen, [sha]);
}

#[test]
fn dimensions_span_name_kind_and_typed_values() {
    let mut cfg = AggregatorConfig::default();
    cfg.resource_dimensions = vec!["k8s.namespace.name".into()];
    cfg.span_dimensions = vec!["http.route".into(), "retry".into()];
    cfg.span_name_dimension = true;
    cfg.span_kind_dimension = true;
    let (agg, _clock, _) = setup(cfg.clone());
    assert_eq!(agg.scan_spec().span_keys, ["http.route", "retry"]);
    let mut s = span("api", "shop", T0, 1_000);
    s.dims[1] = AttrValue::Str("/users/{id}");
    s.dims[2] = AttrValue::Int(3);
    s.name = "GET /users/{id}";
    let mut t = s;
    t.dims[2] = AttrValue::Bool(true);
    t.service_name = None;
    agg.record(&[s, t]);
    let snap = agg.tick();
    let a = snap
        .find(&[
            ("service.name", "api"),
            ("k8s.namespace.name", "shop"),
            ("http.route", "/users/{id}"),
            ("retry", "3"),
            ("span.name", "GET /users/{id}"),
            ("span.kind", "server"),
        ])
        .unwrap();
    assert_eq!(a.labels().service(), "api");
    assert!(
        snap.find(&[
            ("service.name", ""),
            ("k8s.namespace.name", "shop"),
            ("http.route", "/users/{id}"),
            ("retry", "true"),
            ("span.name", "GET /users/{id}"),
            ("span.kind", "server"),
        ])
        .is_some()
    );
}

#[test]
fn long_durations_are_clamped_and_shard_overload_is_counted() {
    let mut cfg = AggregatorConfig::default();
    cfg.histogram_max_value = Duration::from_secs(10);
    cfg.max_pending_per_shard = 16;
    let (agg, _clock, _) = setup(cfg);
    let mut spans = vec![span("a", "x", T0, 20 * SEC)];
    let envs: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
    for e in &envs {
        spans.push(span("b", e, T0, 1_000));
    }
    agg.record(&spans);
    let snap = agg.tick();
    let a = snap.find(&labels("a", "x")).unwrap();
    let q = snap
        .window(a, Duration::from_secs(60))
        .quantile(1.0)
        .unwrap();
    assert!((q.as_secs_f64() - 10.0).abs() < 0.1, "{q:?}");
    assert_eq!(snap.totals().clamped_duration, 1);
    assert_eq!(snap.totals().dropped_shard_full, 5);
    assert_eq!(snap.totals().observations, 16);
}

#[test]
fn threads_record_into_their_own_shards() {
    let (agg, _clock, registry) = setup(AggregatorConfig::default());
    std::thread::scope(|s| {
        for t in 0..4 {
            let agg = agg.clone();
            s.spawn(move || {
                for i in 0..100u64 {
                    agg.record(&[span("api", "prod", T0 - SEC, (t * 100 + i + 1) * 1_000)]);
                }
            });
        }
    });
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    let w = snap.window(s, Duration::from_secs(60));
    assert_eq!(w.total, 400);
    assert_eq!(w.histogram.total(), 400);
    // The threads ended: once their thread-locals are gone, the shards are forgotten.
    let mut shards = snap.totals().shards;
    for _ in 0..200 {
        if shards == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        shards = agg.tick().totals().shards;
    }
    assert_eq!(shards, 0);
    assert_eq!(
        registry.value("slipstream_aggregator_observations_total", &[]),
        Some(400)
    );
}

/// Past 8,192 series a shard records with lookahead (blocks of spans, lookups started early);
/// the counts must be those of recording span by span: runs of one series, spans of uncounted
/// kinds, late spans, overflow and ticks between requests all across block boundaries.
#[test]
fn many_series_are_counted_exactly_with_lookahead() {
    use std::collections::HashMap;
    let mut cfg = AggregatorConfig::default();
    cfg.max_series = 15_000;
    let (agg, _clock, _) = setup(cfg);
    let services: Vec<String> = (0..200).map(|i| format!("svc-{i}")).collect();
    let envs: Vec<String> = (0..100).map(|i| format!("env-{i}")).collect();
    let mut expect: HashMap<(usize, usize), (u64, u64, u64)> = HashMap::new();
    let (mut late, mut filtered) = (0, 0);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let (mut s, mut e) = (0, 0);
    for request in 0..120 {
        let mut spans = Vec::with_capacity(512);
        for _ in 0..512 {
            let r = xorshift(&mut rng);
            // A third of the spans repeat the previous span's series.
            if !r.is_multiple_of(3) {
                (s, e) = ((r >> 8) as usize % 200, (r >> 24) as usize % 100);
            }
            // Fast (under 0.5 ms) or slow (2 ms and up), far from any shared bucket.
            let slow = r >> 45 & 1 == 1;
            let dur = if slow {
                2_000_000 + (r >> 20) % 3_000_000
            } else {
                1_000 + (r >> 20) % 499_000
            };
            let mut sp = span(&services[s], &envs[e], T0 - SEC * (r >> 32 & 31), dur);
            let bad = r >> 50 & 7 == 0;
            if bad {
                sp.status = StatusCode::Error;
            }
            match r >> 56 {
                0..=4 => {
                    sp.kind = SpanKind::Internal;
                    filtered += 1;
                }
                5..=7 => {
                    sp.end_unix_nano = T0 - 3 * 3600 * SEC;
                    sp.start_unix_nano = sp.end_unix_nano - dur;
                    late += 1;
                }
                _ => {
                    let x = expect.entry((s, e)).or_default();
                    x.0 += 1;
                    x.1 += u64::from(bad);
                    x.2 += u64::from(slow);
                }
            }
            spans.push(sp);
        }
        agg.record(&spans);
        if request % 16 == 15 {
            agg.tick();
        }
    }
    let snap = agg.tick();
    let hour = Duration::from_secs(3600);
    let (mut in_series, mut in_overflow) = (0, 0);
    for series in snap.series() {
        let w = snap.window(series, hour);
        let l = series.labels();
        if l.is_overflow() {
            in_overflow += w.total;
            continue;
        }
        let s = services.iter().position(|x| x == l.service()).unwrap();
        let e = envs
            .iter()
            .position(|x| Some(x.as_str()) == l.get("deployment.environment"))
            .unwrap();
        // A series whose only spans were late exists with no counts.
        let (total, bad, slow) = expect.get(&(s, e)).copied().unwrap_or_default();
        assert_eq!((w.total, w.bad), (total, bad), "{l:?}");
        assert_eq!(w.histogram.total(), total);
        let over_1ms = total - w.histogram.count_at_or_below(1_000_000);
        assert_eq!(over_1ms, slow, "{l:?}");
        in_series += total;
    }
    let counted: u64 = expect.values().map(|x| x.0).sum();
    assert!(in_overflow > 0, "the series limit was reached");
    assert!(in_series > 0);
    assert_eq!(in_series + in_overflow, counted);
    assert_eq!(snap.totals().observations, counted);
    assert_eq!(snap.totals().dropped_late, late);
    assert_eq!(snap.totals().filtered, filtered);
}

#[test]
fn histogram_buckets_tile_the_range() {
    let mut prev_high = None::<u64>;
    for b in 0..bucket_of(u64::MAX) {
        let lo = bucket_low(b);
        if let Some(h) = prev_high {
            assert_eq!(lo, h + 1, "bucket {b}");
        }
        assert_eq!(bucket_of(lo), b);
        assert_eq!(bucket_of(bucket_high(b)), b);
        let width = bucket_high(b) - lo + 1;
        assert!(lo < 64 || width * 64 <= lo, "bucket {b} too wide");
        prev_high = Some(bucket_high(b));
    }
    assert_eq!(histogram::chunks_for(3_600 * SEC), 37);
}

#[test]
fn sparse_histograms_hold_large_counts_and_merge() {
    let a = SparseHistogram::from_sorted([(5, 3_000_000), (700, 1)]);
    let b = a.merged_with([(5, 1), (6, 2), (701, 4)]);
    assert_eq!(b.total(), 3_000_008);
    assert_eq!(
        b.iter().collect::<Vec<_>>(),
        [(5, 3_000_001), (6, 2), (700, 1), (701, 4)]
    );
    assert_eq!(b.count_at_or_below(6), 3_000_003);
    assert_eq!(b.quantile(1.0), Some(bucket_value(701)));
    let mut dense = Histogram::new();
    dense.merge_sparse(&b);
    assert_eq!(SparseHistogram::from_dense(&dense), b);
    assert_eq!(dense.count_at_or_below(bucket_low(700)), 3_000_004);
}

#[test]
fn default_series_labels_are_service_and_environment() {
    let cfg = AggregatorConfig::default();
    assert_eq!(
        agg_default_labels(&cfg),
        ["service.name", "deployment.environment"]
    );
}

fn agg_default_labels(cfg: &AggregatorConfig) -> Vec<String> {
    let layout = key::KeyLayout::new(
        &cfg.resource_dimensions,
        &cfg.span_dimensions,
        cfg.span_name_dimension,
        cfg.span_kind_dimension,
    );
    layout.names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn shard_histograms_grow_in_both_directions_without_losing_counts() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    let shard = agg.shard();
    let mut expected = Histogram::new();
    let mut rng = 0x1234_5678_9ABC_DEF1u64;
    for _ in 0..5_000 {
        let rng = xorshift(&mut rng);
        // Log-uniform over 1 ns .. 1 h, in random order: runs start narrow and must grow
        // downwards and upwards.
        let dur = ((1u64 << (rng % 42)) + (rng >> 32) % (1u64 << (rng % 42))).min(3_600 * SEC);
        expected.record(dur);
        shard.record(&[span("api", "prod", T0 - SEC, dur)]);
    }
    let snap = agg.tick();
    let s = snap.find(&labels("api", "prod")).unwrap();
    let w = snap.window(s, Duration::from_secs(60));
    assert_eq!(w.total, 5_000);
    assert_eq!(w.histogram, expected);
}

// === key hashing ===

fn attr(v: &(u8, String, i64)) -> AttrValue<'_> {
    match v.0 % 5 {
        0 => AttrValue::Absent,
        1 => AttrValue::Str(&v.1),
        2 => AttrValue::Int(v.2),
        3 => AttrValue::Bool(v.2 % 2 == 0),
        _ => AttrValue::Double(v.2 as f64 / 3.0),
    }
}

type Parts = (Option<String>, Vec<(u8, String, i64)>, String, u8);

fn key_span(p: &Parts) -> SpanRecord<'_> {
    let mut dims = [AttrValue::Absent; slipstream_core::MAX_DIMENSIONS];
    for (d, v) in dims.iter_mut().zip(&p.1) {
        *d = attr(v);
    }
    SpanRecord {
        service_name: p.0.as_deref(),
        name: &p.2,
        kind: SpanKind::from_i32(i32::from(p.3 % 6)),
        dims,
        ..SpanRecord::default()
    }
}

fn parts() -> impl proptest::strategy::Strategy<Value = Parts> {
    let s = "[ab]{0,3}|[a-z]{0,20}";
    (
        proptest::option::of(s),
        proptest::collection::vec((0u8..5, s, -2i64..2), 0..4),
        s,
        0u8..6,
    )
}

proptest::proptest! {
    /// Looking a key up by hash and part-by-part comparison agrees with writing both keys
    /// and comparing the bytes; a key's typed values rebuild it.
    #[test]
    fn key_hash_and_match_agree_with_written_keys(
        a in parts(),
        b in parts(),
        dims in 0usize..4,
        name: bool,
        kind: bool,
    ) {
        let names: Vec<String> = (0..dims).map(|i| format!("d{i}")).collect();
        let layout = key::KeyLayout::new(&names, &[], name, kind);
        let (sa, sb) = (key_span(&a), key_span(&b));
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        layout.write(&sa, &mut ka);
        layout.write(&sb, &mut kb);
        proptest::prop_assert_eq!(layout.matches(&sa, &kb), ka == kb);
        proptest::prop_assert_eq!(layout.matches(&sb, &ka), ka == kb);
        proptest::prop_assert!(layout.matches(&sa, &ka));
        // The typed values partial aggregates carry give the key back.
        proptest::prop_assert_eq!(key::key_of_values(&layout, &key::values(&ka), false), Ok(ka.clone()));
        if ka == kb {
            proptest::prop_assert_eq!(layout.hash(&sa), layout.hash(&sb));
        }
    }
}

proptest::proptest! {
    /// The sparse encoding gives back exactly the counts it was built from, inline or not,
    /// and merging agrees with dense addition.
    #[test]
    fn sparse_histograms_round_trip_and_merge_like_dense(
        a in proptest::collection::btree_map(0u32..2400, 1u64..(1 << 40), 0..80),
        b in proptest::collection::btree_map(0u32..2400, 0u64..300, 0..80),
        t in 0u64..(1 << 40),
    ) {
        let sa = SparseHistogram::from_sorted(a.iter().map(|(k, v)| (*k, *v)));
        proptest::prop_assert_eq!(sa.iter().collect::<Vec<_>>(), a.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        let merged = sa.merged_with(b.iter().map(|(k, v)| (*k, *v)));
        let mut dense = Histogram::new();
        for (k, v) in a.iter().chain(&b) {
            dense.record_n(bucket_low(*k), *v);
        }
        proptest::prop_assert_eq!(merged.iter().collect::<Vec<_>>(), dense.iter().collect::<Vec<_>>());
        proptest::prop_assert_eq!(merged.total(), dense.total());
        proptest::prop_assert_eq!(merged.count_at_or_below(t), dense.count_at_or_below(t));
        proptest::prop_assert_eq!(merged.quantile(0.99), dense.quantile(0.99));
        proptest::prop_assert_eq!(&SparseHistogram::from_dense(&dense), &merged);
    }
}

/// The next number of a xorshift generator in `state` (deterministic test traffic).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

// === latency thresholds ===

const MS: u64 = 1_000_000;

/// `(threshold, requests above it)` of every slot of a series, by slot start; `None` for a
/// slot that does not cover its thresholds.
fn above_of(snap: &Snapshot, service: &str) -> Vec<(u64, Vec<(u64, u64)>)> {
    snap.find(&labels(service, "prod"))
        .unwrap()
        .slots()
        .iter()
        .map(|s| (s.start_unix_nanos, s.above.iter().collect()))
        .collect()
}

#[test]
fn a_latency_threshold_is_exact_inside_its_histogram_bucket() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    let t = 137 * MS;
    assert_eq!(agg.set_latency_thresholds([Duration::from_nanos(t)]), 1);
    agg.tick();
    let b = bucket_of(t);
    let top = bucket_high(b);
    assert!(top > t + 1, "the bucket reaches past the threshold");
    let end = T0 - SEC;
    agg.record(&[
        span("checkout", "prod", end, t - 1),
        span("checkout", "prod", end, t),
        // Above the threshold, in its bucket: the histogram would count these good.
        span("checkout", "prod", end, t + 1),
        span("checkout", "prod", end, (t + top) / 2),
        span("checkout", "prod", end, top),
        span("checkout", "prod", end, top + 1),
    ]);
    let snap = agg.tick();
    let slot = &snap.find(&labels("checkout", "prod")).unwrap().slots()[0];
    assert_eq!(slot.above.above(t), Some(4));
    assert_eq!(slot.good_within(t), (2, true));
    assert_eq!(
        slot.histogram.count_at_or_below(t),
        5,
        "what the bucket estimate said"
    );
    // A threshold the slot was not compared with falls back to the histogram.
    assert_eq!(slot.above.above(t + 1), None);
    assert_eq!(slot.good_within(t + 1), (5, false));
}

#[test]
fn durations_beyond_the_histogram_range_are_compared_as_they_are() {
    let cfg = AggregatorConfig {
        histogram_max_value: Duration::from_secs(1),
        ..AggregatorConfig::default()
    };
    let (agg, _clock, _) = setup(cfg);
    agg.set_latency_thresholds([Duration::from_secs(2)]);
    agg.tick();
    agg.record(&[
        span("checkout", "prod", T0 - SEC, 1_500 * MS),
        span("checkout", "prod", T0 - SEC, 3_000 * MS),
    ]);
    let snap = agg.tick();
    assert_eq!(above_of(&snap, "checkout")[0].1, [(2_000 * MS, 1)]);
}

#[test]
fn thresholds_added_later_are_exact_from_the_next_slot_and_merge_across_ticks() {
    let (agg, clock, _) = setup(AggregatorConfig::default());
    agg.set_latency_thresholds([Duration::from_millis(100)]);
    agg.tick();
    let minute = 60 * SEC;
    let slot0 = T0 / minute * minute;
    agg.record(&[
        span("checkout", "prod", slot0 + SEC, 50 * MS),
        span("checkout", "prod", slot0 + SEC, 150 * MS),
    ]);
    agg.tick();
    // A reload adds 200ms (and keeps 100ms) while the slot still fills.
    agg.set_latency_thresholds([Duration::from_millis(200), Duration::from_millis(100)]);
    agg.record(&[span("checkout", "prod", slot0 + 2 * SEC, 250 * MS)]);
    agg.tick();
    agg.record(&[span("checkout", "prod", slot0 + 3 * SEC, 250 * MS)]);
    clock.set(slot0 + minute + SEC);
    agg.record(&[
        span("checkout", "prod", slot0 + minute, 150 * MS),
        span("checkout", "prod", slot0 + minute, 250 * MS),
        span("checkout", "prod", slot0 + minute, 201 * MS),
    ]);
    let snap = agg.tick();
    let above = above_of(&snap, "checkout");
    // The first slot held requests before 200ms was counted: it covers only 100ms, exactly
    // (the one recorded before the tick that installed the new set, too).
    assert_eq!(above[0], (slot0, vec![(100 * MS, 3)]));
    let first = &snap.find(&labels("checkout", "prod")).unwrap().slots()[0];
    assert!(!first.good_within(200 * MS).1);
    // The next slot started after the tick: both, exactly.
    assert_eq!(
        above[1],
        (slot0 + minute, vec![(100 * MS, 3), (200 * MS, 2)])
    );
    // A reload that removes a threshold keeps the rest.
    agg.set_latency_thresholds([Duration::from_millis(200)]);
    agg.tick();
    agg.record(&[span("checkout", "prod", slot0 + minute + 2 * SEC, 300 * MS)]);
    let snap = agg.tick();
    assert_eq!(
        above_of(&snap, "checkout")[1],
        (slot0 + minute, vec![(200 * MS, 3)])
    );
}

/// A span of `service` ending at `end` after `dur`.
fn timed(service: &str, end: u64, dur: u64) -> SpanRecord<'_> {
    span(service, "prod", end, dur)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the thresholds and latencies, across slots, ticks, shards and late spans,
    /// every slot's count above each threshold is the brute-force count of its spans.
    #[test]
    fn above_counts_equal_a_brute_force_count(
        thresholds in proptest::collection::vec(1u64..2_000_000_000, 1..5),
        spans in proptest::collection::vec((0u64..3, 0u64..180, 0u64..2_500_000_000, 0usize..2), 1..300),
    ) {
        let (agg, clock, _) = setup(AggregatorConfig::default());
        agg.set_latency_thresholds(thresholds.iter().map(|&t| Duration::from_nanos(t)));
        agg.tick();
        let shards = [agg.shard(), agg.shard()];
        let minute = 60 * SEC;
        let base = T0 / minute * minute;
        clock.set(base + 3 * minute);
        let names = ["a", "b", "c"];
        let mut sorted = thresholds.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let mut expect: std::collections::BTreeMap<(&str, u64), Vec<u64>> = Default::default();
        for (n, &(svc, second, dur, shard)) in spans.iter().enumerate() {
            let end = base + second * SEC;
            shards[shard].record(&[timed(names[svc as usize], end, dur)]);
            let e = expect
                .entry((names[svc as usize], end / minute * minute))
                .or_insert_with(|| vec![0; sorted.len()]);
            for (i, t) in sorted.iter().enumerate() {
                e[i] += u64::from(dur > *t);
            }
            if n % 37 == 0 {
                agg.tick();
            }
        }
        let snap = agg.tick();
        for ((svc, start), counts) in expect {
            let series = snap.find(&labels(svc, "prod")).unwrap();
            let slot = series.slots().iter().find(|s| s.start_unix_nanos == start).unwrap();
            let got: Vec<(u64, u64)> = slot.above.iter().collect();
            let want: Vec<(u64, u64)> = sorted.iter().copied().zip(counts.iter().copied()).collect();
            proptest::prop_assert_eq!(got, want);
            for (t, n) in sorted.iter().zip(&counts) {
                proptest::prop_assert_eq!(slot.good_within(*t), (slot.total - n, true));
            }
        }
    }
}

// === sampled spans ===

/// `th:c`: sampled with probability 1/4.
const QUARTER: u64 = 0xc0_0000_0000_0000;

#[test]
fn a_sampled_span_counts_its_adjusted_count_everywhere() {
    let (sampled, _clock, _) = setup(AggregatorConfig::default());
    let (full, _clock, _) = setup(AggregatorConfig::default());
    for a in [&sampled, &full] {
        a.set_latency_thresholds([Duration::from_millis(100)]);
        a.tick();
    }
    let end = T0 - SEC;
    let shape = |i: u64| {
        let mut s = span("checkout", "prod", end, (i % 7 + 1) * 30 * MS);
        if i.is_multiple_of(3) {
            s.status = StatusCode::Error;
        }
        s
    };
    // 1 span in 4 kept, each carrying th:c; against every span of the same shape.
    let kept: Vec<SpanRecord<'_>> = (0..50)
        .map(|i| SpanRecord {
            sampling_threshold: Some(QUARTER),
            ..shape(i)
        })
        .collect();
    let all: Vec<SpanRecord<'_>> = (0..50)
        .flat_map(|i| std::iter::repeat_n(shape(i), 4))
        .collect();
    sampled.record(&kept);
    full.record(&all);
    let (s, f) = (sampled.tick(), full.tick());
    let (s, f) = (
        &s.find(&labels("checkout", "prod")).unwrap().slots()[0],
        &f.find(&labels("checkout", "prod")).unwrap().slots()[0],
    );
    assert_eq!((s.total, s.bad), (200, 68));
    assert_eq!((s.total, s.bad), (f.total, f.bad));
    assert_eq!(s.histogram, f.histogram);
    assert_eq!(s.above, f.above);
    assert_eq!((s.spans(), s.sampled_spans()), (50, 50));
    assert_eq!((f.spans(), f.sampled_spans()), (200, 0));
    // Spans counted once in the self-metrics.
    assert_eq!(sampled.snapshot().totals().observations, 50);
}

#[test]
fn fractional_adjusted_counts_round_to_an_unbiased_integer() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    // th:4: sampled with probability 3/4, an adjusted count of 4/3.
    let mut s = span("checkout", "prod", T0 - SEC, MS);
    s.sampling_threshold = Some(0x40_0000_0000_0000);
    let n = 30_000u64;
    for _ in 0..n / 500 {
        agg.record(&vec![s; 500]);
    }
    // Without a threshold (and with th:0) a span counts once.
    let mut always = s;
    always.sampling_threshold = Some(0);
    agg.record(&[always, span("checkout", "prod", T0 - SEC, MS)]);
    // Beyond the largest adjusted count: clamped and counted.
    let mut rare = s;
    rare.sampling_threshold = Some((1 << 56) - 1);
    agg.record(&[rare]);
    let snap = agg.tick();
    let slot = &snap.find(&labels("checkout", "prod")).unwrap().slots()[0];
    let sampled = slot.total - 2 - (1 << 20);
    // Each span counts 1 or 2, 2 with probability 1/3: 40,000 expected, standard deviation
    // sqrt(n * 2/9) = 82.
    let expected = n * 4 / 3;
    assert!(
        sampled.abs_diff(expected) < 500,
        "{sampled} requests from {n} spans, {expected} expected"
    );
    assert_eq!(slot.spans(), n + 3);
    assert_eq!(slot.sampled_spans(), n + 2);
    assert_eq!(snap.totals().clamped_adjusted_count, 1);
}

// === exemplars ===

/// Ids of request `n`: trace id `[n; 16]`, span id `[n; 8]` (kept in statics: records borrow).
pub(crate) static TRACE_IDS: [[u8; 16]; 64] = ids();
pub(crate) static SPAN_IDS: [[u8; 8]; 64] = ids();

/// Id `n` of 64: every byte `n + 1`.
const fn ids<const N: usize>() -> [[u8; N]; 64] {
    let mut ids = [[0u8; N]; 64];
    let mut i = 0;
    while i < 64 {
        ids[i] = [i as u8 + 1; N];
        i += 1;
    }
    ids
}

/// A span of request `n` (0..64) with its ids.
pub(crate) fn with_ids<'a>(mut s: SpanRecord<'a>, n: usize) -> SpanRecord<'a> {
    s.trace_id = &TRACE_IDS[n];
    s.span_id = &SPAN_IDS[n];
    s
}

fn ids_of<'a>(it: impl Iterator<Item = &'a slipstream_core::Exemplar>) -> Vec<u8> {
    it.map(|e| e.trace_id[0] - 1).collect()
}

#[test]
fn a_slot_keeps_its_most_recent_bad_requests_and_its_slowest() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    let mut spans = Vec::new();
    for n in 0..30usize {
        let end = T0 - 15 * SEC + n as u64 * SEC / 4;
        // Request 11 is the slowest, then 23; every fourth is bad.
        let dur = match n {
            11 => 900_000_000,
            23 => 800_000_000,
            _ => 1_000_000 + n as u64,
        };
        let mut s = with_ids(span("api", "prod", end, dur), n);
        if n % 4 == 0 {
            s.status = StatusCode::Error;
        }
        spans.push(s);
    }
    // Split over two ticks: each delta keeps its most recent bad request and its slowest, and
    // the slot gathers those of both (two of each).
    agg.record(&spans[..15]);
    agg.tick();
    agg.record(&spans[15..]);
    let snap = agg.tick();
    let series = snap.find(&labels("api", "prod")).unwrap();
    assert_eq!(series.slots().len(), 1);
    let set = series
        .slot_exemplars(series.slots()[0].start_unix_nanos)
        .expect("exemplars");
    assert_eq!(ids_of(set.bad()), [28, 12]);
    assert_eq!(ids_of(set.slow()), [11, 23]);
    // Three more ticks of bad requests only: the slot keeps the two most recent.
    for n in [29, 30, 31] {
        let mut s = with_ids(span("api", "prod", T0 - 5 * SEC + n as u64, 1_000), n);
        s.status = StatusCode::Error;
        agg.record(&[s]);
        agg.tick();
    }
    let later = agg.snapshot();
    let later = later.find(&labels("api", "prod")).unwrap();
    let newest = later
        .slot_exemplars(later.slots()[0].start_unix_nanos)
        .unwrap();
    assert_eq!(ids_of(newest.bad()), [31, 30]);
    assert_eq!(ids_of(newest.slow()), [11, 23]);
    let e = set.slow().next().unwrap();
    assert_eq!(e.duration_nanos, 900_000_000);
    assert_eq!(e.end_unix_nanos, T0 - 15 * SEC + 11 * SEC / 4);
    assert!(!e.bad);
    assert_eq!(e.span_id, [12; 8]);
    assert_eq!(
        snap.window_exemplars(series, Duration::from_secs(300)),
        *set
    );
}

#[test]
fn spans_without_ids_give_no_exemplars() {
    let (agg, _clock, _) = setup(AggregatorConfig::default());
    let mut bad = span("api", "prod", T0 - SEC, 5);
    bad.status = StatusCode::Error;
    // A trace id of the wrong length (the scanner's id check off) or all zero names no one.
    let mut short = bad;
    short.trace_id = &TRACE_IDS[0][..15];
    short.span_id = &SPAN_IDS[0];
    let mut zero = bad;
    zero.trace_id = &[0; 16];
    zero.span_id = &SPAN_IDS[0];
    agg.record(&[bad, span("api", "prod", T0 - SEC, 7_000_000), short, zero]);
    let snap = agg.tick();
    let series = snap.find(&labels("api", "prod")).unwrap();
    assert_eq!(series.slots()[0].total, 4);
    assert!(series.exemplar_slots().is_empty());
}

#[test]
fn exemplars_can_be_turned_off() {
    let clock = ManualClock::new(T0);
    let agg = Aggregator::with_exemplars(
        &AggregatorConfig::default(),
        Arc::new(clock.clone()),
        &Registry::new(),
        false,
    );
    agg.record(&[with_ids(span("api", "prod", T0 - SEC, 5), 0)]);
    let snap = agg.tick();
    let series = snap.find(&labels("api", "prod")).unwrap();
    assert!(series.exemplar_slots().is_empty());
}

#[test]
fn only_the_newest_slots_keep_exemplars() {
    let (agg, clock, _) = setup(AggregatorConfig::default());
    let slots = EXEMPLAR_SLOTS + 3;
    for m in 0..slots as u64 {
        let now = T0 + m * 60 * SEC;
        clock.set(now);
        agg.record(&[with_ids(span("api", "prod", now - SEC, 5), m as usize)]);
        agg.tick();
    }
    let snap = agg.snapshot();
    let series = snap.find(&labels("api", "prod")).unwrap();
    assert_eq!(series.slots().len(), slots);
    let kept: Vec<bool> = series
        .slots()
        .iter()
        .map(|s| series.slot_exemplars(s.start_unix_nanos).is_some())
        .collect();
    let mut want = vec![false; slots - EXEMPLAR_SLOTS];
    want.extend([true; EXEMPLAR_SLOTS]);
    assert_eq!(kept, want);
    // The window's set is the newest slots' merged: the slowest are all 5 ns, the newest win
    // no place by age, but every one is a request of the window.
    let set = snap.window_exemplars(series, Duration::from_secs(3600));
    assert_eq!(set.slow().count(), 2);
    assert!(
        set.slow()
            .all(|e| e.trace_id[0] as usize > slots - EXEMPLAR_SLOTS)
    );
}
