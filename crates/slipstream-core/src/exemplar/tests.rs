use super::*;

fn ex(n: u8, end: u64, dur: u64, bad: bool) -> Exemplar {
    Exemplar::new(&[n; 16], &[n; 8], end, dur, bad).unwrap()
}

#[test]
fn ids_must_be_those_of_a_valid_span() {
    assert!(Exemplar::new(&[], &[], 1, 1, true).is_none());
    assert!(Exemplar::new(&[1; 15], &[1; 8], 1, 1, true).is_none());
    assert!(Exemplar::new(&[1; 16], &[1; 7], 1, 1, true).is_none());
    assert!(Exemplar::new(&[0; 16], &[1; 8], 1, 1, true).is_none());
    let e = Exemplar::new(&[0xab; 16], &[0x01; 8], 1, 1, true).unwrap();
    assert_eq!(e.trace_id_hex(), "ab".repeat(16));
    assert_eq!(e.span_id_hex(), "01".repeat(8));
    assert_eq!(
        e.link("https://tempo.example/trace/{trace_id}?span={span_id}"),
        format!(
            "https://tempo.example/trace/{}?span={}",
            "ab".repeat(16),
            "01".repeat(8)
        )
    );
}

#[test]
fn keeps_the_most_recent_bad_ones_and_the_slowest() {
    let mut set = Exemplars::default();
    assert!(set.is_empty());
    for i in 1..=20u8 {
        // Bad every third; the slowest is request 7, then 13.
        let dur = match i {
            7 => 900,
            13 => 800,
            _ => u64::from(i),
        };
        set.offer(ex(i, 1000 + u64::from(i), dur, i % 3 == 0));
    }
    let bad: Vec<u8> = set.bad().map(|e| e.trace_id[0]).collect();
    assert_eq!(bad, [18, 15]);
    let slow: Vec<u8> = set.slow().map(|e| e.trace_id[0]).collect();
    assert_eq!(slow, [7, 13]);
    assert_eq!(set.slow_floor(), 801);
    assert_eq!(set.iter().count(), 4);
}

#[test]
fn a_late_bad_request_does_not_push_out_newer_ones() {
    let mut set = Exemplars::default();
    set.offer(ex(1, 500, 1, true));
    set.offer(ex(2, 600, 1, true));
    set.offer(ex(3, 100, 1, true));
    let bad: Vec<u8> = set.bad().map(|e| e.trace_id[0]).collect();
    assert_eq!(bad, [2, 1]);
}

#[test]
fn one_request_bad_and_slow_is_listed_once() {
    let mut set = Exemplars::default();
    set.offer(ex(1, 500, 1000, true));
    assert_eq!(set.bad().count(), 1);
    assert_eq!(set.slow().count(), 1);
    assert_eq!(set.iter().count(), 1);
    // Offered again (a merge of the same set): still once.
    let copy = set;
    set.merge(&copy);
    assert_eq!(set, copy);
}

#[test]
fn merge_keeps_the_bound_and_the_best_of_both() {
    let mut a = Exemplars::default();
    let mut b = Exemplars::default();
    for i in 1..=10u8 {
        a.offer(ex(i, u64::from(i), u64::from(i) * 10, true));
        b.offer(ex(100 + i, u64::from(i) + 5, u64::from(i) * 7, i % 2 == 0));
    }
    a.merge(&b);
    let bad: Vec<u64> = a.bad().map(|e| e.end_unix_nanos).collect();
    assert_eq!(bad, [15, 13]);
    let slow: Vec<u64> = a.slow().map(|e| e.duration_nanos).collect();
    assert_eq!(slow, [100, 90]);
    assert!(a.iter().count() <= BAD_EXEMPLARS + SLOW_EXEMPLARS);
}
