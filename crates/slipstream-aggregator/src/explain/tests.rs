use std::collections::HashMap;

use proptest::prelude::*;
use slipstream_config::ExplainConfig;
use slipstream_core::SpanRecord;

use super::*;

const SLOT: u64 = 60_000_000_000;

/// An encoded `AnyValue` holding string `s`.
fn string(s: &str) -> Vec<u8> {
    assert!(s.len() < 128);
    let mut out = vec![0x0a, s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

/// An encoded `AnyValue` holding integer `i` (at most 127).
fn int(i: u8) -> Vec<u8> {
    vec![0x18, i]
}

fn spec(attributes: &[&str], counters: usize, good_sample: u32) -> Spec {
    let cfg = ExplainConfig {
        attributes: attributes.iter().map(|s| (*s).to_owned()).collect(),
        counters,
        good_sample,
        top: 5,
        ..ExplainConfig::default()
    };
    Spec::new(&cfg, 60, SLOT)
}

fn span<'a>(service: &'a str, values: &[&[u8]]) -> SpanRecord<'a> {
    // As the scanner leaves it: each value's length prefix at its offset in the request.
    let mut request = vec![0u8];
    let mut rec = SpanRecord {
        service_name: Some(service),
        ..SpanRecord::default()
    };
    for (i, v) in values.iter().enumerate() {
        assert!(v.len() < 128);
        rec.candidates[i] = request.len() as u32;
        request.push(v.len() as u8);
        request.extend_from_slice(v);
    }
    rec.request = Box::leak(request.into_boxed_slice());
    rec
}

/// Counts, absorbs and reads back.
fn explained(spec: &Spec, counts: &[&Counts]) -> Arc<Explained> {
    let mut kept = Kept::new(spec.clone());
    for c in counts {
        kept.absorb(c);
    }
    kept.age(10);
    kept.snapshot(SLOT)
}

#[test]
fn values_are_rendered_as_written() {
    assert_eq!(value_text(&string("/pay"), false), "/pay");
    assert_eq!(value_text(&int(42), false), "42");
    assert_eq!(value_text(&[0x10, 1], false), "true");
    let mut double = vec![0x21];
    double.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
    assert_eq!(value_text(&double, false), "2.5");
    // A cut string shows the bytes kept.
    let long = string(&"x".repeat(100));
    let v = Val::new(&long);
    assert!(v.cut);
    assert_eq!(
        value_text(v.as_slice(), v.cut),
        format!("{}…", "x".repeat(44))
    );
    assert_eq!(value_text(&[0x2a, 0], false), "?");
}

#[test]
fn the_value_the_bad_requests_share_is_ranked_first() {
    let spec = spec(&["http.route", "k8s.pod.name"], 8, 1);
    let mut counts = Counts::default();
    let routes: Vec<Vec<u8>> = (0..20).map(|i| string(&format!("/r{i}"))).collect();
    let pods: Vec<Vec<u8>> = (0..10).map(|i| string(&format!("pod-{i}"))).collect();
    for round in 0..10 {
        for (r, route) in routes.iter().enumerate() {
            for (p, pod) in pods.iter().enumerate() {
                let bad = r == 3 && p == 7;
                let rec = span("checkout", &[route, pod]);
                counts.offer(&spec, &rec, 5, bad, 0);
                // Extra bad requests on the incident's route and pod.
                if bad && round < 9 {
                    counts.offer(&spec, &rec, 5, true, 0);
                }
            }
        }
    }
    let e = explained(&spec, &[&counts]);
    let shares = e.shares("checkout", 0, u64::MAX);
    assert_eq!(shares.len(), 2, "{shares:?}");
    assert_eq!(shares[0].attribute, "http.route");
    assert_eq!(shares[0].value, "/r3");
    assert!((shares[0].bad_share - 1.0).abs() < 1e-9);
    assert_eq!(shares[1].value, "pod-7");
    assert!((shares[1].bad_share - 1.0).abs() < 1e-9);
    // 19 of 2,019 requests: the route holds 1/20 of the others and all of the bad ones.
    assert!(shares[0].all_share < 0.2, "{shares:?}");
    assert!(
        shares[0]
            .to_string()
            .starts_with("http.route=/r3: 100% of bad, ")
    );
    assert!(e.shares("other", 0, u64::MAX).is_empty());
    // A window without the slot is empty.
    assert!(e.shares("checkout", 6 * SLOT, u64::MAX).is_empty());
}

#[test]
fn status_codes_rank_after_where_the_requests_fail() {
    let spec = spec(&["http.response.status_code", "http.route"], 8, 1);
    let mut counts = Counts::default();
    let (ok, boom) = (int(100), int(101));
    let routes: Vec<Vec<u8>> = (0..4).map(|i| string(&format!("/r{i}"))).collect();
    for _ in 0..50 {
        for (i, r) in routes.iter().enumerate() {
            let bad = i == 0;
            let rec = span("a", &[if bad { &boom } else { &ok }, r]);
            counts.offer(&spec, &rec, 1, bad, 0);
        }
    }
    let shares = explained(&spec, &[&counts]).shares("a", 0, u64::MAX);
    assert_eq!(shares[0].attribute, "http.route");
    assert_eq!(shares[1].attribute, "http.response.status_code");
}

#[test]
fn memory_is_bounded_whatever_the_cardinality() {
    let spec = spec(&["http.route"], 8, 1);
    let mut counts = Counts::default();
    for i in 0..10_000 {
        let v = string(&format!("/distinct/{i}"));
        counts.offer(&spec, &span("a", &[&v]), 1, i % 2 == 0, 0);
    }
    assert_eq!(counts.used, 1);
    let t = &counts.tables[0];
    assert_eq!(t.hashes.len(), 2 * 8);
    assert!(t.n.iter().all(|&n| n <= 8));
    let e = explained(&spec, &[&counts]);
    let s = &e.services["a"][0].1;
    assert!(s.sketches.iter().all(|l| l.len() <= 8));
    assert_eq!(s.all, 10_000);
    assert_eq!(s.bad, 5_000);
}

#[test]
fn services_beyond_the_limit_are_not_counted() {
    let mut cfg_spec = spec(&["http.route"], 4, 1);
    cfg_spec.max_tables = 2;
    let mut counts = Counts::default();
    let v = string("/x");
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for name in &names {
        counts.offer(&cfg_spec, &span(name, &[&v]), 1, true, 0);
    }
    assert_eq!(counts.used, 2);
    assert_eq!(counts.dropped, 3);
    counts.clear();
    assert_eq!(counts.used, 0);
    assert_eq!(counts.tables.len(), 2, "tables are kept for reuse");
}

#[test]
fn good_requests_are_sampled_without_bias() {
    let spec = spec(&["http.route"], 8, 16);
    let mut counts = Counts::default();
    let (a, b) = (string("/a"), string("/b"));
    // 100,000 good requests with sequential span ids: a quarter on /a.
    let ids: Vec<[u8; 8]> = (0..100_000u64).map(u64::to_le_bytes).collect();
    for (i, id) in ids.iter().enumerate() {
        let v = if i % 4 == 0 { &a } else { &b };
        let rec = SpanRecord {
            span_id: id,
            ..span("s", &[v])
        };
        counts.offer(&spec, &rec, 1, false, 0);
    }
    let t = &counts.tables[0];
    let all = t.all as f64;
    assert!((all / 100_000.0 - 1.0).abs() < 0.05, "{all}");
    let a_count = t
        .entries(spec.k, 0)
        .find(|(_, v, _)| v.as_slice() == &a[..])
        .unwrap()
        .2 as f64;
    assert!((a_count / all - 0.25).abs() < 0.03, "{}", a_count / all);
}

#[test]
fn slots_outside_the_window_are_forgotten() {
    let mut s = spec(&["http.route"], 4, 1);
    s.window_slots = 3;
    let mut kept = Kept::new(s.clone());
    let v = string("/x");
    for slot in 0..6 {
        let mut counts = Counts::default();
        counts.offer(&s, &span("a", &[&v]), slot, true, 0);
        kept.absorb(&counts);
    }
    kept.age(5);
    let slots: Vec<u64> = kept.services[&b"a"[..]].iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, vec![3, 4, 5]);
    kept.age(100);
    assert!(kept.services.is_empty());
}

proptest! {
    /// Whatever the stream and however it is split across shards, every count read from the
    /// kept sketch is within N/K of the exact one, and every value above N/K is kept.
    #[test]
    fn counts_stay_within_the_error_bound(
        stream in prop::collection::vec((0u8..40, 0u8..4, 1u32..4), 1..2_000),
        k in 4usize..16,
    ) {
        let spec = spec(&["v"], k, 1);
        let mut shards: [Counts; 4] = Default::default();
        let mut exact: HashMap<u8, u64> = HashMap::new();
        let values: Vec<Vec<u8>> = (0..40).map(int).collect();
        for &(v, shard, w) in &stream {
            // Skewed: low values are frequent.
            let v = v % (1 + v / 4);
            shards[usize::from(shard)].offer(&spec, &span("s", &[&values[usize::from(v)]]), 1, true, w);
            *exact.entry(v).or_default() += u64::from(w);
        }
        let refs: Vec<&Counts> = shards.iter().collect();
        let e = explained(&spec, &refs);
        let kept = &e.services["s"][0].1;
        let n: u64 = exact.values().sum();
        prop_assert_eq!(kept.bad, n);
        let bound = n as f64 / k as f64;
        for (v, &c) in &exact {
            let got = kept.sketches[BAD]
                .iter()
                .find(|x| x.val.as_slice() == &values[usize::from(*v)][..])
                .map_or(0, |x| x.count);
            prop_assert!((got as f64 - c as f64).abs() <= bound + 1e-9,
                "value {} exact {} got {} bound {}", v, c, got, bound);
            if c as f64 > bound {
                prop_assert!(got > 0, "value {} of {} above N/K dropped", v, c);
            }
        }
    }
}
