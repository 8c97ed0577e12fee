//! The forward queue spills to disk: a 10-minute downstream outage at 5,000 spans/s (3 million
//! spans, sent here as fast as slipstream takes them) loses nothing and refuses nothing,
//! survives a restart in the middle, and everything is delivered, once, when the downstream
//! is back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use slipstream_app::app::App;
use slipstream_e2e::otlp::resource_entries;
use slipstream_e2e::{DownPort, eventually_async, otlp, raw, self_metric, start, test_config};

/// 10 minutes at 5,000 spans/s.
const SPANS: usize = 10 * 60 * 5_000;
const PER_REQUEST: usize = 1_000;
const REQUESTS: usize = SPANS / PER_REQUEST;

/// Request `i`: its first span's name makes the body unique.
fn request(i: usize) -> Bytes {
    Bytes::from(otlp::trace_request("orders", PER_REQUEST, |j| {
        if j == 0 {
            format!("request {i}")
        } else {
            format!("GET /orders/{}", j % 50)
        }
    }))
}

async fn send(app: &App, from: usize, to: usize, sent: &mut Vec<Bytes>) {
    for i in from..to {
        let body = request(i);
        let r = raw::post_traces(app.http_addr.unwrap(), body.to_vec()).await;
        assert_eq!(r.status, 200, "request {i} refused: nothing may be refused");
        sent.push(body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_minute_outage_with_a_restart_loses_nothing() {
    let spill = tempfile::tempdir().unwrap();
    let down = DownPort::hold();
    let port = down.port();
    let url = format!("http://127.0.0.1:{port}");
    let cfg = test_config(
        Some(("grpc", &url)),
        &format!(
            "  queue:\n    max_bytes: 4MiB\n    spill:\n      dir: {}\n      max_bytes: 1GiB\nshutdown:\n  drain_timeout: 1s\n",
            spill.path().display()
        ),
    );
    let mut sent = Vec::with_capacity(REQUESTS);

    // The first half of the outage.
    let app = start(cfg.clone()).await;
    let admin = app.admin_addr.unwrap();
    send(&app, 0, REQUESTS / 2, &mut sent).await;
    let spilled = self_metric(admin, "slipstream_forward_spill_requests", &[]).await;
    let in_memory = self_metric(admin, "slipstream_forward_queue_requests", &[]).await;
    assert_eq!(
        spilled + in_memory,
        (REQUESTS / 2) as f64,
        "every accepted request is in memory or on disk"
    );
    assert!(
        spilled > in_memory,
        "most went to disk: {spilled} vs {in_memory}"
    );
    // A restart: the drain deadline passes with the downstream still down, so what was in
    // memory goes to the spill too.
    app.shutdown().await;

    let app = start(cfg.clone()).await;
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(admin, "slipstream_forward_spill_requests", &[]).await,
        (REQUESTS / 2) as f64,
        "the restarted process found every request of the first half on disk"
    );
    send(&app, REQUESTS / 2, REQUESTS, &mut sent).await;
    assert_eq!(
        self_metric(admin, "slipstream_receiver_refused_requests_total", &[]).await,
        0.0
    );

    // The downstream is back.
    let sink = down.start_sink().await;
    let started = Instant::now();
    // Exports may join requests waiting in memory: each request (one resource) is found as
    // an entry of the export that carried it.
    let got = sink
        .wait_for(
            Duration::from_secs(300),
            "every request of the outage",
            |r| {
                r.iter()
                    .map(|r| resource_entries(&r.body).len())
                    .sum::<usize>()
                    >= REQUESTS
            },
        )
        .await;
    let drained = started.elapsed();
    let mut delivered: HashMap<&[u8], usize> = HashMap::new();
    for r in &got {
        for entry in resource_entries(&r.body) {
            *delivered.entry(entry).or_default() += 1;
        }
    }
    let missing = sent
        .iter()
        .filter(|b| !delivered.contains_key(&b[..]))
        .count();
    let repeated = delivered.values().filter(|&&n| n > 1).count();
    assert_eq!(
        (missing, repeated),
        (0, 0),
        "every request delivered exactly once"
    );
    assert_eq!(delivered.len(), REQUESTS, "nothing else delivered");
    println!(
        "{SPANS} spans in {REQUESTS} requests delivered {drained:?} after the downstream came back"
    );

    // The spill is empty again and nothing was dropped.
    eventually_async("the spill emptied", Duration::from_secs(10), || async {
        let n = self_metric(admin, "slipstream_forward_spill_requests", &[]).await;
        if n == 0.0 { Ok(()) } else { Err(n) }
    })
    .await;
    assert_eq!(
        self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await,
        0.0
    );
    let left: Vec<_> = std::fs::read_dir(spill.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    app.shutdown().await;
}
