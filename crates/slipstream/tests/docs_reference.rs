//! The reference docs cannot drift from the code: every self-metric declared in a `names`
//! table is in docs/metrics.md with its type and labels, and the doc lists nothing else.

use slipstream_core::telemetry::{MetricDesc, names};

fn declared() -> Vec<&'static MetricDesc> {
    let mut all = names::ALL.to_vec();
    all.extend_from_slice(slipstream_aggregator::names::ALL);
    all.extend_from_slice(slipstream_slo::names::ALL);
    all.extend_from_slice(slipstream_app::state::names::ALL);
    all.extend_from_slice(slipstream_app::memory::names::ALL);
    all.extend_from_slice(slipstream_step::publish::names::ALL);
    all.extend_from_slice(slipstream_exporters::names::ALL);
    all
}

fn row(d: &MetricDesc) -> String {
    let labels = if d.labels.is_empty() {
        "".to_owned()
    } else {
        d.labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "| `{}` | {} | {} | {} |",
        d.name,
        d.kind.as_str(),
        labels,
        d.help
    )
}

#[test]
fn metrics_doc_matches_the_declared_metrics() {
    let expected: Vec<String> = declared().iter().map(|d| row(d)).collect();
    assert_table_matches("docs/metrics.md", &expected);
    for d in declared() {
        if d.kind == slipstream_core::telemetry::MetricKind::Counter {
            assert!(
                d.name.ends_with("_total"),
                "{}: counters end in _total",
                d.name
            );
        }
        assert!(d.name.starts_with("slipstream_"), "{}", d.name);
    }
}

#[test]
fn sli_series_doc_matches_the_declared_families() {
    use slipstream_step::series::SERIES;
    let expected: Vec<String> = SERIES
        .iter()
        .map(|d| {
            let labels = d
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "| `{}` | {} | `{}` | {} | {} |",
                d.name,
                d.kind.as_str(),
                d.unit,
                labels,
                d.help
            )
        })
        .collect();
    assert_table_matches("docs/sli-series.md", &expected);
}

/// Every table row of the doc at `path` (relative to the workspace) is one of `expected`, and
/// every expected row is in it.
fn assert_table_matches(path: &str, expected: &[String]) {
    let doc =
        std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let documented: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    let missing: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|r| !documented.contains(r))
        .collect();
    let extra: Vec<&str> = documented
        .iter()
        .copied()
        .filter(|d| !expected.iter().any(|e| e == d))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{path} is out of date.\nRows to add or fix:\n{}\nRows to remove:\n{}\nThe whole table:\n{}",
        missing.join("\n"),
        extra.join("\n"),
        expected.join("\n")
    );
}
