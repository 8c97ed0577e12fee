use std::collections::BTreeMap;

use prost::Message;
use slipstream_config::exporters::HistogramExportConfig;
use slipstream_core::MetricsSnapshot;
use slipstream_core::export::{HistogramValue, MetricFamily, MetricKind, Point, PointValue};

use super::*;

/// A point of `service` with these labels and value, started at 111 ns (shared by the
/// exporters' unit tests).
pub(crate) fn point(service: Option<&str>, labels: &[(&str, &str)], value: PointValue) -> Point {
    Point {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        service: service.map(str::to_owned),
        value,
        start_time: 111,
        exemplars: Vec::new(),
    }
}

/// A family with help `Help of <name>.` and unit `s`.
pub(crate) fn family(name: &str, kind: MetricKind, points: Vec<Point>) -> MetricFamily {
    MetricFamily {
        name: name.to_owned(),
        help: format!("Help of {name}."),
        unit: "s",
        kind,
        points,
    }
}

/// Classic buckets at 0.1, 0.25, 0.5 and 1 s (the bounds of the hand-built histograms here).
fn layout() -> Histograms {
    Histograms::from_edges(vec![100_000_000, 250_000_000, 500_000_000, 1_000_000_000])
}

fn snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        at: 1_700_000_000_000_000_000,
        families: vec![
            family(
                "slipstream_sli_requests_total",
                MetricKind::Counter,
                vec![
                    point(
                        None,
                        &[("service", "checkout"), ("slo", "availability")],
                        PointValue::Number(1234.0),
                    ),
                    point(
                        None,
                        &[("service", "a\"b\\c\nd"), ("slo", "x")],
                        PointValue::Number(0.5),
                    ),
                ],
            ),
            family(
                "slo:sli_error:ratio_rate5m",
                MetricKind::Gauge,
                vec![point(
                    None,
                    &[("sloth_id", "checkout-availability")],
                    PointValue::Number(0.0025),
                )],
            ),
            family(
                "slipstream_sli_latency_seconds",
                MetricKind::Histogram,
                vec![point(
                    None,
                    &[("service", "checkout"), ("slo", "latency")],
                    PointValue::Histogram(HistogramValue {
                        count: 10,
                        sum: 2.75,
                        buckets: vec![(0.0, 0.1, 4), (0.1, 0.25, 3), (0.5, 1.0, 3)],
                    }),
                )],
            ),
        ],
    }
}

#[test]
fn text_format_is_exact() {
    let got = String::from_utf8(render(&snapshot(), Format::Text, &layout())).unwrap();
    let want = r#"# HELP slipstream_sli_requests_total Help of slipstream_sli_requests_total.
# TYPE slipstream_sli_requests_total counter
slipstream_sli_requests_total{service="checkout",slo="availability"} 1234
slipstream_sli_requests_total{service="a\"b\\c\nd",slo="x"} 0.5
# HELP slo:sli_error:ratio_rate5m Help of slo:sli_error:ratio_rate5m.
# TYPE slo:sli_error:ratio_rate5m gauge
slo:sli_error:ratio_rate5m{sloth_id="checkout-availability"} 0.0025
# HELP slipstream_sli_latency_seconds Help of slipstream_sli_latency_seconds.
# TYPE slipstream_sli_latency_seconds histogram
slipstream_sli_latency_seconds_bucket{le="0.1",service="checkout",slo="latency"} 4
slipstream_sli_latency_seconds_bucket{le="0.25",service="checkout",slo="latency"} 7
slipstream_sli_latency_seconds_bucket{le="0.5",service="checkout",slo="latency"} 7
slipstream_sli_latency_seconds_bucket{le="1.0",service="checkout",slo="latency"} 10
slipstream_sli_latency_seconds_bucket{le="+Inf",service="checkout",slo="latency"} 10
slipstream_sli_latency_seconds_sum{service="checkout",slo="latency"} 2.75
slipstream_sli_latency_seconds_count{service="checkout",slo="latency"} 10
"#;
    assert_eq!(got, want);
}

#[test]
fn openmetrics_format_is_exact() {
    let mut snap = snapshot();
    snap.families[0].help = "Requests \"seen\"\nby\\SLO.".to_owned();
    snap.families.truncate(2);
    let got = String::from_utf8(render(&snap, Format::OpenMetrics, &layout())).unwrap();
    let want = r#"# HELP slipstream_sli_requests Requests \"seen\"\nby\\SLO.
# TYPE slipstream_sli_requests counter
slipstream_sli_requests_total{service="checkout",slo="availability"} 1234
slipstream_sli_requests_total{service="a\"b\\c\nd",slo="x"} 0.5
# HELP slo:sli_error:ratio_rate5m Help of slo:sli_error:ratio_rate5m.
# TYPE slo:sli_error:ratio_rate5m gauge
slo:sli_error:ratio_rate5m{sloth_id="checkout-availability"} 0.0025
# EOF
"#;
    assert_eq!(got, want);
}

#[test]
fn text_help_escapes_backslash_and_newline_only() {
    let mut snap = snapshot();
    snap.families[0].help = "a \"q\"\nb\\".to_owned();
    let got = String::from_utf8(render(&snap, Format::Text, &layout())).unwrap();
    assert!(got.starts_with("# HELP slipstream_sli_requests_total a \"q\"\\nb\\\\\n"));
}

#[test]
fn labels_sort_around_le_and_unlabelled_points_have_no_braces() {
    let snap = MetricsSnapshot {
        at: 0,
        families: vec![
            family(
                "h",
                MetricKind::Histogram,
                vec![point(
                    None,
                    &[("a", "1"), ("z", "2")],
                    PointValue::Histogram(HistogramValue {
                        count: 1,
                        sum: 3.0,
                        buckets: vec![(2.0, 4.0, 1)],
                    }),
                )],
            ),
            family(
                "g",
                MetricKind::Gauge,
                vec![point(None, &[], PointValue::Number(-2.0))],
            ),
        ],
    };
    let two_four = Histograms::from_edges(vec![4_000_000_000, 2_000_000_000]);
    let got = String::from_utf8(render(&snap, Format::Text, &two_four)).unwrap();
    let samples: Vec<&str> = got.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        samples,
        [
            r#"h_bucket{a="1",le="2.0",z="2"} 0"#,
            r#"h_bucket{a="1",le="4.0",z="2"} 1"#,
            r#"h_bucket{a="1",le="+Inf",z="2"} 1"#,
            r#"h_sum{a="1",z="2"} 3"#,
            r#"h_count{a="1",z="2"} 1"#,
            "g -2",
        ]
    );
}

#[test]
fn values_are_formatted_like_go() {
    for (v, want) in [
        (0.0, "0"),
        (3.0, "3"),
        (-7.0, "-7"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-07"),
        (0.0001, "0.0001"),
        (0.1 + 0.2, "0.30000000000000004"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
        (1234567.0, "1234567"),
        (1e300, "1e+300"),
    ] {
        assert_eq!(format_value(v), want, "{v:?}");
        if v.is_finite() {
            assert_eq!(format_value(v).parse::<f64>().unwrap(), v);
        }
    }
    assert_eq!(format_le(1.0), "1.0");
    assert_eq!(format_le(0.005), "0.005");
    assert_eq!(format_le(f64::INFINITY), "+Inf");
    assert_eq!(format_le(2e-5), "2e-05");
}

#[test]
fn classic_buckets_are_the_configured_bounds_then_inf() {
    let h = |buckets: Vec<(f64, f64, u64)>, count| HistogramValue {
        count,
        sum: 0.0,
        buckets,
    };
    let one_two = Histograms::from_edges(vec![1_000_000_000, 2_000_000_000]);
    assert_eq!(
        classic_buckets(&h(vec![], 0), &one_two),
        vec![(1.0, 0), (2.0, 0), (f64::INFINITY, 0)]
    );
    assert_eq!(
        classic_buckets(&h(vec![(1.0, f64::INFINITY, 5)], 5), &one_two),
        vec![(1.0, 0), (2.0, 0), (f64::INFINITY, 5)]
    );
    // A count smaller than the buckets' total does not make +Inf go down; a bucket that
    // straddles a bound counts above it.
    assert_eq!(
        classic_buckets(
            &h(vec![(0.0, 1.0, 2), (1.0, 1.5, 3), (1.5, 2.5, 1)], 4),
            &one_two
        ),
        vec![(1.0, 2), (2.0, 5), (f64::INFINITY, 6)]
    );
    assert_eq!(
        classic_buckets(&h(vec![(0.0, 1.0, 2)], 2), &Histograms::from_edges(vec![])),
        vec![(f64::INFINITY, 2)]
    );
}

/// The aggregator's bucket of `ns` as the binary exports it: `(lo - 1ns, hi]` in seconds.
fn exported_bucket(ns: u64) -> (u64, u64) {
    if ns < 64 {
        return (ns, ns);
    }
    let e = 63 - u64::from(ns.leading_zeros());
    let width = 1u64 << (e - 6);
    let lo = ns / width * width;
    (lo, lo + width - 1)
}

/// A histogram of these latencies in nanoseconds, bucketed as the binary exports them.
fn histogram_of(values: &[u64]) -> HistogramValue {
    let mut buckets: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for &v in values {
        *buckets.entry(exported_bucket(v)).or_default() += 1;
    }
    HistogramValue {
        count: values.len() as u64,
        sum: values.iter().map(|&v| v as f64 / 1e9).sum(),
        buckets: buckets
            .into_iter()
            .map(|((lo, hi), n)| (lo.saturating_sub(1) as f64 * 1e-9, hi as f64 * 1e-9, n))
            .collect(),
    }
}

#[test]
fn every_series_writes_every_default_bound_with_exact_counts() {
    let histograms = Histograms::default();
    let edges: Vec<u64> = HistogramExportConfig::default().edges_ns();
    assert_eq!(edges.len(), 11);
    // Values on, just below and just above every edge, and some far from all of them.
    let mut a: Vec<u64> = edges.iter().flat_map(|&e| [e - 1, e, e + 1]).collect();
    a.extend([3, 700, 1_234_567, 77_777_777, 30_000_000_000]);
    let b: Vec<u64> = vec![42_000_000, 43_000_000];
    let snap = MetricsSnapshot {
        at: 0,
        families: vec![family(
            "lat_seconds",
            MetricKind::Histogram,
            vec![
                point(
                    None,
                    &[("pod", "a")],
                    PointValue::Histogram(histogram_of(&a)),
                ),
                point(
                    None,
                    &[("pod", "b")],
                    PointValue::Histogram(histogram_of(&b)),
                ),
            ],
        )],
    };
    let text = String::from_utf8(render(&snap, Format::Text, &histograms)).unwrap();
    let samples = parse(&text, false);
    for (pod, values) in [("a", &a), ("b", &b)] {
        let buckets: Vec<(String, f64)> = samples
            .iter()
            .filter(|(n, l, _)| n == "lat_seconds_bucket" && l["pod"] == pod)
            .map(|(_, l, v)| (l["le"].clone(), *v))
            .collect();
        let mut want: Vec<(String, f64)> = edges
            .iter()
            .map(|&e| {
                let n = values.iter().filter(|&&v| v <= e).count();
                (format_le(e as f64 / 1e9), n as f64)
            })
            .collect();
        want.push(("+Inf".to_owned(), values.len() as f64));
        assert_eq!(buckets, want, "pod {pod}");
    }
    assert!(
        text.contains(r#"lat_seconds_bucket{le="0.099614719",pod="b"} 2"#),
        "{text}"
    );
}

#[test]
fn native_histograms_keep_every_bucket_apart_and_at_its_midpoint() {
    // Every bucket from 1 ns to 60 s once: no two share a schema-8 bucket.
    let mut values: Vec<u64> = Vec::new();
    let mut v = 1u64;
    while v < 60_000_000_000 {
        values.push(v);
        let (_, hi) = exported_bucket(v);
        v = hi + 1;
    }
    values.push(0);
    let h = histogram_of(&values);
    let n = native::native(&h);
    assert_eq!(n.count, values.len() as u64);
    assert_eq!(n.zero_count, 1);
    let lengths: u32 = n.spans.iter().map(|s| s.1).sum();
    assert_eq!(lengths as usize, n.deltas.len());
    // Absolute counts back from the deltas, with their indices.
    let mut counts = Vec::new();
    let mut index = 0i32;
    let mut count = 0i64;
    let mut deltas = n.deltas.iter();
    for (k, &(offset, length)) in n.spans.iter().enumerate() {
        index += offset + i32::from(k > 0);
        for j in 0..length {
            count += deltas.next().unwrap();
            counts.push((index + j as i32, count));
        }
        index += length as i32 - 1;
    }
    let filled: Vec<&(i32, i64)> = counts.iter().filter(|c| c.1 > 0).collect();
    assert_eq!(
        filled.len(),
        h.buckets.len() - 1,
        "one native bucket per input bucket"
    );
    assert!(counts.iter().all(|c| c.1 == 0 || c.1 == 1));
    // Each lands in the schema-8 bucket holding its midpoint.
    let base = 2f64.powf(1.0 / 256.0);
    for (&&(i, _), &(lo, hi, _)) in filled.iter().zip(&h.buckets[1..]) {
        let mid = (lo + hi) / 2.0;
        let (low, high) = (base.powi(i - 1), base.powi(i));
        assert!(
            low < mid * (1.0 + 1e-12) && mid <= high * (1.0 + 1e-12),
            "{mid} in ({low}, {high}]"
        );
    }
}

#[test]
fn native_counts_only_grow_while_the_input_grows() {
    let before = native::native(&histogram_of(&[5_000_000, 5_000_001, 9_000_000]));
    let after = native::native(&histogram_of(&[
        5_000_000, 5_000_001, 9_000_000, 5_000_000, 7_000_000,
    ]));
    let absolute = |n: &native::Native| {
        let mut out = BTreeMap::new();
        let (mut index, mut count) = (0i32, 0i64);
        let mut deltas = n.deltas.iter();
        for (k, &(offset, length)) in n.spans.iter().enumerate() {
            index += offset + i32::from(k > 0);
            for j in 0..length {
                count += deltas.next().unwrap();
                out.insert(index + j as i32, count);
            }
            index += length as i32 - 1;
        }
        out
    };
    let (b, a) = (absolute(&before), absolute(&after));
    assert!(
        b.iter().all(|(i, n)| a.get(i).is_some_and(|m| m >= n)),
        "{b:?} -> {a:?}"
    );
    assert_eq!(a.values().sum::<i64>(), 5);
    let empty = native::native(&HistogramValue::default());
    assert_eq!(empty.spans, [(0, 0)]);
    assert!(empty.deltas.is_empty());
}

#[test]
fn protobuf_holds_classic_buckets_and_a_native_histogram() {
    let snap = snapshot();
    let body = render(&snap, Format::Protobuf, &layout());
    let mut buf = &body[..];
    let mut families = Vec::new();
    while !buf.is_empty() {
        families.push(proto::MetricFamily::decode_length_delimited(&mut buf).unwrap());
    }
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "slipstream_sli_requests_total",
            "slo:sli_error:ratio_rate5m",
            "slipstream_sli_latency_seconds"
        ]
    );
    assert_eq!(families[0].r#type, proto::MetricType::Counter as i32);
    assert_eq!(
        families[0].metric[0].counter.as_ref().unwrap().value,
        1234.0
    );
    assert_eq!(
        families[0].metric[0].label[0],
        proto::LabelPair {
            name: "service".into(),
            value: "checkout".into()
        }
    );
    assert_eq!(families[1].metric[0].gauge.as_ref().unwrap().value, 0.0025);
    let h = families[2].metric[0].histogram.as_ref().unwrap();
    assert_eq!(families[2].r#type, proto::MetricType::Histogram as i32);
    assert_eq!((h.sample_count, h.sample_sum), (10, 2.75));
    let classic: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    assert_eq!(classic, [(0.1, 4), (0.25, 7), (0.5, 7), (1.0, 10)]);
    assert_eq!(h.schema, 8);
    assert!(h.zero_threshold > 0.0);
    // Midpoints 0.05, 0.175 and 0.75 s.
    let first = native::index(0.05);
    assert_eq!(
        h.positive_span,
        [
            proto::BucketSpan {
                offset: first,
                length: 1
            },
            proto::BucketSpan {
                offset: native::index(0.175) - first - 1,
                length: 1
            },
            proto::BucketSpan {
                offset: native::index(0.75) - native::index(0.175) - 1,
                length: 1
            },
        ]
    );
    assert_eq!(h.positive_delta, [4, -1, 0]);
}

#[test]
fn mismatched_points_are_left_out() {
    let snap = MetricsSnapshot {
        at: 0,
        families: vec![family(
            "c_total",
            MetricKind::Counter,
            vec![
                point(None, &[], PointValue::Histogram(HistogramValue::default())),
                point(None, &[("k", "v")], PointValue::Number(1.0)),
            ],
        )],
    };
    let got = String::from_utf8(render(&snap, Format::Text, &layout())).unwrap();
    assert_eq!(
        got.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [r#"c_total{k="v"} 1"#]
    );
}

#[test]
fn negotiation() {
    assert_eq!(negotiate(None, true), Format::Text);
    assert_eq!(negotiate(Some(""), true), Format::Text);
    assert_eq!(negotiate(Some("*/*"), true), Format::Text);
    assert_eq!(
        negotiate(Some("text/plain;version=0.0.4"), true),
        Format::Text
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text"), true),
        Format::OpenMetrics
    );
    // What Prometheus 2.x sends.
    assert_eq!(
        negotiate(
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            true
        ),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(
            Some(
                "text/plain;version=0.0.4;q=1, application/openmetrics-text; version=1.0.0; q=0.5"
            ),
            true
        ),
        Format::Text
    );
    assert_eq!(
        negotiate(Some("Application/OpenMetrics-Text; q=0"), true),
        Format::Text
    );
    // What Prometheus 2.42 sends with native histograms on.
    let protobuf_first = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(negotiate(Some(protobuf_first), true), Format::Protobuf);
    assert_eq!(negotiate(Some(protobuf_first), false), Format::OpenMetrics);
    assert_eq!(
        negotiate(
            Some("application/vnd.google.protobuf;proto=other.Message;encoding=delimited"),
            true
        ),
        Format::Text
    );
    assert_eq!(
        negotiate(
            Some("application/vnd.google.protobuf;encoding=text;q=1,text/plain;q=0.5"),
            true
        ),
        Format::Text
    );
    assert_eq!(
        Format::Protobuf.content_type(),
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        Format::Text.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

/// A small parser for the text formats: every sample line back to (name, labels, value).
/// It unescapes label values, checks the line grammar, and that every sample belongs to the
/// family its `# TYPE` line announced.
fn parse(text: &str, openmetrics: bool) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    let mut family: Option<(String, String)> = None;
    let mut saw_eof = false;
    for line in text.lines() {
        assert!(!saw_eof, "content after # EOF");
        if line == "# EOF" {
            assert!(openmetrics);
            saw_eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("bad line {line:?}"),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{name}"
        );
        let (fam, kind) = family.as_ref().expect("sample before # TYPE");
        let suffixes: &[&str] = match (kind.as_str(), openmetrics) {
            ("histogram", _) => &["_bucket", "_sum", "_count"],
            ("counter", true) => &["_total"],
            _ => &[""],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{fam}{s}")),
            "{name} is not in family {fam} ({kind})"
        );
        let mut labels = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'));
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value") {
                        '"' => break,
                        '\\' => match chars.next().unwrap() {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c}"),
                        },
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(key, value).is_none(), "duplicate label");
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    c => panic!("unexpected {c:?}"),
                }
            }
        }
        assert_eq!(chars.next(), Some(' '));
        let value: String = chars.collect();
        let value = match value.as_str() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        };
        out.push((name.to_owned(), labels, value));
    }
    assert_eq!(saw_eof, openmetrics, "# EOF iff OpenMetrics");
    out
}

#[test]
fn both_formats_parse_back_to_the_snapshot() {
    let mut snap = snapshot();
    snap.families.push(family(
        "weird_total",
        MetricKind::Counter,
        vec![point(
            None,
            &[("k", "\\\\\"\n\n")],
            PointValue::Number(f64::NAN),
        )],
    ));
    for format in [Format::Text, Format::OpenMetrics] {
        let text = String::from_utf8(render(&snap, format, &layout())).unwrap();
        let samples = parse(&text, format == Format::OpenMetrics);
        let find = |name: &str, labels: &[(&str, &str)]| {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            samples
                .iter()
                .find(|(n, l, _)| n == name && *l == labels)
                .unwrap_or_else(|| panic!("{name} {labels:?} missing in\n{text}"))
                .2
        };
        assert_eq!(
            find(
                "slipstream_sli_requests_total",
                &[("service", "a\"b\\c\nd"), ("slo", "x")]
            ),
            0.5
        );
        assert_eq!(
            find(
                "slo:sli_error:ratio_rate5m",
                &[("sloth_id", "checkout-availability")]
            ),
            0.0025
        );
        let hl = [("service", "checkout"), ("slo", "latency")];
        let bucket = |le: &str| {
            let mut l = hl.to_vec();
            l.push(("le", le));
            find("slipstream_sli_latency_seconds_bucket", &l)
        };
        assert_eq!(bucket("0.1"), 4.0);
        assert_eq!(bucket("0.25"), 7.0);
        assert_eq!(bucket("1.0"), 10.0);
        assert_eq!(bucket("+Inf"), 10.0);
        assert_eq!(find("slipstream_sli_latency_seconds_sum", &hl), 2.75);
        assert_eq!(find("slipstream_sli_latency_seconds_count", &hl), 10.0);
        assert!(find("weird_total", &[("k", "\\\\\"\n\n")]).is_nan());
        assert_eq!(samples.len(), 2 + 1 + 7 + 1);
    }
}

// === exemplars ===

fn ex(n: u8, duration_nanos: u64, bad: bool) -> Exemplar {
    Exemplar::new(
        &[n; 16],
        &[n; 8],
        1_700_000_000_250_000_000 + u64::from(n),
        duration_nanos,
        bad,
    )
    .unwrap()
}

/// A requests counter and a latency histogram whose points carry exemplars.
fn with_exemplars() -> MetricsSnapshot {
    let mut requests = point(None, &[("service", "checkout")], PointValue::Number(12.0));
    requests.exemplars = vec![ex(1, 300_000_000, true)];
    let mut latency = point(
        None,
        &[("service", "checkout")],
        PointValue::Histogram(HistogramValue {
            count: 12,
            sum: 3.0,
            buckets: vec![(0.0, 0.1, 8), (0.25, 0.5, 3), (1.0, 2.0, 1)],
        }),
    );
    // 300 ms and 400 ms both fall in (0.25, 0.5]: the first is shown; 1.5 s above every bound.
    latency.exemplars = vec![
        ex(1, 300_000_000, true),
        ex(2, 400_000_000, false),
        ex(3, 1_500_000_000, false),
    ];
    MetricsSnapshot {
        at: 1_700_000_000_000_000_000,
        families: vec![
            family(
                "slipstream_sli_requests_total",
                MetricKind::Counter,
                vec![requests],
            ),
            family(
                "slipstream_sli_latency_seconds",
                MetricKind::Histogram,
                vec![latency],
            ),
        ],
    }
}

#[test]
fn openmetrics_carries_exemplars_on_counters_and_buckets() {
    let out = String::from_utf8(render(&with_exemplars(), Format::OpenMetrics, &layout())).unwrap();
    let (t1, t3) = ("01".repeat(16), "03".repeat(16));
    let (s1, s3) = ("01".repeat(8), "03".repeat(8));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&&*format!(
        "slipstream_sli_requests_total{{service=\"checkout\"}} 12 # {{trace_id=\"{t1}\",span_id=\"{s1}\"}} 1 1700000000.250000001"
    )), "{out}");
    assert!(lines.contains(&&*format!(
        "slipstream_sli_latency_seconds_bucket{{le=\"0.5\",service=\"checkout\"}} 11 # {{trace_id=\"{t1}\",span_id=\"{s1}\"}} 0.3 1700000000.250000001"
    )), "{out}");
    assert!(lines.contains(&&*format!(
        "slipstream_sli_latency_seconds_bucket{{le=\"+Inf\",service=\"checkout\"}} 12 # {{trace_id=\"{t3}\",span_id=\"{s3}\"}} 1.5 1700000000.250000003"
    )), "{out}");
    // One exemplar per sample, none on _sum and _count, none on buckets without one.
    assert_eq!(out.matches(" # {").count(), 3, "{out}");
    assert!(
        lines.contains(&"slipstream_sli_latency_seconds_bucket{le=\"0.1\",service=\"checkout\"} 8")
    );
    // The label set stays within OpenMetrics' 128 characters.
    for line in lines.iter().filter(|l| l.contains(" # {")) {
        let set = &line[line.find(" # {").unwrap() + 3..];
        let set = &set[..=set.find('}').unwrap()];
        assert!(set.chars().count() - 2 <= 128, "{set}");
    }
}

#[test]
fn the_text_format_has_no_exemplars() {
    let out = String::from_utf8(render(&with_exemplars(), Format::Text, &layout())).unwrap();
    assert!(!out.contains("trace_id"), "{out}");
    assert!(out.contains("slipstream_sli_requests_total{service=\"checkout\"} 12\n"));
}

#[test]
fn the_protobuf_format_carries_exemplars() {
    let out = render(&with_exemplars(), Format::Protobuf, &layout());
    let mut buf = &out[..];
    let mut families = Vec::new();
    while !buf.is_empty() {
        families.push(proto::MetricFamily::decode_length_delimited(&mut buf).unwrap());
    }
    let counter = families[0].metric[0].counter.as_ref().unwrap();
    let e = counter.exemplar.as_ref().expect("a counter exemplar");
    assert_eq!(e.value, 1.0);
    assert_eq!(e.label[0].name, "trace_id");
    assert_eq!(e.label[0].value, "01".repeat(16));
    assert_eq!(e.label[1].value, "01".repeat(8));
    let ts = e.timestamp.as_ref().unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 250_000_001));
    let h = families[1].metric[0].histogram.as_ref().unwrap();
    let on_buckets: Vec<Option<f64>> = h
        .bucket
        .iter()
        .map(|b| b.exemplar.as_ref().map(|e| e.value))
        .collect();
    assert_eq!(on_buckets, [None, None, Some(0.3), None]);
    assert_eq!(h.exemplars.len(), 3);
}
