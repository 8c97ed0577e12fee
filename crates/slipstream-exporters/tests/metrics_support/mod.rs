//! What the SLI-series exporter tests (`prometheus_*`, `remote_write_*`, `otlp_metrics_*`)
//! share: a recording HTTP server and the time (from `slipstream-test-support`), points, and
//! the exporters' self-metrics.
// Each test crate uses a part of it.
#![allow(dead_code, unused_imports)]

use slipstream_core::Registry;
use slipstream_core::export::{Point, PointValue};
pub(crate) use slipstream_test_support::recorder::{
    Log, Served, now_nanos, respond, serve, wait_for_requests,
};

/// A point with these labels (sorted by the caller) and value, started at 1000 ns.
pub(crate) fn point(service: Option<&str>, labels: &[(&str, &str)], value: PointValue) -> Point {
    Point {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        service: service.map(str::to_owned),
        value,
        start_time: 1_000,
        exemplars: Vec::new(),
    }
}

/// A self-metric of `exporter` (`slipstream_exporter_*`), summed over its other labels.
pub(crate) fn exporter_metric(registry: &Registry, name: &str, exporter: &str) -> f64 {
    let prefix = format!("{name}{{exporter=\"{exporter}\"");
    registry
        .render_prometheus()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}
