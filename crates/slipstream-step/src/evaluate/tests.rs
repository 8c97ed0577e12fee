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

// === sampled traffic, from the wire ===

/// Protobuf wire helpers: a length-delimited field, a varint field, a fixed64 field.
fn len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    varint(out, u64::from(field) << 3 | 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3 | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// An OTLP `ExportTraceServiceRequest` of `shop`'s server spans `(duration, error)`, ending at
/// `end`, each `copies` times, with `trace_state`.
fn otlp(spans: &[(u64, bool)], copies: usize, end: u64, trace_state: &str) -> Vec<u8> {
    let mut scope = Vec::new();
    for (i, &(dur, error)) in spans.iter().enumerate() {
        for c in 0..copies {
            let mut span = Vec::new();
            len_field(&mut span, 1, &[(i * copies + c) as u8 | 1; 16]);
            len_field(&mut span, 2, &[7; 8]);
            if !trace_state.is_empty() {
                len_field(&mut span, 3, trace_state.as_bytes());
            }
            len_field(&mut span, 5, b"GET /");
            varint(&mut span, 6 << 3);
            varint(&mut span, 2);
            fixed64_field(&mut span, 7, end - dur);
            fixed64_field(&mut span, 8, end);
            if error {
                let mut status = Vec::new();
                varint(&mut status, 3 << 3);
                varint(&mut status, 2);
                len_field(&mut span, 15, &status);
            }
            len_field(&mut scope, 2, &span);
        }
    }
    let mut value = Vec::new();
    len_field(&mut value, 1, b"shop");
    let mut kv = Vec::new();
    len_field(&mut kv, 1, b"service.name");
    len_field(&mut kv, 2, &value);
    let mut resource = Vec::new();
    len_field(&mut resource, 1, &kv);
    let mut rs = Vec::new();
    len_field(&mut rs, 1, &resource);
    len_field(&mut rs, 2, &scope);
    let mut req = Vec::new();
    len_field(&mut req, 1, &rs);
    req
}

#[test]
fn spans_sampled_at_one_in_four_count_as_four_times_the_traffic() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let clock = ManualClock::new(T0);
    let (sampled, mut sampled_ev) = evaluator(&cfg, &clock);
    let (full, mut full_ev) = evaluator(&cfg, &clock);
    let shape: Vec<(u64, bool)> = (0..40u64)
        .map(|i| ((i % 9 + 1) * 25 * MS, i.is_multiple_of(6)))
        .collect();
    let end = T0 - SEC;
    // One span in four kept by an OpenTelemetry probability sampler (th:c), among another
    // vendor's trace state; against all the spans, unsampled.
    let kept = otlp(&shape, 1, end, "rojo=00f067aa0ba902b7,ot=rv:1234;th:c");
    let all = otlp(&shape, 4, end, "");
    for (agg, body) in [(&sampled, &kept), (&full, &all)] {
        let mut spans = Vec::new();
        slipstream_receiver::scanner::scan_traces(body, agg.scan_spec(), &mut spans).unwrap();
        agg.record(&spans);
    }
    let (s, f) = (sampled_ev.step(true), full_ev.step(true));
    assert_eq!(s.slo_totals["shop-latency"], f.slo_totals["shop-latency"]);
    assert_eq!(f.slo_totals["shop-latency"].1, 160);
    let (st, ft) = (&s.totals[0], &f.totals[0]);
    assert_eq!((st.total, st.bad), (160, 28));
    assert_eq!(
        (st.total, st.bad, &st.histogram),
        (ft.total, ft.bad, &ft.histogram)
    );
    let window = |step: &Step| {
        let snap = &step.series;
        snap.window(&snap.series()[0], Duration::from_secs(300))
    };
    assert_eq!(window(&s).sampled_share(), Some(1.0));
    assert_eq!(window(&f).sampled_share(), Some(0.0));
    assert_eq!((window(&s).spans, window(&f).spans), (40, 160));
}

#[test]
fn a_burn_rate_event_carries_the_short_windows_bad_exemplars() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let clock = ManualClock::new(T0);
    let (agg, mut ev) = evaluator(&cfg, &clock);
    ev.set_trace_url(Some("https://tempo.example/trace/{trace_id}".to_owned()));
    let ids: Vec<([u8; 16], [u8; 8])> = (1..=40u8).map(|n| ([n; 16], [n; 8])).collect();
    let mut spans = Vec::new();
    for (i, (t, s)) in ids.iter().enumerate() {
        // Ten seconds apart, all within the 5m short window; every other one fails.
        let mut x = span("cart", T0 - 200 * SEC + i as u64 * 5 * SEC, 10 * MS);
        x.trace_id = t;
        x.span_id = s;
        if i % 2 == 1 {
            x.status = slipstream_core::StatusCode::Error;
        }
        spans.push(x);
    }
    // Four ticks of ten: each keeps the most recent bad request of its ten (requests 10, 20,
    // 30 and 40, numbered from 1).
    for chunk in spans.chunks(10) {
        agg.record(chunk);
        agg.tick();
    }
    let step = ev.step(true);
    let e = step
        .events
        .iter()
        .find(|e| e.slo == "cart-up" && e.row.short == Duration::from_secs(300))
        .expect("cart-up pages");
    // The most recent bad ones kept, most recent first.
    let got: Vec<u8> = e.exemplars.iter().map(|x| x.trace_id[0]).collect();
    assert_eq!(got, [40, 30, 20]);
    assert!(e.exemplars.iter().all(|x| x.bad));
    let links = &e.annotations[EXEMPLARS_ANNOTATION];
    assert_eq!(
        links.lines().next().unwrap(),
        format!("https://tempo.example/trace/{} (0.010s)", "28".repeat(16))
    );
    // The event the exporters send lists them too.
    let out = crate::series::burn_rate_event(e, 0.999);
    assert_eq!(out.example_traces.len(), 3);
    assert_eq!(out.example_traces[0].trace_id, "28".repeat(16));
    assert_eq!(out.example_traces[0].url, None);
    // Linked as the annotation links them, for the webhook's JSON.
    let out = crate::series::burn_rate_event_linked(e, 0.999, ev.trace_url());
    assert_eq!(
        out.example_traces[0].url.as_deref(),
        Some(format!("https://tempo.example/trace/{}", "28".repeat(16)).as_str())
    );
    // So are the values the bad requests share.
    let mut shared = e.clone();
    shared.bad_requests_share = vec![slipstream_core::explain::ValueShare {
        attribute: "http.route".to_owned(),
        value: "/pay".to_owned(),
        bad_share: 0.92,
        all_share: 0.07,
        example: None,
    }];
    let out = crate::series::burn_rate_event_linked(&shared, 0.999, None);
    assert_eq!(out.bad_requests_share, shared.bad_requests_share);
}
