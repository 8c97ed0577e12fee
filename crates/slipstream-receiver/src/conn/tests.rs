//! Unit tests of connection limits: accept back-off and its counting, the cap, the watchdog.

use std::io;

use slipstream_core::telemetry::MetricDesc;

use super::*;

fn counted(registry: &Registry, metric: &MetricDesc, labels: &[&str]) -> i128 {
    registry.value(metric.name, labels).unwrap_or(0)
}

#[tokio::test]
async fn failed_accepts_back_off_doubling_to_a_second_and_are_counted_by_kind() {
    let registry = Registry::new();
    let mut conns = Connections::new("l", ConnectionLimits::default(), &registry);
    let emfile = io::Error::from_raw_os_error(24);
    let pauses: Vec<Duration> = (0..10).map(|_| conns.accept_failed(&emfile)).collect();
    assert_eq!(pauses[0], Duration::from_millis(5));
    assert_eq!(pauses[1], Duration::from_millis(10));
    assert_eq!(pauses[7], Duration::from_millis(640));
    assert_eq!(pauses[8], Duration::from_secs(1));
    assert_eq!(pauses[9], Duration::from_secs(1));
    conns.accept_failed(&io::Error::from_raw_os_error(23));
    conns.accept_failed(&io::Error::from_raw_os_error(105));
    conns.accept_failed(&io::Error::other("something else"));
    let kind = |k| counted(&registry, &names::ACCEPT_ERRORS, &["l", k]);
    assert_eq!(kind("too_many_open_files"), 11);
    assert_eq!(kind("out_of_memory"), 1);
    assert_eq!(kind("other"), 1);
    // An accepted connection starts the back-off over.
    let _admitted = conns.admit().expect("room for one");
    assert_eq!(conns.accept_failed(&emfile), Duration::from_millis(5));
}

#[tokio::test]
async fn repeated_events_are_logged_once_per_interval_with_the_count_left_unsaid() {
    let mut log = LogEvery::default();
    assert_eq!(log.due(), Some(0));
    for _ in 0..1000 {
        assert_eq!(log.due(), None);
    }
    log.last = Some(Instant::now() - LOG_INTERVAL);
    assert_eq!(log.due(), Some(1000));
    assert_eq!(log.due(), None);
}

#[tokio::test]
async fn the_cap_admits_max_open_connections_and_counts_the_others() {
    let registry = Registry::new();
    let mut conns = Connections::new(
        "l",
        ConnectionLimits {
            max_open: 3,
            ..ConnectionLimits::default()
        },
        &registry,
    );
    let held: Vec<Admitted> = (0..3)
        .map(|_| conns.admit().expect("under the cap"))
        .collect();
    assert!(conns.admit().is_none());
    assert!(conns.admit().is_none());
    assert_eq!(
        counted(&registry, &names::CONNECTIONS_CLOSED, &["l", "over_limit"]),
        2
    );
    assert_eq!(counted(&registry, &names::OPEN_CONNECTIONS, &["l"]), 3);
    drop(held);
    assert_eq!(counted(&registry, &names::OPEN_CONNECTIONS, &["l"]), 0);
    assert!(conns.admit().is_some());
    tokio::time::timeout(Duration::from_secs(1), conns.all_closed())
        .await
        .expect("every permit is back");
}

fn short() -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(150),
        ..ConnectionLimits::default()
    }
}

#[tokio::test]
async fn the_watchdog_gives_the_first_request_the_header_deadline() {
    let w = Watchdog::new(&short());
    let start = Instant::now();
    assert_eq!(w.expired().await, CloseReason::HeaderTimeout);
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn the_watchdog_waits_for_a_request_in_progress_then_gives_the_idle_deadline() {
    let w = Watchdog::new(&short());
    let guard = w.request_started();
    // Longer than both deadlines: a request in progress is never idle.
    let held = tokio::time::timeout(Duration::from_millis(400), w.expired()).await;
    assert!(held.is_err(), "closed during a request: {held:?}");
    let done = Instant::now();
    drop(guard);
    assert_eq!(w.expired().await, CloseReason::IdleTimeout);
    assert!(done.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_cut_body_closes_the_connection_at_once() {
    let w = Watchdog::new(&ConnectionLimits::default());
    let _guard = w.request_started();
    let w2 = w.clone();
    let expired = tokio::spawn(async move { w2.expired().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    w.cut();
    let reason = tokio::time::timeout(Duration::from_secs(1), expired)
        .await
        .expect("closes at once")
        .unwrap();
    assert_eq!(reason, CloseReason::BodyTimeout);
    assert!(w.was_cut());
}

#[tokio::test]
async fn a_body_deadline_moves_with_what_arrived() {
    let limits = ConnectionLimits {
        body_timeout: Duration::from_secs(10),
        min_body_rate: 1024,
        ..ConnectionLimits::default()
    };
    let mut body = TimedBody::new(http_body_util::Empty::<Bytes>::new(), &limits, None);
    assert_eq!(body.deadline(), body.start + Duration::from_secs(10));
    body.received = 4096;
    assert_eq!(body.deadline(), body.start + Duration::from_secs(14));
    body.rate = 0;
    assert_eq!(body.deadline(), body.start + Duration::from_secs(10));
}

#[test]
fn the_deadline_errors_of_hyper_are_told_apart_from_others() {
    #[derive(Debug, thiserror::Error)]
    #[error("keep-alive timed out")]
    struct KeepAlive;
    #[derive(Debug, thiserror::Error)]
    #[error("http2 error")]
    struct Outer(#[source] KeepAlive);
    assert_eq!(
        CloseReason::of_error(&Outer(KeepAlive)),
        Some(CloseReason::KeepaliveTimeout)
    );
    assert_eq!(CloseReason::of_error(&io::Error::other("reset")), None);
}

#[test]
fn the_config_refuses_a_zero_cap_and_zero_deadlines_naming_each_field() {
    let err = slipstream_config::Config::from_yaml(
        "receivers:\n  otlp:\n    connections:\n      max_open: 0\n      idle_timeout: 0s\n      keepalive_timeout: 0s\n",
    )
    .expect_err("refused")
    .to_string();
    for path in [
        "receivers.otlp.connections.max_open",
        "receivers.otlp.connections.idle_timeout",
        "receivers.otlp.connections.keepalive_timeout",
    ] {
        assert!(err.contains(path), "{path} not named in: {err}");
    }
    let ok = slipstream_config::Config::from_yaml(
        "receivers:\n  otlp:\n    connections:\n      max_open: 100\n      min_body_rate: 4KiB\n      header_timeout: 2s\n",
    )
    .expect("valid");
    let limits = ConnectionLimits::from_config(&ok.receivers.otlp.connections);
    assert_eq!(limits.max_open, 100);
    assert_eq!(limits.min_body_rate, 4096);
    assert_eq!(limits.header_timeout, Duration::from_secs(2));
    assert_eq!(limits.idle_timeout, Duration::from_secs(60));
}

#[test]
fn the_cap_is_fitted_below_the_open_file_limit() {
    // 1,024 files: 256 kept back, 384 for each of two listeners.
    assert_eq!(fit_to_open_files(4096, 2, Some(1024)), 384);
    assert_eq!(fit_to_open_files(4096, 1, Some(1024)), 768);
    // A cap that fits already is kept.
    assert_eq!(fit_to_open_files(100, 2, Some(1024)), 100);
    assert_eq!(fit_to_open_files(4096, 2, Some(1 << 20)), 4096);
    // A tiny limit still leaves a few; an unknown one changes nothing.
    assert_eq!(fit_to_open_files(4096, 2, Some(200)), MIN_FITTED_OPEN);
    assert_eq!(fit_to_open_files(4096, 2, None), 4096);
}

#[test]
fn this_process_open_file_limit_is_read_on_linux() {
    if cfg!(target_os = "linux") {
        let n = open_file_limit().expect("a number in /proc/self/limits");
        assert!(n >= 16, "{n}");
    }
}
