use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipstream_config::exporters::DeliveryConfig;
use slipstream_config::forward::RetryConfig;
use slipstream_core::Registry;
use tokio::sync::{Semaphore, mpsc};

use super::*;

const EXPORTER: &str = "test";

fn config(queue_size: usize, max_elapsed: Option<Duration>) -> DeliveryConfig {
    DeliveryConfig {
        queue_size,
        timeout: Duration::from_secs(5),
        headers: Default::default(),
        retry: RetryConfig {
            initial_interval: Duration::from_millis(2),
            max_interval: Duration::from_millis(10),
            max_elapsed_time: max_elapsed,
        },
        tls: None,
    }
}

fn value(registry: &Registry, name: &str, labels: &[&str]) -> i128 {
    registry.value(name, labels).unwrap_or(0)
}

fn dropped(registry: &Registry, reason: &str) -> i128 {
    value(
        registry,
        "slipstream_exporter_dropped_total",
        &[EXPORTER, reason],
    )
}

/// A send function that answers each attempt from a script (then `Ok`), recording what it
/// was called with.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Result<(), SendError>>>>,
    calls: Arc<Mutex<Vec<(u32, Instant)>>>,
}

impl Script {
    fn new(answers: impl IntoIterator<Item = Result<(), SendError>>) -> Self {
        let s = Script::default();
        s.answers.lock().unwrap().extend(answers);
        s
    }

    fn start(&self, cfg: &DeliveryConfig, registry: &Registry) -> Delivery<u32> {
        let s = self.clone();
        Delivery::start(EXPORTER, cfg, registry, move |item: &u32| {
            s.calls.lock().unwrap().push((*item, Instant::now()));
            let answer = s.answers.lock().unwrap().pop_front().unwrap_or(Ok(()));
            async move { answer }
        })
    }

    fn calls(&self) -> Vec<u32> {
        self.calls.lock().unwrap().iter().map(|c| c.0).collect()
    }
}

fn retryable() -> Result<(), SendError> {
    Err(SendError::retryable(FailureReason::Unreachable, None, ""))
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_item_and_never_blocks() {
    let registry = Registry::new();
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let d = {
        let (gate, delivered) = (gate.clone(), delivered.clone());
        Delivery::start(EXPORTER, &config(2, None), &registry, move |item: &u32| {
            let (gate, delivered, started_tx, item) =
                (gate.clone(), delivered.clone(), started_tx.clone(), *item);
            async move {
                let _ = started_tx.send(item);
                gate.acquire().await.unwrap().forget();
                delivered.lock().unwrap().push(item);
                Ok(())
            }
        })
    };
    d.push(0);
    assert_eq!(started.recv().await, Some(0));
    // The worker holds item 0; the queue holds two more. 1 is dropped for 3.
    for i in 1..=3 {
        d.push(i);
    }
    assert_eq!(d.queued(), 2);
    assert_eq!(dropped(&registry, "queue_full"), 1);
    assert_eq!(
        value(&registry, "slipstream_exporter_queue_length", &[EXPORTER]),
        2
    );
    gate.add_permits(3);
    eventually("three deliveries", || delivered.lock().unwrap().len() == 3).await;
    assert_eq!(*delivered.lock().unwrap(), vec![0, 2, 3]);
    assert_eq!(
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]),
        3
    );
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn retryable_failures_are_retried_until_success_and_counted() {
    let registry = Registry::new();
    let script = Script::new([
        retryable(),
        Err(SendError::retryable(FailureReason::HttpStatus, None, "")),
    ]);
    let d = script.start(&config(10, None), &registry);
    d.push(7);
    d.push(8);
    eventually("two deliveries", || {
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]) == 2
    })
    .await;
    assert_eq!(
        script.calls(),
        vec![7, 7, 7, 8],
        "in order, 7 retried first"
    );
    let failures = |reason| {
        value(
            &registry,
            "slipstream_exporter_failures_total",
            &[EXPORTER, reason],
        )
    };
    assert_eq!((failures("unreachable"), failures("http_status")), (1, 1));
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_longer_retry_after_is_honoured() {
    let registry = Registry::new();
    let script = Script::new([Err(SendError::retryable(
        FailureReason::HttpStatus,
        Some(Duration::from_millis(150)),
        "",
    ))]);
    let d = script.start(&config(10, None), &registry);
    d.push(1);
    eventually("the retry", || script.calls().len() == 2).await;
    let calls = script.calls.lock().unwrap().clone();
    let waited = calls[1].1 - calls[0].1;
    assert!(
        waited >= Duration::from_millis(150),
        "retried after {waited:?}"
    );
    drop(d);
}

#[tokio::test]
async fn a_permanent_failure_drops_the_item_and_moves_on() {
    let registry = Registry::new();
    let script = Script::new([Err(SendError::permanent(FailureReason::HttpStatus, ""))]);
    let d = script.start(&config(10, None), &registry);
    d.push(1);
    d.push(2);
    eventually("the second item", || {
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]) == 1
    })
    .await;
    assert_eq!(script.calls(), vec![1, 2]);
    assert_eq!(dropped(&registry, "rejected"), 1);
    assert_eq!(
        value(
            &registry,
            "slipstream_exporter_failures_total",
            &[EXPORTER, "http_status"]
        ),
        1
    );
    assert_eq!(d.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn retries_stop_after_max_elapsed_time() {
    let registry = Registry::new();
    let script = Script::new(std::iter::repeat_n(retryable(), 1000));
    let d = script.start(&config(10, Some(Duration::from_millis(40))), &registry);
    let t0 = Instant::now();
    d.push(1);
    eventually("the drop", || dropped(&registry, "retries_exhausted") == 1).await;
    assert!(t0.elapsed() <= Duration::from_millis(500));
    let attempts = script.calls().len() as i128;
    assert!(attempts >= 2, "{attempts} attempts");
    assert_eq!(
        value(
            &registry,
            "slipstream_exporter_failures_total",
            &[EXPORTER, "unreachable"]
        ),
        attempts
    );
    assert_eq!(
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]),
        0
    );
    // The next item is tried after the drop.
    d.push(2);
    eventually("item 2 tried", || script.calls().contains(&2)).await;
    drop(d);
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued() {
    let registry = Registry::new();
    let script = Script::new([retryable()]);
    let d = script.start(&config(10, None), &registry);
    let queue = d.queue();
    for i in 0..5 {
        queue.push(i);
    }
    assert_eq!(d.shutdown(Duration::from_secs(2)).await, 0);
    assert_eq!(script.calls(), vec![0, 0, 1, 2, 3, 4]);
    assert_eq!(
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]),
        5
    );
    // Pushes after shutdown are dropped and counted.
    queue.push(9);
    assert_eq!(dropped(&registry, "shutdown"), 1);
}

#[tokio::test]
async fn shutdown_counts_what_the_deadline_leaves_undelivered() {
    let registry = Registry::new();
    let script = Script::new(std::iter::repeat_n(retryable(), 100_000));
    let d = script.start(&config(10, None), &registry);
    for i in 0..3 {
        d.push(i);
    }
    let t0 = Instant::now();
    assert_eq!(d.shutdown(Duration::from_millis(50)).await, 3);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(dropped(&registry, "shutdown"), 3);
    assert_eq!(
        value(&registry, "slipstream_exporter_queue_length", &[EXPORTER]),
        0
    );
}

#[tokio::test]
async fn a_hung_attempt_times_out_and_is_retried() {
    let registry = Registry::new();
    let calls = Arc::new(Mutex::new(0u32));
    let mut cfg = config(10, None);
    cfg.timeout = Duration::from_millis(30);
    let d = {
        let calls = calls.clone();
        Delivery::start(EXPORTER, &cfg, &registry, move |_: &u32| {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            async move {
                if n == 1 {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
    };
    d.push(1);
    eventually("the delivery", || {
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]) == 1
    })
    .await;
    assert_eq!(
        value(
            &registry,
            "slipstream_exporter_failures_total",
            &[EXPORTER, "timeout"]
        ),
        1
    );
    drop(d);
}

#[test]
fn backoff_doubles_up_to_the_maximum_with_jitter() {
    let (initial, max) = (Duration::from_millis(100), Duration::from_secs(1));
    for _ in 0..100 {
        let first = backoff(initial, max, 0);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        let third = backoff(initial, max, 2);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480));
        assert!(backoff(initial, max, 40) <= max);
    }
}

// === post ===

/// A server answering every request with `status` (and `Retry-After: 2` on 503) after
/// `delay`.
async fn answering(status: u16, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                    if status == 503 {
                        resp.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// What `post` made of the answer: success, or the failure's reason and retry verdict.
async fn post_to(addr: SocketAddr, timeout: Duration) -> Result<(), (FailureReason, Retry)> {
    let client = http_client("test", Duration::from_secs(1), None).unwrap();
    let url = http_url("url", &format!("http://{addr}/hook")).unwrap();
    post(
        &client,
        &url,
        &HeaderMap::new(),
        "application/json",
        Bytes::from_static(b"{}"),
        timeout,
    )
    .await
    .map_err(|e| (e.reason, e.retry))
}

#[tokio::test]
async fn post_classifies_answers() {
    let t = Duration::from_secs(2);
    assert_eq!(
        post_to(answering(200, Duration::ZERO).await, t).await,
        Ok(())
    );
    assert_eq!(
        post_to(answering(204, Duration::ZERO).await, t).await,
        Ok(())
    );
    assert_eq!(
        post_to(answering(503, Duration::ZERO).await, t).await,
        Err((
            FailureReason::HttpStatus,
            Retry::After(Some(Duration::from_secs(2)))
        ))
    );
    for status in [429, 500, 502, 504] {
        assert_eq!(
            post_to(answering(status, Duration::ZERO).await, t).await,
            Err((FailureReason::HttpStatus, Retry::After(None))),
            "{status}"
        );
    }
    for status in [400, 401, 404, 413] {
        assert_eq!(
            post_to(answering(status, Duration::ZERO).await, t).await,
            Err((FailureReason::HttpStatus, Retry::Never)),
            "{status}"
        );
    }
    assert_eq!(
        post_to(
            answering(200, Duration::from_secs(5)).await,
            Duration::from_millis(50)
        )
        .await,
        Err((FailureReason::Timeout, Retry::After(None)))
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    assert_eq!(
        post_to(closed, t).await,
        Err((FailureReason::Unreachable, Retry::After(None)))
    );
}

#[test]
fn http_and_https_urls_are_accepted() {
    assert!(http_url("x", "http://127.0.0.1:9093").is_ok());
    assert!(http_url("x", "https://alertmanager:9093").is_ok());
    assert!(
        http_url("x", "alertmanager:9093")
            .unwrap_err()
            .to_string()
            .contains("https://")
    );
    assert!(http_url("x", "ftp://alertmanager:9093").is_err());
}

#[test]
fn a_bad_tls_file_fails_the_client_naming_the_field() {
    let tls = slipstream_config::tls::ClientTlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let err = http_client("exporters.webhook", Duration::from_secs(1), Some(&tls))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("exporters.webhook.tls.ca_file: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn queues_sharing_an_exporter_name_add_up_in_the_length_gauge() {
    let registry = Registry::new();
    let gate = Arc::new(Semaphore::new(0));
    let start = |gate: Arc<Semaphore>| {
        Delivery::start(EXPORTER, &config(10, None), &registry, move |_: &u32| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok(())
            }
        })
    };
    let (a, b) = (start(gate.clone()), start(gate.clone()));
    for i in 0..3 {
        a.push(i);
        b.push(i);
    }
    let length = || value(&registry, "slipstream_exporter_queue_length", &[EXPORTER]);
    // Each worker holds one item in flight; two wait in each queue.
    eventually("both workers busy", || a.queued() == 2 && b.queued() == 2).await;
    assert_eq!(length(), 4);
    gate.add_permits(6);
    assert_eq!(a.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(b.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(length(), 0);
    assert_eq!(
        value(&registry, "slipstream_exporter_sent_total", &[EXPORTER]),
        6
    );
}
