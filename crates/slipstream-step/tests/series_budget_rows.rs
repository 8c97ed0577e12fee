//! Time-to-exhaustion and budget-drop rows in the exported SLI series and in the events every
//! event exporter sends: their parameter as a label, their own alert name; burn-rate rows as
//! before.

use std::collections::BTreeMap;
use std::sync::Arc;

use slipstream_aggregator::Snapshot;
use slipstream_config::Config;
use slipstream_config::exporters::MetricNaming;
use slipstream_core::{ManualClock, Registry};
use slipstream_slo::{AlertState, SloEngine};
use slipstream_step::series::{Inputs, build, burn_rate_event};

const MIN: u64 = 60_000_000_000;
const START: u64 = 1_700_006_400_000_000_000;

/// Labels as a map of borrowed strings.
type Labels<'a> = BTreeMap<&'a str, &'a str>;

#[test]
fn budget_rows_carry_their_parameter_in_series_and_events() {
    let cfg = Config::from_yaml(
        "slo:
  templates: { availability: null, latency: null }
  objectives:
    - name: api
      service: api
      objective: 99
      period: 1d
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }
        - { severity: page, exhausts_within: 4h, window: 1h }
        - { severity: page, exhausts_within: 8h, window: 1h }
        - { severity: ticket, budget_drop_percent: 5, within: 1h }
",
    )
    .unwrap();
    let clock = ManualClock::new(START);
    let mut engine = SloEngine::new(&cfg.slo, Arc::new(clock.clone()), &Registry::new()).unwrap();
    let id = engine.id("api").unwrap();
    let mut events = Vec::new();
    // An hour at half the requests failing: every row fires.
    for m in 0..60 {
        engine.observe(id, START + m * MIN, 50, 100);
        clock.set(START + (m + 1) * MIN);
        events.extend(engine.tick());
    }
    let snapshot = engine.snapshot();
    let totals = BTreeMap::new();
    let catalog = BTreeMap::new();
    let metrics = build(
        Inputs {
            series: &Snapshot::default(),
            totals: &[],
            slos: &snapshot,
            slo_totals: &totals,
            catalog: &catalog,
            started: START,
        },
        MetricNaming::default(),
    );
    let firing = metrics
        .families
        .iter()
        .find(|f| f.name == "slipstream_slo_alert_firing")
        .unwrap();
    let rows: Vec<Labels<'_>> = firing
        .points
        .iter()
        .map(|p| {
            p.labels
                .iter()
                .filter(|(k, _)| k != "slo" && k != "service" && k != "sli")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect()
        })
        .collect();
    let row = |pairs: &[(&'static str, &'static str)]| -> Labels<'static> {
        pairs.iter().copied().collect()
    };
    for expected in [
        row(&[
            ("severity", "page"),
            ("long_window", "1h"),
            ("short_window", "5m"),
        ]),
        row(&[
            ("severity", "page"),
            ("long_window", "1h"),
            ("short_window", "1h"),
            ("exhausts_within", "4h"),
        ]),
        row(&[
            ("severity", "page"),
            ("long_window", "1h"),
            ("short_window", "1h"),
            ("exhausts_within", "8h"),
        ]),
        row(&[
            ("severity", "ticket"),
            ("long_window", "1h"),
            ("short_window", "1h"),
            ("budget_drop_percent", "5"),
        ]),
    ] {
        assert!(rows.contains(&expected), "{expected:?} not in {rows:?}");
    }

    // Events: the alert name of the row's kind and its parameter among the labels.
    let sent: Vec<BTreeMap<String, String>> = events
        .iter()
        .filter(|e| e.state == AlertState::Firing)
        .map(|e| burn_rate_event(e, 0.99).labels)
        .collect();
    let names: Vec<(&str, Option<&str>)> = sent
        .iter()
        .map(|l| {
            (
                l["alertname"].as_str(),
                l.get("exhausts_within")
                    .or(l.get("budget_drop_percent"))
                    .map(String::as_str),
            )
        })
        .collect();
    for expected in [
        ("SlipstreamErrorBudgetBurn", None),
        ("SlipstreamErrorBudgetExhaustion", Some("4h")),
        ("SlipstreamErrorBudgetExhaustion", Some("8h")),
    ] {
        assert!(names.contains(&expected), "{expected:?} not in {names:?}");
    }
    let burn = sent
        .iter()
        .find(|l| l["alertname"] == "SlipstreamErrorBudgetBurn")
        .unwrap();
    let keys: Vec<&str> = burn.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "alertname",
            "long_window",
            "service",
            "severity",
            "short_window",
            "slo"
        ]
    );
}
