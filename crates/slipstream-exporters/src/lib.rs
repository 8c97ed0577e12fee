//! slipstream's exporters, one module per protocol.
//!
//! [`forward`] holds the forward queue (the receivers' [`slipstream_core::ForwardSink`]) and
//! the OTLP exporter that drains it downstream with retries, untouched bytes in, untouched
//! bytes out. Each exporter owns a bounded queue and counts every failure; a slow or dead
//! downstream pushes back on clients but never blocks another exporter.
//!
//! SLI series arrive as [`slipstream_core::MetricsSnapshot`]s (from a
//! [`slipstream_core::MetricsSource`]) and burn-rate events as
//! [`slipstream_core::BurnRateEvent`]s; the binary builds both from the aggregator's and the
//! SLO engine's snapshots. [`delivery`] is the bounded queue with retries every push exporter
//! uses. In two-tier mode, [`aggregates`] ships a sidecar's partial aggregates
//! ([`slipstream_core::aggregates`]) to the gateway that owns each service.
//!
//! Every exporter but the forward one follows one lifecycle ([`lifecycle`]): a constructor
//! that fails with the crate's [`Error`], feeding that never waits, and a drain behind the
//! [`Exporter`] trait that the wiring runs for all of them at once ([`shutdown_all`]). The
//! forward exporter drains on its own, earlier, and may spill to disk ([`DrainReport`]). A
//! failed attempt is a [`SendError`], classified by [`failure::classify`] under the
//! exporter's [`RetryPolicy`].
#![forbid(unsafe_code)]

pub mod aggregates;
pub mod alertmanager;
pub mod delivery;
mod error;
pub mod events;
pub mod failure;
pub mod forward;
pub mod lifecycle;
pub mod names;
pub mod otlp_logs;
pub mod otlp_metrics;
pub mod prometheus;
pub mod remote_write;
mod resolve;
pub mod stdout;
pub mod webhook;

pub use error::Error;
pub use failure::{FailureReason, RetryPolicy, SendError};
pub use forward::{DrainReport, ForwardQueue, ForwardRouter, Forwarder, ForwarderHandle};
pub use lifecycle::{EventExporter, Exporter, shutdown_all, start_series_exporters};
pub use resolve::DnsName;
