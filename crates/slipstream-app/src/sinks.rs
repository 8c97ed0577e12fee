//! The exporters the evaluation step hands its output to, behind the step's sink traits
//! ([`EventSink`], [`AggregatesSink`]): shared by the step (which publishes) and the shutdown
//! (which takes them out to drain their queues).

use std::sync::Mutex;

use slipstream_core::export::BurnRateEvent;
use slipstream_exporters::aggregates::AggregatesExporter;
use slipstream_step::publish::{AggregatesSink, EventSink};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The event exporters of the config, shared by the evaluation step (which publishes) and the
/// shutdown (which takes them to drain their queues).
#[derive(Debug, Default)]
pub struct EventExportersSink(Mutex<Option<slipstream_exporters::events::EventExporters>>);

impl EventExportersSink {
    /// Holds `exporters`.
    pub fn new(exporters: slipstream_exporters::events::EventExporters) -> Self {
        EventExportersSink(Mutex::new(Some(exporters)))
    }

    /// Takes the exporters out (later events are not sent).
    pub fn take(&self) -> Option<slipstream_exporters::events::EventExporters> {
        lock(&self.0).take()
    }
}

impl EventSink for EventExportersSink {
    fn publish(&self, events: &[BurnRateEvent]) {
        if let Some(e) = lock(&self.0).as_ref() {
            e.publish(events);
        }
    }
}

/// The partial-aggregates exporter (two-tier mode, sidecar side), fed by each evaluation
/// step and taken out at shutdown to ship the last of it.
#[derive(Debug, Default)]
pub struct AggregatesExporterSink(Mutex<Option<AggregatesExporter>>);

impl AggregatesExporterSink {
    /// Holds `exporter`.
    pub fn new(exporter: AggregatesExporter) -> Self {
        AggregatesExporterSink(Mutex::new(Some(exporter)))
    }

    /// Takes the exporter out (later steps ship nothing).
    pub fn take(&self) -> Option<AggregatesExporter> {
        lock(&self.0).take()
    }
}

impl AggregatesSink for AggregatesExporterSink {
    fn add(&self, series: Vec<slipstream_core::aggregates::Series>) {
        if let Some(e) = lock(&self.0).as_ref() {
            e.add(series);
        }
    }
}
