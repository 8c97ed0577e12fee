use slipstream_config::Config;

use super::*;

const CONFIG: &str = "slo:
  catalog:
    checkout: { owner: team-payments, runbook_url: https://runbooks.example/checkout }
    search: { tier: tier-2 }
  templates:
    availability:
      objective: 99.9
      labels: { team.name: web }
      annotations: { runbook_url: 'https://runbooks.example/{{service}}' }
    latency:
      objective: 99
      threshold: 500ms
      period: 28d
      alerts:
        - { severity: page, long_window: 2h, short_window: 10m, burn_rate: 10 }
  objectives:
    - name: checkout-availability
      service: checkout
      objective: 99.5
      annotations: { description: 'see {{ the board }}' }
";

fn rules() -> serde_yaml::Value {
    let cfg = Config::from_yaml(CONFIG).unwrap();
    serde_yaml::from_str(&prometheus_rules(&rule_specs(&cfg, &[]).unwrap())).unwrap()
}

fn alerts(doc: &serde_yaml::Value) -> Vec<&serde_yaml::Value> {
    doc["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn every_window_pair_of_the_policies_gets_one_alert() {
    let doc = rules();
    let pairs: Vec<String> = alerts(&doc)
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["labels"]["long_window"].as_str().unwrap(),
                a["labels"]["short_window"].as_str().unwrap()
            )
        })
        .collect();
    // Pages first, then by long window; the latency template's own row among them.
    assert_eq!(pairs, ["1h/5m", "2h/10m", "6h/30m", "1d/2h", "3d/6h"]);
}

#[test]
fn alerts_keep_the_labels_the_configuration_can_give_an_slo() {
    let doc = rules();
    let factor = doc["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["record"] == "slipstream:slo_alert_burn_rate_factor")
        .unwrap();
    let expr = factor["expr"].as_str().unwrap();
    for label in ["owner", "tier", "team_name", "severity", "long_window"] {
        assert!(expr.contains(label), "{label} missing: {expr}");
    }
}

#[test]
fn annotations_choose_by_slo_and_fill_in_the_service() {
    let doc = rules();
    let a = alerts(&doc)[0];
    let runbook = a["annotations"]["runbook_url"].as_str().unwrap();
    // checkout's explicit SLO takes the catalog's runbook; search (catalogued, no runbook of
    // its own) and every other service the availability template's, its service filled in.
    assert!(
        runbook.starts_with(
            "{{ if eq $labels.slo \"checkout-availability\" }}https://runbooks.example/checkout{{ else }}"
        ),
        "{runbook}"
    );
    assert!(
        runbook.contains("https://runbooks.example/{{ $labels.service }}"),
        "{runbook}"
    );
    assert!(
        runbook.contains("match \"^.*\\\\-availability$\" $labels.slo"),
        "{runbook}"
    );
    // Text of the configuration is written as it is, never run as a template.
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("see {{ \"{{\" }} the board }}"),
        "{description}"
    );
    // The summary is the same for every SLO: no branches.
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(!summary.contains("{{ if"), "{summary}");
}

#[test]
fn without_slos_or_templates_there_are_no_rules() {
    let cfg =
        Config::from_yaml("slo:\n  templates: { availability: null, latency: null }\n").unwrap();
    let rules = prometheus_rules(&rule_specs(&cfg, &[]).unwrap());
    assert!(rules.contains("groups: []"), "{rules}");
}

#[test]
fn budget_rows_get_alerts_of_their_own_and_leave_burn_rate_rules_alone() {
    let budget = CONFIG.replace(
        "      annotations: { description: 'see {{ the board }}' }\n",
        "      annotations: { description: 'see {{ the board }}' }
      alerts:
        - { severity: page, exhausts_within: 4h }
        - { severity: page, exhausts_within: 2h }
        - { severity: ticket, budget_drop_percent: 2.5, within: 2h }
",
    );
    let cfg = Config::from_yaml(&budget).unwrap();
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&prometheus_rules(&rule_specs(&cfg, &[]).unwrap())).unwrap();
    let named = |name: &str| -> Vec<String> {
        alerts(&doc)
            .iter()
            .filter(|a| a["alert"] == name)
            .map(|a| serde_json::to_string(&a["labels"]).unwrap())
            .collect()
    };
    assert_eq!(
        named(slipstream_slo::ALERT_NAME_EXHAUSTION),
        [
            r#"{"exhausts_within":"2h","long_window":"1h","short_window":"1h"}"#,
            r#"{"exhausts_within":"4h","long_window":"1h","short_window":"1h"}"#,
        ]
    );
    assert_eq!(
        named(slipstream_slo::ALERT_NAME_BUDGET_DROP),
        [r#"{"budget_drop_percent":"2.5","long_window":"2h","short_window":"2h"}"#]
    );
    let drop = alerts(&doc)
        .into_iter()
        .find(|a| a["alert"] == slipstream_slo::ALERT_NAME_BUDGET_DROP)
        .unwrap();
    assert!(drop["expr"].as_str().unwrap().contains(">= 0.025"));
    // The templates' burn-rate alerts are those of the configuration without the rows.
    let plain = rules();
    let burn = |d: &serde_yaml::Value| -> Vec<serde_yaml::Value> {
        alerts(d)
            .into_iter()
            .filter(|a| a["alert"] == ALERT_NAME)
            .cloned()
            .collect()
    };
    assert_eq!(burn(&doc), burn(&plain));
}
