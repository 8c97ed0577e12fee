//! Support for slipstream's end-to-end tests: a slipstream started in this process on port 0
//! (which needs the app), the real OpenTelemetry SDKs (Rust and Python) and TLS certificates.
//! What any crate's tests may use (OTLP builders, `eventually`, HTTP clients, the downstream
//! sink, the binary as separate processes and its ready file, Prometheus and Alertmanager) is
//! in `slipstream-test-support`, re-exported here.
#![forbid(unsafe_code)]

use slipstream_app::app::App;
use slipstream_config::Config;

pub mod otlp;
pub mod python;
pub mod sdk;
pub mod tls;

pub use slipstream_test_support::sink::{DownPort, Received, Sink, SinkMode, spans_in};
pub use slipstream_test_support::{
    answers, eventually, eventually_async, gunzip, gzip, http_get, self_metric,
};
pub use slipstream_test_support::{node, process, procs, raw};

/// A slipstream config for tests: every listener on port 0 (the app reports where it got:
/// [`App::grpc_addr`] and the others), forwarding to `forward` (a base URL) when given, plus
/// `extra` YAML appended at the top level.
pub fn test_config(forward: Option<(&str, &str)>, extra: &str) -> Config {
    let mut yaml = "receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:0\n    http:\n      endpoint: 127.0.0.1:0\nadmin:\n  endpoint: 127.0.0.1:0\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:0\nstate:\n  dir: null\n".to_owned();
    if let Some((protocol, url)) = forward {
        yaml.push_str(&format!(
            "forward:\n  endpoint: {url}\n  protocol: {protocol}\n  retry:\n    initial_interval: 50ms\n    max_interval: 200ms\n"
        ));
    }
    yaml.push_str(extra);
    Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Starts slipstream in this process on `cfg`.
pub async fn start(cfg: Config) -> App {
    App::start(cfg).await.expect("slipstream starts")
}
