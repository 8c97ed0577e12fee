//! The burn-rate event exporters behind one fan-out.
//!
//! The binary starts [`EventExporters`] once from `exporters` and, after each SLO evaluation,
//! hands it that evaluation's events:
//!
//! ```no_run
//! # async fn wiring(cfg: &slipstream_config::exporters::ExportersConfig,
//! #                 events: Vec<slipstream_core::BurnRateEvent>) -> Result<(), slipstream_exporters::Error> {
//! use std::time::Duration;
//! use slipstream_exporters::events::EventExporters;
//!
//! let registry = slipstream_core::Registry::new();
//! let exporters = EventExporters::start(cfg, &registry)?; // inside the tokio runtime
//! exporters.publish(&events); // never waits
//! let dropped = exporters.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! [`EventExporters::publish`] never blocks: Alertmanager, webhook and OTLP logs queue their
//! requests in their own bounded [`crate::delivery`] queues (a dead target drops its oldest
//! requests, never slows the others); stdout writes a line per event at once. Each is an
//! [`EventExporter`]: a new one is its module and one line in [`EventExporters::start`].

use std::time::Duration;

use slipstream_config::exporters::ExportersConfig;
use slipstream_core::{BurnRateEvent, Registry};

use crate::Error;
use crate::alertmanager::AlertmanagerExporter;
use crate::lifecycle::{EventExporter, Exporter, shutdown_all};
use crate::otlp_logs::OtlpLogsExporter;
use crate::stdout::StdoutExporter;
use crate::webhook::WebhookExporter;

/// The configured burn-rate event exporters (`exporters.alertmanager`, `.webhook`,
/// `.otlp_logs`, `.stdout`), in that order.
#[derive(Debug, Default)]
pub struct EventExporters {
    exporters: Vec<Box<dyn EventExporter>>,
}

impl EventExporters {
    /// Starts every configured event exporter on the current tokio runtime. Fails, naming the
    /// config field, on a URL or header the exporters cannot use (an `https://` URL, a header
    /// that is not valid HTTP).
    pub fn start(cfg: &ExportersConfig, registry: &Registry) -> Result<Self, Error> {
        let mut exporters: Vec<Box<dyn EventExporter>> = Vec::new();
        if let Some(c) = &cfg.alertmanager {
            exporters.push(Box::new(AlertmanagerExporter::start(c, registry)?));
        }
        if let Some(c) = &cfg.webhook {
            exporters.push(Box::new(WebhookExporter::start(c, registry)?));
        }
        if let Some(c) = &cfg.otlp_logs {
            exporters.push(Box::new(OtlpLogsExporter::start(c, registry)?));
        }
        if cfg.stdout.enabled {
            exporters.push(Box::new(StdoutExporter));
        }
        Ok(EventExporters { exporters })
    }

    /// Whether no event exporter is configured.
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty()
    }

    /// Hands one evaluation's events to every exporter; never waits on a target.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        if events.is_empty() {
            return;
        }
        for e in &self.exporters {
            e.publish(events);
        }
    }

    /// Lets go of the firing alerts of `service` (handed off to other gateways) without
    /// sending them resolved; webhooks and OTLP logs hold nothing between events. Returns
    /// how many alerts were let go.
    pub fn forget_service(&self, service: &str) -> usize {
        self.exporters
            .iter()
            .map(|e| e.forget_service(service))
            .sum()
    }

    /// Delivers what the exporters still hold, all at once, for at most `deadline`; returns
    /// how many queued items (alert batches, webhook events, log requests) were dropped.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        let all: Vec<Box<dyn Exporter>> = self
            .exporters
            .into_iter()
            .map(|e| -> Box<dyn Exporter> { e })
            .collect();
        shutdown_all(all, deadline)
            .await
            .into_iter()
            .map(|(_, left)| left)
            .sum()
    }
}

crate::lifecycle::exporter!(EventExporters, "events");

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
