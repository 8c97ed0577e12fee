//! The command line as a user runs it: `validate`, `run` until SIGTERM, `--help`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_slipstream");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slipstream-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn get(port: u16, path: &str) -> Option<u16> {
    get_text(port, path)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The whole answer (status line, headers and body) to `GET path`.
fn get_text(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

/// The value of the unlabelled self-metric `name` on the admin server's `/metrics`.
fn self_metric(admin: u16, name: &str) -> Option<f64> {
    let text = get_text(admin, "/metrics")?;
    let line = text.lines().find(|l| l.starts_with(&format!("{name} ")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn validate_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/slipstream.yaml");
    let out = Command::new(BIN)
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn validate_lists_every_error_and_exits_64() {
    let path = write_config(
        "bad",
        "receivers:\n  otlp:\n    grpc:\n      endpoint: nowhere\nforward:\n  endpoint: ${env:SLIPSTREAM_TEST_UNSET_VAR:-collector:4317}\n  concurrency: 0\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(err.starts_with(&format!("{file}: 3 errors")), "{err}");
    for line in [
        "receivers.otlp.grpc.endpoint: `nowhere` is not a socket address",
        "forward.endpoint: `collector:4317` is not a URL",
        "forward.concurrency: expected at least 1",
    ] {
        assert!(
            err.contains(&format!("{file}: {line}")),
            "missing `{line}` in:\n{err}"
        );
    }
    let unknown = write_config("unknown", "recievers: {}\n");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `recievers`"));
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/slipstream.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn run_serves_until_sigterm_then_exits_zero() {
    let admin = free_port();
    let path = write_config(
        "run",
        &format!(
            "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:{}\n    http:\n      endpoint: 127.0.0.1:{}\nadmin:\n  endpoint: 127.0.0.1:{admin}\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{}\nstate:\n  dir: null\n",
            free_port(),
            free_port(),
            free_port()
        ),
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        // An operator's choice of an allocator option is kept; the others get slipstream's.
        .env("MIMALLOC_PURGE_DELAY", "250")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while get(admin, "/readyz") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let environ: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    // The binary ran itself again with its allocator options (`src/main.rs`).
    assert!(environ.contains(&&b"MIMALLOC_ARENA_EAGER_COMMIT=0"[..]));
    assert!(environ.contains(&&b"MIMALLOC_PURGE_DELAY=250"[..]));
    assert_eq!(get(admin, "/healthz"), Some(200));
    assert_eq!(get(admin, "/metrics"), Some(200));
    // The first tick runs at start; its step is counted and timed.
    wait_until("the first evaluation step is counted", || {
        self_metric(admin, "slipstream_evaluation_steps_total").is_some_and(|n| n >= 1.0)
    });
    let seconds = self_metric(admin, "slipstream_evaluation_step_seconds_total").unwrap();
    assert!(seconds > 0.0 && seconds < 5.0, "{seconds}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["replay", "--help"],
        &["status", "--help"],
        &["generate", "--help"],
        &["generate", "prometheus-rules", "--help"],
        &["generate", "grafana", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}

/// POSTs an OTLP/JSON trace request of `n` server spans of `service` ending now, the first
/// `bad` of them with status ERROR.
fn post_spans(port: u16, service: &str, n: usize, bad: usize) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let spans: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"GET /","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","status":{{"code":{}}}}}"#,
                i + 1,
                i + 1,
                now - 5_000_000,
                now,
                if i < bad { 2 } else { 0 }
            )
        })
        .collect();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
}

#[test]
fn status_prints_the_slo_table_of_a_running_slipstream() {
    let (admin, http) = (free_port(), free_port());
    let path = write_config(
        "status",
        &format!(
            "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:{http}\nadmin:\n  endpoint: 127.0.0.1:{admin}\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\naggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  catalog:\n    checkout: {{ owner: team-payments }}\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while get(admin, "/readyz") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    post_spans(http, "checkout", 100, 20);
    post_spans(http, "search", 10, 0);
    let status = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["status", "--admin", &format!("127.0.0.1:{admin}")])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let start = Instant::now();
    let table = loop {
        let t = status(&[]);
        if t.contains("checkout-availability") && t.contains("search-latency") {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no SLOs yet:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Piped: no colour codes. Sorted by budget burn: checkout (20% errors) first.
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SLO"), "{table}");
    assert!(lines[1].starts_with("checkout-availability"), "{table}");
    assert!(lines[1].contains("page 1h/5m"), "{table}");
    assert!(table.contains("not in the catalog: search"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&status(&["--output", "json"])).unwrap();
    assert_eq!(json["slos"].as_array().unwrap().len(), 4);
    let _ = child.kill();
    let _ = child.wait();

    // With nothing listening, a clear error and a failing exit code.
    let out = Command::new(BIN)
        .args(["status", "--admin", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin server"));
}

/// `GET /api/v1/slos` of the admin server on `port`, parsed.
fn slos(port: u16) -> Option<serde_json::Value> {
    let text = get_text(port, "/api/v1/slos")?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn slo_names(port: u16) -> Vec<String> {
    slos(port)
        .map(|v| {
            v["slos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn state_survives_kill_9_and_sighup_reloads_the_slos() {
    let (admin, http) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("slipstream-cli-{}-state", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = format!(
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:{http}\nadmin:\n  endpoint: 127.0.0.1:{admin}\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: {}\n  snapshot_interval: 1s\naggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  templates: {{ availability: null, latency: null }}\n  objectives:\n    - {{ name: checkout-availability, service: checkout, sli: {{ kind: availability }}, objective: 99.9 }}\n",
        dir.join("data").display()
    );
    let path = write_config("state", &base);
    let start = || {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("ready", || get(admin, "/readyz") == Some(200));
        child
    };
    let total = |port| slos(port).map(|v| v["slos"][0]["period_total"].as_f64().unwrap_or(0.0));

    let mut child = start();
    post_spans(http, "checkout", 100, 5);
    wait_until("100 requests counted", || total(admin) == Some(100.0));
    // Let a snapshot interval pass, then kill -9: at most one interval is lost, and it was
    // all saved by now.
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();

    let mut child = start();
    wait_until("restored", || total(admin) == Some(100.0));
    assert_eq!(slos(admin).unwrap()["slos"][0]["period_bad"], 5.0);
    post_spans(http, "checkout", 10, 0);
    wait_until("10 more requests counted", || total(admin) == Some(110.0));

    // An invalid config on SIGHUP is refused; the running SLOs stay.
    std::fs::write(&path, "slo:\n  objectives: [ { name: broken } ]\n").unwrap();
    let hup = |c: &std::process::Child| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    hup(&child);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(slo_names(admin), ["checkout-availability"]);
    assert!(child.try_wait().unwrap().is_none(), "still running");

    // A valid one adds a latency SLO; the unchanged one keeps its windows.
    std::fs::write(
        &path,
        base.replace(
            "objective: 99.9 }\n",
            "objective: 99.9 }\n    - { name: checkout-latency, service: checkout, sli: { kind: latency, threshold: 250ms }, objective: 99 }\n",
        ),
    )
    .unwrap();
    hup(&child);
    wait_until("the new SLO", || slo_names(admin).len() == 2);
    assert_eq!(total(admin), Some(110.0));
    // The series already known counts towards the new SLO from now on.
    post_spans(http, "checkout", 40, 0);
    let total_of = |name: &str| {
        slos(admin).and_then(|v| {
            v["slos"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name)
                .and_then(|s| s["period_total"].as_f64())
        })
    };
    wait_until("the new requests counted by both SLOs", || {
        total_of("checkout-availability") == Some(150.0)
            && total_of("checkout-latency") == Some(40.0)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_to_start_on_a_certificate_it_cannot_read() {
    let yaml = format!(
        "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:{}\n      tls:\n        cert_file: /nonexistent/slipstream/server.crt\n        key_file: /nonexistent/slipstream/server.key\n    http: null\nadmin:\n  endpoint: null\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\n",
        free_port()
    );
    let config = write_config("bad-cert", &yaml);
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "slipstream ran: {stderr}");
    assert!(
        stderr.contains(
            "receivers.otlp.grpc.tls.cert_file: cannot read /nonexistent/slipstream/server.crt"
        ),
        "{stderr}"
    );
}

/// Waits for `child` to exit within `limit`; kills it and fails otherwise.
fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_config_that_is_not_a_regular_file_exits_64_at_once() {
    let dir = std::env::temp_dir().join(format!("slipstream-cli-{}-notfile", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (command, config) in [
        ("run", std::path::PathBuf::from("/dev/zero")),
        ("validate", std::path::PathBuf::from("/dev/zero")),
        ("validate", dir.clone()),
    ] {
        let mut child = Command::new(BIN)
            .args([command, "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = exit_within(&mut child, Duration::from_secs(5), command);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            status.code(),
            Some(64),
            "{command} {}: {stderr}",
            config.display()
        );
        assert!(stderr.contains("expected a YAML file"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_print_shows_no_secret() {
    let path = write_config(
        "secrets",
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [otlp-tok-1]\nadmin:\n  auth:\n    bearer_tokens: ['${env:SLIPSTREAM_TEST_ADMIN_TOKEN}']\nforward:\n  endpoint: https://fwd-user:fwd-pass@collector:4317\n  headers:\n    authorization: Bearer hdr-tok-3\n    x-api-key: api-key-4\n    cookie: session=cookie-5\n    x-scope-orgid: tenant-a\nexporters:\n  webhook:\n    url: https://hook-user:hook-pass@hooks.example.com/x\n    secret: webhook-secret-6\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--print", "--config"])
        .arg(&path)
        .env("SLIPSTREAM_TEST_ADMIN_TOKEN", "admin-tok-2")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        "otlp-tok-1",
        "admin-tok-2",
        "hdr-tok-3",
        "api-key-4",
        "cookie-5",
        "webhook-secret-6",
        "fwd-user",
        "fwd-pass",
        "hook-user",
        "hook-pass",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(printed.contains("<redacted>@collector:4317"), "{printed}");
    assert!(printed.contains("tenant-a"), "{printed}");
}

#[test]
fn sigterm_during_a_sighup_reload_stops_the_process() {
    let admin = free_port();
    // Enough SLOs that a reload takes a while: the SIGTERM lands while it runs.
    let mut yaml = format!(
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:{}\nadmin:\n  endpoint: 127.0.0.1:{admin}\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\nslo:\n  templates: {{ availability: null, latency: null }}\n  objectives:\n",
        free_port()
    );
    for i in 0..3000 {
        yaml.push_str(&format!(
            "    - {{ name: svc{i}-availability, service: svc{i}, sli: {{ kind: availability }}, objective: 99.9 }}\n"
        ));
    }
    let path = write_config("hup-term", &yaml);
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    let mut seen = Vec::new();
    let mut wait_for_line = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(want);
                    seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no log line with {want:?}; seen: {seen:#?}"),
            }
        }
    };
    wait_for_line("slipstream listening");
    signal("-HUP");
    wait_for_line("SIGHUP: reloading the config");
    signal("-TERM");
    let status = exit_within(
        &mut child,
        Duration::from_secs(20),
        "SIGTERM during a reload",
    );
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("shutting down")),
        "{rest:#?}"
    );
}
