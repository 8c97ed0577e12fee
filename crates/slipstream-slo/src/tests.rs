use std::time::Duration;

use slipstream_core::telemetry::MetricKind;

use super::*;

const MIN: u64 = window::MINUTE;

#[test]
fn rings_forget_what_falls_out_and_keep_the_rest_after_wrapping() {
    let mut s = WindowStore::new(Duration::from_secs(3600));
    // Three laps of the 1-minute ring (63 slots).
    for m in 0..200 {
        assert_eq!(s.add(m * MIN, m % 2, 1), Stored::All);
    }
    let c = s.query(200 * MIN, 3600 * 1_000_000_000);
    assert_eq!((c.bad, c.total), (30.0, 60.0));
    // A gap longer than the ring clears it entirely.
    s.advance(500 * MIN);
    assert_eq!(s.query(500 * MIN, 3600 * 1_000_000_000), Counts::default());
    assert_eq!(s.add(400 * MIN, 1, 1), Stored::TooOld);
    assert_eq!(s.add(460 * MIN, 1, 1), Stored::All);
}

#[test]
fn coarse_levels_hold_what_fine_ones_forgot() {
    let mut s = WindowStore::new(Duration::from_secs(30 * 86_400));
    let now = 100 * DAY;
    s.advance(now);
    // Two days old: gone from the 1-minute ring, held by the 5-minute one; five days old:
    // only in the hourly ring; 31 days: nowhere.
    assert_eq!(s.add(now - 2 * DAY, 1, 2), Stored::Partly);
    assert_eq!(s.add(now - 5 * DAY, 1, 2), Stored::Partly);
    assert_eq!(s.add(now - 31 * DAY, 1, 2), Stored::TooOld);
    let c = s.query(now, 30 * DAY);
    assert_eq!((c.bad, c.total), (2.0, 4.0));
    let c = s.query(now, 3 * DAY);
    assert_eq!((c.bad, c.total), (1.0, 2.0));
    assert_eq!(s.query(now, 6 * HOUR), Counts::default());
}

#[test]
fn no_traffic_is_no_ratio() {
    assert_eq!(Counts::default().error_ratio(), None);
    assert_eq!(
        Counts {
            bad: 0.0,
            total: 4.0
        }
        .error_ratio(),
        Some(0.0)
    );
}

#[test]
fn month_start_handles_leap_years_and_epoch() {
    let day = DAY;
    assert_eq!(month_start(0), 0);
    // 2024-02-29T12:00Z -> 2024-02-01.
    let feb_1_2024 = 19_754 * day;
    assert_eq!(month_start(feb_1_2024 + 28 * day + 12 * HOUR), feb_1_2024);
    // 2000-12-31T23:59Z -> 2000-12-01.
    let dec_1_2000 = 11_292 * day;
    assert_eq!(month_start(dec_1_2000 + 31 * day - 1), dec_1_2000);
}

#[test]
fn silences_match_every_given_field_within_their_time() {
    let s = Silence {
        service: Some("api".into()),
        severity: Some(Severity::Ticket),
        starts_at: Some(10),
        ends_at: Some(20),
        ..Silence::default()
    };
    assert!(s.matches("any", "api", Severity::Ticket, 10));
    assert!(!s.matches("any", "api", Severity::Ticket, 20));
    assert!(!s.matches("any", "api", Severity::Ticket, 9));
    assert!(!s.matches("any", "api", Severity::Page, 15));
    assert!(!s.matches("any", "web", Severity::Ticket, 15));
}

#[test]
fn metric_table_is_complete_and_conventional() {
    for d in names::ALL {
        assert!(d.name.starts_with("slipstream_slo_"), "{}", d.name);
        assert_eq!(
            d.name.ends_with("_total"),
            d.kind == MetricKind::Counter,
            "{}",
            d.name
        );
    }
    assert_eq!(names::ALL.len(), 11);
}

#[test]
fn spec_windows_cover_the_policy_and_the_reported_set() {
    let p = policy(None, Period::Rolling(Duration::from_secs(7 * 86_400)));
    let spec = SloSpec {
        name: "a".into(),
        service: "a".into(),
        match_labels: Default::default(),
        sli: Sli::Availability,
        objective: 0.99,
        period: Period::Rolling(Duration::from_secs(7 * 86_400)),
        policy: p,
        min_events: 0,
        labels: Default::default(),
        annotations: Default::default(),
        source: SloSource::Explicit,
    };
    let w: Vec<u64> = spec.windows().iter().map(|d| d.as_secs() / 60).collect();
    assert_eq!(w, [5, 30, 60, 120, 360, 1440, 4320]);
    assert_eq!(spec.longest_window(), Duration::from_secs(7 * 86_400));
    assert!((spec.error_budget() - 0.01).abs() < 1e-15);
}

#[test]
fn saved_rings_restore_the_same_answers_even_into_longer_rings() {
    let mut s = WindowStore::new(Duration::from_secs(7 * 86_400));
    let now = 100 * DAY;
    for m in 0..(4 * 24 * 60) {
        s.add(now - 4 * DAY + m * MIN, m % 3, 10 + m % 5);
    }
    s.advance(now);
    let saved = s.export();
    let windows = [5 * MIN, HOUR, 6 * HOUR, DAY, 3 * DAY, 7 * DAY];
    for longest in [7 * 86_400, 30 * 86_400] {
        let mut r = WindowStore::new(Duration::from_secs(longest));
        r.import(&saved);
        for w in windows {
            assert_eq!(r.query(now, w), s.query(now, w), "{longest} {w}");
        }
    }
    // Into shorter rings: what fits.
    let mut r = WindowStore::new(Duration::from_secs(86_400));
    r.import(&saved);
    assert_eq!(r.query(now, DAY), s.query(now, DAY));
    // An empty store saves its rings' positions only.
    let mut e = WindowStore::new(Duration::from_secs(3600));
    e.advance(now);
    let saved = e.export();
    assert!(
        saved
            .iter()
            .all(|r| r.bad.is_empty() && r.newest == now / r.granularity)
    );
    let mut r = WindowStore::new(Duration::from_secs(3600));
    r.import(&saved);
    assert_eq!(
        r.add(now - 2 * HOUR, 1, 1),
        Stored::TooOld,
        "positions restored"
    );
}

// === budget alert rows ===

fn counts(bad: f64, total: f64) -> Counts {
    Counts { bad, total }
}

/// A row as the configuration gives it: `(exhausts_within, window)`, `(budget_drop_percent,
/// within)` or a 1h/5m burn-rate row with `burn_rate`.
enum Row {
    Exhaustion(u64, Option<u64>),
    Drop(f64, u64),
    Burn(f64),
}

fn resolved(r: Row, period: Period) -> PolicyRow {
    let secs = Duration::from_secs;
    let mut c = slipstream_config::slo::AlertPolicyConfig {
        severity: Severity::Page,
        long_window: Duration::ZERO,
        short_window: Duration::ZERO,
        burn_rate: None,
        budget_percent: None,
        exhausts_within: None,
        window: None,
        budget_drop_percent: None,
        within: None,
    };
    match r {
        Row::Exhaustion(t, w) => {
            c.exhausts_within = Some(secs(t));
            c.window = w.map(secs);
        }
        Row::Drop(p, w) => {
            c.budget_drop_percent = Some(p);
            c.within = Some(secs(w));
        }
        Row::Burn(f) => {
            (c.long_window, c.short_window, c.burn_rate) = (secs(3600), secs(300), Some(f));
        }
    }
    policy(Some(&[c]), period)[0]
}

#[test]
fn exhaustion_rows_fire_when_the_budget_left_runs_out_within_their_time() {
    let thirty_days = Period::Rolling(Duration::from_secs(30 * 86_400));
    let row = resolved(Row::Exhaustion(4 * 3600, None), thirty_days);
    assert_eq!(
        row.kind,
        RowKind::Exhaustion {
            within: Duration::from_secs(4 * 3600)
        }
    );
    // The window defaults to the hour of the reported time to exhaustion.
    assert_eq!(
        (row.long, row.short),
        (CURRENT_BURN_WINDOW, CURRENT_BURN_WINDOW)
    );
    // 30 days / 4 hours: a full budget lasts 4h at burn rate 180.
    assert!((row.factor - 180.0).abs() < 1e-9);
    let budget = 0.001;
    // Half the budget left: it runs out within 4h above burn rate 90, i.e. 9% errors.
    let w = |bad| counts(bad, 10_000.0);
    assert!(!row.condition(w(900.0), w(900.0), budget, Some(0.5), 1e9, 10));
    assert!(row.condition(w(901.0), w(901.0), budget, Some(0.5), 1e9, 10));
    // The same burn rate against a fuller budget lasts longer than 4h.
    assert!(!row.condition(w(901.0), w(901.0), budget, Some(0.6), 1e9, 10));
    // A spent budget: any bad request in the window keeps it firing, none resolves it.
    assert!(row.condition(w(1.0), w(1.0), budget, Some(-0.2), 1e9, 10));
    assert!(!row.condition(w(0.0), w(0.0), budget, Some(-0.2), 1e9, 10));
    assert!(!row.condition(w(0.0), w(0.0), budget, Some(0.0), 1e9, 10));
    // The minimum-event guard, and no traffic.
    assert!(!row.condition(
        counts(9.0, 9.0),
        counts(9.0, 9.0),
        budget,
        Some(0.1),
        1e9,
        10
    ));
    assert!(!row.condition(Counts::default(), Counts::default(), budget, None, 0.0, 0));
    assert_eq!(exhaustion_threshold(180.0, -1.0), 0.0);
    assert_eq!(exhaustion_threshold(180.0, 0.5), 90.0);
    // The labels that tell it apart.
    assert_eq!(row.kind_labels(), [("exhausts_within", "4h".to_owned())]);
    assert_eq!(row.kind.alert_name(), ALERT_NAME_EXHAUSTION);
}

#[test]
fn budget_drop_rows_compare_bad_requests_with_the_period_budget_in_requests() {
    let day = Period::Rolling(Duration::from_secs(86_400));
    let row = resolved(Row::Drop(10.0, 7200), day);
    assert_eq!(row.kind, RowKind::BudgetDrop { percent: 10.0 });
    assert_eq!(
        (row.long, row.short),
        (Duration::from_secs(7200), Duration::from_secs(7200))
    );
    // The steady-traffic equivalent burn rate: 10% of a day's budget in 2h.
    assert!((row.factor - 1.2).abs() < 1e-9);
    let budget = 0.01;
    // 100 000 requests in the period: a budget of 1 000 bad ones; 10% of it is 100.
    let period_total = 100_000.0;
    let w = |bad| counts(bad, 2_000.0);
    assert!(!row.condition(w(99.0), w(99.0), budget, Some(0.5), period_total, 10));
    assert!(row.condition(w(100.0), w(100.0), budget, Some(0.5), period_total, 10));
    // The window's own traffic does not matter (the burn-rate form would say 5% / 1% * 2h /
    // 24h = 0.42, below 1.2, with 100 of 2 000 bad): only the period's budget does.
    assert!(row.condition(w(100.0), w(100.0), budget, Some(0.5), period_total, 2_000));
    assert!(!row.condition(w(100.0), w(100.0), budget, Some(0.5), period_total, 2_001));
    assert_eq!(budget_drop(100.0, budget, period_total), Some(0.1));
    assert_eq!(budget_drop(0.0, budget, 0.0), None);
    assert!(!row.condition(Counts::default(), Counts::default(), budget, None, 0.0, 0));
    assert_eq!(
        row.kind_labels(),
        [("budget_drop_percent", "10".to_owned())]
    );
    assert_eq!(row.kind.alert_name(), ALERT_NAME_BUDGET_DROP);
    let half = resolved(Row::Drop(2.5, 3600), day);
    assert_eq!(
        half.kind_labels(),
        [("budget_drop_percent", "2.5".to_owned())]
    );
}

#[test]
fn burn_rate_rows_keep_their_labels_and_condition() {
    let row = resolved(Row::Burn(14.4), Period::default());
    assert_eq!(row.kind, RowKind::BurnRate);
    assert!(row.kind_labels().is_empty());
    assert_eq!(row.kind.alert_name(), ALERT_NAME_BURN_RATE);
    let hot = counts(15.0, 1_000.0);
    let cold = counts(14.0, 1_000.0);
    assert!(row.condition(hot, hot, 0.001, Some(1.0), 1e6, 10));
    assert!(!row.condition(hot, cold, 0.001, Some(1.0), 1e6, 10));
    assert!(!row.condition(hot, counts(1.0, 9.0), 0.001, Some(1.0), 1e6, 10));
}
