//! `slipstream generate`: the Prometheus rules load in Prometheus' own checker, hold one generic
//! alert per pair of windows, page for an explicit SLO with slipstream's labels and annotations,
//! and every dashboard query is valid PromQL over series slipstream exports.

use std::path::Path;
use std::process::Command;

use slipstream::generate::{
    ALERT_NAME, dashboard_queries, grafana, prometheus_rules, rule_specs, slos,
};
use slipstream_config::Config;
use slipstream_step::series::SERIES;

const PROMTOOL: &str = "/usr/bin/promtool";

const CONFIG: &str = "slo:
  catalog:
    checkout: { owner: team-payments, tier: tier-1, runbook_url: https://runbooks.example/checkout }
  objectives:
    - name: checkout-availability
      service: checkout
      sli: { kind: availability }
      objective: 99.9
    - name: checkout-latency
      service: checkout
      sli: { kind: latency, threshold: 300ms }
      objective: 99
      period: 28d
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }
";

fn promtool_check(rules: &str) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/test-deps.sh (Debian package `prometheus`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `promtool test rules` on `test` (a unit test file reading `rules.yml`) next to `rules`.
fn promtool_test(rules: &str, test: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), test).unwrap();
    let out = Command::new(PROMTOOL)
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n{rules}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generated_prometheus_rules_pass_promtool_and_alert_like_slipstream() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let specs = rule_specs(&cfg, &["cart".to_owned()]).unwrap();
    let rules = prometheus_rules(&specs);
    promtool_check(&rules);

    let doc: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    let groups = doc["groups"].as_sequence().unwrap();
    // One group: an alert reads the ratios recorded at the same evaluation.
    assert_eq!(groups.len(), 1);
    let all = groups[0]["rules"].as_sequence().unwrap();
    let alerts: Vec<&serde_yaml::Value> = all.iter().filter(|r| r.get("alert").is_some()).collect();
    // One generic alert per pair of windows, whatever the number of SLOs: the default
    // policy's four; checkout-latency's own 1h/5m row shares the first.
    let pairs: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["labels"]["long_window"].as_str().unwrap(),
                a["labels"]["short_window"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("3d", "6h")]
    );
    // No expression names an SLO: objectives, factors and periods come from the series.
    for r in all {
        let expr = r["expr"].as_str().unwrap();
        assert!(!expr.contains("checkout"), "{expr}");
    }
    // The periods present in the configuration (30d, 28d) each get their window.
    for w in ["slo:sli_error:ratio_rate30d", "slo:sli_error:ratio_rate28d"] {
        assert!(all.iter().any(|r| r["record"] == w), "{w} missing");
    }
}

/// An explicitly configured SLO (its own period, objective and alert row, catalog labels and
/// runbook) pages through the generic rules with slipstream's labels and annotations, on
/// series shaped as slipstream exports them, Sloth-named ones (`naming: sloth`) included.
#[test]
fn an_explicit_slo_pages_through_the_generic_rules() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let rules = prometheus_rules(&rule_specs(&cfg, &[]).unwrap());
    let slo = "slo=\"checkout-latency\",service=\"checkout\",sli=\"latency\",owner=\"team-payments\",tier=\"tier-1\",instance=\"a:8889\",job=\"slipstream\"";
    let row = "severity=\"page\",long_window=\"1h\",short_window=\"5m\"";
    // What slipstream also exports with `naming: sloth`: the recorded names without `slo`.
    let sloth = "sloth_service=\"checkout\",instance=\"a:8889\",job=\"slipstream\"";
    // 1,000 good requests a minute for an hour, then 1,000 bad ones a minute.
    let test = format!(
        "rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'slipstream_slo_requests_total{{{slo},outcome=\"good\"}}'
        values: '0+1000x60 60000x60'
      - series: 'slipstream_slo_requests_total{{{slo},outcome=\"bad\"}}'
        values: '0x60 0+1000x60'
      - series: 'slipstream_slo_objective_ratio{{{slo}}}'
        values: '0.99x120'
      - series: 'slipstream_slo_period_seconds{{{slo}}}'
        values: '2419200x120'
      - series: 'slipstream_slo_alert_burn_rate_factor{{{slo},{row}}}'
        values: '14.4x120'
      - series: 'slipstream_slo_alert_min_events{{{slo},{row}}}'
        values: '10x120'
      - series: 'slo:sli_error:ratio_rate1h{{{sloth},sloth_slo=\"checkout-latency\",sloth_window=\"1h\"}}'
        values: '0.5x120'
      - series: 'slo:error_budget:ratio{{{sloth},sloth_slo=\"checkout-latency\"}}'
        values: '0.01x120'
      - series: 'slo:error_budget:ratio{{{sloth},sloth_slo=\"checkout-availability\"}}'
        values: '0.001x120'
    promql_expr_test:
      - expr: slo:time_period:days
        eval_time: 30m
        exp_samples:
          - labels: 'slo:time_period:days{{slo=\"checkout-latency\",service=\"checkout\",sloth_id=\"checkout-checkout-latency\",sloth_service=\"checkout\",sloth_slo=\"checkout-latency\"}}'
            value: 28
    alert_rule_test:
      - eval_time: 1h5m
        alertname: {ALERT_NAME}
        exp_alerts: []
      - eval_time: 1h30m
        alertname: {ALERT_NAME}
        exp_alerts:
          - exp_labels: {{ slo: checkout-latency, service: checkout, severity: page, long_window: 1h, short_window: 5m, owner: team-payments, tier: tier-1 }}
            exp_annotations:
              summary: 'checkout: error budget of checkout-latency burning more than 14.4x too fast over 1h and 5m'
              runbook_url: https://runbooks.example/checkout
"
    );
    promtool_test(&rules, &test);
}

#[test]
fn dashboards_query_only_exported_series_with_valid_promql() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let boards = grafana(&slos(&cfg, &[]).unwrap());
    assert_eq!(boards.len(), 3);
    let queries = dashboard_queries(&boards);
    assert!(queries.len() >= 10);
    // Every query, as a recording rule, must satisfy Prometheus' parser.
    let rules: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            format!(
                "  - record: dashboard_query_{i}\n    expr: {}\n",
                serde_json::to_string(&q.replace("$slo", ".*")).unwrap()
            )
        })
        .collect();
    promtool_check(&format!(
        "groups:\n- name: dashboards\n  rules:\n{}",
        rules.concat()
    ));
    // And read only series slipstream exports.
    let declared: Vec<&str> = SERIES.iter().map(|d| d.name).collect();
    for q in &queries {
        for word in q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
            if !word.starts_with("slipstream_") {
                continue;
            }
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                declared.contains(&word) || declared.contains(&base),
                "dashboard query reads {word}, which slipstream does not export: {q}"
            );
        }
    }
}
