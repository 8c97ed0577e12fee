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
