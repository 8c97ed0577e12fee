//! `slipstream generate`: the Prometheus rules load in Prometheus' own checker, hold one alert
//! per policy row with slipstream's labels, and every dashboard query is valid PromQL over
//! series slipstream exports.

use std::path::Path;
use std::process::Command;

use slipstream::generate::{dashboard_queries, grafana, prometheus_rules, slos};
use slipstream::series::SERIES;
use slipstream_config::Config;

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

#[test]
fn generated_prometheus_rules_pass_promtool_and_alert_like_slipstream() {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    let specs = slos(&cfg, &["cart".to_owned()]).unwrap();
    // Two explicit SLOs, plus the two templated ones of `cart`.
    assert_eq!(specs.len(), 4);
    let rules = prometheus_rules(&specs);
    promtool_check(&rules);

    let doc: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    let alerts: Vec<&serde_yaml::Value> = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect();
    let rows: usize = specs.iter().map(|s| s.policy.len()).sum();
    assert_eq!(alerts.len(), rows);
    let page = alerts
        .iter()
        .find(|a| a["labels"]["slo"] == "checkout-latency")
        .unwrap();
    assert_eq!(page["labels"]["severity"], "page");
    assert_eq!(page["labels"]["long_window"], "1h");
    assert_eq!(page["labels"]["short_window"], "5m");
    assert_eq!(page["labels"]["owner"], "team-payments");
    assert_eq!(
        page["annotations"]["runbook_url"],
        "https://runbooks.example/checkout"
    );
    // 14.4 times the latency SLO's 1% budget.
    let expr = page["expr"].as_str().unwrap();
    assert!(expr.contains("> 0.144"), "{expr}");
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
