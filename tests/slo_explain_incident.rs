//! An incident whose bad requests all come from one route on one pod, among 20 routes and 10
//! pods, is named in the page: the pod and the route ranked first, with their shares of the
//! bad and of all requests, in a real Alertmanager's alert annotations and in the events of
//! `slipstream replay` over a recording of the same traffic. The same for a latency
//! incident (the route slow on the pod, not failing): the latency SLO's page names them.
//! Each named value carries one of its bad requests as an example, linked through
//! `exemplars.trace_url`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Status;
use prost::Message;
use slipstream::replay::{InputFormat, OutputFormat, ReplayOptions, replay};
use slipstream_config::Config;
use slipstream_config::exporters::AlertmanagerConfig;
use slipstream_core::explain::ValueShare;
use slipstream_e2e::otlp::{export, kv, kv_int, resource_spans, server_span};
use slipstream_e2e::procs::Alertmanager;
use slipstream_e2e::{eventually_async, start, test_config};

const MIN: u64 = 60_000_000_000;
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;
const ROUTES: usize = 20;
const PODS: usize = 10;
/// The failing route and pod.
const BAD_ROUTE: usize = 7;
const BAD_POD: usize = 3;
/// Requests of the failing route per request of each other one.
const BAD_ROUTE_WEIGHT: usize = 10;

const SLO: &str = "exemplars:
  trace_url: https://tempo.example/trace/{trace_id}
slo:
  evaluation_interval: 30s
  templates: { availability: null, latency: null }
  objectives:
    - name: checkout-availability
      service: checkout
      sli: { kind: availability }
      objective: 99.9
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }
    - name: checkout-latency
      service: checkout
      sli: { kind: latency, threshold: 300ms }
      objective: 99.9
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }
";

/// What goes wrong with the failing route on the failing pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incident {
    None,
    /// Its requests answer 500.
    Failing,
    /// Its requests take 2 s (and succeed).
    Slow,
}

fn route(r: usize) -> String {
    if r == BAD_ROUTE {
        "/pay".to_owned()
    } else {
        format!("/api/r{r}")
    }
}

/// One minute of `checkout` traffic ending at `end`: each pod (a resource with its
/// `k8s.pod.name`) serves every route once per round, the failing route ten times; every
/// request of the failing route on the failing pod goes wrong as `incident` says. `seq`
/// numbers the spans (their ids).
fn minute(end: u64, incident: Incident, seq: &mut u64) -> ExportTraceServiceRequest {
    let resource_spans = (0..PODS)
        .map(|p| {
            let mut spans = Vec::new();
            for round in 0..2 {
                for r in 0..ROUTES {
                    let n = if r == BAD_ROUTE { BAD_ROUTE_WEIGHT } else { 1 };
                    for i in 0..n {
                        *seq += 1;
                        let t = end - MIN
                            + ((round * 31 + r * 11 + i * 3 + p) as u64 % 59) * 1_000_000_000;
                        let here = r == BAD_ROUTE && p == BAD_POD;
                        let slow = here && incident == Incident::Slow;
                        let mut span = server_span(
                            seq.to_be_bytes().repeat(2),
                            seq.to_le_bytes().to_vec(),
                            "HTTP",
                            t - if slow { 2_000_000_000 } else { 15_000_000 },
                            t,
                        );
                        span.attributes.push(kv("http.route", &route(r)));
                        span.attributes.push(kv("http.request.method", "GET"));
                        let bad = here && incident == Incident::Failing;
                        span.attributes.push(kv_int(
                            "http.response.status_code",
                            if bad { 500 } else { 200 },
                        ));
                        if bad {
                            span.status = Some(Status {
                                code: 2,
                                ..Default::default()
                            });
                        }
                        spans.push(span);
                    }
                }
            }
            resource_spans(
                vec![
                    kv("service.name", "checkout"),
                    kv("service.version", "2.1.0"),
                    kv("k8s.pod.name", &format!("checkout-pod-{p}")),
                ],
                spans,
            )
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// The trace ids (hex) of the requests in `requests` that failed or took over 300 ms.
fn bad_traces(requests: &[ExportTraceServiceRequest]) -> HashSet<String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|s| {
            s.status.as_ref().is_some_and(|st| st.code == 2)
                || s.end_time_unix_nano - s.start_time_unix_nano > 300_000_000
        })
        .map(|s| hex(&s.trace_id))
        .collect()
}

/// Checks the shares an event names: the failing pod and the failing route first (pod first:
/// it holds a smaller share of all requests), each with every bad request, and with one of
/// the bad requests (`bad`, trace ids) as its example, linked.
fn check_shares(shares: &[ValueShare], bad: &HashSet<String>) {
    for s in &shares[..2.min(shares.len())] {
        let x = s
            .example
            .as_ref()
            .unwrap_or_else(|| panic!("no example: {s:?}"));
        assert!(bad.contains(&x.trace_id), "{s:?} names a good request");
        assert_eq!(
            x.url.as_deref(),
            Some(format!("https://tempo.example/trace/{}", x.trace_id).as_str())
        );
    }
    assert!(shares.len() >= 2, "{shares:?}");
    assert_eq!(shares[0].attribute, "k8s.pod.name", "{shares:?}");
    assert_eq!(shares[0].value, format!("checkout-pod-{BAD_POD}"));
    assert_eq!(shares[1].attribute, "http.route", "{shares:?}");
    assert_eq!(shares[1].value, "/pay");
    for s in &shares[..2] {
        assert!((s.bad_share - 1.0).abs() < 1e-9, "{s:?}");
    }
    // A pod serves 1/10 of the requests; /pay 10/29 of them (within the sketch's error and
    // the sampling of good requests).
    assert!((shares[0].all_share - 0.1).abs() < 0.05, "{shares:?}");
    assert!(
        (shares[1].all_share - 10.0 / 29.0).abs() < 0.08,
        "{shares:?}"
    );
}

/// The same check on the annotation's text: `attr=value: B% of bad, A% of all (example:
/// <link>); ...`.
fn check_annotation(text: &str, bad: &HashSet<String>) {
    let parts: Vec<&str> = text.split("; ").collect();
    assert!(parts.len() >= 2, "{text}");
    for part in &parts[..2] {
        let (_, link) = part
            .split_once(" (example: https://tempo.example/trace/")
            .unwrap_or_else(|| panic!("no example link: {text}"));
        assert!(bad.contains(link.trim_end_matches(')')), "{text}");
    }
    assert!(
        parts[0].starts_with(&format!(
            "k8s.pod.name=checkout-pod-{BAD_POD}: 100% of bad, "
        )),
        "{text}"
    );
    assert!(
        parts[1].starts_with("http.route=/pay: 100% of bad, "),
        "{text}"
    );
}

/// The events of `slipstream replay` over ten quiet minutes and ten of `incident`, and what
/// it printed.
fn replay_incident(
    incident: Incident,
) -> (Vec<slipstream_slo::AlertEvent>, String, HashSet<String>) {
    let mut seq = 0;
    let requests: Vec<_> = (0..20)
        .map(|m| {
            let now = if m >= 10 { incident } else { Incident::None };
            minute(START + (m + 1) * MIN, now, &mut seq)
        })
        .collect();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    for r in &requests {
        let body = r.encode_to_vec();
        file.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        file.write_all(&body).unwrap();
    }
    file.flush().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let opts = ReplayOptions {
        config: Config::from_yaml(SLO).unwrap(),
        input: file.path().to_owned(),
        format: InputFormat::Protobuf,
        output: OutputFormat::Text,
        every: None,
        progress: false,
    };
    let report = replay(&opts, Box::new(out.reopen().unwrap())).unwrap();
    let mut printed = String::new();
    std::fs::File::open(out.path())
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    (report.events, printed, bad_traces(&requests))
}

/// The first firing event of `slo` (and no other SLO's), which names the shares.
fn page_of<'e>(
    events: &'e [slipstream_slo::AlertEvent],
    slo: &str,
) -> &'e slipstream_slo::AlertEvent {
    let firing: Vec<_> = events
        .iter()
        .filter(|e| e.state.as_str() == "firing")
        .collect();
    assert!(
        firing.iter().all(|e| e.slo == slo),
        "only {slo} fires: {firing:#?}"
    );
    let page = firing
        .first()
        .unwrap_or_else(|| panic!("no firing event: {events:#?}"));
    assert!(page.at > START + 10 * MIN, "{page:#?}");
    page
}

#[test]
fn replay_names_the_route_and_the_pod_of_the_bad_requests() {
    // Ten quiet minutes, then ten in which /pay fails on one pod.
    let (events, printed, bad) = replay_incident(Incident::Failing);
    let page = page_of(&events, "checkout-availability");
    check_shares(&page.bad_requests_share, &bad);
    check_annotation(&page.annotations["bad_requests_share"], &bad);
    // The printed event says it too.
    let line = printed
        .lines()
        .find(|l| l.trim_start().starts_with("bad requests share "))
        .unwrap_or_else(|| panic!("no shares printed:\n{printed}"));
    check_annotation(
        line.trim_start().trim_start_matches("bad requests share "),
        &bad,
    );
}

#[test]
fn replay_names_the_route_and_the_pod_of_the_slow_requests() {
    // Ten quiet minutes, then ten in which /pay takes 2 s on one pod, and succeeds.
    let (events, printed, slow) = replay_incident(Incident::Slow);
    let page = page_of(&events, "checkout-latency");
    check_shares(&page.bad_requests_share, &slow);
    check_annotation(&page.annotations["bad_requests_share"], &slow);
    assert!(
        printed.contains("bad requests share k8s.pod.name=checkout-pod-3: 100% of bad"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_shows_the_route_and_the_pod_of_the_bad_requests() {
    alertmanager_names_the_incident(Incident::Failing, "checkout-availability").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_shows_the_route_and_the_pod_of_the_slow_requests() {
    alertmanager_names_the_incident(Incident::Slow, "checkout-latency").await;
}

/// Two minutes of `incident`, ending now, sent to slipstream: the page of `slo` in a real
/// Alertmanager names the pod and the route.
async fn alertmanager_names_the_incident(incident: Incident, slo: &str) {
    let am = Alertmanager::start().await;
    let mut cfg = test_config(
        None,
        &SLO.replace("evaluation_interval: 30s", "evaluation_interval: 1s")
            .replace("slo:\n", "aggregator:\n  tick_interval: 1s\nslo:\n"),
    );
    cfg.exporters.alertmanager = Some(AlertmanagerConfig {
        endpoints: vec![format!("http://{}", am.addr)],
        resend_interval: Duration::from_secs(1),
        ..Default::default()
    });
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // Two minutes of the incident, ending now.
    let mut seq = 0;
    let mut sent = Vec::new();
    for m in 0..2 {
        let request = minute(now - (1 - m) * MIN, incident, &mut seq);
        export(http, &request).await;
        sent.push(request);
    }
    let ours = |a: &serde_json::Value| a["labels"]["slo"] == slo;
    let alert = eventually_async(
        "our alert in Alertmanager, with the shares",
        Duration::from_secs(30),
        || async {
            let alerts = am.alerts().await;
            alerts
                .iter()
                .find(|a| ours(a) && a["annotations"]["bad_requests_share"].is_string())
                .cloned()
                .ok_or(alerts)
        },
    )
    .await;
    assert_eq!(alert["labels"]["severity"], "page", "{alert:#}");
    check_annotation(
        alert["annotations"]["bad_requests_share"].as_str().unwrap(),
        &bad_traces(&sent),
    );
    app.shutdown().await;
}
