use super::*;

/// The aggregator's bucket of a value in nanoseconds, written out again from the layout
/// [`LATENCY_SUB_BUCKETS`] describes.
fn bucket_of(v: u64) -> u64 {
    if v < 64 {
        v
    } else {
        let e = 63 - u64::from(v.leading_zeros());
        let shift = e - 6;
        ((shift + 1) << 6) | ((v >> shift) & 63)
    }
}

/// The lowest and the highest value of bucket `b`.
fn bucket_range(b: u64) -> (u64, u64) {
    let chunk = b >> 6;
    if chunk == 0 {
        (b, b)
    } else {
        let low = (64 + (b & 63)) << (chunk - 1);
        (low, low + (1u64 << (chunk - 1)) - 1)
    }
}

fn is_edge(v: u64) -> bool {
    bucket_of(v) != bucket_of(v + 1)
}

#[test]
fn the_nearest_latency_edge_ends_a_bucket_and_no_edge_is_nearer() {
    let mut probes: Vec<u64> = (0..5_000).collect();
    for e in 7..40 {
        let p = 1u64 << e;
        probes.extend([p - 2, p - 1, p, p + 1, p + p / 3, p + p / 2, p + p / 64]);
    }
    probes.extend([
        5_000_000,
        100_000_000,
        137_000_000,
        2_500_000_000,
        10_000_000_000,
    ]);
    for ns in probes {
        let edge = nearest_latency_edge(ns);
        assert!(is_edge(edge), "{ns} -> {edge} does not end a bucket");
        // The edges around `ns`: the end of the bucket before its own, and its own end.
        let (low, high) = bucket_range(bucket_of(ns));
        let want = if high == ns || ns - (low - 1) <= high - ns {
            if high == ns { ns } else { low - 1 }
        } else {
            high
        };
        assert_eq!(edge, want, "{ns}");
        assert!(
            edge.abs_diff(ns) as f64 <= ns as f64 / 128.0 + 0.5,
            "{ns} -> {edge}"
        );
    }
}

#[test]
fn the_default_ladder_snaps_to_these_edges() {
    let got: Vec<u64> = [
        5_000_000u64,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ]
    .iter()
    .map(|&ns| nearest_latency_edge(ns))
    .collect();
    assert_eq!(
        got,
        [
            4_980_735,
            9_961_471,
            24_903_679,
            49_807_359,
            99_614_719,
            249_561_087,
            499_122_175,
            998_244_351,
            2_516_582_399,
            5_033_164_799,
            10_066_329_599,
        ]
    );
}
