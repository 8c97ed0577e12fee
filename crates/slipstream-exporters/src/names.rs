//! The self-metrics of the exporters, declared once.
//!
//! Every push exporter (`alertmanager`, `webhook`, `otlp_logs`, `remote_write`,
//! `otlp_metrics`, `aggregates`) delivers through [`crate::delivery`], which counts under these
//! names with the exporter's name in the `exporter` label.

use slipstream_core::metric;
use slipstream_core::telemetry::MetricDesc;

metric!(
    SENT,
    "slipstream_exporter_sent_total",
    Counter,
    ["exporter"],
    "Items (requests, alert batches, events) a push exporter delivered."
);
metric!(
    FAILURES,
    "slipstream_exporter_failures_total",
    Counter,
    ["exporter", "reason"],
    "Delivery attempts of a push exporter that failed, by reason (unreachable, timeout, http_status, grpc_status)."
);
metric!(
    DROPPED,
    "slipstream_exporter_dropped_total",
    Counter,
    ["exporter", "reason"],
    "Items a push exporter gave up on, by reason (queue_full, rejected, retries_exhausted, shutdown)."
);
metric!(
    QUEUE_LENGTH,
    "slipstream_exporter_queue_length",
    Gauge,
    ["exporter"],
    "Items waiting in a push exporter's queue (the one being sent not included)."
);

/// Every self-metric of the exporters, in the order they are rendered.
pub static ALL: &[&MetricDesc] = &[&SENT, &FAILURES, &DROPPED, &QUEUE_LENGTH];
