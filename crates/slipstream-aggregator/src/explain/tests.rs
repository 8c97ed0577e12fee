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

fn span<'a>(spec: &Spec, service: &'a str, values: &[&[u8]]) -> SpanRecord<'a> {
    // As the scanner leaves it: a request holding the span, whose attributes are the values
    // under the spec's names, in order.
    let mut request = Vec::new();
    for (name, v) in spec.names.iter().zip(values) {
        assert!(name.len() + v.len() + 4 < 128);
        request.push(0x4a); // field 9, attributes
        request.push((name.len() + v.len() + 4) as u8);
        request.extend_from_slice(&[0x0a, name.len() as u8]);
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(&[0x12, v.len() as u8]);
        request.extend_from_slice(v);
    }
    SpanRecord {
        service_name: Some(service),
        span_at: [0, request.len() as u32],
        request: Box::leak(request.into_boxed_slice()),
        ..SpanRecord::default()
    }
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
                let rec = span(&spec, "checkout", &[route, pod]);
                counts.offer(&spec, &rec, 5, bad, 0, &[], 0);
                // Extra bad requests on the incident's route and pod.
                if bad && round < 9 {
                    counts.offer(&spec, &rec, 5, true, 0, &[], 0);
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
fn slow_requests_name_their_own_values_per_latency_threshold() {
    const MS: u64 = 1_000_000;
    // Errors on /r1; requests slower than 100 ms on /r2 of pod-4, the slowest above 1 s.
    let spec = spec(&["http.route", "k8s.pod.name"], 8, 1);
    let thresholds = [100 * MS, 1_000 * MS];
    let mut shards: [Counts; 2] = Default::default();
    let routes: Vec<Vec<u8>> = (0..5).map(|i| string(&format!("/r{i}"))).collect();
    let pods: Vec<Vec<u8>> = (0..5).map(|i| string(&format!("pod-{i}"))).collect();
    for round in 0..20 {
        for (r, route) in routes.iter().enumerate() {
            for (p, pod) in pods.iter().enumerate() {
                let rec = span(&spec, "checkout", &[route, pod]);
                let above = match (r, p) {
                    (2, 4) if round % 2 == 0 => 2,
                    (2, 4) => 1,
                    _ => 0,
                };
                shards[round % 2].offer(&spec, &rec, 5, r == 1, 0, &thresholds, above);
            }
        }
    }
    let e = explained(&spec, &shards.iter().collect::<Vec<_>>());
    let kept = &e.services["checkout"][0].1;
    assert_eq!(kept.bad, 100);
    assert_eq!(kept.slow, vec![(100 * MS, 20), (1_000 * MS, 10)]);
    let of = |bad| e.shares_of("checkout", bad, 0, u64::MAX, 5);
    let errors = of(BadRequests::Errors);
    assert_eq!(
        (errors[0].attribute.as_str(), errors[0].value.as_str()),
        ("http.route", "/r1")
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors, e.shares("checkout", 0, u64::MAX));
    for t in thresholds {
        let slow = of(BadRequests::SlowerThan(t));
        assert_eq!(slow.len(), 2, "{slow:?}");
        let named: Vec<(&str, &str)> = slow
            .iter()
            .map(|s| (s.attribute.as_str(), s.value.as_str()))
            .collect();
        assert!(named.contains(&("http.route", "/r2")), "{slow:?}");
        assert!(named.contains(&("k8s.pod.name", "pod-4")), "{slow:?}");
        assert!(slow.iter().all(|s| (s.bad_share - 1.0).abs() < 1e-9));
    }
    // A threshold not counted names nothing.
    assert!(of(BadRequests::SlowerThan(5_000 * MS)).is_empty());
}

#[test]
fn slow_classes_merge_by_threshold_across_shards_that_count_different_sets() {
    const MS: u64 = 1_000_000;
    let spec = spec(&["http.route"], 8, 1);
    let v = string("/slow");
    let rec = span(&spec, "s", &[&v]);
    let mut a = Counts::default();
    let mut b = Counts::default();
    // Before and after a reload that added a lower threshold.
    a.offer(&spec, &rec, 1, false, 0, &[300 * MS], 1);
    b.offer(&spec, &rec, 1, false, 0, &[50 * MS, 300 * MS], 2);
    let e = explained(&spec, &[&a, &b]);
    let kept = &e.services["s"][0].1;
    assert_eq!(kept.slow, vec![(300 * MS, 2), (50 * MS, 1)]);
    assert_eq!(kept.bad, 0);
    let slow = e.shares_of("s", BadRequests::SlowerThan(300 * MS), 0, u64::MAX, 3);
    assert!(
        slow.is_empty(),
        "every request is slow: no value stands out: {slow:?}"
    );
    assert_eq!(kept.sketches[SLOW][0].count, 2);
    assert_eq!(kept.sketches[SLOW + 1][0].count, 1);
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
            let rec = span(&spec, "a", &[if bad { &boom } else { &ok }, r]);
            counts.offer(&spec, &rec, 1, bad, 0, &[], 0);
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
        counts.offer(&spec, &span(&spec, "a", &[&v]), 1, i % 2 == 0, 0, &[], 0);
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
        counts.offer(&cfg_spec, &span(&cfg_spec, name, &[&v]), 1, true, 0, &[], 0);
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
            ..span(&spec, "s", &[v])
        };
        counts.offer(&spec, &rec, 1, false, 0, &[], 0);
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
        counts.offer(&s, &span(&s, "a", &[&v]), slot, true, 0, &[], 0);
        kept.absorb(&counts);
    }
    kept.age(5);
    let slots: Vec<u64> = kept.services[&b"a"[..]].iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, vec![3, 4, 5]);
    kept.age(100);
    assert!(kept.services.is_empty());
}

#[test]
fn bad_requests_past_the_exact_count_are_sampled_without_bias() {
    let spec = spec(&["http.route"], 8, 64);
    let mut counts = Counts::default();
    let (a, b) = (string("/a"), string("/b"));
    // 40,000 bad requests with sequential span ids: a quarter on /a.
    let n = 40_000u64;
    let ids: Vec<[u8; 8]> = (0..n).map(u64::to_le_bytes).collect();
    for (i, id) in ids.iter().enumerate() {
        let v = if i % 4 == 0 { &a } else { &b };
        let rec = SpanRecord {
            span_id: id,
            ..span(&spec, "s", &[v])
        };
        counts.offer(&spec, &rec, 1, true, 0, &[], 0);
    }
    let t = &counts.tables[0];
    // Totals are exact.
    assert_eq!((t.all, t.bad[0]), (n, n));
    let count = |s: usize, v: &[u8]| {
        t.entries(spec.k, s)
            .find(|(_, x, _)| x.as_slice() == v)
            .map_or(0, |e| e.2) as f64
    };
    let (in_bad, in_all) = (count(BAD, &a), count(ALL, &a));
    // The sketch sums to about the total; /a's share within sampling error (one in 8 of
    // 39,488 requests: a standard deviation of about 0.6%).
    let sum: u64 = t.entries(spec.k, BAD).map(|e| e.2).sum();
    assert!((sum as f64 / n as f64 - 1.0).abs() < 0.05, "{sum}");
    assert!(
        (in_bad / n as f64 - 0.25).abs() < 0.025,
        "{}",
        in_bad / n as f64
    );
    assert_eq!(in_bad, in_all);
}

proptest! {
    /// Whatever the stream and however it is split across shards, every count read from the
    /// kept sketch is within N/K of the exact one, and every value above N/K is kept.
    #[test]
    fn counts_stay_within_the_error_bound(
        stream in prop::collection::vec((0u8..40, 0u8..4, 1u32..4), 1..2_000),
        k in 4usize..16,
    ) {
        let mut spec = spec(&["v"], k, 1);
        // The sketches' own bound, every bad request counted.
        spec.bad_exact = u64::MAX;
        let mut shards: [Counts; 4] = Default::default();
        let mut exact: HashMap<u8, u64> = HashMap::new();
        let values: Vec<Vec<u8>> = (0..40).map(int).collect();
        for &(v, shard, w) in &stream {
            // Skewed: low values are frequent.
            let v = v % (1 + v / 4);
            shards[usize::from(shard)].offer(&spec, &span(&spec, "s", &[&values[usize::from(v)]]), 1, true, w, &[], 0);
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
