//! SLI series pushed as OTLP metrics.
//!
//! Every `interval` the exporter collects a [`MetricsSnapshot`](slipstream_core::MetricsSnapshot),
//! converts it with [`to_request`] and sends it over OTLP/gRPC or OTLP/HTTP (protobuf).
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
    DEFAULT_SERVICE, MAX_BUCKETS, MAX_SCALE, MIN_SCALE, SCOPE, bucket_index, exponential_point,
    lower_boundary, to_request,
};

#[cfg(test)]
mod tests;
