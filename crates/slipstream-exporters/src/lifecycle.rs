//! One lifecycle for every exporter: start, feed, drain, shut down.
//!
//! - **Start**: each exporter module has a constructor (`start(cfg, ..., registry)`) that
//!   checks its config section, returning an [`Error`] that names the field, and spawns its
//!   workers on the current tokio runtime. It never waits on its target: a target that is
//!   down at start is retried like any other failure.
//! - **Feed**: the exporter is fed without waiting: burn-rate events through
//!   [`EventExporter::publish`], SLI series by pulling a [`MetricsSource`] on the exporter's
//!   own timer, partial aggregates through `add`. Each keeps a bounded queue and counts what
//!   it drops.
//! - **Drain and shut down**: [`Exporter::shutdown`] stops taking items (series exporters
//!   first take one last snapshot), delivers what is held within the deadline, counts what is
//!   still undelivered then as dropped (`reason="shutdown"`), and returns that number.
//!
//! The wiring holds its running exporters as `Box<dyn Exporter>` and drains them all at once
//! with [`shutdown_all`]. A new exporter is a module with a constructor and an [`Exporter`]
//! (or [`EventExporter`]) impl, plus one line: in [`crate::events::EventExporters::start`] for
//! an event exporter, in [`start_series_exporters`] for a series exporter.
//!
//! With `exporters.replica_label` set, the series exporters' source is wrapped so that every
//! point they push carries that label ([`with_replica_label`]): replicated gateways push the
//! same series, told apart by it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use slipstream_config::exporters::{ExportersConfig, MetricNaming};
use slipstream_core::{BurnRateEvent, MetricsSource, Registry};

use crate::Error;
use crate::otlp_metrics::OtlpMetricsExporter;
use crate::remote_write::RemoteWriter;

/// What [`Exporter::shutdown`] returns: resolves to the number of items left undelivered.
pub type Drain = Pin<Box<dyn Future<Output = usize> + Send + 'static>>;

/// A running exporter, from its start to its shutdown (see the module docs for the
/// contract).
pub trait Exporter: Send + std::fmt::Debug {
    /// The exporter's name in logs (`remote_write`, `events`).
    fn name(&self) -> &'static str;

    /// Stops taking items and delivers what is held for at most `deadline`; resolves to how
    /// many items (requests, alert batches, events) were left undelivered, each counted as
    /// dropped with `reason="shutdown"`.
    fn shutdown(self: Box<Self>, deadline: Duration) -> Drain;
}

/// An exporter of burn-rate events.
pub trait EventExporter: Exporter + Sync {
    /// Hands it one evaluation's events (never empty); never waits on the target.
    fn publish(&self, events: &[BurnRateEvent]);

    /// Lets go of what it holds of `service` (handed off to other gateways) without sending
    /// anything for it, e.g. firing alerts it re-sends; returns how many it let go. Exporters
    /// that hold nothing between events do nothing.
    fn forget_service(&self, _service: &str) -> usize {
        0
    }
}

/// Shuts every exporter down at once, each within `deadline`; returns each one's name and
/// undelivered count, in the order given (an exporter whose drain panicked counts 0).
pub async fn shutdown_all(
    exporters: Vec<Box<dyn Exporter>>,
    deadline: Duration,
) -> Vec<(&'static str, usize)> {
    let names: Vec<&'static str> = exporters.iter().map(|e| e.name()).collect();
    let left =
        crate::resolve::join_spawned(exporters.into_iter().map(|e| e.shutdown(deadline))).await;
    names.into_iter().zip(left).collect()
}

/// Starts the configured exporters of SLI series (`exporters.remote_write`,
/// `exporters.otlp_metrics`) on the current tokio runtime, each pulling its snapshots from
/// `source` under the naming it uses.
pub fn start_series_exporters(
    cfg: &ExportersConfig,
    source: &dyn Fn(MetricNaming) -> Arc<dyn MetricsSource>,
    registry: &Registry,
) -> Result<Vec<Box<dyn Exporter>>, Error> {
    let mut started: Vec<Box<dyn Exporter>> = Vec::new();
    let replica = cfg.replica_label.as_ref().map(|r| {
        (
            r.name.clone(),
            r.value.clone().unwrap_or_else(crate::aggregates::host_name),
        )
    });
    let source = |naming: MetricNaming| labelled(source(naming), replica.clone());
    if let Some(c) = &cfg.remote_write {
        started.push(Box::new(RemoteWriter::start(
            c,
            source(c.naming),
            registry,
        )?));
    }
    if let Some(c) = &cfg.otlp_metrics {
        started.push(Box::new(OtlpMetricsExporter::start(
            c,
            source(MetricNaming::Slipstream),
            registry,
        )?));
    }
    Ok(started)
}

/// `inner`, with the label `(name, value)` on every point when `replica` is given.
fn labelled(
    inner: Arc<dyn MetricsSource>,
    replica: Option<(String, String)>,
) -> Arc<dyn MetricsSource> {
    match replica {
        None => inner,
        Some((name, value)) => Arc::new(move || {
            let mut snapshot = inner.collect();
            with_replica_label(&mut snapshot, &name, &value);
            snapshot
        }),
    }
}

/// Sets the label `name` to `value` on every point of `snapshot`, keeping each point's labels
/// sorted by name and unique (a label of that name is replaced).
pub fn with_replica_label(
    snapshot: &mut slipstream_core::MetricsSnapshot,
    name: &str,
    value: &str,
) {
    for family in &mut snapshot.families {
        for point in &mut family.points {
            match point.labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
                Ok(i) => point.labels[i].1 = value.to_owned(),
                Err(i) => point.labels.insert(i, (name.to_owned(), value.to_owned())),
            }
        }
    }
}

/// `Exporter` for a type whose inherent `async fn shutdown(self, Duration) -> usize` drains
/// it, under `name`.
macro_rules! exporter {
    ($ty:ty, $name:expr) => {
        impl $crate::lifecycle::Exporter for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn shutdown(
                self: Box<Self>,
                deadline: std::time::Duration,
            ) -> $crate::lifecycle::Drain {
                Box::pin(<$ty>::shutdown(*self, deadline))
            }
        }
    };
}
pub(crate) use exporter;

#[cfg(test)]
mod tests;
