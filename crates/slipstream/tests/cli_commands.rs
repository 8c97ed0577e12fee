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
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
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
            "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:{}\n    http:\n      endpoint: 127.0.0.1:{}\nadmin:\n  endpoint: 127.0.0.1:{admin}\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{}\n",
            free_port(),
            free_port(),
            free_port()
        ),
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
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
    assert_eq!(get(admin, "/healthz"), Some(200));
    assert_eq!(get(admin, "/metrics"), Some(200));
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
    for args in [&["--help"][..], &["run", "--help"], &["validate", "--help"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}
