//! Deploy-aware events name the versions that served, by when each last served: after a
//! rollback (1.4.0 -> 1.5.0 -> back to 1.4.0), the version running is the one rolled back
//! to, and a page an hour after the rollback names only it. The whole pipeline (OTLP/HTTP
//! receiver, aggregator, SLO engine) on a manual clock.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use slipstream_core::ManualClock;
use slipstream_e2e::one_slo;
use slipstream_e2e::otlp::{Minute, scenario};

const MIN: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MIN;
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;
const INTERVAL: u64 = 30_000_000_000;

/// The version of each minute: an hour of 1.4.0, 1.5.0 from +1h to +1h55m, then 1.4.0
/// again; from +2h58m every request fails (on 1.4.0).
fn minutes() -> Vec<Minute> {
    (0..181)
        .map(|m| Minute {
            error_share: if m >= 178 { 1.0 } else { 0.0 },
            version: if (60..115).contains(&m) {
                "1.5.0"
            } else {
                "1.4.0"
            },
        })
        .collect()
}

/// What the engine must say at the evaluation at minute `m` (it has seen the requests of
/// minutes `..m`, each last seen at the end of its minute): the versions of the minutes whose
/// end lies in the last hour, least recently seen first, and the version of minute `m - 1`.
fn expected(minutes: &[Minute], m: usize) -> (Vec<String>, String) {
    let mut order: Vec<&str> = Vec::new();
    for minute in &minutes[m.saturating_sub(61)..m] {
        let v = minute.version;
        order.retain(|x| *x != v);
        order.push(v);
    }
    (
        order.iter().map(|v| (*v).to_owned()).collect(),
        minutes[m - 1].version.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rollback_events_name_the_version_rolled_back_to() {
    let minutes = minutes();
    let requests: Vec<ExportTraceServiceRequest> = scenario("checkout", START, 60, minutes.clone());
    let clock = ManualClock::new(START);
    let app = one_slo("checkout").start_on(&clock).await;
    let http = app.http_addr.unwrap();
    // Where the running version is checked: before, during and after the deploy, around
    // the rollback, and at the page.
    let checks = [30, 60, 61, 62, 90, 115, 116, 117, 150, 179];
    let mut checked = Vec::new();
    let mut events = Vec::new();
    let mut next = START + INTERVAL;
    for (m, req) in requests.iter().enumerate() {
        // Each minute's request goes out as it ends; evaluations run every 30 s before it.
        let t = START + m as u64 * MIN + MIN - 1;
        while next <= t {
            clock.set(next);
            events.extend(app.step().await.events);
            let at = (next - START) / MIN;
            if next.is_multiple_of(MIN) && checks.contains(&(at as usize)) {
                let (versions, running) = app
                    .live
                    .with_evaluator(|e| e.engine().versions_since("checkout", next - HOUR));
                let (want_versions, want_running) = expected(&minutes, at as usize);
                assert_eq!(
                    versions, want_versions,
                    "versions in the hour before +{at}m"
                );
                assert_eq!(
                    running.map(|(v, _)| v),
                    Some(want_running),
                    "running at +{at}m"
                );
                checked.push(at);
            }
            next += INTERVAL;
        }
        clock.set(t);
        slipstream_e2e::otlp::export(http, req).await;
    }
    app.shutdown().await;
    assert_eq!(checked.len(), checks.len(), "checked at {checked:?}");

    // The page at +2h59m: only 1.4.0 served in its hour.
    let page = events
        .iter()
        .find(|e| e.severity.as_str() == "page" && e.state.as_str() == "firing")
        .expect("the failures page");
    assert_eq!(page.at, START + 2 * HOUR + 59 * MIN);
    assert_eq!(page.versions, ["1.4.0"]);
    assert_eq!(
        page.newest_version,
        Some(("1.4.0".to_owned(), START)),
        "running: the version rolled back to, which first appeared at the start"
    );
}
