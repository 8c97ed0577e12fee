//! The alert state machine on a manual clock: the SRE Workbook detection delays, transitions,
//! repeats, supersession, silences, min_events, no traffic.

mod common;

use common::*;
use slipstream_slo::{AlertEvent, AlertState, Severity, Silence, SilenceKind};

const WORKBOOK: &str = "  templates: { availability: null, latency: null }
  objectives:
    - name: api
      service: api
      objective: 99.9
      period: 30d
";

fn firing(evs: &[AlertEvent], long_min: u64) -> Vec<&AlertEvent> {
    evs.iter()
        .filter(|e| e.state == AlertState::Firing && e.row.long.as_secs() == long_min * 60)
        .collect()
}

/// Workbook table 5-8: at 2% errors (burn rate 20) against 99.9%, the 1h/5m 14.4x page fires
/// after 14.4 / 20 * 60 min = 43.2 minutes of errors. With 100 requests per 10 s slot, the
/// 1h window holds 36 000 requests; it fires once bad > 0.0144 * 36 000 = 518.4, i.e. after
/// 260 slots of 2 errors: 43 min 20 s.
#[test]
fn page_fires_43_to_44_minutes_after_a_2_percent_onset() {
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    h.history(id, START, START + 72 * HOUR, 600, 0);
    let onset = h.now();
    let evs = h.run(id, onset + 2 * HOUR, 10 * SEC, 100, 2);
    let first = evs
        .iter()
        .find(|e| e.state == AlertState::Firing)
        .expect("a page fires");
    assert_eq!(first.severity, Severity::Page);
    assert_eq!(first.row.long.as_secs(), 3600);
    assert_eq!(first.row.short.as_secs(), 300);
    let delay = first.at - onset;
    assert!(
        (43 * MIN..=44 * MIN).contains(&delay),
        "fired after {} s",
        delay / SEC
    );
    assert_eq!(delay, 260 * 10 * SEC);
    let long = first.long_burn_rate.unwrap();
    assert!((long - 520.0 / 36_000.0 / 0.001).abs() < 1e-6, "{long}");
    assert!((first.short_burn_rate.unwrap() - 20.0).abs() < 1e-6);
    assert_eq!(firing(&evs, 60).len(), 1, "one event per transition");
    // Only pages are sent: the tickets whose conditions hold meanwhile are superseded.
    assert!(evs.iter().all(|e| e.severity == Severity::Page), "{evs:#?}");
}

/// At 100% errors (burn rate 1000) the 14.4x page needs 0.0144 h = 52 s of errors; with 10 s
/// slots it fires at the first evaluation after that: 60 s.
#[test]
fn page_fires_within_the_first_minute_at_100_percent_errors() {
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    h.history(id, START, START + HOUR, 600, 0);
    let onset = h.now();
    let evs = h.run(id, onset + 5 * MIN, 10 * SEC, 100, 100);
    let first = firing(&evs, 60)[0];
    assert_eq!(first.severity, Severity::Page);
    assert!(
        first.at - onset <= MIN,
        "fired after {} s",
        (first.at - onset) / SEC
    );
    assert_eq!(first.at - onset, 60 * SEC);
}

/// At ~0.2% errors (burn rate ~2) no page fires and the 1d/2h ticket (factor 3) neither; the
/// 3d/6h ticket (factor 1) fires when the 3d window's bad share exceeds 0.1%. Traffic: 1001
/// requests per 10 s slot (6006 a minute) after 3 days without errors, 2 errors per slot
/// (0.1998%, burn 1.998). The 3d window holds 6006 * 4320 = 25 945 920 requests, so it fires
/// once 2k > 25 945.92: k = 12 973 slots = 36 h 2 min 10 s after onset.
#[test]
fn at_0_2_percent_no_page_and_the_3d_ticket_fires_after_36_hours() {
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    h.history(id, START, START + 72 * HOUR, 6006, 0);
    let onset = h.now();
    let evs = h.run(id, onset + 40 * HOUR, 10 * SEC, 1001, 2);
    assert!(
        evs.iter().all(|e| e.severity == Severity::Ticket),
        "{evs:#?}"
    );
    assert!(
        firing(&evs, 24 * 60).is_empty(),
        "the 1d/2h ticket needs burn 3"
    );
    let t = firing(&evs, 72 * 60);
    assert_eq!(t.len(), 1, "{evs:#?}");
    assert_eq!(t[0].at - onset, 12_973 * 10 * SEC);
    assert_eq!(t[0].row.short.as_secs(), 6 * 3600);
    assert!((t[0].short_burn_rate.unwrap() - 1.998).abs() < 1e-3);
    // Over the 30-day period: 4.5 days of traffic, 36 h of it at 0.1998%.
    let total = 6006.0 * 4320.0 + 1001.0 * 12_973.0;
    let left = t[0].budget_remaining.unwrap();
    assert!(
        (left - (1.0 - 25_946.0 / (0.001 * total))).abs() < 1e-9,
        "{left}"
    );
}

#[test]
fn no_traffic_gives_no_ratio_and_never_fires() {
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    let mut evs = Vec::new();
    for _ in 0..(8 * 60) {
        h.clock.advance(MIN);
        evs.extend(h.engine.tick());
    }
    assert!(evs.is_empty());
    let snap = h.engine.snapshot();
    let s = snap.slo("api").unwrap();
    assert!(
        s.windows
            .iter()
            .all(|w| w.error_ratio.is_none() && w.burn_rate.is_none())
    );
    assert_eq!(s.budget_remaining, None);
    assert_eq!(s.time_to_exhaustion, None);
    assert!(s.alerts.iter().all(|a| !a.firing));
    // Traffic for 10 minutes at 100% errors, then silence: the page fires, then the 5m window
    // empties (no ratio) and the page resolves; the 1h window still has a ratio.
    let evs = h.run(id, h.now() + 10 * MIN, 10 * SEC, 100, 100);
    assert_eq!(firing(&evs, 60).len(), 1);
    let mut evs = Vec::new();
    for _ in 0..(6 * 6) {
        h.clock.advance(10 * SEC);
        evs.extend(h.engine.tick());
    }
    let snap = h.engine.snapshot();
    let s = snap.slo("api").unwrap();
    assert_eq!(
        s.window(std::time::Duration::from_secs(300))
            .unwrap()
            .error_ratio,
        None
    );
    assert_eq!(
        s.window(std::time::Duration::from_secs(3600))
            .unwrap()
            .error_ratio,
        Some(1.0)
    );
    assert!(
        evs.iter()
            .any(|e| e.state == AlertState::Resolved && e.row.long.as_secs() == 3600),
        "{evs:#?}"
    );
}

#[test]
fn min_events_guards_low_traffic() {
    // One request a minute, all failing: burn rate 1000, but in 90 minutes no window of a
    // policy row holds 100 requests (1h: 60, 2h and 6h: 90): no alert.
    let mut h = harness(&format!("  min_events: 100\n{WORKBOOK}"));
    let id = h.id("api");
    let evs = h.run(id, START + 90 * MIN, MIN, 1, 1);
    assert!(evs.is_empty(), "{evs:#?}");
    let snap = h.engine.snapshot();
    let w = snap
        .slo("api")
        .unwrap()
        .window(std::time::Duration::from_secs(3600))
        .unwrap();
    assert_eq!(w.burn_rate.map(f64::round), Some(1000.0));
    // Without the guard, the same traffic pages at once.
    let mut h = harness(&format!("  min_events: 0\n{WORKBOOK}"));
    let id = h.id("api");
    let evs = h.run(id, START + 10 * MIN, MIN, 1, 1);
    assert_eq!(firing(&evs, 60).len(), 1);
    assert_eq!(firing(&evs, 60)[0].at, START + MIN);
}

/// 100% errors for 10 minutes, then none: the 1h/5m page resolves once the 5m window holds
/// fewer than 0.0144 * 3000 = 43.2 bad requests: exactly 5 minutes after the errors stop,
/// though the 1h window still burns far above 14.4.
#[test]
fn resolves_when_the_short_window_drops_with_one_event_per_transition() {
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    h.history(id, START, START + HOUR, 600, 0);
    let onset = h.now();
    let mut evs = h.run(id, onset + 10 * MIN, 10 * SEC, 100, 100);
    let stop = h.now();
    evs.extend(h.run(id, stop + HOUR, 10 * SEC, 100, 0));
    let row: Vec<_> = evs
        .iter()
        .filter(|e| e.row.long.as_secs() == 3600)
        .collect();
    assert_eq!(row.len(), 2, "{row:#?}");
    assert_eq!(row[0].state, AlertState::Firing);
    assert_eq!(row[1].state, AlertState::Resolved);
    assert_eq!(row[1].at - stop, 5 * MIN);
    assert!(row[1].long_burn_rate.unwrap() > 14.4);
    assert_eq!(row[1].firing_since, row[0].at);
    assert_eq!(
        h.metric("slipstream_slo_events_total", &["page", "firing"]),
        2
    );
    assert_eq!(
        h.metric("slipstream_slo_events_total", &["page", "resolved"]),
        2
    );
}

#[test]
fn repeat_interval_resends_while_firing() {
    let mut h = harness(&format!("  repeat_interval: 2m\n{WORKBOOK}"));
    let id = h.id("api");
    h.history(id, START, START + HOUR, 600, 0);
    let onset = h.now();
    let evs = h.run(id, onset + 10 * MIN, 10 * SEC, 100, 100);
    let row = firing(&evs, 60);
    // Fires at 1 min, repeats at 3, 5, 7, 9 min.
    let at: Vec<u64> = row.iter().map(|e| (e.at - onset) / SEC).collect();
    assert_eq!(at, [60, 180, 300, 420, 540]);
    assert!(!row[0].repeat && row[1..].iter().all(|e| e.repeat));
}

const TWO_ROWS: &str = "  templates: { availability: null, latency: null }
  min_events: 0
  objectives:
    - name: api
      service: api
      objective: 99
      alerts:
        - { severity: ticket, long_window: 1h, short_window: 5m, burn_rate: 2 }
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 10 }
";

/// A firing page holds back the tickets of the same SLO: a ticket already sent is resolved
/// (marked superseded), a ticket that starts firing meanwhile is not sent (counted as
/// suppressed, reason superseded); once the page resolves, a ticket whose condition still
/// holds is sent again.
#[test]
fn page_supersedes_ticket() {
    let mut h = harness(TWO_ROWS);
    let id = h.id("api");
    h.history(id, START, START + HOUR, 1000, 0);
    // 5% errors: burn 5 > 2 (ticket), < 10 (page).
    let mut evs = h.run(id, h.now() + 90 * MIN, MIN, 1000, 50);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (evs[0].severity, evs[0].state),
        (Severity::Ticket, AlertState::Firing)
    );
    // 100% errors: the page fires and the ticket is resolved as superseded.
    evs = h.run(id, h.now() + 10 * MIN, MIN, 1000, 1000);
    let kinds: Vec<_> = evs
        .iter()
        .map(|e| (e.severity, e.state, e.superseded_by_page))
        .collect();
    assert_eq!(
        kinds,
        [
            (Severity::Page, AlertState::Firing, false),
            (Severity::Ticket, AlertState::Resolved, true)
        ]
    );
    let snap = h.engine.snapshot();
    let a = &snap.slo("api").unwrap().alerts;
    assert_eq!(a[0].row.severity, Severity::Page);
    assert!(a[0].firing && a[1].firing && a[1].superseded && !a[1].notified);
    // Back to 5%: the page resolves, the ticket is sent again.
    evs = h.run(id, h.now() + 30 * MIN, MIN, 1000, 50);
    let kinds: Vec<_> = evs.iter().map(|e| (e.severity, e.state)).collect();
    assert_eq!(
        kinds,
        [
            (Severity::Page, AlertState::Resolved),
            (Severity::Ticket, AlertState::Firing)
        ]
    );
    assert_eq!(
        h.metric("slipstream_slo_suppressed_events_total", &["superseded"]),
        0
    );

    // A ticket whose condition starts while the page fires is never sent: at 100% errors the
    // 1h/5m page fires after 7 minutes, the 6h/30m ticket after 8.
    let mut h = harness(&TWO_ROWS.replace(
        "long_window: 1h, short_window: 5m, burn_rate: 2",
        "long_window: 6h, short_window: 30m, burn_rate: 2",
    ));
    let id = h.id("api");
    h.history(id, START, START + 6 * HOUR, 1000, 0);
    let evs = h.run(id, h.now() + 20 * MIN, MIN, 1000, 1000);
    let kinds: Vec<_> = evs.iter().map(|e| (e.severity, e.state)).collect();
    assert_eq!(kinds, [(Severity::Page, AlertState::Firing)]);
    let snap = h.engine.snapshot();
    let a = &snap.slo("api").unwrap().alerts;
    assert_eq!(a[0].since, Some(START + 6 * HOUR + 7 * MIN));
    assert_eq!(a[1].since, Some(START + 6 * HOUR + 8 * MIN));
    assert!(a[1].superseded && !a[1].notified);
    assert_eq!(
        h.metric("slipstream_slo_suppressed_events_total", &["superseded"]),
        1
    );
}

#[test]
fn silences_suppress_and_count_while_slis_keep_being_computed() {
    // A maintenance window from config covering the first two hours.
    let yaml = format!(
        "{WORKBOOK}  silences:\n    - {{ service: api, kind: maintenance, starts_at: 2023-11-15T00:00:00Z, ends_at: 2023-11-15T02:00:00Z, comment: migration }}\n"
    );
    let mut h = harness(&yaml);
    let id = h.id("api");
    h.history(id, START, START + HOUR, 600, 0);
    let evs = h.run(id, START + 90 * MIN, 10 * SEC, 100, 100);
    assert!(evs.is_empty(), "{evs:#?}");
    assert!(h.metric("slipstream_slo_suppressed_events_total", &["maintenance"]) >= 1);
    let snap = h.engine.snapshot();
    let s = snap.slo("api").unwrap();
    assert!(s.alerts[0].firing && !s.alerts[0].notified);
    assert_eq!(
        s.window(std::time::Duration::from_secs(300))
            .unwrap()
            .error_ratio,
        Some(1.0)
    );
    // Still firing when the window ends: the page is sent then.
    let evs = h.run(id, START + 2 * HOUR + MIN, 10 * SEC, 100, 100);
    let f = firing(&evs, 60);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].at, START + 2 * HOUR);
    assert!(
        h.engine.silences().is_empty(),
        "expired silences are dropped"
    );

    // Runtime silences: add, suppress (counted once per transition), remove.
    let mut h = harness(WORKBOOK);
    let id = h.id("api");
    let sid = h.engine.add_silence(Silence {
        kind: SilenceKind::Silence,
        slo: Some("api".into()),
        severity: Some(Severity::Page),
        comment: "on it".into(),
        ..Silence::default()
    });
    h.history(id, START, START + HOUR, 600, 0);
    let evs = h.run(id, h.now() + 10 * MIN, 10 * SEC, 100, 100);
    assert!(
        evs.iter().all(|e| e.severity == Severity::Ticket),
        "{evs:#?}"
    );
    assert_eq!(
        h.metric("slipstream_slo_suppressed_events_total", &["silence"]),
        2
    );
    assert!(h.engine.remove_silence(sid));
    assert!(!h.engine.remove_silence(sid));
    let evs = h.run(id, h.now() + 10 * SEC, 10 * SEC, 100, 100);
    assert_eq!(firing(&evs, 60).len(), 1);
    assert_eq!(firing(&evs, 360).len(), 1);
}

#[test]
fn events_carry_versions_catalog_and_labels() {
    let yaml = "  templates: { availability: null, latency: null }
  catalog:
    api:
      owner: team-a
      tier: tier-1
      runbook_url: https://runbooks.example/api
      links: { dashboard: https://grafana.example/d/api }
  objectives:
    - name: api
      service: api
      objective: 99.9
      labels: { env: prod }
      annotations: { summary: 'api is failing' }
";
    let mut h = harness(yaml);
    let id = h.id("api");
    h.engine.observe_version("api", "1.0", START - 3 * HOUR);
    h.engine.observe_version("api", "1.0", START + 30 * MIN);
    h.engine.observe_version("api", "0.9", START - 5 * HOUR);
    h.history(id, START, START + HOUR, 600, 0);
    let deploy = h.now();
    h.engine.observe_version("api", "1.1", deploy);
    let evs = h.run(id, deploy + 5 * MIN, 10 * SEC, 100, 100);
    let e = firing(&evs, 60)[0];
    assert_eq!(
        e.versions,
        ["1.0", "1.1"],
        "0.9 was last seen before the long window"
    );
    assert_eq!(e.newest_version, Some(("1.1".to_owned(), deploy)));
    assert_eq!(e.labels["owner"], "team-a");
    assert_eq!(e.labels["tier"], "tier-1");
    assert_eq!(e.labels["env"], "prod");
    assert_eq!(e.labels["slo"], "api");
    assert_eq!(e.labels["severity"], "page");
    assert_eq!(e.annotations["runbook_url"], "https://runbooks.example/api");
    assert_eq!(
        e.annotations["link_dashboard"],
        "https://grafana.example/d/api"
    );
    assert_eq!(e.annotations["summary"], "api is failing");
    assert_eq!(h.engine.recent_events().count(), evs.len());
}
