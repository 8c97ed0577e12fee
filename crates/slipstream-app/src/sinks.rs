//! The exporters the evaluation step hands its output to, behind the step's sink traits
//! ([`EventSink`], [`AggregatesSink`]): shared by the step (which publishes) and the shutdown
//! (which takes them out to drain their queues).

use std::sync::{Arc, Mutex};

use slipstream_core::export::BurnRateEvent;
use slipstream_exporters::Exporter;
use slipstream_exporters::aggregates::AggregatesExporter;
use slipstream_exporters::events::EventExporters;
use slipstream_exporters::lifecycle::Drain;
use slipstream_step::publish::{AggregatesSink, EventSink};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An exporter the evaluation step feeds, shared by the step (which publishes into it) and
/// the shutdown (which takes it out and drains it; later steps publish nothing). Clones share
/// the exporter.
#[derive(Debug)]
pub struct Fed<E> {
    name: &'static str,
    exporter: Arc<Mutex<Option<E>>>,
}

impl<E> Clone for Fed<E> {
    fn clone(&self) -> Self {
        Fed {
            name: self.name,
            exporter: self.exporter.clone(),
        }
    }
}

impl<E: Exporter> Fed<E> {
    /// Holds `exporter`.
    pub fn new(exporter: E) -> Self {
        Fed {
            name: exporter.name(),
            exporter: Arc::new(Mutex::new(Some(exporter))),
        }
    }

    /// Takes the exporter out (later publishing sends nothing).
    pub fn take(&self) -> Option<E> {
        lock(&self.exporter).take()
    }
}

impl<E: Exporter + 'static> Exporter for Fed<E> {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Takes the exporter out, then drains it; 0 when it was already taken.
    fn shutdown(self: Box<Self>, deadline: std::time::Duration) -> Drain {
        match self.take() {
            Some(e) => Box::new(e).shutdown(deadline),
            None => Box::pin(std::future::ready(0)),
        }
    }
}

/// The event exporters of the config, fed by each evaluation step.
pub type EventExportersSink = Fed<EventExporters>;

/// The partial-aggregates exporter (two-tier mode, sidecar side), fed by each evaluation
/// step and taken out at shutdown to ship the last of it.
pub type AggregatesExporterSink = Fed<AggregatesExporter>;

impl EventSink for Fed<EventExporters> {
    fn publish(&self, events: &[BurnRateEvent]) {
        if let Some(e) = lock(&self.exporter).as_ref() {
            e.publish(events);
        }
    }
}

impl Fed<EventExporters> {
    /// Lets go of the firing alerts of `service` without sending them resolved
    /// ([`EventExporters::forget_service`]); 0 once the exporters were taken out.
    pub fn forget_service(&self, service: &str) -> usize {
        lock(&self.exporter)
            .as_ref()
            .map_or(0, |e| e.forget_service(service))
    }
}

impl Fed<AggregatesExporter> {
    /// Ships to the gateways `cfg` names from now on ([`AggregatesExporter::reload`]); nothing
    /// once the exporter was taken out.
    pub fn reload(
        &self,
        cfg: &slipstream_config::exporters::AggregatesConfig,
    ) -> Result<(), slipstream_exporters::Error> {
        match lock(&self.exporter).as_ref() {
            Some(e) => e.reload(cfg),
            None => Ok(()),
        }
    }
}

impl AggregatesSink for Fed<AggregatesExporter> {
    fn add(&self, series: Vec<slipstream_core::aggregates::Series>) {
        if let Some(e) = lock(&self.exporter).as_ref() {
            e.add(series);
        }
    }
}

#[cfg(test)]
mod tests;
