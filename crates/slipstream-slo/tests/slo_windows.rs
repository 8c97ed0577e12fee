//! The window store through the engine: memory bound, budget, time to exhaustion, late and
//! refused data, calendar months.

mod common;

use std::time::Duration;

use common::*;
use slipstream_slo::{WindowStore, month_start};

#[test]
fn memory_per_slo_stays_under_64_kib_for_30_days() {
    let h = harness(
        "  objectives:\n    - { name: a, service: a, objective: 99.9, period: 30d }\n    - { name: b, service: b, objective: 99.9, period: calendar_month }\n",
    );
    for name in ["a", "b"] {
        let bytes = h.engine.window_memory_bytes(h.id(name)).unwrap();
        assert!(bytes < 64 * 1024, "{name}: {bytes} bytes");
        assert!(
            bytes > 16 * (360 + 864 + 720),
            "{name}: {bytes} bytes is too small to hold the rings"
        );
    }
    let store = WindowStore::new(Duration::from_secs(30 * 86_400));
    assert_eq!(store.granularity(6 * HOUR), MIN);
    assert_eq!(store.granularity(5 * MIN), MIN);
    assert_eq!(store.granularity(6 * HOUR + MIN), 5 * MIN);
    assert_eq!(store.granularity(72 * HOUR), 5 * MIN);
    assert_eq!(store.granularity(30 * 24 * HOUR), HOUR);
}

/// Budget remaining = 1 - bad(P) / ((1 - objective) total(P)); time to exhaustion = remaining
/// * period / burn rate of the last hour.
#[test]
fn budget_remaining_and_time_to_exhaustion() {
    let mut h = harness(
        "  templates: { availability: null, latency: null }\n  objectives:\n    - { name: a, service: a, objective: 99, period: 7d }\n",
    );
    let id = h.id("a");
    // 10 hours: 1000 a minute, 0.5% errors in the last hour, none before.
    h.history(id, START, START + 9 * HOUR, 1000, 0);
    h.run(id, START + 10 * HOUR, MIN, 1000, 5);
    let snap = h.engine.snapshot();
    let s = snap.slo("a").unwrap();
    let (bad, total) = (300.0, 600_000.0);
    assert_eq!(s.period_counts.bad, bad);
    assert_eq!(s.period_counts.total, total);
    let remaining = 1.0 - bad / (0.01 * total);
    assert!((s.budget_remaining.unwrap() - remaining).abs() < 1e-12);
    let burn = 0.005 / 0.01;
    assert!((s.current_burn_rate.unwrap() - burn).abs() < 1e-9);
    let tte = s.time_to_exhaustion.unwrap().as_secs_f64();
    assert!(
        (tte - remaining * 7.0 * 86_400.0 / burn).abs() < 1e-3,
        "{tte}"
    );
    assert_eq!(
        s.window(Duration::from_secs(3600)).unwrap().counts.total,
        60_000.0
    );
    // Overspent: exhaustion is now.
    h.run(id, START + 11 * HOUR, MIN, 1000, 1000);
    let snap = h.engine.snapshot();
    let s = snap.slo("a").unwrap();
    assert!(s.budget_remaining.unwrap() < 0.0);
    assert_eq!(s.time_to_exhaustion, Some(Duration::ZERO));
}

#[test]
fn late_data_adds_up_and_data_outside_the_rings_is_counted() {
    let mut h = harness(
        "  templates: { availability: null, latency: null }\n  objectives:\n    - { name: a, service: a, objective: 99, period: 1d }\n",
    );
    let id = h.id("a");
    h.clock.set(START + 2 * HOUR);
    // The same slot in three deliveries, one of them late.
    h.engine.observe(id, START + HOUR, 90, 100);
    h.engine.observe(id, START + HOUR, 10, 10);
    h.engine.observe(id, START + 2 * HOUR - MIN, 0, 10);
    h.engine.observe(id, START + HOUR, 50, 50);
    // Too old for the 1-day period, in the future, unknown SLO, good > total.
    h.engine.observe(id, START - 2 * 86_400 * SEC, 1, 1);
    h.engine.observe(id, START + 3 * HOUR, 1, 1);
    h.engine.observe(slipstream_slo::SloId(99), START, 1, 1);
    h.engine.observe(id, START + HOUR, 2, 1);
    h.engine.tick();
    let snap = h.engine.snapshot();
    let s = snap.slo("a").unwrap();
    let w2h = s.window(Duration::from_secs(7200)).unwrap();
    assert_eq!((w2h.counts.bad, w2h.counts.total), (20.0, 170.0));
    let w5m = s.window(Duration::from_secs(300)).unwrap();
    assert_eq!((w5m.counts.bad, w5m.counts.total), (10.0, 10.0));
    for reason in ["too_old", "future", "unknown_slo", "invalid"] {
        assert_eq!(
            h.metric("slipstream_slo_dropped_observations_total", &[reason]),
            1,
            "{reason}"
        );
    }
}

/// Between minute boundaries the slot straddling the window's old edge counts by its share
/// inside the window, so steady traffic gives exactly the window's share of it.
#[test]
fn old_window_edge_is_interpolated() {
    let mut store = WindowStore::new(Duration::from_secs(86_400));
    for m in 0..120 {
        store.add(START + m * MIN, 1, 60);
    }
    let now = START + 100 * MIN + 20 * SEC;
    let c = store.query(now, 5 * MIN);
    // Slots 96..=100 (the current one whole) plus 2/3 of slot 95.
    assert!((c.total - (5.0 * 60.0 + 40.0)).abs() < 1e-9, "{c:?}");
    assert!((c.bad - (5.0 + 2.0 / 3.0)).abs() < 1e-9, "{c:?}");
    let c = store.query(START + 100 * MIN, 5 * MIN);
    assert_eq!((c.bad, c.total), (5.0, 300.0));
}

#[test]
fn calendar_month_period_resets_on_the_first() {
    // 2023-11-15 -> 2023-11-01; 2024-03-01 00:00 is its own month start.
    assert_eq!(month_start(START + 5 * HOUR), START - 14 * 24 * HOUR);
    let march_1_2024 = 1_709_251_200 * SEC;
    assert_eq!(month_start(march_1_2024), march_1_2024);
    assert_eq!(month_start(march_1_2024 - 1), march_1_2024 - 29 * 24 * HOUR);
    let mut h = harness(
        "  templates: { availability: null, latency: null }\n  objectives:\n    - { name: a, service: a, objective: 99, period: calendar_month }\n",
    );
    let id = h.id("a");
    let dec_1 = 1_701_388_800 * SEC;
    h.history(id, dec_1 - 2 * HOUR, dec_1 + HOUR, 100, 10);
    h.engine.tick();
    let snap = h.engine.snapshot();
    let s = snap.slo("a").unwrap();
    assert_eq!(s.period_counts.total, 6000.0, "only December counts");
}
