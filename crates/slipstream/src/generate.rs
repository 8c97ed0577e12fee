//! `slipstream generate`: Prometheus rules and Grafana dashboards for the configured SLOs, over
//! the series slipstream exports (see `docs/sli-series.md`).
//!
//! The rules recompute, in Prometheus, what slipstream computes in the stream: the error ratio
//! of every window from `slipstream_slo_requests_total` (Sloth's recording-rule names, so
//! Sloth's dashboards work on them too), and one multi-window burn-rate alert per policy row
//! with the same factor, minimum event count and labels as slipstream's own events. Teams that
//! want Prometheus to alert as well load them; `promtool check rules` accepts them (tested).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use slipstream_config::Config;
use slipstream_core::export::format_duration;
use slipstream_core::{ManualClock, Registry};
use slipstream_slo::{SloEngine, SloSpec};

/// The alert name of generated alerts (and of slipstream's own events).
pub const ALERT_NAME: &str = "SlipstreamErrorBudgetBurn";

/// The SLOs of `cfg`: the explicit ones, plus the templated ones of `services`.
pub fn slos(cfg: &Config, services: &[String]) -> anyhow::Result<Vec<SloSpec>> {
    let mut engine = SloEngine::new(&cfg.slo, Arc::new(ManualClock::new(0)), &Registry::new())
        .map_err(|e| {
            anyhow::anyhow!(
                "invalid slo section: {}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    for s in services {
        engine.service_seen(s);
    }
    Ok(engine.slos().map(|(_, s)| s.clone()).collect())
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn sloth_labels(s: &SloSpec) -> String {
    format!(
        "sloth_id=\"{}\", sloth_service=\"{}\", sloth_slo=\"{}\"",
        quote(&format!("{}-{}", s.service, s.name)),
        quote(&s.service),
        quote(&s.name)
    )
}

fn windows(s: &SloSpec) -> Vec<Duration> {
    let mut w = s.windows();
    w.push(s.period.nominal());
    w.sort();
    w.dedup();
    w
}

/// The rules file (YAML) for `slos`.
pub fn prometheus_rules(slos: &[SloSpec]) -> String {
    let mut groups = Vec::new();
    for s in slos {
        let sel = format!("slo=\"{}\"", quote(&s.name));
        let sloth = sloth_labels(s);
        let base: BTreeMap<&str, String> = [
            ("sloth_id", format!("{}-{}", s.service, s.name)),
            ("sloth_service", s.service.clone()),
            ("sloth_slo", s.name.clone()),
        ]
        .into_iter()
        .collect();
        let mut rec = Vec::new();
        for w in windows(s) {
            let wl = format_duration(w);
            let mut labels = base.clone();
            labels.insert("sloth_window", wl.clone());
            rec.push(json!({
                "record": format!("slo:sli_error:ratio_rate{wl}"),
                "expr": format!(
                    "sum(rate(slipstream_slo_requests_total{{{sel}, outcome=\"bad\"}}[{wl}]))\n/\nsum(rate(slipstream_slo_requests_total{{{sel}}}[{wl}]))\n"
                ),
                "labels": labels,
            }));
        }
        let period = format_duration(s.period.nominal());
        let budget = 1.0 - s.objective;
        let meta = [
            ("slo:objective:ratio", format!("vector({})", s.objective)),
            ("slo:error_budget:ratio", format!("vector({budget})")),
            (
                "slo:time_period:days",
                format!("vector({})", s.period.nominal().as_secs_f64() / 86_400.0),
            ),
            (
                "slo:current_burn_rate:ratio",
                format!(
                    "slo:sli_error:ratio_rate5m{{{sloth}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{{{sloth}}}\n"
                ),
            ),
            (
                "slo:period_burn_rate:ratio",
                format!(
                    "slo:sli_error:ratio_rate{period}{{{sloth}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{{{sloth}}}\n"
                ),
            ),
            (
                "slo:period_error_budget_remaining:ratio",
                format!("1 - slo:period_burn_rate:ratio{{{sloth}}}"),
            ),
        ];
        for (record, expr) in meta {
            rec.push(json!({ "record": record, "expr": expr, "labels": base }));
        }
        groups.push(json!({ "name": format!("slipstream-sli-{}", s.name), "rules": rec }));

        let mut alerts = Vec::new();
        for row in &s.policy {
            let (long, short) = (format_duration(row.long), format_duration(row.short));
            let threshold = row.factor * budget;
            let enough = |w: &str| {
                format!(
                    "sum(increase(slipstream_slo_requests_total{{{sel}}}[{w}])) >= {}",
                    s.min_events.max(1)
                )
            };
            let expr = format!(
                "(\n  max(slo:sli_error:ratio_rate{long}{{{sloth}}} > {threshold}) without (sloth_window)\n  and on()\n  max(slo:sli_error:ratio_rate{short}{{{sloth}}} > {threshold}) without (sloth_window)\n)\nand on() ({})\nand on() ({})\n",
                enough(&long),
                enough(&short),
            );
            let mut labels: BTreeMap<String, String> = s.labels.clone();
            for (k, v) in [
                ("slo", s.name.clone()),
                ("service", s.service.clone()),
                ("severity", row.severity.as_str().to_owned()),
                ("long_window", long.clone()),
                ("short_window", short.clone()),
            ] {
                labels.insert(k.to_owned(), v);
            }
            let mut annotations = s.annotations.clone();
            annotations.entry("summary".to_owned()).or_insert_with(|| {
                format!(
                    "{}: error budget of {} burning {:.4}x too fast over {long} and {short}",
                    s.service, s.name, row.factor
                )
            });
            alerts.push(json!({
                "alert": ALERT_NAME,
                "expr": expr,
                "labels": labels,
                "annotations": annotations,
            }));
        }
        groups.push(json!({ "name": format!("slipstream-alerts-{}", s.name), "rules": alerts }));
    }
    let doc = json!({ "groups": groups });
    format!(
        "# Generated by `slipstream generate prometheus-rules`: recording rules (Sloth names) and\n# multi-window multi-burn-rate alerts over slipstream_slo_requests_total.\n{}",
        serde_yaml::to_string(&doc).expect("rules serialize")
    )
}

fn panel(
    id: u32,
    title: &str,
    kind: &str,
    grid: (u32, u32, u32, u32),
    targets: &[(&str, &str)],
) -> Value {
    let (x, y, w, h) = grid;
    json!({
        "id": id,
        "title": title,
        "type": kind,
        "datasource": { "type": "prometheus", "uid": "${datasource}" },
        "gridPos": { "x": x, "y": y, "w": w, "h": h },
        "targets": targets.iter().enumerate().map(|(i, (expr, legend))| json!({
            "refId": char::from(b'A' + i as u8).to_string(),
            "expr": expr,
            "legendFormat": legend,
        })).collect::<Vec<_>>(),
    })
}

fn dashboard(uid: &str, title: &str, panels: Vec<Value>) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "tags": ["slipstream", "slo"],
        "schemaVersion": 39,
        "time": { "from": "now-24h", "to": "now" },
        "refresh": "30s",
        "templating": { "list": [
            { "name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus" },
            { "name": "slo", "type": "query", "datasource": { "type": "prometheus", "uid": "${datasource}" },
              "query": "label_values(slipstream_slo_objective_ratio, slo)", "multi": true, "includeAll": true,
              "label": "SLO" }
        ]},
        "annotations": { "list": [] },
        "panels": panels,
    })
}

/// The three dashboards: (file name, dashboard JSON). Every query reads the series of
/// `docs/sli-series.md`; `$slo` selects SLOs.
pub fn grafana(slos: &[SloSpec]) -> Vec<(String, Value)> {
    let names: Vec<&str> = slos.iter().map(|s| s.name.as_str()).collect();
    let desc = format!("SLOs: {}", names.join(", "));
    let sel = "slo=~\"$slo\"";
    let executive = dashboard(
        "slipstream-executive",
        "slipstream / SLOs: executive view",
        vec![
            panel(
                1,
                "Error budget remaining",
                "stat",
                (0, 0, 24, 6),
                &[(
                    &format!("slipstream_slo_error_budget_remaining_ratio{{{sel}}}"),
                    "{{slo}}",
                )],
            ),
            panel(
                2,
                "Objective vs. SLI over the period",
                "table",
                (0, 6, 24, 8),
                &[
                    (
                        &format!("slipstream_slo_objective_ratio{{{sel}}}"),
                        "{{slo}} objective",
                    ),
                    (
                        &format!(
                            "sum by (slo) (slipstream_slo_period_requests{{{sel}, outcome=\"good\"}}) / sum by (slo) (slipstream_slo_period_requests{{{sel}}})"
                        ),
                        "{{slo}} SLI over the period",
                    ),
                ],
            ),
            panel(
                3,
                "Error budget remaining over time",
                "timeseries",
                (0, 14, 24, 8),
                &[(
                    &format!("slipstream_slo_error_budget_remaining_ratio{{{sel}}}"),
                    "{{slo}}",
                )],
            ),
        ],
    );
    let oncall = dashboard(
        "slipstream-oncall",
        "slipstream / SLOs: on-call view",
        vec![
            panel(
                1,
                "Alerts firing",
                "table",
                (0, 0, 24, 6),
                &[(
                    &format!("slipstream_slo_alert_firing{{{sel}}} == 1"),
                    "{{slo}} {{severity}} {{long_window}}/{{short_window}}",
                )],
            ),
            panel(
                2,
                "Burn rate per window",
                "timeseries",
                (0, 6, 24, 9),
                &[(
                    &format!("slipstream_slo_burn_rate{{{sel}}}"),
                    "{{slo}} {{window}}",
                )],
            ),
            panel(
                3,
                "Time to budget exhaustion",
                "stat",
                (0, 15, 12, 6),
                &[(
                    &format!("slipstream_slo_time_to_exhaustion_seconds{{{sel}}}"),
                    "{{slo}}",
                )],
            ),
            panel(
                4,
                "Requests per second by outcome",
                "timeseries",
                (12, 15, 12, 6),
                &[(
                    &format!(
                        "sum by (slo, outcome) (rate(slipstream_slo_requests_total{{{sel}}}[5m]))"
                    ),
                    "{{slo}} {{outcome}}",
                )],
            ),
        ],
    );
    let debug = dashboard(
        "slipstream-debug",
        "slipstream / SLOs: debug view (per series)",
        vec![
            panel(
                1,
                "Requests per second per series",
                "timeseries",
                (0, 0, 12, 8),
                &[(
                    "sum by (service_name, deployment_environment) (rate(slipstream_sli_requests_total[5m]))",
                    "{{service_name}} {{deployment_environment}}",
                )],
            ),
            panel(
                2,
                "Error ratio per series (5m)",
                "timeseries",
                (12, 0, 12, 8),
                &[(
                    "sum by (service_name) (rate(slipstream_sli_errors_total[5m])) / sum by (service_name) (rate(slipstream_sli_requests_total[5m]))",
                    "{{service_name}}",
                )],
            ),
            panel(
                3,
                "Latency quantiles (5m)",
                "timeseries",
                (0, 8, 12, 8),
                &[(
                    "slipstream_sli_latency_quantile_seconds{window=\"5m\"}",
                    "{{service_name}} p{{quantile}}",
                )],
            ),
            panel(
                4,
                "Latency p99 from the histogram",
                "timeseries",
                (12, 8, 12, 8),
                &[(
                    "histogram_quantile(0.99, sum by (service_name, le) (rate(slipstream_sli_latency_seconds_bucket[5m])))",
                    "{{service_name}}",
                )],
            ),
        ],
    );
    let mut out = vec![
        ("slipstream-executive.json".to_owned(), executive),
        ("slipstream-oncall.json".to_owned(), oncall),
        ("slipstream-debug.json".to_owned(), debug),
    ];
    for (_, d) in &mut out {
        d["description"] = Value::String(desc.clone());
    }
    out
}

/// Every PromQL expression of `dashboards` (for checking them).
pub fn dashboard_queries(dashboards: &[(String, Value)]) -> Vec<String> {
    dashboards
        .iter()
        .flat_map(|(_, d)| d["panels"].as_array().cloned().unwrap_or_default())
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}
