use std::collections::BTreeMap;

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
    let got = String::from_utf8(render(&snapshot(), Format::Text)).unwrap();
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
    let got = String::from_utf8(render(&snap, Format::OpenMetrics)).unwrap();
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
    let got = String::from_utf8(render(&snap, Format::Text)).unwrap();
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
    let got = String::from_utf8(render(&snap, Format::Text)).unwrap();
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
fn cumulative_buckets_always_end_with_inf() {
    let h = |buckets: Vec<(f64, f64, u64)>, count| HistogramValue {
        count,
        sum: 0.0,
        buckets,
    };
    assert_eq!(cumulative_buckets(&h(vec![], 0)), vec![(f64::INFINITY, 0)]);
    assert_eq!(
        cumulative_buckets(&h(vec![(1.0, f64::INFINITY, 5)], 5)),
        vec![(1.0, 0), (f64::INFINITY, 5)]
    );
    // Contiguous buckets add no lower bounds; a count smaller than the buckets' total does
    // not make +Inf go down.
    assert_eq!(
        cumulative_buckets(&h(vec![(0.0, 1.0, 2), (1.0, 2.0, 3)], 4)),
        vec![(1.0, 2), (2.0, 5), (f64::INFINITY, 5)]
    );
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
    let got = String::from_utf8(render(&snap, Format::Text)).unwrap();
    assert_eq!(
        got.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        [r#"c_total{k="v"} 1"#]
    );
}

#[test]
fn negotiation() {
    assert_eq!(negotiate(None), Format::Text);
    assert_eq!(negotiate(Some("")), Format::Text);
    assert_eq!(negotiate(Some("*/*")), Format::Text);
    assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
    assert_eq!(
        negotiate(Some("application/openmetrics-text")),
        Format::OpenMetrics
    );
    // What Prometheus 2.x sends.
    assert_eq!(
        negotiate(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(Some(
            "text/plain;version=0.0.4;q=1, application/openmetrics-text; version=1.0.0; q=0.5"
        )),
        Format::Text
    );
    assert_eq!(
        negotiate(Some("Application/OpenMetrics-Text; q=0")),
        Format::Text
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
        let text = String::from_utf8(render(&snap, format)).unwrap();
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
