//! `kill -9` under load, with the downstream down: the real binary is killed while a client
//! keeps sending, and started again on the same directories. Afterwards the counts reconcile:
//! - every request the client got a 200 for is delivered downstream, except what was in the
//!   killed process's memory queue (the disk spill survives the kill);
//! - the restarted process accounts for everything it accepted: delivered + dropped (zero) +
//!   still queued (zero);
//! - the SLO's period count lost at most the spans accepted in the last snapshot interval
//!   (plus one aggregator tick and one evaluation) before the kill.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use slipstream_e2e::otlp::{kv, resource_entries, server_span};
use slipstream_e2e::process::Slipstream;
use slipstream_e2e::{Sink, SinkMode, eventually_async, http_get, raw, self_metric};

const SPANS_PER_REQUEST: usize = 100;

/// What a kill may lose of the SLO's count: the spans accepted in the last snapshot interval,
/// aggregator tick and evaluation before it (with a margin).
const LOSS_WINDOW: Duration = Duration::from_millis(1_000 + 500 + 1_000 + 1_500);

/// Request `i`: 100 server spans of `orders` ending now, the first named after `i`.
fn request(i: usize) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..SPANS_PER_REQUEST)
        .map(|j| {
            let name = if j == 0 {
                format!("request {i}")
            } else {
                "GET /orders".into()
            };
            let span_id = vec![(j % 250) as u8 + 1; 8];
            server_span(vec![1; 16], span_id, &name, now - 20_000_000, now)
        })
        .collect();
    slipstream_e2e::otlp::request(vec![kv("service.name", "orders")], spans).encode_to_vec()
}

/// What the client saw.
#[derive(Debug, Default)]
struct ClientLog {
    /// (request, body, when it was answered 200).
    accepted: Vec<(usize, Vec<u8>, Instant)>,
    /// Requests whose connection broke before an answer (sent again; may have been taken).
    ambiguous: HashSet<usize>,
    /// Retryable refusals.
    refused: usize,
}

/// Sends requests one after another until `stop`, each until it gets a 200 (as an OTel SDK
/// retries), to the address in `http` (the process listening now).
async fn load(
    http: Arc<Mutex<SocketAddr>>,
    log: Arc<Mutex<ClientLog>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let body = request(i);
        loop {
            let to = *http.lock().unwrap();
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                raw::try_post_http(
                    to,
                    "/v1/traces",
                    &[("content-type", "application/x-protobuf")],
                    body.clone(),
                ),
            )
            .await;
            match r {
                Ok(Ok(r)) if r.status == 200 => {
                    log.lock().unwrap().accepted.push((i, body, Instant::now()));
                    break;
                }
                Ok(Err(_)) | Err(_) => {
                    log.lock().unwrap().ambiguous.insert(i);
                }
                Ok(Ok(r)) => {
                    assert!(
                        matches!(r.status, 429 | 503),
                        "only retryable refusals: {}",
                        r.status
                    );
                    log.lock().unwrap().refused += 1;
                }
            }
            // A client's pause before it retries.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        i += 1;
    }
}

async fn period_total(admin: SocketAddr) -> u64 {
    let (status, body) = http_get(admin, "/api/v1/slos").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["slos"][0]["period_total"].as_f64().unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_only_the_memory_queue_and_one_snapshot_interval() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::Unavailable);
    let config = dir.path().join("slipstream.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    grpc: {{ endpoint: 127.0.0.1:0 }}
    http: {{ endpoint: 127.0.0.1:0 }}
admin: {{ endpoint: 127.0.0.1:0 }}
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
forward:
  endpoint: {sink}
  protocol: grpc
  queue:
    max_bytes: 64KiB
    spill: {{ dir: {dir}/spill, max_bytes: 256MiB }}
  retry: {{ initial_interval: 50ms, max_interval: 200ms }}
aggregator:
  tick_interval: 500ms
state:
  dir: {dir}/state
  snapshot_interval: 1s
slo:
  evaluation_interval: 1s
  templates: {{ availability: null, latency: null }}
  objectives:
    - name: orders-availability
      service: orders
      sli: {{ kind: availability }}
      objective: 99.9
",
            sink = sink.url(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();

    let first = Slipstream::start(&config).await;
    let admin = first.admin;
    let http = Arc::new(Mutex::new(first.ready.otlp_http()));
    let log = Arc::new(Mutex::new(ClientLog::default()));
    let accepted = || log.lock().unwrap().accepted.len();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = tokio::spawn(load(http.clone(), log.clone(), stop.clone()));

    // Under load with the downstream down until the memory queue is full and the rest goes
    // to the spill, over 50 requests were accepted, and at least half of them before the
    // loss window and a snapshot since (so the restored SLO count is held to most of what
    // was accepted, not only to what came after the restart).
    eventually_async(
        "the spill in use, and half of over 50 requests accepted and saved before the loss window",
        Duration::from_secs(60),
        || async {
            let spilled = self_metric(admin, "slipstream_forward_spill_requests", &[]).await;
            let snapshots = self_metric(
                admin,
                "slipstream_state_snapshots_total",
                &["outcome=\"ok\""],
            )
            .await;
            let (n, old) = {
                let log = log.lock().unwrap();
                let cutoff = Instant::now() - LOSS_WINDOW;
                let old = log.accepted.iter().filter(|(_, _, at)| *at < cutoff).count();
                (log.accepted.len(), old)
            };
            if spilled > 0.0 && n > 50 && old * 2 >= n && snapshots >= 2.0 {
                Ok(())
            } else {
                Err(format!(
                    "{spilled} spilled, {n} accepted, {old} before the loss window, {snapshots} snapshots"
                ))
            }
        },
    )
    .await;
    let in_memory = self_metric(admin, "slipstream_forward_queue_requests", &[]).await as usize;
    let accepted_at_sample = log.lock().unwrap().accepted.len();
    assert!(
        self_metric(admin, "slipstream_forward_spill_requests", &[]).await > 0.0,
        "the spill is in use"
    );
    let killed_at = Instant::now();
    first.kill9();
    let accepted_between = log.lock().unwrap().accepted.len() - accepted_at_sample;

    // Started again on the same directories while the client keeps retrying (on the new
    // process's port from now on).
    let second = Slipstream::start(&config).await;
    let admin = second.admin;
    *http.lock().unwrap() = second.ready.otlp_http();
    // Load on the restarted process with the downstream still down, then with it back.
    let more_accepted = |what: &'static str, n: usize| {
        let from = accepted();
        eventually_async(what, Duration::from_secs(30), move || {
            let got = accepted() - from;
            std::future::ready(if got >= n { Ok(()) } else { Err(got) })
        })
    };
    more_accepted("10 requests accepted by the restarted process", 10).await;
    sink.set_mode(SinkMode::Accept);
    more_accepted("10 requests accepted with the downstream back", 10).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    client.await.unwrap();

    let log = std::mem::take(&mut *log.lock().unwrap());
    let accepted_spans = log.accepted.len() * SPANS_PER_REQUEST;
    assert!(log.accepted.len() > 50, "too little load: {log:?}");

    // Forwarding: wait until what can arrive has arrived.
    let before_kill: Vec<&(usize, Vec<u8>, Instant)> = log
        .accepted
        .iter()
        .filter(|(_, _, at)| *at < killed_at)
        .collect();
    let after_restart = log.accepted.len() - before_kill.len();
    eventually_async(
        "the queue and spill drained",
        Duration::from_secs(60),
        || async {
            let queued = self_metric(admin, "slipstream_forward_queue_requests", &[]).await
                + self_metric(admin, "slipstream_forward_spill_requests", &[]).await;
            if queued == 0.0 { Ok(()) } else { Err(queued) }
        },
    )
    .await;
    // Exports may join queued requests: a request (one resource) is delivered when an export
    // holds an entry equal to its body.
    let delivered: HashSet<Vec<u8>> = sink
        .received()
        .iter()
        .flat_map(|r| resource_entries(&r.body).into_iter().map(<[u8]>::to_vec))
        .collect();
    let lost: Vec<usize> = log
        .accepted
        .iter()
        .filter(|(_, body, _)| !delivered.contains(body))
        .map(|(i, _, _)| *i)
        .collect();
    let lost_after_restart = log
        .accepted
        .iter()
        .filter(|(_, body, at)| *at > killed_at && !delivered.contains(body))
        .count();
    println!(
        "accepted {} requests ({} before the kill, {after_restart} after), {} refused retryably, \
         {} ambiguous at the kill; {} lost with the killed process's memory queue \
         ({in_memory} were in it {accepted_between} requests before the kill)",
        log.accepted.len(),
        before_kill.len(),
        log.refused,
        log.ambiguous.len(),
        lost.len(),
    );
    assert_eq!(lost_after_restart, 0, "the restarted process lost nothing");
    assert!(
        lost.len() <= in_memory + accepted_between,
        "lost {} requests, more than the memory queue held ({in_memory} + {accepted_between})",
        lost.len()
    );

    // The restarted process accounts for everything it accepted.
    let received = self_metric(
        admin,
        "slipstream_receiver_requests_total",
        &["outcome=\"accepted\""],
    )
    .await;
    let recovered = self_metric(admin, "slipstream_forward_spill_recovered_requests", &[]).await;
    let sent = self_metric(admin, "slipstream_forward_sent_requests_total", &[]).await;
    let dropped = self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await;
    assert!(recovered > 0.0, "the killed process's spill was picked up");
    assert_eq!(
        (sent, dropped),
        (received + recovered, 0.0),
        "sent = accepted by the restarted process + recovered from the spill; none dropped"
    );

    // The SLO: the restored period count is off by at most what was accepted in the last
    // snapshot interval, aggregator tick and evaluation before the kill.
    let recent_spans = before_kill
        .iter()
        .filter(|(_, _, at)| killed_at.duration_since(*at) < LOSS_WINDOW)
        .count()
        * SPANS_PER_REQUEST;
    let ambiguous_spans = log.ambiguous.len() * SPANS_PER_REQUEST;
    let lower = accepted_spans - recent_spans;
    let total = eventually_async(
        &format!("an SLO period total of at least {lower}"),
        Duration::from_secs(10),
        || async {
            let total = period_total(admin).await as usize;
            if total >= lower {
                Ok(total)
            } else {
                Err(total)
            }
        },
    )
    .await;
    println!(
        "SLO period total {total} of {accepted_spans} spans accepted; at most {recent_spans} \
         could be lost"
    );
    assert!(
        (lower..=accepted_spans + ambiguous_spans).contains(&total),
        "period total {total} outside {lower}..={}",
        accepted_spans + ambiguous_spans
    );
    assert!(second.terminate(), "a graceful exit");
}
