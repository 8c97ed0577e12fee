//! The engine's state across restarts (export, serialize, restore into a fresh engine) and
//! configuration reloads (reconfigure in place), on a manual clock.

mod common;

use std::time::Duration;

use common::*;
use slipstream_config::Config;
use slipstream_config::slo::SloConfig;
use slipstream_slo::{
    AlertEvent, AlertState, DropReason, DroppedSlo, ENGINE_STATE_FORMAT, EngineState,
    RestoreReport, Severity, Silence, SilenceId, SilenceKind,
};

const CONFIG: &str = "  min_events: 0
  templates:
    availability: { objective: 99, labels: { origin: template } }
    latency: null
  objectives:
    - name: api
      service: api
      objective: 99.9
    - name: api-latency
      service: api
      objective: 99
      period: 7d
      sli: { kind: latency, threshold: 300ms }
  silences:
    - { service: web, severity: ticket, comment: noisy }
";

fn slo_config(slo_yaml: &str) -> SloConfig {
    Config::from_yaml(&format!("slo:\n{slo_yaml}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .slo
}

/// Exports `h`'s state through JSON and restores it into a fresh engine for `yaml`, its
/// clock at `h`'s time plus `outage`.
fn restart(h: &Harness, yaml: &str, outage: u64) -> (Harness, RestoreReport) {
    let json = serde_json::to_string(&h.engine.export_state()).unwrap();
    let state: EngineState = serde_json::from_str(&json).unwrap();
    assert_eq!(state.format_version(), ENGINE_STATE_FORMAT);
    let mut fresh = harness(yaml);
    fresh.clock.set(h.now() + outage);
    let report = fresh.engine.restore_state(state);
    (fresh, report)
}

/// One minute of traffic for the three SLOs of `CONFIG` (minute `m` since `START`), then a
/// tick at its end. 50% errors on `api` during `incident`; 10% on `web` from hour 20.
fn minute(h: &mut Harness, m: u64, incident: std::ops::Range<u64>) -> Vec<AlertEvent> {
    let t = h.now();
    h.engine.service_seen("api");
    h.engine.service_seen("web");
    let api_bad = if incident.contains(&m) { 500 } else { m % 7 };
    let web_bad = if m >= 20 * 60 { 10 } else { m % 2 };
    let (api, lat, web) = (h.id("api"), h.id("api-latency"), h.id("web-availability"));
    h.engine.observe(api, t, 1000 - api_bad, 1000);
    h.engine.observe(lat, t, 1000 - m % 13, 1000);
    h.engine.observe(web, t, 100 - web_bad, 100);
    let version = if m < 22 * 60 { "1.0" } else { "1.1" };
    h.engine.observe_version("api", version, t);
    h.clock.set(t + MIN);
    h.engine.tick()
}

/// Firing events of the 1h/5m page rows.
fn firing_page(evs: &[AlertEvent]) -> Vec<&AlertEvent> {
    evs.iter()
        .filter(|e| {
            e.severity == Severity::Page
                && e.state == AlertState::Firing
                && e.row.long == Duration::from_secs(3600)
        })
        .collect()
}

/// Exported, serialized, restored into a fresh engine of the same configuration: from then
/// on both engines produce identical events and snapshots for identical traffic.
#[test]
fn a_restored_engine_continues_exactly_like_the_original() {
    let mut a = harness(CONFIG);
    let api_silence = a.engine.add_silence(Silence {
        slo: Some("api-latency".into()),
        severity: Some(Severity::Page),
        comment: "known".into(),
        ..Silence::default()
    });
    let incident = 24 * 60..24 * 60 + 40;
    let mut evs = Vec::new();
    for m in 0..24 * 60 + 20 {
        evs.extend(minute(&mut a, m, incident.clone()));
    }
    assert_eq!(firing_page(&evs).len(), 1, "the api page fires: {evs:#?}");
    assert!(
        a.engine
            .snapshot()
            .slo("web-availability")
            .unwrap()
            .alerts
            .iter()
            .any(|r| r.firing && !r.notified),
        "the web ticket fires, silenced"
    );

    let state = a.engine.export_state();
    let json = serde_json::to_string(&state).unwrap();
    let back: EngineState = serde_json::from_str(&json).unwrap();
    // serde_json (without `float_roundtrip`) may round the last bit of a float it parses:
    // only the recent events' burn rates, which are for display, can tell.
    let without_events = |s: &EngineState| {
        let mut v = serde_json::to_value(s).unwrap();
        v["recent_events"] = serde_json::Value::Null;
        v
    };
    assert_eq!(without_events(&back), without_events(&state));
    assert_eq!(state.slo_names().count(), 3);
    assert_eq!(state.silence_count(), 2);
    let (mut b, report) = restart(&a, CONFIG, 0);
    assert_eq!(report.incompatible_format, None);
    assert_eq!(report.saved_at, a.now());
    assert_eq!(report.restored, ["api", "api-latency", "web-availability"]);
    assert!(report.dropped.is_empty() && report.deferred.is_empty());
    assert_eq!(report.silences, 1);
    assert_eq!(report.services_seen, 2);
    assert_eq!(report.recent_events, a.engine.recent_events().count());
    assert_eq!(b.engine.silences(), a.engine.silences());
    for name in ["api", "api-latency", "web-availability"] {
        assert_eq!(b.engine.id(name), a.engine.id(name), "{name}");
    }

    let mut total = 0;
    for m in 24 * 60 + 20..27 * 60 {
        let ea = minute(&mut a, m, incident.clone());
        let eb = minute(&mut b, m, incident.clone());
        assert_eq!(ea, eb, "minute {m}");
        assert_eq!(a.engine.snapshot(), b.engine.snapshot(), "minute {m}");
        total += ea.len();
    }
    assert!(total >= 1, "the page resolves during the comparison");
    let recent = |h: &Harness| -> Vec<_> {
        h.engine
            .recent_events()
            .map(|e| (e.slo_id, e.severity, e.state, e.at, e.versions.clone()))
            .collect()
    };
    assert_eq!(recent(&a), recent(&b));
    // Silence ids go on from where they were.
    let next = Silence::default();
    assert_eq!(
        a.engine.add_silence(next.clone()),
        b.engine.add_silence(next)
    );
    assert!(b.engine.remove_silence(api_silence));
}

/// One SLO, `api` at 99.9%, with the default policy.
const API_ONLY: &str = "  templates: { availability: null, latency: null }
  objectives:
    - name: api
      service: api
      objective: 99.9
";

/// An engine for `yaml` with `api` (of [`API_ONLY`]) after an hour of clean traffic and
/// then eight minutes of failing requests; its SLO id, when the failures began and the events.
fn api_incident(yaml: &str) -> (Harness, slipstream_slo::SloId, u64, Vec<AlertEvent>) {
    let mut h = harness(yaml);
    let id = h.id("api");
    h.history(id, START, START + HOUR, 600, 0);
    let onset = h.now();
    let evs = h.run(id, onset + 8 * MIN, 10 * SEC, 100, 100);
    (h, id, onset, evs)
}

/// A page firing at shutdown goes on firing after a two-minute restart without a second
/// firing event, and resolves later with exactly one resolved event.
#[test]
fn a_firing_page_stays_firing_across_a_restart_and_resolves_once() {
    let (h, id, _, evs) = api_incident(API_ONLY);
    let fired = firing_page(&evs);
    assert_eq!(fired.len(), 1);
    let since = fired[0].at;

    let (mut r, report) = restart(&h, API_ONLY, 2 * MIN);
    assert_eq!(report.restored, ["api"]);
    let snap_alerts = |h: &Harness| h.engine.snapshot().slo("api").unwrap().alerts.clone();
    let evs = r.run(id, r.now() + 10 * SEC, 10 * SEC, 100, 100);
    assert!(evs.is_empty(), "no second firing event: {evs:#?}");
    let page = snap_alerts(&r)[0];
    assert!(page.firing && page.notified);
    assert_eq!(page.since, Some(since));

    let stop = r.now();
    let evs = r.run(id, stop + HOUR, 10 * SEC, 100, 0);
    let page_1h: Vec<_> = evs
        .iter()
        .filter(|e| e.row.long == Duration::from_secs(3600))
        .collect();
    assert_eq!(page_1h.len(), 1, "{evs:#?}");
    assert_eq!(page_1h[0].state, AlertState::Resolved);
    assert_eq!(page_1h[0].firing_since, since);
    // The 5m window is clean 5 minutes after the errors stop, give or take the share of the
    // 1-minute slot that holds the last 10 s of errors.
    assert!((5 * MIN..6 * MIN).contains(&(page_1h[0].at - stop)));
    // (The tickets the page held back fire once the 6h/30m page resolves too.)
    assert!(
        !evs.iter()
            .any(|e| e.state == AlertState::Firing && e.severity == Severity::Page),
        "{evs:#?}"
    );
    assert_eq!(
        r.metric("slipstream_slo_events_total", &["page", "firing"]),
        0
    );
}

/// A changed objective makes the saved data meaningless: that SLO starts afresh, the others
/// are restored.
#[test]
fn a_changed_objective_starts_that_slo_afresh() {
    let mut h = harness(CONFIG);
    for m in 0..120 {
        minute(&mut h, m, 60..70);
    }
    let changed = CONFIG.replace("objective: 99.9", "objective: 99.5");
    let (mut r, report) = restart(&h, &changed, 0);
    assert_eq!(report.restored, ["api-latency", "web-availability"]);
    assert_eq!(
        report.dropped,
        [DroppedSlo {
            name: "api".into(),
            reason: DropReason::Changed(vec!["objective"]),
        }]
    );
    assert_eq!(report.dropped[0].to_string(), "api: changed objective");
    r.engine.tick();
    h.engine.tick();
    let (snap, orig) = (r.engine.snapshot(), h.engine.snapshot());
    assert_eq!(snap.slo("api").unwrap().period_counts.total, 0.0);
    assert_eq!(snap.slo("api").unwrap().budget_remaining, None);
    let lat = snap.slo("api-latency").unwrap();
    assert_eq!(lat.period_counts.total, 120_000.0);
    assert_eq!(lat.windows, orig.slo("api-latency").unwrap().windows);

    // A different SLI or period, a renamed SLO: likewise.
    let changed = CONFIG
        .replace("threshold: 300ms", "threshold: 250ms")
        .replace("name: api\n", "name: api-availability\n");
    let (_, report) = restart(&h, &changed, 0);
    assert_eq!(report.restored, ["web-availability"]);
    assert_eq!(
        report.dropped,
        [
            DroppedSlo {
                name: "api-latency".into(),
                reason: DropReason::Changed(vec!["sli"]),
            },
            DroppedSlo {
                name: "api".into(),
                reason: DropReason::NotConfigured,
            },
        ]
    );
}

/// Templated SLOs exist after a restore for the services seen before it, with their data;
/// saved data for a templated SLO whose service has not been seen waits for it, and also
/// reaches one that traffic created before the restore.
#[test]
fn templated_slos_get_their_data_back_when_their_service_is_seen() {
    let mut h = harness(CONFIG);
    for m in 0..90 {
        minute(&mut h, m, 0..0);
    }
    h.engine.tick();
    let web_windows = h
        .engine
        .snapshot()
        .slo("web-availability")
        .unwrap()
        .windows
        .clone();

    // Seen before: created by the restore itself.
    let (mut r, report) = restart(&h, CONFIG, 0);
    assert!(report.restored.contains(&"web-availability".to_owned()));
    assert!(r.engine.id("web-availability").is_some());
    r.engine.tick();
    let snap = r.engine.snapshot();
    assert_eq!(snap.slo("web-availability").unwrap().windows, web_windows);
    assert_eq!(
        snap.slo("web-availability").unwrap().labels["origin"],
        "template"
    );

    // Not seen (a state without the service in `seen`): kept aside, exported again, applied
    // when the service shows up.
    let mut json: serde_json::Value = serde_json::to_value(h.engine.export_state()).unwrap();
    json["seen"] = serde_json::json!(["api"]);
    let state: EngineState = serde_json::from_value(json).unwrap();
    let mut r = harness(CONFIG);
    r.clock.set(h.now());
    let report = r.engine.restore_state(state);
    assert_eq!(report.deferred, ["web-availability"]);
    assert_eq!(report.restored, ["api", "api-latency"]);
    assert_eq!(r.engine.id("web-availability"), None);
    let again = r.engine.export_state();
    assert!(again.slo_names().any(|n| n == "web-availability"));
    let ids = r.engine.service_seen("web");
    assert_eq!(ids.len(), 1);
    assert_eq!(r.engine.spec(ids[0]).unwrap().name, "web-availability");
    r.engine.tick();
    let snap = r.engine.snapshot();
    assert_eq!(snap.slo("web-availability").unwrap().windows, web_windows);
    assert_eq!(
        r.engine
            .export_state()
            .slo_names()
            .filter(|n| *n == "web-availability")
            .count(),
        1,
        "no longer kept aside"
    );

    // Seen by traffic before the restore: the existing SLO takes the data.
    let state = h.engine.export_state();
    let mut r = harness(CONFIG);
    r.clock.set(h.now());
    r.engine.service_seen("web");
    let report = r.engine.restore_state(state);
    assert!(report.restored.contains(&"web-availability".to_owned()));
    r.engine.tick();
    let snap = r.engine.snapshot();
    assert_eq!(snap.slo("web-availability").unwrap().windows, web_windows);

    // A template now turned off: its data is dropped.
    let off = CONFIG.replace(
        "availability: { objective: 99, labels: { origin: template } }",
        "availability: null",
    );
    let (r, report) = restart(&h, &off, 0);
    assert_eq!(
        report.dropped,
        [DroppedSlo {
            name: "web-availability".into(),
            reason: DropReason::NotConfigured,
        }]
    );
    assert!(report.deferred.is_empty());
    assert_eq!(r.engine.id("web-availability"), None);
}

/// Data older than the period falls out of the rings after a long outage.
#[test]
fn a_restore_after_a_long_outage_keeps_only_what_the_period_holds() {
    let yaml = "  templates: { availability: null, latency: null }
  objectives:
    - { name: api, service: api, objective: 99, period: 7d }
";
    let mut h = harness(yaml);
    let id = h.id("api");
    h.history(id, START, START + 2 * DAY, 100, 1);
    let (mut r, report) = restart(&h, yaml, 6 * DAY);
    assert_eq!(report.restored, ["api"]);
    r.engine.tick();
    let snap = r.engine.snapshot();
    let s = snap.slo("api").unwrap();
    // Of the two days, the last one is within the 7 days before now.
    assert_eq!(s.period_counts.total, 100.0 * 24.0 * 60.0);
    assert_eq!(
        s.window(Duration::from_secs(86_400)).unwrap().counts.total,
        0.0
    );
}

const DAY: u64 = 24 * HOUR;

#[test]
fn a_state_of_another_format_restores_nothing() {
    let mut h = harness(CONFIG);
    minute(&mut h, 0, 0..0);
    let mut json = serde_json::to_value(h.engine.export_state()).unwrap();
    json["format_version"] = serde_json::json!(ENGINE_STATE_FORMAT + 1);
    let state: EngineState = serde_json::from_value(json).unwrap();
    let mut r = harness(CONFIG);
    let report = r.engine.restore_state(state);
    assert_eq!(report.incompatible_format, Some(ENGINE_STATE_FORMAT + 1));
    assert!(report.restored.is_empty());
    assert_eq!(r.engine.id("web-availability"), None);
}

/// Silences from the API come back with their ids; the configuration's are the current
/// configuration's; a reconfigure replaces only those.
#[test]
fn silences_survive_restarts_and_reloads_with_their_ids() {
    let mut h = harness(CONFIG);
    let api = h.engine.add_silence(Silence {
        service: Some("api".into()),
        comment: "api work".into(),
        ..Silence::default()
    });
    assert_eq!(api, SilenceId(1), "the configuration's is 0");
    let (mut r, _) = restart(&h, CONFIG, 0);
    assert_eq!(r.engine.silences(), h.engine.silences());

    // A new configured silence: the old one goes, the API's stays, ids never repeat.
    let other = CONFIG.replace("comment: noisy", "comment: still noisy");
    let (r2, report) = restart(&h, &other, 0);
    assert_eq!(report.silences, 1);
    let ids: Vec<(SilenceId, &str)> = r2
        .engine
        .silences()
        .iter()
        .map(|(id, s)| (*id, s.comment.as_str()))
        .collect();
    assert_eq!(
        ids,
        [(SilenceId(1), "api work"), (SilenceId(2), "still noisy")]
    );

    let report = r.engine.reconfigure(&slo_config(&other)).unwrap();
    assert!(report.firing_dropped.is_empty());
    let ids: Vec<(SilenceId, &str)> = r
        .engine
        .silences()
        .iter()
        .map(|(id, s)| (*id, s.comment.as_str()))
        .collect();
    assert_eq!(
        ids,
        [(SilenceId(1), "api work"), (SilenceId(2), "still noisy")]
    );
    // Unchanged on a reload of the same configuration.
    r.engine.reconfigure(&slo_config(&other)).unwrap();
    assert_eq!(r.engine.silences()[1].0, SilenceId(2));
    assert_eq!(r.engine.silences()[1].1.kind, SilenceKind::Silence);
}

/// A reload keeps the windows and alert rows of unchanged SLOs, applies their new labels,
/// annotations and policy, adds and removes SLOs, and re-derives the templated ones.
#[test]
fn reconfigure_keeps_unchanged_slos_and_applies_the_rest() {
    let mut h = harness(CONFIG);
    let mut evs = Vec::new();
    for m in 0..80 {
        evs.extend(minute(&mut h, m, 60..80));
    }
    assert_eq!(firing_page(&evs).len(), 1, "{evs:#?}");
    let before = h.engine.snapshot();
    let ids_before: Vec<_> = h
        .engine
        .slos()
        .map(|(id, s)| (id, s.name.clone()))
        .collect();

    // Same configuration: nothing changes, ids included.
    let report = h.engine.reconfigure(&slo_config(CONFIG)).unwrap();
    assert_eq!(report.kept, ["api", "api-latency", "web-availability"]);
    assert!(report.added.is_empty() && report.removed.is_empty() && report.reset.is_empty());
    let ids_after: Vec<_> = h
        .engine
        .slos()
        .map(|(id, s)| (id, s.name.clone()))
        .collect();
    assert_eq!(ids_before, ids_after);

    let new = "  min_events: 0
  evaluation_interval: 30s
  templates:
    availability: { objective: 99, labels: { origin: reloaded } }
    latency: { objective: 95, threshold: 1s }
  objectives:
    - name: checkout
      service: checkout
      objective: 99.5
    - name: api
      service: api
      objective: 99.9
      annotations: { summary: 'api burns its budget' }
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 10 }
        - { severity: page, long_window: 30m, short_window: 2m, burn_rate: 20 }
";
    let report = h.engine.reconfigure(&slo_config(new)).unwrap();
    assert_eq!(report.kept, ["api", "web-availability"]);
    assert_eq!(report.added, ["checkout", "web-latency"]);
    assert_eq!(report.removed, ["api-latency"]);
    assert!(report.reset.is_empty());
    // The 6h/30m page of `api` fired; its row is gone. `api-latency` fired too.
    assert_eq!(report.firing_dropped, ["api", "api-latency"]);
    assert_eq!(h.engine.evaluation_interval(), Duration::from_secs(30));
    let names: Vec<_> = h.engine.slos().map(|(_, s)| s.name.clone()).collect();
    assert_eq!(
        names,
        ["checkout", "api", "web-availability", "web-latency"]
    );
    let api = h.engine.spec(h.id("api")).unwrap();
    assert_eq!(api.annotations["summary"], "api burns its budget");
    assert_eq!(api.policy.len(), 2);
    let web = h.engine.spec(h.id("web-availability")).unwrap();
    assert_eq!(web.labels["origin"], "reloaded");
    assert_eq!(h.engine.matching("api", &[]).count(), 1);

    // The next evaluation: the api windows are the same, the 1h/5m page goes on firing
    // without a new event; the new 30m/2m row starts clear (and fires on its own).
    let evs = h.engine.tick();
    let snap = h.engine.snapshot();
    let api = snap.slo("api").unwrap();
    let old_api = before.slo("api").unwrap();
    for w in [300, 3600, 6 * 3600] {
        let w = Duration::from_secs(w);
        assert_eq!(api.window(w), old_api.window(w));
    }
    assert_eq!(api.alerts[0].since, old_api.alerts[0].since);
    assert!(api.alerts[0].firing && api.alerts[0].notified);
    let names: Vec<_> = evs
        .iter()
        .map(|e| (e.slo.as_str(), e.row.long.as_secs(), e.state))
        .collect();
    assert_eq!(names, [("api", 1800, AlertState::Firing)]);
    assert_eq!(evs[0].annotations["summary"], "api burns its budget");
    assert_eq!(
        snap.slo("web-availability").unwrap().period_counts,
        before.slo("web-availability").unwrap().period_counts
    );
    assert_eq!(snap.slo("web-latency").unwrap().period_counts.total, 0.0);
    assert!(
        h.engine.recent_events().all(|e| e.slo != "api-latency"),
        "events of removed SLOs are left out"
    );
    assert!(
        h.engine
            .recent_events()
            .all(|e| h.engine.id(&e.slo) == Some(e.slo_id)),
        "recent events are renumbered"
    );
    assert_eq!(h.metric("slipstream_slo_objectives", &["explicit"]), 2);
    assert_eq!(h.metric("slipstream_slo_objectives", &["template"]), 2);
}

/// Removing a firing SLO, resetting one, or dropping a notified row invents no resolved
/// event; the report names them.
#[test]
fn reconfigure_reports_firing_state_it_drops_without_inventing_events() {
    let mut h = harness(CONFIG);
    let mut evs = Vec::new();
    for m in 0..80 {
        evs.extend(minute(&mut h, m, 60..80));
    }
    assert_eq!(firing_page(&evs).len(), 1);

    // A changed objective resets the firing api SLO.
    let reset = CONFIG.replace("objective: 99.9", "objective: 99.95");
    let report = h.engine.reconfigure(&slo_config(&reset)).unwrap();
    assert_eq!(
        report.reset,
        [DroppedSlo {
            name: "api".into(),
            reason: DropReason::Changed(vec!["objective"]),
        }]
    );
    assert_eq!(report.firing_dropped, ["api"]);
    let evs = h.engine.tick();
    assert!(
        evs.iter().all(|e| e.state == AlertState::Firing),
        "no resolved event: {evs:#?}"
    );

    // A removed SLO that fires.
    let mut h = harness(CONFIG);
    for m in 0..80 {
        minute(&mut h, m, 60..80);
    }
    let removed = CONFIG.replace(
        "    - name: api\n      service: api\n      objective: 99.9\n",
        "",
    );
    let report = h.engine.reconfigure(&slo_config(&removed)).unwrap();
    assert_eq!(report.removed, ["api"]);
    assert_eq!(report.firing_dropped, ["api"]);
    assert!(h.engine.tick().is_empty());
}

/// An invalid configuration comes back with every error and leaves the engine as it was.
#[test]
fn an_invalid_reconfigure_changes_nothing() {
    let mut h = harness(CONFIG);
    for m in 0..30 {
        minute(&mut h, m, 0..0);
    }
    let before = h.engine.export_state();
    let mut bad = slo_config(CONFIG);
    bad.objectives[0].objective = 100.0;
    bad.evaluation_interval = Duration::ZERO;
    let errors = h.engine.reconfigure(&bad).unwrap_err();
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["slo.evaluation_interval", "slo.objectives[0].objective"]
    );
    assert_eq!(h.engine.export_state(), before);
    assert_eq!(h.engine.evaluation_interval(), Duration::from_secs(10));
}

/// A firing page keeps what its events were published with (the attribute values the bad
/// requests share, the example requests). Restored after a restart, its re-sent events carry
/// them while the publisher finds none of its own; its resolved event and a later firing start
/// without them; a state written before they were kept still loads, without them.
#[test]
fn a_restored_firing_page_is_re_sent_with_what_it_fired_with() {
    use slipstream_core::Exemplar;
    use slipstream_core::explain::ValueShare;
    let yaml = format!("  repeat_interval: 5m\n{API_ONLY}");
    let (mut h, id, onset, mut evs) = api_incident(&yaml);
    let fired = firing_page(&evs).into_iter().filter(|e| !e.repeat).count();
    assert_eq!(fired, 1, "{evs:#?}");
    // What the publisher found for the incident.
    let share = ValueShare {
        attribute: "http.route".into(),
        value: "/pay".into(),
        bad_share: 0.92,
        all_share: 0.07,
        example: None,
    };
    let example = Exemplar::new(&[7; 16], &[9; 8], onset + MIN, 1_500_000_000, true).unwrap();
    for e in evs.iter_mut().filter(|e| e.state == AlertState::Firing) {
        e.bad_requests_share = vec![share.clone()];
        e.exemplars = vec![example];
    }
    h.engine.remember_sent(&evs);

    let json = serde_json::to_value(h.engine.export_state()).unwrap();
    let row = &json["slos"][0]["rows"][0];
    assert_eq!(row["exemplars"][0]["trace_id"], "07".repeat(16), "{row}");
    assert_eq!(row["bad_requests_share"][0]["value"], "/pay", "{row}");

    let (mut r, report) = restart(&h, &yaml, 2 * MIN);
    assert_eq!(report.restored, ["api"]);
    let evs = r.run(id, r.now() + 10 * MIN, 10 * SEC, 100, 100);
    let repeats: Vec<&AlertEvent> = evs.iter().filter(|e| e.repeat).collect();
    assert!(
        repeats
            .iter()
            .any(|e| e.row.long == Duration::from_secs(3600)),
        "the 1h/5m page is re-sent: {evs:#?}"
    );
    for e in &repeats {
        assert_eq!(e.bad_requests_share, std::slice::from_ref(&share), "{e:#?}");
        assert_eq!(e.exemplars, [example], "{e:#?}");
    }

    // Resolved: nothing carried; firing again later: a fresh start.
    let evs = r.run(id, r.now() + 2 * HOUR, 10 * SEC, 100, 0);
    let resolved: Vec<&AlertEvent> = evs
        .iter()
        .filter(|e| e.state == AlertState::Resolved)
        .collect();
    assert!(!resolved.is_empty(), "{evs:#?}");
    assert!(
        resolved
            .iter()
            .all(|e| e.bad_requests_share.is_empty() && e.exemplars.is_empty())
    );
    let evs = r.run(id, r.now() + 8 * MIN, 10 * SEC, 100, 100);
    let again: Vec<&AlertEvent> = firing_page(&evs)
        .into_iter()
        .filter(|e| !e.repeat)
        .collect();
    assert_eq!(again.len(), 1, "{evs:#?}");
    assert!(again[0].bad_requests_share.is_empty() && again[0].exemplars.is_empty());

    // A state without the keys, as an older build wrote it, loads; its rows carry nothing.
    let mut old = serde_json::to_value(h.engine.export_state()).unwrap();
    for row in old["slos"][0]["rows"].as_array_mut().unwrap() {
        let o = row.as_object_mut().unwrap();
        assert!(o.remove("exemplars").is_some() == o.remove("bad_requests_share").is_some());
    }
    let mut o = harness(&yaml);
    o.clock.set(h.now() + 2 * MIN);
    let report = o
        .engine
        .restore_state(serde_json::from_value::<EngineState>(old).unwrap());
    assert_eq!(report.restored, ["api"]);
    let evs = o.run(id, o.now() + 10 * MIN, 10 * SEC, 100, 100);
    assert!(evs.iter().any(|e| e.repeat), "{evs:#?}");
    assert!(
        evs.iter()
            .all(|e| e.bad_requests_share.is_empty() && e.exemplars.is_empty())
    );
}
