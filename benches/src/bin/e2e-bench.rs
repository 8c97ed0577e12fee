//! The end-to-end benchmark: slipstream (release build, its own process) receives, aggregates,
//! evaluates SLOs and optionally forwards to a null sink, while `loadgen` (another process)
//! drives it. Reports spans per slipstream CPU-second (from /proc, so the client's cost is
//! excluded), peak RSS, and the latency of Export calls, at the maximum rate and then at half
//! of it.
//!
//! ```text
//! cargo build --release -p slipstream -p slipstream-benches --bin slipstream --bin loadgen --bin e2e-bench
//! target/release/e2e-bench [--protocol grpc|http] [--gzip] [--forward] [--series 1000|100000]
//!                          [--duration SECS] [--mode gateway|sidecar] [--rate SPANS_PER_S] [--idle]
//!                          [--tick DURATION] [--forward-compression none|gzip|zstd] [--refuse]
//!                          [--error-rate SHARE] [--no-explain] [--no-exemplars]
//!                          [--batch SIZE] [--sink-delay MS]
//! ```
//!
//! `--tick` sets slipstream's `aggregator.tick_interval` (default `5s`, slipstream's own
//! default); `--tick 60s` leaves out evaluation steps for most of a short run, to see what
//! they cost the Export calls. Each line also gives the evaluation steps run during the
//! load and the mean CPU and wall time of one (CPU from /proc, wall time from slipstream's
//! `slipstream_evaluation_step_seconds_total`).
//!
//! `--error-rate R` makes that share of the load's spans fail (loadgen's default otherwise);
//! `--no-explain` turns `aggregator.explain` off, to measure what counting the candidate
//! attributes costs against a run with it on (the default). `--no-exemplars` sets
//! `exemplars.enabled: false`, to measure what keeping exemplars costs likewise.
//!
//! `--forward-compression` forwards (as `--forward`) with that `forward.compression`.
//! `--batch SIZE` forwards (as `--forward`) with `forward.max_batch_bytes: SIZE` (`0` sends
//! each request alone; the default is `2MiB`),
//! requests waiting in the queue joined into one export. `--sink-delay MS` forwards (as
//! `--forward`) to a sink that answers each export after MS milliseconds, a downstream far
//! away or slow: with 4 export calls in flight, at most 4000/MS exports a second get through.
//! `--refuse` forwards to a sink that holds every export unanswered, with a 1 MiB
//! forward queue: once the queue is full every request is refused (`queue_full`), and the line
//! gives refused requests per slipstream CPU-second, to hold against the accepted requests per
//! CPU-second of a run without it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn target_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds so far of `pid`'s evaluation step thread (`slipstream-step`):
/// merging the shards, feeding and evaluating the SLOs, publishing.
fn step_cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == "slipstream-step" {
            return stat_cpu_seconds(&t.path().join("stat").to_string_lossy());
        }
    }
    0.0
}

/// User + system CPU seconds from a `stat` file of /proc.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / clk_tck()
}

/// Context switches (voluntary and not) of `pid`'s threads so far: how often its threads
/// parked and woke, a measure of the task hops the work takes.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut n = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if l.starts_with("voluntary_ctxt_switches")
                || l.starts_with("nonvoluntary_ctxt_switches")
            {
                n += l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    n
}

/// A `/proc/<pid>/status` value in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The status and body of a plain HTTP/1.0 GET.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((status, body))
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(status, _)| status)
}

/// Evaluation steps run so far and their wall time in seconds, from slipstream's own
/// metrics (`slipstream_evaluation_steps_total`, `slipstream_evaluation_step_seconds_total`).
fn steps_so_far(admin: SocketAddr) -> (f64, f64) {
    let body = http_get(admin, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let value = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("slipstream_evaluation_steps_total"),
        value("slipstream_evaluation_step_seconds_total"),
    )
}

/// A downstream that accepts every OTLP export (gRPC and HTTP) and discards it, after `delay`;
/// with `stall`, it answers only empty exports (the forwarder's reachability probes) and holds
/// every other one unanswered.
fn start_null_sink(stall: bool, delay: Duration) -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(
                        move |req: http::Request<hyper::body::Incoming>| async move {
                            let grpc = req
                                .headers()
                                .get("content-type")
                                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let data = body.is_ok_and(|b| b.len() > 5);
                            if stall && data {
                                std::future::pending::<()>().await;
                            }
                            if data && !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let body = if grpc {
                                let mut t = http::HeaderMap::new();
                                t.insert("grpc-status", http::HeaderValue::from_static("0"));
                                GrpcOk(Some(t)).boxed()
                            } else {
                                Full::new(bytes::Bytes::new()).boxed()
                            };
                            let mut resp = http::Response::new(body);
                            if grpc {
                                resp.headers_mut().insert(
                                    "content-type",
                                    http::HeaderValue::from_static("application/grpc"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http2()
                        .initial_stream_window_size(8 << 20)
                        .initial_connection_window_size(16 << 20)
                        .max_frame_size(1 << 20);
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
    });
    addr
}

/// A gRPC answer body: no message, then the given trailers.
struct GrpcOk(Option<http::HeaderMap>);

impl hyper::body::Body for GrpcOk {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|t| Ok(hyper::body::Frame::trailers(t))))
    }
}

struct Slipstream {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
    /// The run's directory (its config), removed when the run ends.
    dir: PathBuf,
}

impl Drop for Slipstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_slipstream(
    o: &Opts,
    forward: Option<SocketAddr>,
    series_dims: bool,
    grpc_forward: bool,
) -> Slipstream {
    let (tick, mode) = (&o.tick, &o.mode);
    let (g, h, a) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("slipstream-e2e-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let forward = match forward {
        Some(addr) => format!(
            "forward:\n  endpoint: http://{addr}\n  protocol: {}\n  compression: {}\n{}{}",
            if grpc_forward { "grpc" } else { "http" },
            o.forward_compression,
            o.batch
                .as_ref()
                .map_or_else(String::new, |b| format!("  max_batch_bytes: {b}\n")),
            if o.refuse {
                "  queue:\n    max_bytes: 1MiB\n"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    let dims = if series_dims {
        "  span_dimensions: [http.route]\n  max_series_per_service: 100000\n  max_series: 200000\n"
    } else {
        ""
    };
    let explain = if o.explain {
        ""
    } else {
        "  explain:\n    enabled: false\n"
    };
    let exemplars = if o.exemplars {
        ""
    } else {
        "exemplars:\n  enabled: false\n"
    };
    let config = format!(
        "{exemplars}mode: {mode}\nlog:\n  level: error\nreceivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:{g}\n    http:\n      endpoint: 127.0.0.1:{h}\nadmin:\n  endpoint: 127.0.0.1:{a}\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\naggregator:\n{dims}{explain}  tick_interval: {tick}\n{forward}"
    );
    let path = dir.join("slipstream.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(target_dir().join("slipstream"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start target/release/slipstream (build it first)");
    let admin: SocketAddr = format!("127.0.0.1:{a}").parse().unwrap();
    let start = Instant::now();
    while http_status(admin, "/readyz") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "slipstream never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Slipstream {
        child,
        grpc: format!("127.0.0.1:{g}").parse().unwrap(),
        http: format!("127.0.0.1:{h}").parse().unwrap(),
        admin,
        dir,
    }
}

struct Run {
    spans_per_second: f64,
    spans_per_cpu_second: f64,
    /// Of the CPU seconds, the evaluation step's.
    step_cpu_seconds: f64,
    /// Evaluation steps run meanwhile.
    steps: f64,
    /// Their wall time, seconds.
    step_wall_seconds: f64,
    cpu_seconds: f64,
    /// Context switches of slipstream's threads per million spans accepted.
    switches_per_m_spans: f64,
    rss_peak_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
    refused: u64,
    /// Requests refused (retryable answers) per slipstream CPU-second.
    refused_per_cpu_second: f64,
}

impl Run {
    /// The evaluation steps of the run: how many, and the mean CPU and wall time of one.
    fn steps_summary(&self) -> String {
        let n = self.steps.max(1.0);
        format!(
            "{:.0} steps, {:.0} ms CPU / {:.0} ms wall each",
            self.steps,
            1000.0 * self.step_cpu_seconds / n,
            1000.0 * self.step_wall_seconds / n
        )
    }
}

fn run_load(s: &Slipstream, args: &Opts, rate: Option<f64>) -> Run {
    let endpoint = if args.grpc { s.grpc } else { s.http };
    let mut cmd = Command::new(target_dir().join("loadgen"));
    cmd.args(["--endpoint", &endpoint.to_string()])
        .args(["--protocol", if args.grpc { "grpc" } else { "http" }])
        .args(["--duration", &args.duration.to_string()])
        .args(["--concurrency", "8"])
        .arg("--json");
    if let Some(e) = args.error_rate {
        cmd.args(["--error-rate", &e.to_string()]);
    }
    if args.gzip {
        cmd.arg("--gzip");
    }
    if args.series >= 100_000 {
        cmd.args(["--services", "100", "--routes", "1000", "--pool", "512"]);
    } else if args.mode == "sidecar" {
        // A sidecar sees the one service of its pod.
        cmd.args(["--services", "1", "--routes", "50", "--pool", "64"]);
    } else {
        cmd.args(["--services", "20", "--routes", "50"]);
    }
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    let pid = s.child.id();
    let cpu0 = cpu_seconds(pid);
    let switches0 = context_switches(pid);
    let step0 = step_cpu_seconds(pid);
    let (steps0, step_wall0) = steps_so_far(s.admin);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("start target/release/loadgen");
    let mut rss_peak = status_kib(pid, "VmRSS");
    while child.try_wait().unwrap().is_none() {
        rss_peak = rss_peak.max(status_kib(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_seconds(pid) - cpu0;
    let switches = context_switches(pid) - switches0;
    let step_cpu = step_cpu_seconds(pid) - step0;
    let (steps1, step_wall1) = steps_so_far(s.admin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("loadgen report");
    let spans = v["spans_ok"].as_f64().unwrap_or(0.0);
    let refused = v["requests_refused"].as_u64().unwrap_or(0);
    Run {
        spans_per_second: v["spans_per_second"].as_f64().unwrap_or(0.0),
        spans_per_cpu_second: spans / cpu.max(1e-9),
        cpu_seconds: cpu,
        switches_per_m_spans: switches as f64 * 1e6 / spans.max(1.0),
        step_cpu_seconds: step_cpu,
        steps: steps1 - steps0,
        step_wall_seconds: step_wall1 - step_wall0,
        rss_peak_mib: rss_peak as f64 / 1024.0,
        p50_ms: v["latency_us"]["p50"].as_f64().unwrap_or(0.0) / 1000.0,
        p99_ms: v["latency_us"]["p99"].as_f64().unwrap_or(0.0) / 1000.0,
        refused: refused + v["requests_failed"].as_u64().unwrap_or(0),
        refused_per_cpu_second: refused as f64 / cpu.max(1e-9),
    }
}

#[derive(Debug, Clone)]
struct Opts {
    grpc: bool,
    gzip: bool,
    forward: bool,
    series: u64,
    duration: f64,
    mode: String,
    rate: Option<f64>,
    idle: bool,
    /// `aggregator.tick_interval`: how often the evaluation step runs.
    tick: String,
    /// `forward.compression`.
    forward_compression: String,
    /// `forward.max_batch_bytes`, when set.
    batch: Option<String>,
    /// How long the sink takes to answer an export, in milliseconds.
    sink_delay_ms: u64,
    /// Forward to a sink that never answers, through a small queue, so requests are refused.
    refuse: bool,
    /// Share of the load's spans that fail (`loadgen --error-rate`; its default when unset).
    error_rate: Option<f64>,
    /// Leave `aggregator.explain` on (slipstream's default) or turn it off.
    explain: bool,
    /// Leave `exemplars` on (slipstream's default) or turn them off.
    exemplars: bool,
}

fn main() {
    let mut o = Opts {
        grpc: true,
        gzip: false,
        forward: false,
        series: 1000,
        duration: 10.0,
        mode: "gateway".into(),
        rate: None,
        idle: false,
        tick: "5s".into(),
        forward_compression: "none".into(),
        batch: None,
        sink_delay_ms: 0,
        refuse: false,
        error_rate: None,
        explain: true,
        exemplars: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let mut v = || it.next().expect("a value");
        match f.as_str() {
            "--protocol" => o.grpc = v() == "grpc",
            "--gzip" => o.gzip = true,
            "--forward" => o.forward = true,
            "--series" => o.series = v().parse().expect("a number"),
            "--duration" => o.duration = v().parse().expect("seconds"),
            "--mode" => o.mode = v(),
            "--rate" => o.rate = Some(v().parse().expect("spans per second")),
            "--idle" => o.idle = true,
            "--tick" => o.tick = v(),
            "--forward-compression" => {
                o.forward_compression = v();
                o.forward = true;
            }
            "--sink-delay" => {
                o.sink_delay_ms = v().parse().expect("milliseconds");
                o.forward = true;
            }
            "--batch" => {
                o.batch = Some(v());
                o.forward = true;
            }
            "--refuse" => {
                o.refuse = true;
                o.forward = true;
            }
            "--error-rate" => o.error_rate = Some(v().parse().expect("a share, 0 to 1")),
            "--no-explain" => o.explain = false,
            "--no-exemplars" => o.exemplars = false,
            _ => {
                eprintln!("unknown flag {f}: see the file's documentation");
                std::process::exit(64);
            }
        }
    }
    let sink = o
        .forward
        .then(|| start_null_sink(o.refuse, Duration::from_millis(o.sink_delay_ms)));
    let s = start_slipstream(&o, sink, o.series >= 100_000, o.grpc);
    let variant = format!(
        "{} {}{} forward {} {} series {}",
        o.mode,
        if o.grpc { "grpc" } else { "http" },
        if o.gzip { "+gzip" } else { "" },
        match (o.refuse, o.forward) {
            (true, _) => "stalled (refusing)".to_owned(),
            (false, true) => format!(
                "on ({}{}){}",
                o.forward_compression,
                o.batch
                    .as_ref()
                    .map_or_else(String::new, |b| format!(", batches of {b}")),
                match o.sink_delay_ms {
                    0 => String::new(),
                    ms => format!(" to a sink answering in {ms} ms"),
                }
            ),
            (false, false) => "off".to_owned(),
        },
        o.series,
        if o.rate.is_some() { "fixed rate" } else { "" }
    );
    let variant = match (o.explain, o.error_rate) {
        (true, None) => variant,
        (explain, e) => format!(
            "{variant} explain {}{}",
            if explain { "on" } else { "off" },
            e.map_or_else(String::new, |e| format!(" errors {:.0}%", e * 100.0))
        ),
    };
    let variant = if o.exemplars {
        variant
    } else {
        format!("{variant} exemplars off")
    };
    if o.idle {
        std::thread::sleep(Duration::from_secs(3));
        let pid = s.child.id();
        println!(
            "| {variant} idle | RSS {:.1} MiB |",
            status_kib(pid, "VmRSS") as f64 / 1024.0
        );
        return;
    }
    if o.refuse {
        // Fill the queue first, so the measured run is all refusals.
        let warm = Opts {
            duration: 2.0,
            ..o.clone()
        };
        run_load(&s, &warm, None);
        let r = run_load(&s, &o, o.rate);
        println!(
            "| {variant} | {:.0} requests refused per slipstream CPU-s ({} refused, {:.0} spans accepted, {:.1} CPU-s) | p50 {:.2} ms | p99 {:.2} ms |",
            r.refused_per_cpu_second,
            r.refused,
            r.spans_per_second * o.duration,
            r.cpu_seconds,
            r.p50_ms,
            r.p99_ms
        );
        return;
    }
    let max = run_load(&s, &o, o.rate);
    println!(
        "| {variant} | {:.0} spans/s | {:.0} spans per slipstream CPU-s ({:.1} CPU-s, step {:.2}) | {:.0} context switches per M spans | {} | RSS peak {:.1} MiB | p50 {:.2} ms | p99 {:.2} ms | refused {} |",
        max.spans_per_second,
        max.spans_per_cpu_second,
        max.cpu_seconds,
        max.step_cpu_seconds,
        max.switches_per_m_spans,
        max.steps_summary(),
        max.rss_peak_mib,
        max.p50_ms,
        max.p99_ms,
        max.refused
    );
    if o.rate.is_none() {
        let half = run_load(&s, &o, Some(max.spans_per_second / 2.0));
        println!(
            "| {variant} at half ({:.0} spans/s) | {:.0} spans/s | {:.0} spans per slipstream CPU-s (step {:.2} CPU-s) | {} | RSS peak {:.1} MiB | p50 {:.2} ms | p99 {:.2} ms | refused {} |",
            max.spans_per_second / 2.0,
            half.spans_per_second,
            half.spans_per_cpu_second,
            half.step_cpu_seconds,
            half.steps_summary(),
            half.rss_peak_mib,
            half.p50_ms,
            half.p99_ms,
            half.refused
        );
    }
}
