//! slipstream as a separate process: a config written to a scratch directory, the process
//! started on it with free loopback ports, its logs kept for a failing test to show.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http_get};

/// A running slipstream process, killed when dropped.
#[derive(Debug)]
pub struct Node {
    /// A name for messages.
    pub name: String,
    /// Where OTLP/HTTP (and partial aggregates) are received.
    pub http: SocketAddr,
    /// Where the admin server (metrics, JSON API) listens.
    pub admin: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Node {
    /// The YAML of a config listening on free loopback ports for OTLP/HTTP and the admin
    /// server (OTLP/gRPC and the Prometheus endpoint off, no state), plus `extra` (top-level
    /// sections other than those) and `exporters` (lines of the `exporters` section, indented
    /// by two spaces). Returns the YAML and the two addresses.
    pub fn config(extra: &str, exporters: &str) -> (String, SocketAddr, SocketAddr) {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let yaml = format!(
            "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: {http}\nadmin:\n  endpoint: {admin}\nstate:\n  dir: null\nexporters:\n  prometheus:\n    endpoint: null\n{exporters}{extra}"
        );
        (yaml, http, admin)
    }

    /// Starts `binary run --config <yaml>` (see [`Node::config`]) and waits until its admin
    /// server answers `/readyz`.
    pub async fn start(
        binary: &str,
        name: &str,
        (yaml, http, admin): (String, SocketAddr, SocketAddr),
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("slipstream.yaml");
        std::fs::write(&config, &yaml).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut node = Node {
            name: name.to_owned(),
            http,
            admin,
            child,
            dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "{name} exited ({status}) at start:\n{}\n{yaml}",
                    node.logs()
                );
            }
            let ready = crate::answers(admin, "/readyz").await;
            if ready {
                return node;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} not ready after 30 s:\n{}",
                node.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        read(&self.dir.path().join("log"))
    }

    /// A JSON API answer (`/api/v1/...`).
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.admin, path).await;
        assert_eq!(status, 200, "{}: {path}: {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    /// Sum of the self-metric `name` over the series whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        crate::self_metric(self.admin, name, labels).await
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
