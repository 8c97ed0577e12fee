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

/// A slipstream with one availability SLO, `<service>-availability` at 99.9% and no templated
/// SLOs: what most end-to-end SLO tests start. By default it is evaluated every 30 s with the
/// default alert policy and no event exporter; [`OneSlo::evaluation_interval`],
/// [`OneSlo::repeat_interval`], [`OneSlo::tick_interval`], [`OneSlo::catalog`],
/// [`OneSlo::alert`], [`OneSlo::trace_url`] and [`OneSlo::alertmanager`] change that.
///
/// ```no_run
/// # async fn example(clock: slipstream_core::ManualClock) {
/// let slo = slipstream_e2e::one_slo("checkout")
///     .alert("{ severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }");
/// let app = slo.start_on(&clock).await; // on the manual clock
/// let replayed = slo.config(); // the same SLO, for `replay`
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct OneSlo {
    service: String,
    evaluation_interval: String,
    repeat_interval: Option<String>,
    tick_interval: Option<String>,
    trace_url: Option<String>,
    catalog: Option<String>,
    alerts: Vec<String>,
    alertmanager: Option<std::net::SocketAddr>,
}

/// [`OneSlo`] for `service`.
pub fn one_slo(service: &str) -> OneSlo {
    OneSlo {
        service: service.to_owned(),
        evaluation_interval: "30s".to_owned(),
        repeat_interval: None,
        tick_interval: None,
        trace_url: None,
        catalog: None,
        alerts: Vec::new(),
        alertmanager: None,
    }
}

impl OneSlo {
    /// `slo.evaluation_interval` (`1s`, `30s`).
    pub fn evaluation_interval(mut self, every: &str) -> Self {
        every.clone_into(&mut self.evaluation_interval);
        self
    }

    /// `slo.repeat_interval`: how often a firing alert is sent again.
    pub fn repeat_interval(mut self, every: &str) -> Self {
        self.repeat_interval = Some(every.to_owned());
        self
    }

    /// `exemplars.trace_url`: the template example requests link to.
    pub fn trace_url(mut self, template: &str) -> Self {
        self.trace_url = Some(template.to_owned());
        self
    }

    /// `aggregator.tick_interval`.
    pub fn tick_interval(mut self, every: &str) -> Self {
        self.tick_interval = Some(every.to_owned());
        self
    }

    /// The service's catalog entry, a YAML flow map (`{ owner: team-payments }`).
    pub fn catalog(mut self, entry: &str) -> Self {
        self.catalog = Some(entry.to_owned());
        self
    }

    /// Adds an alert policy row, a YAML flow map; with any, they replace the default policy.
    pub fn alert(mut self, row: &str) -> Self {
        self.alerts.push(row.to_owned());
        self
    }

    /// Sends the events to the Alertmanager at `addr`, re-sending firing alerts every second.
    pub fn alertmanager(mut self, addr: std::net::SocketAddr) -> Self {
        self.alertmanager = Some(addr);
        self
    }

    /// The name of the SLO: `<service>-availability`.
    pub fn name(&self) -> String {
        format!("{}-availability", self.service)
    }

    /// The configuration as top-level YAML (`exemplars:` when a trace URL is set,
    /// `aggregator:` when a tick interval is, and `slo:`).
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        if let Some(t) = &self.trace_url {
            y.push_str(&format!("exemplars:\n  trace_url: \"{t}\"\n"));
        }
        if let Some(t) = &self.tick_interval {
            y.push_str(&format!("aggregator:\n  tick_interval: {t}\n"));
        }
        y.push_str(&format!(
            "slo:\n  evaluation_interval: {}\n  templates: {{ availability: null, latency: null }}\n",
            self.evaluation_interval
        ));
        if let Some(r) = &self.repeat_interval {
            y.push_str(&format!("  repeat_interval: {r}\n"));
        }
        if let Some(c) = &self.catalog {
            y.push_str(&format!("  catalog:\n    {}: {c}\n", self.service));
        }
        y.push_str(&format!(
            "  objectives:\n    - name: {}\n      service: {}\n      sli: {{ kind: availability }}\n      objective: 99.9\n",
            self.name(),
            self.service
        ));
        if !self.alerts.is_empty() {
            y.push_str("      alerts:\n");
            for row in &self.alerts {
                y.push_str(&format!("        - {row}\n"));
            }
        }
        y
    }

    /// [`test_config`] (listeners on port 0, no forwarding) with this SLO (and the
    /// Alertmanager exporter when one is set).
    pub fn config(&self) -> Config {
        let mut cfg = test_config(None, &self.yaml());
        if let Some(addr) = self.alertmanager {
            cfg.exporters.alertmanager = Some(slipstream_config::exporters::AlertmanagerConfig {
                endpoints: vec![format!("http://{addr}")],
                resend_interval: std::time::Duration::from_secs(1),
                ..Default::default()
            });
        }
        cfg
    }

    /// Starts slipstream in this process on [`config`](Self::config), on the manual `clock`
    /// and without its own tick (the test steps it).
    pub async fn start_on(&self, clock: &slipstream_core::ManualClock) -> App {
        App::start_with(self.config(), std::sync::Arc::new(clock.clone()), false)
            .await
            .expect("slipstream starts")
    }
}
