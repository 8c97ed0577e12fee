//! slipstream's exporters, one module per protocol.
//!
//! [`forward`] holds the forward queue (the receivers' [`slipstream_core::ForwardSink`]) and
//! the OTLP exporter that drains it downstream with retries, untouched bytes in, untouched
//! bytes out. Each exporter owns a bounded queue and counts every failure; a slow or dead
//! downstream pushes back on clients but never blocks another exporter.
#![forbid(unsafe_code)]

pub mod forward;

pub use forward::{ForwardQueue, Forwarder, ForwarderHandle};
