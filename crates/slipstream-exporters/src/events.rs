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
//! requests, never slows the others); stdout writes a line per event at once.

use std::time::Duration;

use slipstream_config::exporters::ExportersConfig;
use slipstream_core::{BurnRateEvent, Registry};

use crate::Error;
use crate::alertmanager::AlertmanagerExporter;
use crate::otlp_logs::OtlpLogsExporter;
use crate::stdout::StdoutExporter;
use crate::webhook::WebhookExporter;

/// The configured burn-rate event exporters (`exporters.alertmanager`, `.webhook`,
/// `.otlp_logs`, `.stdout`).
#[derive(Debug, Default)]
pub struct EventExporters {
    alertmanager: Option<AlertmanagerExporter>,
    webhook: Option<WebhookExporter>,
    otlp_logs: Option<OtlpLogsExporter>,
    stdout: Option<StdoutExporter>,
}

impl EventExporters {
    /// Starts every configured event exporter on the current tokio runtime. Fails, naming the
    /// config field, on a URL or header the exporters cannot use (an `https://` URL, a header
    /// that is not valid HTTP).
    pub fn start(cfg: &ExportersConfig, registry: &Registry) -> Result<Self, Error> {
        Ok(EventExporters {
            alertmanager: cfg
                .alertmanager
                .as_ref()
                .map(|c| AlertmanagerExporter::start(c, registry))
                .transpose()?,
            webhook: cfg
                .webhook
                .as_ref()
                .map(|c| WebhookExporter::start(c, registry))
                .transpose()?,
            otlp_logs: cfg
                .otlp_logs
                .as_ref()
                .map(|c| OtlpLogsExporter::start(c, registry))
                .transpose()?,
            stdout: cfg.stdout.enabled.then_some(StdoutExporter),
        })
    }

    /// Whether no event exporter is configured.
    pub fn is_empty(&self) -> bool {
        self.alertmanager.is_none()
            && self.webhook.is_none()
            && self.otlp_logs.is_none()
            && self.stdout.is_none()
    }

    /// Hands one evaluation's events to every exporter; never waits on a target.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        if events.is_empty() {
            return;
        }
        if let Some(e) = &self.alertmanager {
            e.publish(events);
        }
        if let Some(e) = &self.webhook {
            e.publish(events);
        }
        if let Some(e) = &self.otlp_logs {
            e.publish(events);
        }
        if let Some(e) = &self.stdout {
            e.publish(events);
        }
    }

    /// Delivers what the exporters still hold, all at once, for at most `deadline`; returns
    /// how many queued items (alert batches, webhook events, log requests) were dropped.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        let (a, w, o) = tokio::join!(
            async {
                match self.alertmanager {
                    Some(e) => e.shutdown(deadline).await,
                    None => 0,
                }
            },
            async {
                match self.webhook {
                    Some(e) => e.shutdown(deadline).await,
                    None => 0,
                }
            },
            async {
                match self.otlp_logs {
                    Some(e) => e.shutdown(deadline).await,
                    None => 0,
                }
            },
        );
        a + w + o
    }
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
