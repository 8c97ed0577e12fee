//! Discovered services are bounded: templated SLOs for at most `slo.discovery.max_services`
//! services (the rest listed and counted as over the limit), never for a service seen only in
//! an overflow series, and removed with their saved state once their service goes quiet.

mod common;

use common::*;
use slipstream_slo::{DropReason, EngineState, MAX_OVER_LIMIT_TRACKED, OVER_LIMIT_LISTED};

/// Three discovered services at most; they expire after 2h idle, or after 30m idle when
/// their traffic lasted less than 30m. `pay` has an explicit objective.
const CONFIG: &str = "  min_events: 0
  evaluation_interval: 1m
  templates:
    availability: { objective: 99 }
    latency: null
  discovery: { max_services: 3, expire_after: 2h, expire_transient_after: 30m }
  objectives:
    - { name: pay, service: pay, objective: 99.9 }
";

fn names(h: &Harness) -> Vec<String> {
    let mut v: Vec<String> = h.engine.slos().map(|(_, s)| s.name.clone()).collect();
    v.sort();
    v
}

fn over_limit(h: &Harness) -> Vec<&str> {
    h.engine.services_over_limit().collect()
}

#[test]
fn templated_slos_stop_at_the_cap_and_the_rest_are_listed_and_counted() {
    let mut h = harness(CONFIG);
    for s in ["a", "b", "c", "d", "e"] {
        assert_eq!(h.engine.service_traffic(s, true), s < "d", "{s}");
    }
    // Seen again: no second refusal counted, no SLO.
    assert!(!h.engine.service_traffic("d", true));
    // The explicit service is never capped.
    assert!(h.engine.service_traffic("pay", true));
    assert_eq!(
        names(&h),
        ["a-availability", "b-availability", "c-availability", "pay"]
    );
    assert_eq!(over_limit(&h), ["d", "e"]);
    assert_eq!(h.engine.discovered_services(), 3);
    assert_eq!(h.metric("slipstream_slo_services_discovered", &[]), 3);
    assert_eq!(h.metric("slipstream_slo_services_over_limit", &[]), 2);
    assert_eq!(
        h.metric("slipstream_slo_services_refused_total", &["over_limit"]),
        2
    );
    h.clock.set(START + MIN);
    h.engine.tick();
    let snap = h.engine.snapshot();
    assert_eq!(snap.services_over_limit, ["d", "e"]);
    assert_eq!(snap.services_over_limit_count, 2);
    assert_eq!(snap.slos.len(), 4);
}

#[test]
fn the_over_limit_list_is_bounded_and_names_the_first_ones() {
    let mut h = harness(CONFIG);
    let n = MAX_OVER_LIMIT_TRACKED + 500;
    for i in 0..n + 3 {
        h.engine.service_traffic(&format!("junk-{i:05}"), true);
    }
    // Three templated SLOs and the explicit one.
    assert_eq!(h.engine.slos().count(), 4);
    assert_eq!(
        h.engine.services_over_limit().count(),
        MAX_OVER_LIMIT_TRACKED
    );
    assert_eq!(
        h.metric("slipstream_slo_services_refused_total", &["over_limit"]),
        n as i128
    );
    h.engine.tick();
    let snap = h.engine.snapshot();
    assert_eq!(snap.services_over_limit.len(), OVER_LIMIT_LISTED);
    assert_eq!(snap.services_over_limit[0], "junk-00003");
    assert_eq!(snap.services_over_limit_count, MAX_OVER_LIMIT_TRACKED);
    assert_eq!(snap.uncataloged_services.len(), 3);
}

#[test]
fn a_service_seen_only_in_an_overflow_series_gets_no_slo() {
    let mut h = harness(CONFIG);
    assert!(!h.engine.service_traffic("spill", false));
    assert!(h.engine.id("spill-availability").is_none());
    assert!(!h.engine.is_tracked("spill"));
    assert_eq!(over_limit(&h), Vec::<&str>::new());
    // Its first ordinary series does.
    assert!(h.engine.service_traffic("spill", true));
    assert!(h.engine.id("spill-availability").is_some());
    // From then on its overflow series keeps it alive.
    assert!(h.engine.service_traffic("spill", false));
}

#[test]
fn quiet_services_expire_with_their_slos_and_make_room() {
    let mut h = harness(CONFIG);
    // `steady` sends for 40 minutes, `once` once, `late` a bit later; `d` is over the limit.
    for s in ["steady", "once", "late", "d"] {
        h.engine.service_traffic(s, true);
    }
    let gen0 = h.engine.generation();
    for m in 1..=40 {
        h.clock.set(START + m * MIN);
        h.engine.service_traffic("steady", true);
        let id = h.id("steady-availability");
        h.engine.observe(id, START + (m - 1) * MIN, 100, 100);
        h.engine.tick();
    }
    // `once` went quiet 30m after its only sighting: gone (transient), `late` with it.
    assert_eq!(names(&h), ["pay", "steady-availability"]);
    assert_eq!(
        h.metric("slipstream_slo_services_expired_total", &["transient"]),
        2
    );
    assert!(h.engine.generation() > gen0);
    // Its saved state goes with it.
    let state = h.engine.export_state();
    assert_eq!(
        state.slo_names().collect::<Vec<_>>(),
        ["pay", "steady-availability"]
    );
    // `d` was forgotten as quiet too; seen again, it now gets its SLO.
    assert_eq!(over_limit(&h), Vec::<&str>::new());
    assert!(h.engine.service_traffic("d", true));
    assert!(h.engine.id("d-availability").is_some());
    // `steady` lasted 40m: it stays through 1h59m of silence, and goes at 2h.
    let last = START + 40 * MIN;
    h.clock.set(last + 2 * HOUR - MIN);
    h.engine.service_traffic("d", true);
    h.engine.tick();
    assert!(h.engine.id("steady-availability").is_some());
    h.clock.set(last + 2 * HOUR);
    h.engine.tick();
    assert!(h.engine.id("steady-availability").is_none());
    assert_eq!(
        h.metric("slipstream_slo_services_expired_total", &["idle"]),
        1
    );
    assert_eq!(h.metric("slipstream_slo_services_discovered", &[]), 1);
    // The explicit objective never expires; ids stay dense.
    assert!(h.engine.id("pay").is_some());
    let ids: Vec<u32> = h.engine.slos().map(|(id, _)| id.0).collect();
    assert_eq!(ids, [0, 1]);
}

#[test]
fn counts_keep_a_service_alive_and_a_firing_alert_holds_it() {
    // One page row only, so the alert's life is short and plain.
    let config = CONFIG.replace(
        "availability: { objective: 99 }",
        "availability: { objective: 99, alerts: [{ severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }] }",
    );
    let mut h = harness(&config);
    h.engine.service_traffic("hot", true);
    let id = h.id("hot-availability");
    // Five minutes of failures, then nothing: the page fires.
    let events = h.run(id, START + 5 * MIN, MIN, 100, 100);
    assert!(events.iter().any(|e| e.slo == "hot-availability"));
    // Counts came until 5m; 30m later the traffic has lasted less than 30m, but the page
    // still fires (its 5m window is empty only once it resolves): kept.
    h.clock.set(START + 35 * MIN);
    h.engine.tick();
    assert!(h.engine.id("hot-availability").is_some());
    // That evaluation resolved it; the next one removes it.
    h.clock.set(START + 36 * MIN);
    h.engine.tick();
    assert!(h.engine.id("hot-availability").is_none());
}

#[test]
fn a_restart_restores_only_the_capped_live_services() {
    // Ten discovered services under a cap of ten, then restored under a cap of three.
    let wide = CONFIG.replace("max_services: 3", "max_services: 10");
    let mut h = harness(&wide);
    for i in 0..10 {
        let s = format!("s{i}");
        h.engine.service_traffic(&s, true);
        let id = h.id(&format!("{s}-availability"));
        h.engine.observe(id, START, 100, 100);
    }
    h.clock.set(START + 45 * MIN);
    // s0..s4 stay busy; s5..s9 go quiet (they expire on the next tick, 30m idle after
    // brief traffic: none has lasted 30m).
    for i in 0..5 {
        h.engine.service_traffic(&format!("s{i}"), true);
    }
    let json = serde_json::to_string(&h.engine.export_state()).unwrap();

    let mut fresh = harness(CONFIG);
    fresh.clock.set(START + 46 * MIN);
    let state: EngineState = serde_json::from_str(&json).unwrap();
    let report = fresh.engine.restore_state(state);
    assert_eq!(
        names(&fresh),
        [
            "pay",
            "s0-availability",
            "s1-availability",
            "s2-availability"
        ]
    );
    assert_eq!(fresh.engine.discovered_services(), 3);
    let dropped = |why: DropReason| {
        let mut v: Vec<&str> = report
            .dropped
            .iter()
            .filter(|d| d.reason == why)
            .map(|d| d.name.as_str())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        dropped(DropReason::OverLimit),
        ["s3-availability", "s4-availability"]
    );
    assert_eq!(dropped(DropReason::Expired).len(), 5);
    assert!(report.deferred.is_empty());
    // The restored ones keep their data and their traffic times: s0 lasted 45m, so it
    // expires 2h after its last traffic, not 30m.
    let snap_total = |h: &mut Harness, name: &str| {
        h.engine.tick();
        h.engine.snapshot().slo(name).map(|s| s.period_counts.total)
    };
    assert_eq!(snap_total(&mut fresh, "s0-availability"), Some(100.0));
    fresh.clock.set(START + 45 * MIN + 2 * HOUR - MIN);
    assert_eq!(snap_total(&mut fresh, "s0-availability"), Some(100.0));
    fresh.clock.set(START + 45 * MIN + 2 * HOUR);
    assert_eq!(snap_total(&mut fresh, "s0-availability"), None);
}

#[test]
fn a_lower_cap_on_reload_keeps_the_first_services() {
    let wide = CONFIG.replace("max_services: 3", "max_services: 10");
    let mut h = harness(&wide);
    for s in ["a", "b", "c", "d", "e"] {
        h.engine.service_traffic(s, true);
    }
    let narrow = slipstream_config::Config::from_yaml(&format!("slo:\n{CONFIG}"))
        .unwrap()
        .slo;
    let report = h.engine.reconfigure(&narrow).unwrap();
    let mut removed = report.removed.clone();
    removed.sort();
    assert_eq!(removed, ["d-availability", "e-availability"]);
    assert_eq!(over_limit(&h), ["d", "e"]);
    assert_eq!(h.engine.discovered_services(), 3);
    assert!(!h.engine.service_traffic("e", true));
}
