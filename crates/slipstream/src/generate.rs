//! `slipstream generate`: Prometheus rules and Grafana dashboards for the configured SLOs, over
//! the series slipstream exports (see `docs/sli-series.md`).
//!
//! The rules recompute, in Prometheus, what slipstream computes in the stream, for every SLO
//! it exports: templated SLOs appear only when their service sends traffic, so no rule names
//! an SLO. One recording rule per window gives the error ratio of every SLO from
//! `slipstream_slo_requests_total` (Sloth's recording-rule names, so Sloth's dashboards work on
//! them too); one alert per pair of windows of the configured policies compares both windows'
//! burn rates with each SLO's factor and minimum event count, read, like the objective and the
//! period, from the series slipstream exports, and keeps firing while the short window burns,
//! as slipstream does. Time-to-exhaustion rows get one alert per window and time
//! (`SlipstreamErrorBudgetExhaustion`: the window's burn rate above the row's factor, `period /
//! exhausts_within`, times the budget left over the period), budget-drop rows one per window
//! and share (`SlipstreamErrorBudgetDrop`: the window's bad requests against the share of the
//! period's budget in requests); both hold while their condition does, as slipstream's.
//! The configuration only decides which windows get a rule, which labels
//! the alerts carry and their annotations. `promtool test rules` on slipstream's own `/metrics`
//! fires them at the same evaluation as slipstream (`tests/generate_rules_promtool.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use slipstream_config::Config;
use slipstream_core::export::format_duration;
use slipstream_core::{ManualClock, Registry};
use slipstream_slo::{RowKind, SloEngine, SloSpec};

/// The alert name of generated burn-rate alerts (and of slipstream's own events).
pub const ALERT_NAME: &str = slipstream_slo::ALERT_NAME_BURN_RATE;

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

/// The service the templates are resolved for when the rules are generated: its name, where a
/// template's annotation holds it, becomes the alert's `service` label.
const ANY_SERVICE: &str = "\u{1}any-service\u{1}";

/// The SLOs the generated rules are shaped by: those of [`slos`] for `services` and every
/// service of the catalog, plus the templates resolved for any other service. The rules are
/// generic (they read every SLO's objective, period and policy from the exported series);
/// these give the windows, policy rows, periods, label names and annotations to cover.
pub fn rule_specs(cfg: &Config, services: &[String]) -> anyhow::Result<Vec<SloSpec>> {
    let mut all: Vec<String> = cfg.slo.catalog.keys().cloned().collect();
    all.extend(services.iter().cloned());
    all.push(ANY_SERVICE.to_owned());
    slos(cfg, &all)
}

/// Labels the rules set themselves, never copied from an SLO's own labels.
const RESERVED: [&str; 9] = [
    "slo",
    "service",
    "sli",
    "severity",
    "long_window",
    "short_window",
    "exhausts_within",
    "budget_drop_percent",
    "alertname",
];

/// Adds Sloth's `sloth_id`, `sloth_service` and `sloth_slo` to an expression grouped by
/// `slo` and `service`.
fn with_sloth_labels(expr: &str) -> String {
    format!(
        "label_join(label_join(label_join(\n  {expr},\n  \"sloth_id\", \"-\", \"service\", \"slo\"),\n  \"sloth_service\", \"\", \"service\"),\n  \"sloth_slo\", \"\", \"slo\")\n"
    )
}

/// A Go template that writes `s` as it is.
fn template_literal(s: &str) -> String {
    s.split("{{").collect::<Vec<_>>().join("{{ \"{{\" }}")
}

/// One annotation of the generic alerts: the value of each SLO the configuration names,
/// chosen by the `slo` label, and the templates' value for any other SLO (its service filled
/// in from the `service` label); `fallback` (a template) where an SLO has none.
fn annotation(specs: &[SloSpec], key: &str, fallback: &str) -> Option<String> {
    if fallback.is_empty() && specs.iter().all(|s| !s.annotations.contains_key(key)) {
        return None;
    }
    let fill = |s: &SloSpec| match s.annotations.get(key) {
        Some(v) => template_literal(v).replace(ANY_SERVICE, "{{ $labels.service }}"),
        None => fallback.to_owned(),
    };
    // The templates, resolved for any service: `<any>-availability`, `<any>-latency`.
    let any: Vec<&SloSpec> = specs.iter().filter(|s| s.service == ANY_SERVICE).collect();
    let kind = |s: &SloSpec| s.name[s.service.len()..].to_owned();
    // (condition, value) in the order they are tried, then the value for any other SLO.
    let mut branches: Vec<(String, String)> = Vec::new();
    for s in specs.iter().filter(|s| s.service != ANY_SERVICE) {
        let as_template = s.source == slipstream_slo::SloSource::Template
            && any.iter().any(|a| {
                kind(a) == kind(s)
                    && a.annotations
                        .get(key)
                        .map(|v| v.replace(ANY_SERVICE, &s.service))
                        == s.annotations.get(key).cloned()
            });
        if !as_template {
            branches.push((format!("eq $labels.slo \"{}\"", quote(&s.name)), fill(s)));
        }
    }
    let last = match any.split_last() {
        None => fallback.to_owned(),
        Some((last, rest)) => {
            for a in rest {
                let re = format!("^.*{}$", regex_quote(&kind(a)));
                branches.push((format!("match \"{}\" $labels.slo", quote(&re)), fill(a)));
            }
            fill(last)
        }
    };
    // Branches at the end that give what the fallback gives are left out.
    while branches.last().is_some_and(|(_, v)| *v == last) {
        branches.pop();
    }
    let mut out = String::new();
    for (cond, value) in &branches {
        out.push_str(&format!("{{{{ if {cond} }}}}{value}{{{{ else }}}}"));
    }
    out.push_str(&last);
    for _ in &branches {
        out.push_str("{{ end }}");
    }
    Some(out)
}

fn regex_quote(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn windows(s: &SloSpec) -> Vec<Duration> {
    let mut w = s.windows();
    w.push(s.period.nominal());
    w.sort();
    w.dedup();
    w
}

/// The rules file (YAML): one group of generic rules over every SLO slipstream exports.
///
/// `specs` (see [`rule_specs`]) decide only which windows, policy rows and periods get a
/// rule, which SLO labels the alerts carry and the annotations; the objective, period, factor
/// and minimum event count of each SLO are read from its exported series, so SLOs created
/// from templates as traffic arrives are covered, and a reload that changes an objective or a
/// factor needs no new rules.
pub fn prometheus_rules(specs: &[SloSpec]) -> String {
    let mut rules = Vec::new();
    if !specs.is_empty() {
        rules = generic_rules(specs);
    }
    let doc = json!({
        "groups": if rules.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "name": "slipstream-slo", "rules": rules })]
        }
    });
    format!(
        "# Generated by `slipstream generate prometheus-rules`: recording rules (Sloth names) and\n# multi-window multi-burn-rate alerts over slipstream_slo_requests_total, for every SLO\n# slipstream exports (objectives, periods and alert factors are read from its series).\n{}",
        serde_yaml::to_string(&doc).expect("rules serialize")
    )
}

fn generic_rules(specs: &[SloSpec]) -> Vec<Value> {
    let mut all_windows: Vec<Duration> = specs.iter().flat_map(windows).collect();
    all_windows.sort();
    all_windows.dedup();
    let mut periods: Vec<Duration> = specs.iter().map(|s| s.period.nominal()).collect();
    periods.sort();
    periods.dedup();
    // Policy rows by their windows, pages first, in the order the SLOs list them.
    let mut rows: Vec<(slipstream_slo::Severity, Duration, Duration)> = specs
        .iter()
        .flat_map(|s| s.policy.iter())
        .filter(|r| r.kind == RowKind::BurnRate)
        .map(|r| (r.severity, r.long, r.short))
        .collect();
    rows.sort_by_key(|r| (r.0, r.1, r.2));
    let mut pairs: Vec<(Duration, Duration)> = Vec::new();
    for (_, long, short) in rows {
        if !pairs.contains(&(long, short)) {
            pairs.push((long, short));
        }
    }
    // The other rows by window and parameter (the labels that tell them apart).
    let mut budget_rows: Vec<slipstream_slo::PolicyRow> = Vec::new();
    for r in specs.iter().flat_map(|s| s.policy.iter()) {
        if r.kind != RowKind::BurnRate
            && !budget_rows
                .iter()
                .any(|b| b.long == r.long && b.kind == r.kind)
        {
            budget_rows.push(*r);
        }
    }
    budget_rows.sort_by(|a, b| {
        (a.kind.as_str(), a.long, a.kind_labels()).cmp(&(b.kind.as_str(), b.long, b.kind_labels()))
    });
    let mut label_names: Vec<String> = specs
        .iter()
        .flat_map(|s| {
            s.labels
                .keys()
                .map(|k| slipstream_step::series::label_name(k))
        })
        .filter(|k| !RESERVED.contains(&k.as_str()) && !k.starts_with("sloth_"))
        .collect();
    label_names.sort();
    label_names.dedup();
    let mut by = vec![
        "slo".to_owned(),
        "service".to_owned(),
        "severity".to_owned(),
        "long_window".to_owned(),
        "short_window".to_owned(),
    ];
    for kind_label in ["exhausts_within", "budget_drop_percent"] {
        if budget_rows
            .iter()
            .any(|r| r.kind_labels().iter().any(|(k, _)| *k == kind_label))
        {
            by.push(kind_label.to_owned());
        }
    }
    by.extend(label_names);
    let by = by.join(", ");

    let mut rules = Vec::new();
    // The error ratio of every window, for every SLO: bad / all requests, absent without
    // traffic (as slipstream's own `slipstream_slo_error_ratio`).
    for w in &all_windows {
        let wl = format_duration(*w);
        let ratio = format!(
            "sum by (slo, service) (rate(slipstream_slo_requests_total{{outcome=\"bad\"}}[{wl}]))\n  /\n  (sum by (slo, service) (rate(slipstream_slo_requests_total[{wl}])) > 0)"
        );
        rules.push(json!({
            "record": format!("slo:sli_error:ratio_rate{wl}"),
            "expr": with_sloth_labels(&ratio),
            "labels": { "sloth_window": wl },
        }));
    }
    // Each SLO's objective and period, once (several slipstream instances export them alike).
    for (record, expr) in [
        (
            "slo:objective:ratio",
            "max by (slo, service) (slipstream_slo_objective_ratio)".to_owned(),
        ),
        (
            "slo:error_budget:ratio",
            "1 - max by (slo, service) (slipstream_slo_objective_ratio)".to_owned(),
        ),
        (
            "slo:time_period:days",
            "max by (slo, service) (slipstream_slo_period_seconds) / 86400".to_owned(),
        ),
    ] {
        rules.push(json!({ "record": record, "expr": with_sloth_labels(&expr) }));
    }
    let on = "on(slo, service)";
    // The series these rules record, not those of the same Sloth names slipstream exports
    // itself with `naming: sloth` (they have no `slo` label).
    let mine = "{slo!=\"\"}";
    rules.push(json!({
        "record": "slo:current_burn_rate:ratio",
        "expr": format!(
            "slo:sli_error:ratio_rate5m{mine}\n/ {on} group_left()\nslo:error_budget:ratio{mine}\n"
        ),
    }));
    let period_burn: Vec<String> = periods
        .iter()
        .map(|p| {
            format!(
                "(\n  slo:sli_error:ratio_rate{}{mine}\n  / {on} group_left() slo:error_budget:ratio{mine}\n  and {on} (slo:time_period:days{mine} == {})\n)",
                format_duration(*p),
                p.as_secs_f64() / 86_400.0
            )
        })
        .collect();
    rules.push(json!({
        "record": "slo:period_burn_rate:ratio",
        "expr": format!("{}\n", period_burn.join("\nor\n")),
    }));
    rules.push(json!({
        "record": "slo:period_error_budget_remaining:ratio",
        "expr": format!("1 - slo:period_burn_rate:ratio{mine}\n"),
    }));
    // The requests of each SLO's period: the error budget in requests of budget-drop rows.
    if budget_rows
        .iter()
        .any(|r| matches!(r.kind, RowKind::BudgetDrop { .. }))
    {
        let period_requests: Vec<String> = periods
            .iter()
            .map(|p| {
                format!(
                    "(\n  sum by (slo, service) (increase(slipstream_slo_requests_total[{}]))\n  and {on} (slo:time_period:days{mine} == {})\n)",
                    format_duration(*p),
                    p.as_secs_f64() / 86_400.0
                )
            })
            .collect();
        rules.push(json!({
            "record": "slo:period_requests:total",
            "expr": format!("{}\n", period_requests.join("\nor\n")),
        }));
    }
    // Every policy row's factor and minimum event count, once, with the SLO's labels.
    rules.push(json!({
        "record": "slipstream:slo_alert_burn_rate_factor",
        "expr": format!("max by ({by}) (slipstream_slo_alert_burn_rate_factor)\n"),
    }));
    rules.push(json!({
        "record": "slipstream:slo_alert_min_events",
        "expr": format!("max by ({by}) (slipstream_slo_alert_min_events)\n"),
    }));

    // One alert per pair of windows: the rows of every SLO with those windows, from the
    // evaluation where both windows burn above the row's factor with at least its minimum of
    // requests in each, until the short window alone stops doing so.
    for (long, short) in pairs {
        let (l, s) = (format_duration(long), format_duration(short));
        let sel = format!("{{long_window=\"{l}\", short_window=\"{s}\"}}");
        let hot = |w: &str| {
            format!(
                "(\n    slipstream:slo_alert_burn_rate_factor{sel}\n    < {on} group_left()\n    (slo:sli_error:ratio_rate{w}{mine} / {on} group_left() slo:error_budget:ratio{mine})\n  )\n  and\n  (\n    slipstream:slo_alert_min_events{sel}\n    <= {on} group_left()\n    sum by (slo, service) (increase(slipstream_slo_requests_total[{w}]))\n  )"
            )
        };
        // Fires where both windows burn; once firing, keeps firing while the short window
        // burns (slipstream's rule), read from the alert's own `ALERTS` series.
        let expr = format!(
            "(\n  {long}\n)\nand\n(\n  {short}\n)\nor\n(\n  {short}\n)\nand on(slo, service, severity)\nALERTS{{alertname=\"{ALERT_NAME}\", alertstate=\"firing\", long_window=\"{l}\", short_window=\"{s}\"}}\n",
            long = hot(&l),
            short = hot(&s),
        );
        let summary = format!(
            "{{{{ $labels.service }}}}: error budget of {{{{ $labels.slo }}}} burning more than {{{{ $value }}}}x too fast over {l} and {s}"
        );
        rules.push(json!({
            "alert": ALERT_NAME,
            "expr": expr,
            "labels": { "long_window": l, "short_window": s },
            "annotations": annotations(specs, &summary),
        }));
    }

    // Time-to-exhaustion and budget-drop rows: from the evaluation where the condition holds
    // (with at least the row's minimum of requests in its window) until it no longer does.
    for row in budget_rows {
        let (kind, kind_labels) = (row.kind, row.kind_labels());
        let w = format_duration(row.long);
        let mut sel = format!("long_window=\"{w}\", short_window=\"{w}\"");
        let mut labels = BTreeMap::from([
            ("long_window".to_owned(), w.clone()),
            ("short_window".to_owned(), w.clone()),
        ]);
        for (k, v) in &kind_labels {
            sel.push_str(&format!(", {k}=\"{v}\""));
            labels.insert((*k).to_owned(), v.clone());
        }
        let sel = format!("{{{sel}}}");
        let enough = format!(
            "(\n  slipstream:slo_alert_min_events{sel}\n  <= {on} group_left()\n  sum by (slo, service) (increase(slipstream_slo_requests_total[{w}]))\n)"
        );
        let (expr, summary) = match kind {
            RowKind::Exhaustion { within } => (
                format!(
                    "(\n  slipstream:slo_alert_burn_rate_factor{sel}\n  * {on} group_left() clamp_min(slo:period_error_budget_remaining:ratio{mine}, 0)\n  < {on} group_left()\n  (slo:sli_error:ratio_rate{w}{mine} / {on} group_left() slo:error_budget:ratio{mine})\n)\nand\n{enough}\n"
                ),
                format!(
                    "{{{{ $labels.service }}}}: error budget of {{{{ $labels.slo }}}} runs out within {} at the burn rate of the last {w}",
                    format_duration(within)
                ),
            ),
            RowKind::BudgetDrop { percent } => (
                format!(
                    "{enough}\nand {on}\n(\n  sum by (slo, service) (increase(slipstream_slo_requests_total{{outcome=\"bad\"}}[{w}]))\n  / {on}\n  (slo:period_requests:total{mine} * {on} slo:error_budget:ratio{mine})\n  >= {}\n)\n",
                    percent / 100.0
                ),
                format!(
                    "{{{{ $labels.service }}}}: {percent}% of the error budget of {{{{ $labels.slo }}}} went in {w}"
                ),
            ),
            RowKind::BurnRate => continue,
        };
        rules.push(json!({
            "alert": kind.alert_name(),
            "expr": expr,
            "labels": labels,
            "annotations": annotations(specs, &summary),
        }));
    }
    rules
}

/// The annotations of an alert: every key the SLOs give (see [`annotation`]), and `summary`,
/// `summary` (a template) where an SLO has none.
fn annotations(specs: &[SloSpec], summary: &str) -> BTreeMap<String, String> {
    let mut keys: Vec<String> = specs
        .iter()
        .flat_map(|sp| sp.annotations.keys().cloned())
        .chain(std::iter::once("summary".to_owned()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let fallback = if k == "summary" { summary } else { "" };
            annotation(specs, &k, fallback).map(|v| (k, v))
        })
        .collect()
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
                &[
                    // Classic buckets: the same `le` bounds in every series, so they add up.
                    (
                        "histogram_quantile(0.99, sum by (service_name, le) (rate(slipstream_sli_latency_seconds_bucket[5m])))",
                        "{{service_name}}",
                    ),
                    // Native histograms (a Prometheus that scrapes them has no `_bucket`).
                    (
                        "histogram_quantile(0.99, sum by (service_name) (rate(slipstream_sli_latency_seconds[5m])))",
                        "{{service_name}} (native)",
                    ),
                ],
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

#[cfg(test)]
mod tests;
