//! Connections that send nothing cannot hold the door shut: the real binary, under a limit of
//! 1,024 open files, is sent 1,400 sockets that never send a byte (700 on each OTLP port).
//! With short deadlines configured, `/healthz` is answered at once and a legitimate OTLP
//! request within seconds, while the idle sockets are still held open by the client: each
//! listener's cap is fitted below the file limit, so the flood meets the cap (closed at once,
//! counted) rather than running the process out of descriptors, and the rest are closed by
//! their deadline. Refusals are logged a handful of times, not per connection.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipstream_e2e::process::slipstream_binary;
use slipstream_e2e::{eventually_async, http_get, otlp, raw, self_metric};
use slipstream_test_support::process::Running;
use tokio::net::TcpStream;

/// Sockets opened, against a limit of this many open files in slipstream.
const IDLE_SOCKETS: usize = 1400;
const NOFILE: u32 = 1024;

/// slipstream run under `prlimit --nofile` (which runs it in its own place: the process is
/// slipstream's), its stderr in a file; killed when dropped.
async fn start_limited(config: &Path, stderr: &Path) -> Running {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(slipstream_binary())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    Running::start_async(cmd).await
}

/// Lets this test process hold the idle sockets' ends: raises its own soft limit on open
/// files when it is below what the test needs (up to the hard limit).
fn raise_own_nofile(want: usize) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={want}:"))
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("could not raise this process's open-file limit to {want}; going on");
    }
}

/// [`eventually_async`] with each try bounded to 2 s (a listener full of idle sockets may
/// not answer at all); returns how long it took.
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    eventually_async(what, within, || {
        let attempt = f();
        async move {
            tokio::time::timeout(Duration::from_secs(2), attempt)
                .await
                .unwrap_or_else(|_| Err("no answer within 2 s".into()))
        }
    })
    .await;
    start.elapsed()
}

async fn healthz(admin: SocketAddr) -> Result<(), String> {
    let conn = TcpStream::connect(admin)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    drop(conn);
    match http_get(admin, "/healthz").await {
        (200, _) => Ok(()),
        (s, b) => Err(format!("{s} {b}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_past_the_open_file_limit_do_not_stop_requests_or_healthz() {
    raise_own_nofile(IDLE_SOCKETS + 512);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slipstream.yaml");
    std::fs::write(
        &config,
        "receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: { endpoint: 127.0.0.1:0 }
    connections:
      handshake_timeout: 3s
      header_timeout: 3s
      idle_timeout: 5s
      body_timeout: 1s
admin: { endpoint: 127.0.0.1:0 }
exporters:
  prometheus: { endpoint: null }
state: { dir: null }
",
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let mut proc = start_limited(&config, &stderr).await;
    let (grpc, http, admin) = (
        proc.ready.otlp_grpc(),
        proc.ready.otlp_http(),
        proc.ready.admin(),
    );
    eventually(
        "slipstream healthy at start",
        Duration::from_secs(30),
        || {
            let exited = proc.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    panic!("slipstream exited at start: {status}");
                }
                healthz(admin).await
            }
        },
    )
    .await;

    // 1,400 sockets that never send a byte, held open by this process throughout.
    let opening = Instant::now();
    let mut idle = Vec::with_capacity(IDLE_SOCKETS);
    for i in 0..IDLE_SOCKETS {
        let to = if i % 2 == 0 { grpc } else { http };
        match TcpStream::connect(to).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("idle socket {i} to {to} could not connect: {e}"),
        }
    }
    let attacked = Instant::now();

    // The admin server has descriptors of its own: /healthz answers during the flood.
    let health = eventually("/healthz answered 200", Duration::from_secs(20), || {
        healthz(admin)
    })
    .await;
    // The OTLP listeners are full of idle connections until their deadline frees them.
    let request = otlp::trace_request("checkout", 10, |i| format!("GET /item/{i}"));
    let took = eventually(
        "a legitimate OTLP/HTTP request answered 200",
        Duration::from_secs(20),
        || {
            let body = request.clone();
            async move {
                let r = raw::try_post_http(
                    http,
                    "/v1/traces",
                    &[("content-type", "application/x-protobuf")],
                    body,
                )
                .await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("status {}", r.status))
                }
            }
        },
    )
    .await;
    eprintln!(
        "{} idle sockets opened in {:?} and held: /healthz answered after {health:?}, an OTLP request after a further {took:?}",
        idle.len(),
        attacked - opening,
    );

    // The cap was fitted below the open-file limit and met (so the test tried what it
    // claims), and every idle socket was closed, at accept past the cap or by its deadline.
    let metric = |name: &'static str, label: &'static str| async move {
        self_metric(admin, name, &[label]).await
    };
    let over_limit = metric(
        "slipstream_receiver_connections_closed_total",
        "reason=\"over_limit\"",
    )
    .await;
    assert!(over_limit > 0.0, "no connection met the cap");
    eventually(
        "every idle socket closed",
        Duration::from_secs(30),
        || async {
            let timed_out = metric(
                "slipstream_receiver_connections_closed_total",
                "reason=\"handshake_timeout\"",
            )
            .await;
            if timed_out + over_limit >= IDLE_SOCKETS as f64 {
                Ok(())
            } else {
                Err(format!("{timed_out} timed out, {over_limit} over the cap"))
            }
        },
    )
    .await;
    let closed_at = Instant::now();
    let open = metric("slipstream_receiver_open_connections", "listener=\"otlp/").await;
    assert!(open <= 2.0, "{open} OTLP connections still open");
    let emfile = metric(
        "slipstream_receiver_accept_errors_total",
        "kind=\"too_many_open_files\"",
    )
    .await;
    eprintln!(
        "all {IDLE_SOCKETS} idle sockets closed {:?} after they opened: {over_limit} at once over the cap, the others by their deadline; {emfile} accepts failed for the file limit",
        closed_at - attacked
    );
    drop(idle);

    // A handful of log lines about it, not one per connection or failed accept.
    let log = std::fs::read_to_string(&stderr).unwrap();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (fitted, accept, cap, emfile_lines) = (
        count("does not fit the open-file limit"),
        count("accept failed"),
        count("connection limit reached"),
        count("Too many open files"),
    );
    eprintln!(
        "log: {fitted} line on the fitted cap, {cap} on the cap reached, {accept} on failed accepts, {emfile_lines} naming \"Too many open files\""
    );
    assert_eq!(fitted, 1, "{log}");
    assert!(
        accept + cap <= 6 && emfile_lines <= 6,
        "{} lines about refused connections or failed accepts in the log:\n{log}",
        accept + cap
    );
}
