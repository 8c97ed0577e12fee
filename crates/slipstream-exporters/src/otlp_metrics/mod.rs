//! SLI series pushed as OTLP metrics.
//!
//! Every `interval` the [`OtlpMetricsExporter`] collects a [`MetricsSnapshot`](slipstream_core::MetricsSnapshot),
//! converts it with [`to_request`] and sends it over OTLP/gRPC or OTLP/HTTP (protobuf) with
//! the forward exporter's request code, through a [`crate::delivery`] queue (retries with
//! backoff; gRPC statuses and HTTP answers classified as the forward exporter does).
//!
//! | [`MetricKind`](slipstream_core::export::MetricKind) | OTLP |
//! |---|---|
//! | `Counter` | `Sum`, cumulative, monotonic, double |
//! | `Gauge` | `Gauge`, double |
//! | `Histogram` | `ExponentialHistogram`, cumulative (see [`exponential_point`]) |
//!
//! One `ResourceMetrics` per distinct `Point::service` (`service.name`; points of no service
//! under `service.name=slipstream`), scope `slipstream`; labels become string attributes of
//! the data point, the metric name is kept as given.

mod convert;

pub use convert::{
    DEFAULT_SERVICE, MAX_BUCKETS, MAX_SCALE, MIN_SCALE, SCOPE, bucket_index, exponential_buckets,
    exponential_point, lower_boundary, to_request,
};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use slipstream_config::exporters::OtlpExportConfig;
use slipstream_core::{MetricsSource, Registry, Signal};

use crate::Error;
use crate::forward::otlp_delivery;
use crate::remote_write::push::Periodic;

/// The `exporter` label value of the OTLP metrics exporter's self-metrics.
pub const EXPORTER: &str = "otlp_metrics";

/// The running OTLP metrics exporter.
#[derive(Debug)]
pub struct OtlpMetricsExporter {
    push: Periodic<Bytes>,
}

impl OtlpMetricsExporter {
    /// Exports `source`'s series to `cfg.endpoint` every `cfg.interval`, the first export at
    /// once, over `cfg.protocol`, through a delivery queue (exporter `otlp_metrics`). Needs a
    /// tokio runtime. Fails on an endpoint that is not `http://host:port` or a header that is
    /// not valid HTTP.
    pub fn start(
        cfg: &OtlpExportConfig,
        source: Arc<dyn MetricsSource>,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let delivery = otlp_delivery(
            EXPORTER,
            "exporters.otlp_metrics",
            cfg,
            Signal::Metrics,
            registry,
        )?;
        let push = Periodic::start(cfg.interval, source, delivery, |snapshot| {
            vec![Bytes::from(to_request(snapshot).encode_to_vec())]
        });
        Ok(OtlpMetricsExporter { push })
    }

    /// Exports one last snapshot and delivers what is queued, all within `deadline`; returns
    /// the number of requests left undelivered (counted as dropped, `reason="shutdown"`).
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.push.shutdown(deadline).await
    }
}

crate::lifecycle::exporter!(OtlpMetricsExporter, EXPORTER);

#[cfg(test)]
mod tests;
