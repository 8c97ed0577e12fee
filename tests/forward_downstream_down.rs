//! Downstream down: once the forward queue is full the receivers answer with the OTLP spec's
//! retryable backpressure; when the downstream returns, everything accepted is delivered. A
//! downstream slower than the export timeout gets everything at least once.
//!
//! The forwarder joins requests waiting in its queue into one export, so what the downstream
//! gets is compared request by request through its entries (each request here is one resource),
//! not through the exports' boundaries.

use std::collections::HashMap;
use std::time::Duration;

use slipstream_core::rpc::{RpcStatus, base64_decode};
use slipstream_e2e::otlp::resource_entries;
use slipstream_e2e::{
    DownPort, Received, Sink, SinkMode, eventually_async, http_get, otlp, raw, self_metric,
    spans_in, start, test_config,
};

fn request(i: usize) -> Vec<u8> {
    otlp::trace_request("orders", 10, |j| {
        format!("req {i} span {j} {}", "x".repeat(100))
    })
}

/// How many times each resource entry arrived at the sink, over every export.
fn entries_in(received: &[Received]) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    for r in received {
        for entry in resource_entries(&r.body) {
            *seen.entry(entry.to_vec()).or_default() += 1;
        }
    }
    seen
}

/// Requests `0..n` each arrived exactly once, and nothing else did.
fn assert_each_once(received: &[Received], n: usize) {
    let seen = entries_in(received);
    let missing = (0..n).filter(|&i| !seen.contains_key(&request(i))).count();
    let repeated = seen.values().filter(|&&k| k > 1).count();
    assert_eq!(
        (missing, repeated, seen.len()),
        (0, 0, n),
        "every accepted request delivered exactly once, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_while_down_then_everything_accepted_is_delivered() {
    let down = DownPort::hold();
    let port = down.port();
    let url = format!("http://127.0.0.1:{port}");
    let app = start(test_config(
        Some(("grpc", &url)),
        "  queue:\n    max_bytes: 16KiB\n    retry_after: 2s\n",
    ))
    .await;
    let admin = app.admin_addr.unwrap();
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(
        status, 503,
        "not ready while the downstream is unreachable: {body}"
    );

    // Fill the queue over HTTP until refused.
    let mut accepted = 0usize;
    let refused = loop {
        let r = raw::post_traces(app.http_addr.unwrap(), request(accepted)).await;
        if r.status == 200 {
            accepted += 1;
            assert!(accepted < 1000, "the queue never filled");
            continue;
        }
        break r;
    };
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after").as_deref(), Some("2"));
    // gRPC gets UNAVAILABLE with RetryInfo.
    let r = raw::post_grpc(
        app.grpc_addr.unwrap(),
        raw::TRACES,
        &[],
        raw::grpc_frame(&request(9999)),
    )
    .await;
    assert_eq!(r.grpc_status(), Some(14));
    let details = r
        .header("grpc-status-details-bin")
        .expect("RetryInfo details");
    let status =
        <RpcStatus as prost::Message>::decode(&base64_decode(&details).unwrap()[..]).unwrap();
    assert_eq!(status.retry_delay(), Some(Duration::from_secs(2)));
    assert!(
        self_metric(
            admin,
            "slipstream_receiver_refused_requests_total",
            &["reason=\"queue_full\""]
        )
        .await
            >= 2.0
    );

    // The downstream comes back, first answering UNAVAILABLE (to a few attempts), then
    // accepting.
    let sink = down.start_sink().await;
    sink.set_mode(SinkMode::Unavailable);
    eventually_async(
        "3 attempts refused by the downstream",
        Duration::from_secs(10),
        || {
            std::future::ready(if sink.refused() >= 3 {
                Ok(())
            } else {
                Err(sink.refused())
            })
        },
    )
    .await;
    sink.set_mode(SinkMode::Accept);
    let got = sink
        .wait_for(Duration::from_secs(30), "every accepted request", |r| {
            entries_in(r).values().sum::<usize>() >= accepted
        })
        .await;
    assert_each_once(&got, accepted);
    assert_eq!(spans_in(&got).len(), accepted * 10);
    assert!(self_metric(admin, "slipstream_forward_retries_total", &[]).await > 0.0);
    assert_eq!(
        self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await,
        0.0
    );
    eventually_async(
        "ready once the downstream is back",
        Duration::from_secs(10),
        || async { http_get(admin, "/readyz").await.0 == 200 },
    )
    .await;
    // Room again: new requests are accepted.
    let r = raw::post_traces(app.http_addr.unwrap(), request(0)).await;
    assert_eq!(r.status, 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_queue_within_the_deadline() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::Unavailable);
    let app = start(test_config(
        Some(("http", &sink.url())),
        "shutdown:\n  drain_timeout: 20s\n",
    ))
    .await;
    for i in 0..20 {
        let r = raw::post_traces(app.http_addr.unwrap(), request(i)).await;
        assert_eq!(r.status, 200);
    }
    // The downstream comes back once the drain has met it down.
    let s = sink.clone();
    let refused = sink.refused();
    tokio::spawn(async move {
        eventually_async("a drain attempt refused", Duration::from_secs(10), || {
            std::future::ready(s.refused() > refused)
        })
        .await;
        s.set_mode(SinkMode::Accept);
    });
    app.shutdown().await;
    // Shutdown waited for the queue to drain.
    assert_each_once(&sink.received(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_slower_than_the_timeout_gets_everything_at_least_once() {
    let sink = Sink::start().await;
    // Slower than forward.timeout: every export times out and is retried.
    sink.set_delay(Duration::from_millis(800));
    let app = start(test_config(
        Some(("grpc", &sink.url())),
        "  timeout: 200ms\n  queue:\n    max_bytes: 1MiB\n",
    ))
    .await;
    let admin = app.admin_addr.unwrap();
    let sent: Vec<Vec<u8>> = (0..40).map(request).collect();
    for body in &sent {
        let r = raw::post_traces(app.http_addr.unwrap(), body.clone()).await;
        assert_eq!(r.status, 200);
    }
    eventually_async("4 timeouts counted", Duration::from_secs(20), || async {
        let n = self_metric(
            admin,
            "slipstream_forward_retries_total",
            &["reason=\"timeout\""],
        )
        .await;
        if n >= 4.0 { Ok(()) } else { Err(n) }
    })
    .await;
    // The downstream recovers.
    sink.set_delay(Duration::ZERO);
    eventually_async("the queue drained", Duration::from_secs(30), || async {
        let n = self_metric(admin, "slipstream_forward_queue_requests", &[]).await;
        if n == 0.0 { Ok(()) } else { Err(n) }
    })
    .await;
    // At least once: a timed-out export may have been taken, so the sink can hold repeats,
    // but every request is there, and slipstream counts each delivered once, none dropped.
    let got = entries_in(&sink.received());
    assert!(
        sent.iter().all(|b| got.contains_key(b)),
        "a request never arrived"
    );
    let accepted = self_metric(
        admin,
        "slipstream_receiver_requests_total",
        &["outcome=\"accepted\""],
    )
    .await;
    assert_eq!(
        (
            self_metric(admin, "slipstream_forward_sent_requests_total", &[]).await,
            self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await,
        ),
        (accepted, 0.0),
        "received = forwarded + dropped (zero)"
    );
    app.shutdown().await;
}
