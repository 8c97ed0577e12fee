//! Backtesting gives what production would have given: the same recorded spans, replayed
//! from a file (OTLP JSON lines and length-prefixed protobuf), produce exactly the alert
//! events of a live slipstream fed the same spans over OTLP/HTTP on the same clock.

use std::io::Write;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slipstream::app::App;
use slipstream::replay::{InputFormat, OutputFormat, ReplayOptions, replay};
use slipstream_config::Config;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, scenario};
use slipstream_e2e::test_config;

const MIN: u64 = 60_000_000_000;
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;

const SLO: &str = "slo:
  evaluation_interval: 30s
  templates: { availability: null, latency: null }
  objectives:
    - name: checkout-availability
      service: checkout
      sli: { kind: availability }
      objective: 99.9
";

/// Two quiet hours on 1.4.0, a deploy of 1.5.0 that fails every request for ten minutes,
/// then a rollback to 1.4.0 and an hour of recovery.
fn traffic() -> Vec<ExportTraceServiceRequest> {
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

/// The live pipeline on a manual clock, driven the way replay drives its clock: before each
/// request, evaluate at every interval boundary up to the request's latest end time.
async fn live_events(requests: &[ExportTraceServiceRequest]) -> Vec<slipstream_slo::AlertEvent> {
    let cfg = test_config(None, SLO);
    let clock = ManualClock::new(START);
    let app = App::start_with(cfg, Arc::new(clock.clone()), false)
        .await
        .unwrap();
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
            .max()
            .unwrap();
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
    let config = Config::from_yaml(SLO).unwrap();
    let opts = ReplayOptions {
        config,
        input: path.to_owned(),
        format,
        output: OutputFormat::Json,
        every: None,
        progress: false,
    };
    let report = replay(&opts, Box::new(std::io::sink())).unwrap();
    assert_eq!(report.spans, 190 * 60);
    assert_eq!(report.invalid, 0);
    report.events
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
fn replay_refuses_a_truncated_protobuf_file_with_a_clear_error() {
    let requests = traffic();
    let pb = write_length_prefixed(&requests[..3]);
    let bytes = std::fs::read(pb.path()).unwrap();
    let cut = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cut.path(), &bytes[..bytes.len() - 10]).unwrap();
    let opts = ReplayOptions {
        config: Config::from_yaml(SLO).unwrap(),
        input: cut.path().to_owned(),
        format: InputFormat::Protobuf,
        output: OutputFormat::Text,
        every: None,
        progress: false,
    };
    let err = replay(&opts, Box::new(std::io::sink())).unwrap_err();
    assert!(format!("{err:#}").contains("truncated"), "{err:#}");
}
