//! The SLO state survives restarts: after a graceful restart the budget, the windows and a
//! firing alert are where they were (no second firing event); a corrupt state file gives a
//! fresh start, not a crash; an unusable state directory leaves slipstream running. A firing
//! alert re-sent after a restart names the example traces it fired with.

use std::sync::Arc;

use slipstream_app::app::App;
use slipstream_config::Config;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, play_minute, scenario};
use slipstream_e2e::{OneSlo, http_get, one_slo, self_metric};

const MIN: u64 = 60_000_000_000;
/// 2026-05-01T00:00:00Z.
const START: u64 = 1_777_593_600_000_000_000;

/// `cart-availability`, evaluated every minute.
fn slo() -> OneSlo {
    one_slo("cart").evaluation_interval("1m")
}

/// [`slo`] with its state in `dir`.
fn config(dir: &std::path::Path) -> Config {
    with_state(slo(), dir)
}

fn with_state(slo: OneSlo, dir: &std::path::Path) -> Config {
    let mut cfg = slo.config();
    cfg.state.dir = Some(dir.to_owned());
    cfg
}

async fn slos(app: &App) -> serde_json::Value {
    serde_json::from_str(&http_get(app.admin_addr.unwrap(), "/api/v1/slos").await.1).unwrap()
}

/// Feeds minutes `from..to` of the scenario (errors in 30..40) and steps after each.
async fn feed(
    app: &App,
    clock: &ManualClock,
    from: usize,
    to: usize,
) -> Vec<slipstream_slo::AlertEvent> {
    let minutes = (0..to).map(|m| Minute {
        error_share: if (30..40).contains(&m) { 1.0 } else { 0.0 },
        version: "2.0.0",
    });
    let mut events = Vec::new();
    for (m, req) in scenario("cart", START, 60, minutes)
        .into_iter()
        .enumerate()
        .skip(from)
    {
        events.extend(play_minute(app, clock, START, m, &[&req]).await);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_budget_windows_and_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let events = feed(&app, &clock, 0, 35).await;
    assert!(
        events
            .iter()
            .any(|e| e.state.as_str() == "firing" && e.severity.as_str() == "page"),
        "{events:#?}"
    );
    let before = slos(&app).await["slos"][0].clone();
    app.shutdown().await;

    // A new process (same directory), a minute later.
    clock.set(START + 36 * MIN);
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let first = app.step().await;
    assert!(
        first.events.is_empty(),
        "no second firing event after a restart: {:#?}",
        first.events
    );
    let after = slos(&app).await["slos"][0].clone();
    assert_eq!(after["period_total"], before["period_total"]);
    assert_eq!(after["period_bad"], before["period_bad"]);
    assert_eq!(after["budget_remaining"], before["budget_remaining"]);
    assert_eq!(after["alerts"][0]["firing"], true);
    assert_eq!(after["alerts"][0]["since"], before["alerts"][0]["since"]);
    assert_eq!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_state_restored_slos",
            &[]
        )
        .await,
        1.0
    );
    // The incident ends and the restored alert resolves, once.
    let events = feed(&app, &clock, 36, 60).await;
    let pages: Vec<&str> = events
        .iter()
        .filter(|e| e.severity.as_str() == "page" && e.row.long.as_secs() == 3600)
        .map(|e| e.state.as_str())
        .collect();
    assert_eq!(pages, ["resolved"]);
    assert!(app.save_state().await.unwrap());
    app.shutdown().await;
}

/// A page firing when slipstream stops is re-sent after the restart (`repeat_interval`) with
/// the example traces it fired with, though the restarted aggregator holds none of the
/// incident's requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_alert_is_re_sent_with_the_example_traces_it_fired_with() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let slo = slo()
            .repeat_interval("1m")
            .trace_url("https://tempo.example/trace/{trace_id}");
        with_state(slo, dir.path())
    };
    let page = |e: &&slipstream_slo::AlertEvent| {
        e.severity.as_str() == "page" && e.row.long.as_secs() == 3600
    };
    let clock = ManualClock::new(START);
    let app = App::start_with(config(), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let events = feed(&app, &clock, 0, 35).await;
    assert!(events.iter().filter(page).any(|e| !e.repeat), "{events:#?}");
    // What the page was last sent with (re-sent every minute).
    let fired = events.iter().rfind(page).unwrap();
    let links = fired.annotations.get("example_traces").cloned();
    assert!(
        links
            .as_deref()
            .is_some_and(|l| l.starts_with("https://tempo.example/trace/")),
        "{fired:#?}"
    );
    app.shutdown().await;

    // Restarted a minute later, past the repeat interval, with no traffic since.
    clock.set(START + 36 * MIN);
    let app = App::start_with(config(), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let events = app.step().await.events;
    let repeat = events.iter().find(page).expect("the page is re-sent");
    assert!(repeat.repeat && repeat.state.as_str() == "firing");
    assert_eq!(repeat.annotations.get("example_traces"), links.as_ref());
    assert_eq!(repeat.exemplars, fired.exemplars);
    assert_eq!(repeat.bad_requests_share, fired.bad_requests_share);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_moved_aside_and_slipstream_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slipstream.redb"),
        b"not a database, not at all",
    )
    .unwrap();
    let clock = ManualClock::new(START);
    let app = App::start_with(config(dir.path()), Arc::new(clock.clone()), false)
        .await
        .expect("a corrupt state file never stops slipstream");
    feed(&app, &clock, 0, 3).await;
    assert!(app.save_state().await.unwrap(), "a fresh store was opened");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("slipstream.redb.corrupt-")),
        "{names:?}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_state_directory_leaves_slipstream_running_without_persistence() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: nothing can be created below it.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"").unwrap();
    let clock = ManualClock::new(START);
    let app = App::start_with(
        config(&blocked.join("state")),
        Arc::new(clock.clone()),
        false,
    )
    .await
    .expect("an unusable state directory never stops slipstream");
    feed(&app, &clock, 0, 2).await;
    assert!(
        !app.save_state().await.unwrap(),
        "running without persistence"
    );
    assert_eq!(slos(&app).await["slos"][0]["period_total"], 120.0);
    app.shutdown().await;
}
