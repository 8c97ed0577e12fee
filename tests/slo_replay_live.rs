//! Backtesting gives what production would have given: the same recorded spans, replayed
//! from a file (OTLP JSON lines and length-prefixed protobuf), produce exactly the alert
//! events of a live slipstream fed the same spans over OTLP/HTTP on the same clock, with
//! spans from clients whose clocks run hours ahead and spans that arrive late among them.

use std::io::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use slipstream::replay::{InputFormat, OutputFormat, ReplayOptions, replay};
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, scenario};
use slipstream_e2e::{OneSlo, one_slo};

const MIN: u64 = 60_000_000_000;
const HOUR: u64 = 60 * MIN;
/// `aggregator.max_future_skew` (the default).
const SKEW: u64 = MIN;
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;

/// `checkout-availability`, evaluated every 30 s.
fn slo() -> OneSlo {
    one_slo("checkout")
}

/// Spans ending further ahead than the skew (clamped and counted, live and replayed).
const FUTURE_SPANS: u64 = 2;
/// Spans ending before the retention (dropped as late, live and replayed).
const LATE_SPANS: u64 = 5;
/// Late spans still within the retention (counted in their own slots).
const LATE_KEPT_SPANS: u64 = 5;
/// Every span of [`traffic`].
const SPANS: u64 = 190 * 60 + FUTURE_SPANS + LATE_SPANS + LATE_KEPT_SPANS;

/// A copy of the first span of `req` ending at `end`.
fn span_ending(req: &ExportTraceServiceRequest, end: u64) -> Span {
    let mut span = req.resource_spans[0].scope_spans[0].spans[0].clone();
    span.status = None;
    span.start_time_unix_nano = end - 20_000_000;
    span.end_time_unix_nano = end;
    span
}

fn spans_of(req: &mut ExportTraceServiceRequest) -> &mut Vec<Span> {
    &mut req.resource_spans[0].scope_spans[0].spans
}

/// Two quiet hours on 1.4.0, a deploy of 1.5.0 that fails every request for ten minutes,
/// then a rollback to 1.4.0 and an hour of recovery. Among them: a span ending 3 h ahead in
/// an ordinary request (minute 30), a request of one span 3 h ahead (after minute 60), and
/// in minute 90 spans that ended 2 h earlier (before the retention) and 10 minutes earlier.
fn traffic() -> Vec<ExportTraceServiceRequest> {
    let mut requests = base_traffic();
    let ahead = span_ending(&requests[30], START + 30 * MIN + 3 * HOUR);
    spans_of(&mut requests[30]).push(ahead);
    for k in 0..LATE_SPANS {
        let late = span_ending(&requests[90], START + 90 * MIN - 2 * HOUR + k);
        spans_of(&mut requests[90]).push(late);
    }
    for k in 0..LATE_KEPT_SPANS {
        let late = span_ending(&requests[90], START + 80 * MIN + k);
        spans_of(&mut requests[90]).push(late);
    }
    let mut lone = requests[60].clone();
    *spans_of(&mut lone) = vec![span_ending(&requests[60], START + 61 * MIN + 3 * HOUR)];
    requests.insert(61, lone);
    requests
}

fn base_traffic() -> Vec<ExportTraceServiceRequest> {
    let ok = |version| Minute {
        error_share: 0.0,
        version,
    };
    let mut minutes = vec![ok("1.4.0"); 120];
    minutes.extend(vec![
        Minute {
            error_share: 1.0,
            version: "1.5.0"
        };
        10
    ]);
    minutes.extend(vec![ok("1.4.0"); 60]);
    scenario("checkout", START, 60, minutes)
}

/// The live pipeline on a manual clock, driven as production time would have run: before
/// each request, evaluate at every interval boundary up to the time it was sent, the latest
/// end time among its spans that is not past the skew (a span further ahead comes from a
/// client whose clock is wrong, not from the future).
async fn live_events(requests: &[ExportTraceServiceRequest]) -> Vec<slipstream_slo::AlertEvent> {
    let clock = ManualClock::new(START);
    let app = slo().start_on(&clock).await;
    let http = app.http_addr.unwrap();
    let interval = 30_000_000_000;
    let mut events = Vec::new();
    let mut next: Option<u64> = None;
    let mut now = START;
    for req in requests {
        let t = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.end_time_unix_nano)
            .filter(|&e| e <= now + SKEW)
            .max();
        let Some(t) = t else {
            slipstream_e2e::otlp::export(http, req).await;
            continue;
        };
        let n = next.get_or_insert((t / interval + 1) * interval);
        while *n <= t {
            clock.set(*n);
            events.extend(app.step().await.events);
            *n += interval;
        }
        now = now.max(t);
        clock.set(now);
        slipstream_e2e::otlp::export(http, req).await;
    }
    let next = next.unwrap();
    clock.set(next);
    events.extend(app.step().await.events);
    app.shutdown().await;
    events
}

fn write_json_lines(requests: &[ExportTraceServiceRequest]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for r in requests {
        serde_json::to_writer(&mut f, r).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
    f
}

fn write_length_prefixed(requests: &[ExportTraceServiceRequest]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for r in requests {
        let body = r.encode_to_vec();
        f.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        f.write_all(&body).unwrap();
    }
    f.flush().unwrap();
    f
}

fn replay_events(path: &std::path::Path, format: InputFormat) -> Vec<slipstream_slo::AlertEvent> {
    let report = replay_report(path, format);
    report.events
}

fn replay_report(path: &std::path::Path, format: InputFormat) -> slipstream::replay::ReplayReport {
    let config = slo().config();
    let opts = ReplayOptions {
        config,
        input: path.to_owned(),
        format,
        output: OutputFormat::Json,
        every: None,
        progress: false,
    };
    let report = replay(&opts, Box::new(std::io::sink())).unwrap();
    assert_eq!(report.spans, SPANS);
    assert_eq!(report.invalid, 0);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_gives_the_events_of_the_live_pipeline() {
    let requests = traffic();
    let live = live_events(&requests).await;

    // The incident pages, and the page resolves after the rollback.
    let pages: Vec<_> = live
        .iter()
        .filter(|e| e.severity.as_str() == "page" && e.row.long.as_secs() == 3600)
        .collect();
    assert_eq!(pages.len(), 2, "{live:#?}");
    assert_eq!(pages[0].state.as_str(), "firing");
    let onset = START + 120 * MIN;
    assert!(
        pages[0].at > onset && pages[0].at <= onset + MIN,
        "at 100% errors the 1h/5m page fires within the first minute: fired {} s after onset",
        (pages[0].at - onset) / 1_000_000_000
    );
    assert_eq!(pages[1].state.as_str(), "resolved");
    assert!(pages[1].at > onset + 10 * MIN);
    // Deploy-aware: the event names both versions and when 1.5.0 first appeared.
    assert_eq!(pages[0].versions, ["1.4.0", "1.5.0"]);
    let (newest, since) = pages[0].newest_version.clone().unwrap();
    assert_eq!(newest, "1.5.0");
    assert_eq!(since, onset);

    let json = write_json_lines(&requests);
    let from_json = replay_events(json.path(), InputFormat::Auto);
    assert_eq!(
        from_json, live,
        "replay of OTLP JSON lines differs from live"
    );

    let pb = write_length_prefixed(&requests);
    let from_pb = replay_events(pb.path(), InputFormat::Auto);
    assert_eq!(
        from_pb, live,
        "replay of length-prefixed protobuf differs from live"
    );
}

#[test]
fn replay_clamps_spans_ahead_of_its_clock_and_counts_everything_after_them() {
    let requests = traffic();
    let pb = write_length_prefixed(&requests);
    let report = replay_report(pb.path(), InputFormat::Protobuf);
    assert_eq!(
        report.clamped_future, FUTURE_SPANS,
        "spans 3 h ahead are clamped"
    );
    assert_eq!(
        report.dropped_late, LATE_SPANS,
        "only spans before the retention are late"
    );
    let slo = &report.slos.slos[0];
    assert_eq!(
        slo.period_counts.total,
        (SPANS - LATE_SPANS) as f64,
        "every span but the late ones counts towards the SLO"
    );
    assert_eq!(slo.period_counts.bad, 600.0, "the ten failing minutes");
}

#[test]
fn replay_follows_a_recording_that_skips_ahead() {
    // An hour of traffic, nothing for three hours, then another hour: the clock follows the
    // gap (two requests in a row past the skew), and nothing after it is late.
    let ok = Minute {
        error_share: 0.0,
        version: "1.4.0",
    };
    let mut requests = scenario("checkout", START, 60, vec![ok; 60]);
    requests.extend(scenario("checkout", START + 4 * HOUR, 60, vec![ok; 60]));
    let pb = write_length_prefixed(&requests);
    let opts = ReplayOptions {
        config: slo().config(),
        input: pb.path().to_owned(),
        format: InputFormat::Protobuf,
        output: OutputFormat::Json,
        every: None,
        progress: false,
    };
    let report = replay(&opts, Box::new(std::io::sink())).unwrap();
    assert_eq!(report.spans, 120 * 60);
    assert_eq!(report.dropped_late, 0);
    assert_eq!(report.clamped_future, 0);
    assert_eq!(report.slos.slos[0].period_counts.total, (120 * 60) as f64);
    assert_eq!(
        report.slos.at,
        START + 5 * HOUR,
        "the clock followed the traffic"
    );
}

#[test]
fn replay_refuses_a_truncated_protobuf_file_with_a_clear_error() {
    let requests = traffic();
    let pb = write_length_prefixed(&requests[..3]);
    let bytes = std::fs::read(pb.path()).unwrap();
    let cut = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cut.path(), &bytes[..bytes.len() - 10]).unwrap();
    let opts = ReplayOptions {
        config: slo().config(),
        input: cut.path().to_owned(),
        format: InputFormat::Protobuf,
        output: OutputFormat::Text,
        every: None,
        progress: false,
    };
    let err = replay(&opts, Box::new(std::io::sink())).unwrap_err();
    assert!(format!("{err:#}").contains("truncated"), "{err:#}");
}
