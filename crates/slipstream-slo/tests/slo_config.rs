//! The `slo` configuration section: defaults, parsing, validation paths, policy scaling,
//! templates and the catalog.

mod common;

use std::time::Duration;

use common::*;
use slipstream_config::Config;
use slipstream_config::slo::{Period, SloConfig};
use slipstream_slo::{Severity, Sli, SloSource, policy};

fn errors(slo_yaml: &str) -> Vec<(String, String)> {
    let err = Config::from_yaml(&format!("slo:\n{slo_yaml}")).expect_err("invalid");
    err.errors
        .into_iter()
        .map(|e| (e.path, e.message))
        .collect()
}

#[test]
fn defaults_and_round_trip() {
    let c = SloConfig::default();
    assert_eq!(c.evaluation_interval, Duration::from_secs(10));
    assert_eq!(c.min_events, 10);
    assert!(c.templates.availability.is_some() && c.templates.latency.is_some());
    let full = Config::default();
    assert_eq!(Config::from_yaml(&full.to_yaml()).unwrap(), full);
    let yaml = "slo:\n  objectives:\n    - { name: a, service: a, objective: 99.5, period: calendar_month, sli: { kind: latency, threshold: 250ms } }\n";
    let c = Config::from_yaml(yaml).unwrap();
    assert_eq!(Config::from_yaml(&c.to_yaml()).unwrap(), c);
    let o = &c.slo.objectives[0];
    assert_eq!(o.period, Period::CalendarMonth);
    assert_eq!(
        o.sli,
        slipstream_config::slo::SliConfig::Latency {
            threshold: Duration::from_millis(250)
        }
    );
}

#[test]
fn validation_reports_every_error_with_its_path() {
    let errs = errors(
        "  evaluation_interval: 0s
  catalog:
    api: { runbook_url: 'wiki/api', links: { dash: 'nope' } }
  templates:
    latency: { objective: 99 }
  objectives:
    - { name: ok, service: api, objective: 99.9 }
    - { name: ok, service: '', objective: 100 }
    - name: 'bad name'
      service: api
      objective: 99.9
      period: 30m
      sli: { kind: latency, threshold: 0s }
      alerts:
        - { severity: page, long_window: 5m, short_window: 1h, burn_rate: 14.4 }
        - { severity: ticket, long_window: 1h, short_window: 5m }
        - { severity: ticket, long_window: 1h, short_window: 30s, budget_percent: 150 }
  silences:
    - { comment: everything }
",
    );
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "slo.evaluation_interval",
            "slo.catalog.api.runbook_url",
            "slo.catalog.api.links.dash",
            "slo.templates.latency.threshold",
            "slo.objectives[1].name",
            "slo.objectives[1].service",
            "slo.objectives[1].objective",
            "slo.objectives[2].name",
            "slo.objectives[2].sli.threshold",
            "slo.objectives[2].period",
            "slo.objectives[2].alerts[0].long_window",
            "slo.objectives[2].alerts[1].long_window",
            "slo.objectives[2].alerts[1]",
            "slo.objectives[2].alerts[2].short_window",
            "slo.objectives[2].alerts[2].long_window",
            "slo.objectives[2].alerts[2].budget_percent",
            "slo.silences[0]",
        ],
        "{errs:#?}"
    );
    let msg = |p: &str| &errs.iter().find(|(q, _)| q == p).unwrap().1;
    assert!(msg("slo.objectives[1].objective").contains("strictly between 0 and 100"));
    assert!(msg("slo.objectives[1].name").contains("already the name"));
    assert!(msg("slo.objectives[2].alerts[1]").contains("exactly one of `burn_rate`"));
    assert!(msg("slo.catalog.api.runbook_url").contains("not a URL"));
    assert!(msg("slo.objectives[2].alerts[0].long_window").contains("longer than the short"));
    assert!(
        msg("slo.objectives[2].alerts[1].long_window").contains("no longer than the SLO period")
    );
}

#[test]
fn unknown_fields_and_bad_values_are_refused_with_their_path() {
    let errs = errors("  objectives:\n    - { name: a, service: a, objectiv: 99 }\n");
    assert_eq!(errs[0].0, "slo.objectives[0].objectiv");
    assert!(errs[0].1.contains("unknown field"), "{errs:?}");
    let errs =
        errors("  objectives:\n    - { name: a, service: a, objective: 99, period: fortnight }\n");
    assert_eq!(errs[0].0, "slo.objectives[0].period");
    assert!(errs[0].1.contains("calendar_month"), "{errs:?}");
    let errs = errors(
        "  objectives:\n    - { name: a, service: a, objective: 99, sli: { kind: speed } }\n",
    );
    assert_eq!(errs[0].0, "slo.objectives[0].sli.kind");
}

/// The default table scaled to the period: 30 days gives 14.4, 6, 3, 1; 28 days 13.44, 5.6,
/// 2.8, 0.933; budget_percent rows scale the same way.
#[test]
fn policy_factors_scale_with_the_period() {
    let day = 86_400;
    let f = |p: Period| policy(None, p).iter().map(|r| r.factor).collect::<Vec<_>>();
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    };
    let d30 = f(Period::Rolling(Duration::from_secs(30 * day)));
    assert!(close(&d30, &[14.4, 6.0, 3.0, 1.0]), "{d30:?}");
    let d28 = f(Period::Rolling(Duration::from_secs(28 * day)));
    assert!(
        close(&d28, &[13.44, 5.6, 2.8, 28.0 * 24.0 * 0.1 / 72.0]),
        "{d28:?}"
    );
    assert!((d28[3] - 0.9333).abs() < 1e-4);
    let d7 = f(Period::Rolling(Duration::from_secs(7 * day)));
    assert!(
        close(&d7, &[3.36, 1.4, 0.7, 7.0 * 24.0 * 0.1 / 72.0]),
        "{d7:?}"
    );
    // A 2-day period drops the 3d row.
    assert_eq!(f(Period::Rolling(Duration::from_secs(2 * day))).len(), 3);
    assert!(close(&f(Period::CalendarMonth), &[14.4, 6.0, 3.0, 1.0]));
    let rows = policy(None, Period::Rolling(Duration::from_secs(28 * day)));
    assert_eq!(
        rows.iter().map(|r| r.severity).collect::<Vec<_>>(),
        [
            Severity::Page,
            Severity::Page,
            Severity::Ticket,
            Severity::Ticket
        ]
    );

    // Through the config: a custom budget_percent row on 28 days, and the engine uses it.
    let h = harness(
        "  templates: { availability: null, latency: null }
  objectives:
    - name: a
      service: a
      objective: 99.9
      period: 28d
      alerts:
        - { severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 10 }
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 20 }
",
    );
    let spec = h.engine.spec(h.id("a")).unwrap();
    assert_eq!(spec.policy[0].severity, Severity::Page, "pages first");
    assert_eq!(spec.policy[0].factor, 20.0);
    assert!((spec.policy[1].factor - 0.9333333).abs() < 1e-6);
    let h = harness("  objectives:\n    - { name: b, service: b, objective: 99.9, period: 28d }\n");
    let f: Vec<f64> = h
        .engine
        .spec(h.id("b"))
        .unwrap()
        .policy
        .iter()
        .map(|r| r.factor)
        .collect();
    assert!(
        close(&f, &[13.44, 5.6, 2.8, 28.0 * 24.0 * 0.1 / 72.0]),
        "{f:?}"
    );
}

#[test]
fn templates_catalog_and_matching() {
    let mut h = harness(
        "  catalog:
    checkout: { owner: payments, tier: tier-1, runbook_url: 'https://rb.example/checkout', labels: { team: pay } }
    cart: { owner: shop }
  templates:
    latency: { objective: 99, threshold: 400ms, annotations: { summary: '{{service}} is slow' } }
  objectives:
    - { name: cart-pay, service: cart, objective: 99.5, match_labels: { http.route: /pay } }
",
    );
    // An explicit service gets no template.
    assert!(h.engine.service_seen("cart").is_empty());
    let ids = h.engine.service_seen("checkout");
    assert_eq!(ids.len(), 2);
    assert!(h.engine.service_seen("checkout").is_empty(), "only once");
    let a = h.engine.spec(ids[0]).unwrap();
    assert_eq!(a.name, "checkout-availability");
    assert_eq!((a.sli, a.source), (Sli::Availability, SloSource::Template));
    assert!((a.objective - 0.999).abs() < 1e-12);
    assert_eq!(a.labels["owner"], "payments");
    assert_eq!(a.labels["tier"], "tier-1");
    assert_eq!(a.labels["team"], "pay");
    assert_eq!(a.annotations["runbook_url"], "https://rb.example/checkout");
    let l = h.engine.spec(ids[1]).unwrap();
    assert_eq!(l.name, "checkout-latency");
    assert_eq!(
        l.sli,
        Sli::Latency {
            threshold: Duration::from_millis(400)
        }
    );
    assert_eq!(l.annotations["summary"], "checkout is slow");
    h.engine.service_seen("search");
    h.engine.service_seen("billing");
    assert_eq!(h.engine.uncataloged_services(), ["billing", "search"]);
    assert_eq!(h.metric("slipstream_slo_services_uncataloged", &[]), 2);
    assert_eq!(h.metric("slipstream_slo_objectives", &["template"]), 6);
    assert_eq!(h.metric("slipstream_slo_objectives", &["explicit"]), 1);
    h.clock.advance(MIN);
    h.engine.tick();
    assert_eq!(
        h.engine.snapshot().uncataloged_services,
        ["billing", "search"]
    );

    // Selectors: service name and every match_labels entry.
    let cart = h.id("cart-pay");
    let m = |svc: &str, labels: &[(&str, &str)]| h.engine.matching(svc, labels).collect::<Vec<_>>();
    assert_eq!(m("cart", &[("http.route", "/pay"), ("x", "y")]), [cart]);
    assert!(m("cart", &[("http.route", "/browse")]).is_empty());
    assert!(m("cart", &[]).is_empty());
    assert_eq!(m("checkout", &[]), ids);
    assert!(m("nowhere", &[]).is_empty());
}
