//! Overload on loopback, bounded in time: the downstream is down, clients keep sending large
//! requests; slipstream's resident memory stays near its limit because past it new requests
//! get the retryable 503 (counted as `memory_limit`), nothing it accepted is lost, and it
//! accepts again by itself once the downstream is back and the queue drains.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use slipstream_test_support::eventually;
use slipstream_test_support::http::{blocking_post, blocking_self_metric};
use slipstream_test_support::process::Running;

const BIN: &str = env!("CARGO_BIN_EXE_slipstream");
const MIB: u64 = 1 << 20;

/// An OTLP/HTTP downstream answering 503 until `up`, then 200; counts the `ResourceSpans`
/// entries it accepted. Each request the test sends holds one, and the forwarder may join
/// queued requests into one export, so entries, not exports, are what must all arrive.
struct Downstream {
    port: u16,
    up: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

fn serve(mut s: TcpStream, up: Arc<AtomicBool>, accepted: Arc<AtomicU64>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if up.load(Ordering::SeqCst) {
            accepted.fetch_add(resource_spans(&body), Ordering::SeqCst);
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
        };
        if s.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The top-level field 1 entries (`resource_spans`) of a protobuf `ExportTraceServiceRequest`.
fn resource_spans(body: &[u8]) -> u64 {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        while let Some(&byte) = b.get(*at) {
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        v
    }
    let (mut at, mut n) = (0usize, 0u64);
    while at < body.len() {
        let tag = varint(body, &mut at);
        at += match tag & 7 {
            0 => {
                varint(body, &mut at);
                0
            }
            1 => 8,
            2 => varint(body, &mut at) as usize,
            5 => 4,
            other => panic!("wire type {other} in a forwarded body"),
        };
        n += u64::from(tag >> 3 == 1);
    }
    n
}

impl Downstream {
    fn start() -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, accepted) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (u, a) = (up.clone(), accepted.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (u, a) = (u.clone(), a.clone());
                std::thread::spawn(move || serve(s, u, a));
            }
        });
        Downstream { port, up, accepted }
    }
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// An OTLP/JSON request of about 1 MiB: 1,000 spans with a 900-byte attribute each.
fn big_body() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let pad = "p".repeat(900);
    let spans: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"GET /","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"pad","value":{{"stringValue":"{pad}"}}}}]}}"#,
                i + 1,
                i + 1,
                now - 5_000_000,
                now
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"load"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// POSTs `body` as OTLP/JSON; returns the status code (0 when the connection failed).
fn post(http: SocketAddr, path: &str, body: &str) -> u16 {
    blocking_post(http, path, "application/json", body.as_bytes()).unwrap_or(0)
}

fn metric(admin: SocketAddr, name: &str, label: &str) -> f64 {
    blocking_self_metric(admin, name, &[label]).unwrap_or(0.0)
}

#[test]
fn over_the_memory_limit_requests_are_refused_retryably_and_nothing_accepted_is_lost() {
    let down = Downstream::start();
    let dir = std::env::temp_dir().join(format!("slipstream-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let limit = 160 * MIB;
    let config = format!(
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\nforward:\n  endpoint: http://127.0.0.1:{}\n  protocol: http\n  queue:\n    max_bytes: 2GiB\n  retry:\n    initial_interval: 20ms\n    max_interval: 100ms\nmemory:\n  limit: {limit}\n  check_interval: 20ms\n",
        down.port
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let proc = Running::start(cmd);
    let (http, admin) = (proc.ready.otlp_http(), proc.ready.admin());
    let pid = proc.pid();
    eventually("the receiver answering", Duration::from_secs(10), || {
        post(http, "/nothing", "") == 404
    });

    // Downstream down: every accepted request stays queued, so memory grows until the limit
    // refuses more. A queue of 2 GiB would allow far more than the limit.
    let body = big_body();
    let (mut ok, mut refused, mut peak) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while refused < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no memory refusal after {ok} accepted requests (RSS {} MiB)",
            rss(pid) / MIB
        );
        match post(http, "/v1/traces", &body) {
            200 => ok += 1,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
        peak = peak.max(rss(pid));
    }
    assert!(ok > 20, "accepted {ok} before refusing");
    assert!(
        metric(
            admin,
            "slipstream_receiver_refused_requests_total",
            "reason=\"memory_limit\""
        ) >= 20.0
    );
    // The limit holds, give or take the requests in flight when it was crossed.
    assert!(
        peak < limit + 64 * MIB,
        "peak RSS {} MiB over a {} MiB limit",
        peak / MIB,
        limit / MIB
    );

    // Downstream back: the queue drains and slipstream accepts again by itself. Draining
    // takes well under a second; without giving the freed memory back to the system
    // (`src/allocator.rs`), the allocator kept it resident and the refusals went on for tens
    // of seconds, or for good.
    down.up.store(true, Ordering::SeqCst);
    eventually(
        "an accepted request after the downstream came back",
        Duration::from_secs(20),
        || match post(http, "/v1/traces", &body) {
            200 => Ok(()),
            status => Err(format!(
                "{status}, RSS {} MiB, downstream got {} of {ok}",
                rss(pid) / MIB,
                down.accepted.load(Ordering::SeqCst)
            )),
        },
    );
    ok += 1;
    // Every request slipstream accepted reaches the downstream.
    eventually(
        "every accepted request at the downstream",
        Duration::from_secs(60),
        || {
            let got = down.accepted.load(Ordering::SeqCst);
            if got >= ok {
                Ok(())
            } else {
                Err(format!("{got} of {ok}"))
            }
        },
    );
    assert_eq!(down.accepted.load(Ordering::SeqCst), ok);
    assert_eq!(
        metric(
            admin,
            "slipstream_forward_dropped_requests_total",
            "signal=\"traces\""
        ),
        0.0
    );
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
}
