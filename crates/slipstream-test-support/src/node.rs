//! Several slipstreams as separate processes, each on its own config: a config written to a
//! scratch directory with its listeners on port 0, the real binary started on it
//! ([`crate::process::Slipstream`]) and its addresses read from its ready file, and the JSON
//! API and self-metrics read over HTTP.

use std::net::SocketAddr;

use crate::process::Slipstream;

/// A running slipstream process, killed when dropped.
#[derive(Debug)]
pub struct Node {
    /// A name for messages.
    pub name: String,
    /// Where OTLP/HTTP (and partial aggregates) are received.
    pub http: SocketAddr,
    /// Where the admin server (metrics, JSON API) listens.
    pub admin: SocketAddr,
    _proc: Slipstream,
    _dir: tempfile::TempDir,
}

/// A config for [`Node::start`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The document.
    pub yaml: String,
}

impl NodeConfig {
    /// Adds `lines` (fields of `receivers.otlp`, not indented) under `receivers.otlp`, e.g.
    /// a gateway's `aggregates` section.
    pub fn with_receiver(mut self, lines: &str) -> NodeConfig {
        let indented: String = lines.lines().map(|l| format!("    {l}\n")).collect();
        let at = "    grpc: null\n";
        assert!(self.yaml.contains(at), "{}", self.yaml);
        self.yaml = self.yaml.replacen(at, &format!("{at}{indented}"), 1);
        self
    }
}

impl Node {
    /// A config listening on loopback port 0 for OTLP/HTTP and the admin server (OTLP/gRPC
    /// and the Prometheus endpoint off, no state), plus `extra` (top-level sections other than
    /// those) and `exporters` (lines of the `exporters` section, indented by two spaces).
    pub fn config(extra: &str, exporters: &str) -> NodeConfig {
        let yaml = format!(
            "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nstate:\n  dir: null\nexporters:\n  prometheus:\n    endpoint: null\n{exporters}{extra}"
        );
        NodeConfig { yaml }
    }

    /// Starts slipstream on `cfg` (see [`Node::config`]) and waits until it is up.
    pub async fn start(name: &str, cfg: NodeConfig) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipstream.yaml");
        std::fs::write(&path, &cfg.yaml).unwrap();
        let proc = Slipstream::start(&path).await;
        Node {
            name: name.to_owned(),
            http: proc.ready.otlp_http(),
            admin: proc.admin,
            _proc: proc,
            _dir: dir,
        }
    }

    /// A JSON API answer (`/api/v1/...`).
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = crate::http_get(self.admin, path).await;
        assert_eq!(status, 200, "{}: {path}: {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    /// Sum of the self-metric `name` over the series whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        crate::self_metric(self.admin, name, labels).await
    }
}
