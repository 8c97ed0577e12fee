//! The command line as a user runs it: `validate`, `run` until SIGTERM, `--help`.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use slipstream_test_support::eventually;
use slipstream_test_support::http::{
    blocking_get as get, blocking_get_text as get_text, blocking_post, blocking_self_metric,
};
use slipstream_test_support::process::{HeldPort, Lines, Running, exit_within};

const BIN: &str = env!("CARGO_BIN_EXE_slipstream");

fn write_config(name: &str, yaml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slipstream-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `slipstream run --config <path>` with stdout and stderr discarded.
fn run_command(path: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The value of the self-metric `name` on the admin server's `/metrics` (the sum of its
/// series with `labels`).
fn self_metric(admin: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    blocking_self_metric(admin, name, labels)
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
    let path = write_config(
        "run",
        "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:0\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:0\nstate:\n  dir: null\n",
    );
    let mut cmd = run_command(&path);
    // An operator's choice of an allocator option is kept; the others get slipstream's.
    cmd.env("MIMALLOC_PURGE_DELAY", "250")
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .stderr(Stdio::piped());
    let mut proc = Running::start(cmd);
    // Every listener is reported, each on a port of its own.
    let ready = proc.ready;
    let mut ports = [
        ready.otlp_grpc().port(),
        ready.otlp_http().port(),
        ready.admin().port(),
        ready.prometheus().port(),
    ];
    ports.sort_unstable();
    assert!(
        ports[0] != 0 && ports.windows(2).all(|w| w[0] != w[1]),
        "{ready:?}"
    );
    let admin = ready.admin();
    eventually("ready", Duration::from_secs(10), || {
        get(admin, "/readyz") == Some(200)
    });
    let child = &mut proc.child;
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let environ: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    // The binary ran itself again with its allocator options (`src/main.rs`).
    assert!(environ.contains(&&b"MIMALLOC_ARENA_EAGER_COMMIT=0"[..]));
    assert!(environ.contains(&&b"MIMALLOC_PURGE_DELAY=250"[..]));
    assert_eq!(get(admin, "/healthz"), Some(200));
    assert_eq!(get(admin, "/metrics"), Some(200));
    // The first tick runs at start; its step is counted and timed.
    wait_until("the first evaluation step is counted", || {
        self_metric(admin, "slipstream_evaluation_steps_total", &[]).is_some_and(|n| n >= 1.0)
    });
    let seconds = self_metric(admin, "slipstream_evaluation_step_seconds_total", &[]).unwrap();
    assert!(seconds > 0.0 && seconds < 5.0, "{seconds}");
    proc.send_term();
    let child = &mut proc.child;
    let status = exit_within(child, Duration::from_secs(15), "the exit after SIGTERM");
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
fn post_spans(http: SocketAddr, service: &str, n: usize, bad: usize) {
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
    let status = blocking_post(http, "/v1/traces", "application/json", body.as_bytes());
    assert_eq!(status, Some(200));
}

#[test]
fn status_prints_the_slo_table_of_a_running_slipstream() {
    let path = write_config(
        "status",
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\naggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  catalog:\n    checkout: { owner: team-payments }\n",
    );
    let proc = Running::start(run_command(&path));
    let (admin, http) = (proc.ready.admin(), proc.ready.otlp_http());
    eventually("ready", Duration::from_secs(10), || {
        get(admin, "/readyz") == Some(200)
    });
    post_spans(http, "checkout", 100, 20);
    post_spans(http, "search", 10, 0);
    let status = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["status", "--admin", &admin.to_string()])
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
    let table = eventually("the SLOs of both services", Duration::from_secs(15), || {
        let t = status(&[]);
        if t.contains("checkout-availability") && t.contains("search-latency") {
            Ok(t)
        } else {
            Err(t)
        }
    });
    // Piped: no colour codes. Sorted by budget burn: checkout (20% errors) first.
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SLO"), "{table}");
    assert!(lines[1].starts_with("checkout-availability"), "{table}");
    assert!(lines[1].contains("page 1h/5m"), "{table}");
    assert!(table.contains("not in the catalog: search"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&status(&["--output", "json"])).unwrap();
    assert_eq!(json["slos"].as_array().unwrap().len(), 4);
    drop(proc);

    // With nothing listening, a clear error and a failing exit code.
    let nothing = HeldPort::hold();
    let out = Command::new(BIN)
        .args(["status", "--admin", &nothing.addr().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin server"));
}

/// `GET /api/v1/slos` of the admin server on `port`, parsed.
fn slos(admin: SocketAddr) -> Option<serde_json::Value> {
    let text = get_text(admin, "/api/v1/slos")?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    eventually(what, Duration::from_secs(20), f);
}

fn slo_names(admin: SocketAddr) -> Vec<String> {
    slos(admin)
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
    let dir = std::env::temp_dir().join(format!("slipstream-cli-{}-state", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = format!(
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: {}\n  snapshot_interval: 1s\naggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  templates: {{ availability: null, latency: null }}\n  objectives:\n    - {{ name: checkout-availability, service: checkout, sli: {{ kind: availability }}, objective: 99.9 }}\n",
        dir.join("data").display()
    );
    let path = write_config("state", &base);
    // Logs on stderr: the refused reload below is awaited by its log line.
    let start = || {
        let mut cmd = run_command(&path);
        cmd.stderr(Stdio::piped());
        let mut proc = Running::start(cmd);
        let admin = proc.ready.admin();
        let log = Lines::follow(proc.child.stderr.take().unwrap());
        wait_until("ready", || get(admin, "/readyz") == Some(200));
        (proc, log)
    };
    let total = |admin| slos(admin).map(|v| v["slos"][0]["period_total"].as_f64().unwrap_or(0.0));
    let snapshots = |admin| {
        self_metric(
            admin,
            "slipstream_state_snapshots_total",
            &["outcome=\"ok\""],
        )
        .unwrap_or(0.0)
    };

    let (mut proc, _log) = start();
    let (admin, http) = (proc.ready.admin(), proc.ready.otlp_http());
    post_spans(http, "checkout", 100, 5);
    wait_until("100 requests counted", || total(admin) == Some(100.0));
    // Two more snapshots, then kill -9: the second of them began after the requests were
    // counted, so it holds them all.
    let saved = snapshots(admin);
    wait_until("two more snapshots", || snapshots(admin) >= saved + 2.0);
    proc.kill9();

    let (proc, log) = start();
    let (admin, http) = (proc.ready.admin(), proc.ready.otlp_http());
    let child = &proc.child;
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
    let lines = log.seen().len();
    hup(child);
    log.wait_for(lines, "config reload refused", Duration::from_secs(20));
    assert_eq!(slo_names(admin), ["checkout-availability"]);
    let mut proc = proc;
    assert!(proc.child.try_wait().unwrap().is_none(), "still running");
    let child = &proc.child;

    // A valid one adds a latency SLO; the unchanged one keeps its windows.
    std::fs::write(
        &path,
        base.replace(
            "objective: 99.9 }\n",
            "objective: 99.9 }\n    - { name: checkout-latency, service: checkout, sli: { kind: latency, threshold: 250ms }, objective: 99 }\n",
        ),
    )
    .unwrap();
    hup(child);
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
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ready_file_that_cannot_be_written_stops_the_process() {
    let path = write_config(
        "ready-unwritable",
        "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\n",
    );
    let mut child = run_command(&path)
        .args(["--ready-file", "/nonexistent/slipstream/ready.json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exit_within(&mut child, Duration::from_secs(20), "the exit");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write the ready file /nonexistent/slipstream/ready.json.tmp"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_to_start_on_a_certificate_it_cannot_read() {
    let yaml = "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:0\n      tls:\n        cert_file: /nonexistent/slipstream/server.crt\n        key_file: /nonexistent/slipstream/server.key\n    http: null\nadmin:\n  endpoint: null\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\n";
    let config = write_config("bad-cert", yaml);
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
    // Enough SLOs that a reload takes a while: the SIGTERM lands while it runs.
    let mut yaml = "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: null\nstate:\n  dir: null\nslo:\n  templates: { availability: null, latency: null }\n  objectives:\n".to_owned();
    for i in 0..3000 {
        yaml.push_str(&format!(
            "    - {{ name: svc{i}-availability, service: svc{i}, sli: {{ kind: availability }}, objective: 99.9 }}\n"
        ));
    }
    let path = write_config("hup-term", &yaml);
    let mut cmd = run_command(&path);
    cmd.stderr(Stdio::piped());
    let mut proc = Running::start(cmd);
    let lines = Lines::follow(proc.child.stderr.take().unwrap());
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &proc.pid().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    let timeout = Duration::from_secs(20);
    let seen = lines.wait_for(0, "slipstream listening", timeout);
    signal("-HUP");
    let seen = lines.wait_for(seen, "SIGHUP: reloading the config", timeout);
    signal("-TERM");
    let status = exit_within(
        &mut proc.child,
        timeout,
        "the exit on SIGTERM during a reload",
    );
    let rest = lines.finish().split_off(seen);
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    assert!(
        rest.iter().any(|l| l.contains("shutting down")),
        "{rest:#?}"
    );
}
