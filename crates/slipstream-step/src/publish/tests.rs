use std::time::Duration;

use slipstream_slo::{Counts, Period, Sli, SloId, SloSource, SloStatus, WindowStatus};

use super::*;

fn status(windows: &[u64], ratio: Option<f64>, budget: Option<f64>) -> SloStatus {
    SloStatus {
        id: SloId(0),
        name: "a".into(),
        service: "a".into(),
        sli: Sli::Availability,
        source: SloSource::Template,
        objective: 0.99,
        period: Period::Rolling(Duration::from_secs(30 * 86_400)),
        labels: Default::default(),
        windows: windows
            .iter()
            .map(|&m| WindowStatus {
                window: Duration::from_secs(m * 60),
                counts: Counts::default(),
                error_ratio: ratio,
                burn_rate: ratio.map(|r| r * 100.0),
            })
            .collect(),
        period_counts: Counts::default(),
        budget_remaining: budget,
        current_burn_rate: None,
        time_to_exhaustion: None,
        alerts: Vec::new(),
    }
}

#[test]
fn history_keeps_a_point_a_minute_up_to_a_day_and_reads_back_what_it_kept() {
    let mut h = History::default();
    let s = status(&[5, 60], Some(0.25), Some(0.5));
    // The error ratio comes back from the burn rate, to single precision.
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6 * b);
    for i in 0..HISTORY_POINTS as u64 + 10 {
        h.record(&s, i * HISTORY_STEP);
        // Within the step: not kept.
        h.record(&s, i * HISTORY_STEP + 1);
    }
    let points = h.points();
    assert_eq!(points.len(), HISTORY_POINTS);
    assert_eq!(points[0].at, 10 * HISTORY_STEP);
    assert_eq!(points[0].budget_remaining, Some(0.5));
    let windows: Vec<Duration> = points[0].windows.iter().map(|w| w.0).collect();
    assert_eq!(
        windows,
        [Duration::from_secs(300), Duration::from_secs(3600)]
    );
    for (_, ratio, burn) in &points[0].windows {
        assert!(
            close(*ratio, 0.25) && close(*burn, 25.0),
            "{ratio:?} {burn:?}"
        );
    }
    // No traffic is no value, not NaN; other windows start the history afresh.
    let quiet = status(&[5], None, None);
    h.record(&quiet, 2000 * HISTORY_STEP);
    let points = h.points();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].budget_remaining, None);
    assert_eq!(points[0].windows, [(Duration::from_secs(300), None, None)]);
}
