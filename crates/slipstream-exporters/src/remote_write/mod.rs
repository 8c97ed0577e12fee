//! SLI series pushed with Prometheus remote write 1.0.
//!
//! Every `interval` the [`RemoteWriter`] collects a [`MetricsSnapshot`], encodes it as
//! `prometheus.WriteRequest`s ([`encode`]: protobuf, snappy block compression, at most
//! [`MAX_SERIES_PER_REQUEST`] series each) and hands them to the delivery queue, which
//! retries 5xx, 429 and connection errors with backoff and drops other 4xx answers as
//! permanent.
//!
//! Series are named as on the scrape endpoint ([`crate::prometheus`]): counters and gauges
//! keep the family name (`_total` included), histograms become `_bucket{le}` (the configured
//! boundaries, the same for every series, then `+Inf`), `_sum` and `_count`; with
//! `native_histograms` a histogram is instead one series named as the family carrying native
//! histogram samples (schema 8, see [`crate::prometheus::native`]). Labels are sorted by name, `__name__` among them (first, unless a label name
//! starts with an upper-case letter). Every sample carries the snapshot's time in
//! milliseconds. A series that was in the previous push and is missing from this one gets a
//! staleness marker ([`Staleness`]), so it disappears from queries at once, as it would from a
//! scrape.

mod proto;
pub(crate) mod push;

pub use proto::{BucketSpan, Histogram, Label, Sample, TimeSeries, WriteRequest};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use prost::Message;
use slipstream_config::exporters::RemoteWriteConfig;
use slipstream_core::export::{HistogramValue, MetricKind, Point, PointValue};
use slipstream_core::{MetricsSnapshot, MetricsSource, Registry};

use crate::Error;
use crate::delivery::{self, Delivery};
use crate::prometheus::{Histograms, for_each_sample, format_le, native};
use push::Periodic;

/// Most series in one request; a larger snapshot is split (Prometheus' own default
/// `max_samples_per_send` is 2000).
pub const MAX_SERIES_PER_REQUEST: usize = 2000;

/// `Content-Type` of a remote-write body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Encoding` of a remote-write body.
pub const CONTENT_ENCODING: &str = "snappy";
/// `X-Prometheus-Remote-Write-Version` of remote write 1.0.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// The `exporter` label value of the remote writer's self-metrics.
pub const EXPORTER: &str = "remote_write";

/// Starts the remote-write exporter.
#[derive(Debug)]
pub struct RemoteWriter;

/// The running remote-write exporter.
#[derive(Debug)]
pub struct RemoteWriterHandle {
    push: Periodic<Bytes>,
}

impl RemoteWriter {
    /// Pushes `source`'s series to `cfg.endpoint` every `cfg.interval`, the first push at once,
    /// through a delivery queue (exporter `remote_write`). Needs a tokio runtime. Fails on an
    /// endpoint that is not an `http://` URL or on a header that is not valid HTTP.
    pub fn start(
        cfg: &RemoteWriteConfig,
        source: Arc<dyn MetricsSource>,
        registry: &Registry,
    ) -> Result<RemoteWriterHandle, Error> {
        let url = delivery::http_url("exporters.remote_write.endpoint", &cfg.endpoint)?;
        let headers = request_headers(&cfg.headers)?;
        let client =
            delivery::http_client("exporters.remote_write", cfg.timeout, cfg.tls.as_ref())?;
        let timeout = cfg.timeout;
        let queue = Delivery::start(EXPORTER, &cfg.delivery(), registry, move |body: &Bytes| {
            let (client, url, headers, body) =
                (client.clone(), url.clone(), headers.clone(), body.clone());
            async move { delivery::post(&client, &url, &headers, CONTENT_TYPE, body, timeout).await }
        });
        let staleness = Mutex::new(Staleness::default());
        let layout = Layout {
            histograms: Histograms::new(&cfg.histogram),
            native: cfg.native_histograms,
        };
        let push = Periodic::start(cfg.interval, source, queue, move |snapshot| {
            let now = now_ms();
            let mut series = timeseries(snapshot, now, &layout);
            staleness
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .mark(&mut series, timestamp_ms(snapshot, now));
            compress(series, MAX_SERIES_PER_REQUEST)
        });
        Ok(RemoteWriterHandle { push })
    }
}

impl RemoteWriterHandle {
    /// Pushes one last snapshot and delivers what is queued, all within `deadline`; returns
    /// the number of requests left undelivered (counted as dropped, `reason="shutdown"`).
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.push.shutdown(deadline).await
    }
}

crate::lifecycle::exporter!(RemoteWriterHandle, EXPORTER);

/// The remote-write headers, then the configured ones (which win on a clash).
fn request_headers(
    configured: &std::collections::BTreeMap<String, String>,
) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(CONTENT_ENCODING),
    );
    headers.insert(
        HeaderName::from_static("x-prometheus-remote-write-version"),
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("slipstream/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in delivery::header_map("exporters.remote_write", configured)? {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    Ok(headers)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The snapshot's time in milliseconds (`at`, or `now_ms` when the snapshot has none).
fn timestamp_ms(snapshot: &MetricsSnapshot, now_ms: i64) -> i64 {
    if snapshot.at == 0 {
        now_ms
    } else {
        i64::try_from(snapshot.at / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// How histograms are written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The classic buckets.
    pub histograms: Histograms,
    /// Native histogram samples instead of classic series.
    pub native: bool,
}

/// The snapshot as remote-write time series, in family order, each with one sample at the
/// snapshot's time (`at`, or `now_ms` when the snapshot has none).
pub fn timeseries(snapshot: &MetricsSnapshot, now_ms: i64, layout: &Layout) -> Vec<TimeSeries> {
    let timestamp = timestamp_ms(snapshot, now_ms);
    let mut out = Vec::new();
    for family in &snapshot.families {
        for point in &family.points {
            if layout.native
                && let PointValue::Histogram(h) = &point.value
            {
                if family.kind == MetricKind::Histogram {
                    out.push(native_series(&family.name, point, h, timestamp));
                }
                continue;
            }
            for_each_sample(family, point, &layout.histograms, |suffix, le, value| {
                let mut labels = Vec::with_capacity(point.labels.len() + 2);
                labels.push(Label {
                    name: "__name__".to_owned(),
                    value: format!("{}{suffix}", family.name),
                });
                labels.extend(point.labels.iter().map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                }));
                if let Some(le) = le {
                    labels.push(Label {
                        name: "le".to_owned(),
                        value: format_le(le),
                    });
                }
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                out.push(TimeSeries {
                    labels,
                    samples: vec![Sample { value, timestamp }],
                    histograms: Vec::new(),
                });
            });
        }
    }
    out
}

/// One series named `name` holding `h` as a native histogram sample.
fn native_series(name: &str, point: &Point, h: &HistogramValue, timestamp: i64) -> TimeSeries {
    let mut labels = Vec::with_capacity(point.labels.len() + 1);
    labels.push(Label {
        name: "__name__".to_owned(),
        value: name.to_owned(),
    });
    labels.extend(point.labels.iter().map(|(name, value)| Label {
        name: name.clone(),
        value: value.clone(),
    }));
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let n = native::native(h);
    TimeSeries {
        labels,
        samples: Vec::new(),
        histograms: vec![Histogram {
            count_int: n.count,
            sum: n.sum,
            schema: native::SCHEMA,
            zero_threshold: native::ZERO_THRESHOLD,
            zero_count_int: n.zero_count,
            positive_spans: n
                .spans
                .iter()
                .map(|&(offset, length)| BucketSpan { offset, length })
                .collect(),
            positive_deltas: n.deltas,
            reset_hint: 0,
            timestamp,
        }],
    }
}

/// The snapshot as snappy-compressed `WriteRequest` bodies of at most `max_series` series
/// each (at least one body, possibly empty, so an empty snapshot still shows the target is
/// reachable).
pub fn encode(
    snapshot: &MetricsSnapshot,
    now_ms: i64,
    layout: &Layout,
    max_series: usize,
) -> Vec<Bytes> {
    compress(timeseries(snapshot, now_ms, layout), max_series)
}

/// Series as snappy-compressed `WriteRequest` bodies of at most `max_series` series each
/// (at least one body).
fn compress(series: Vec<TimeSeries>, max_series: usize) -> Vec<Bytes> {
    let mut encoder = snap::raw::Encoder::new();
    let compress = |encoder: &mut snap::raw::Encoder, timeseries: Vec<TimeSeries>| {
        let raw = WriteRequest { timeseries }.encode_to_vec();
        Bytes::from(
            encoder
                .compress_vec(&raw)
                .expect("snappy compresses any input below 4 GiB"),
        )
    };
    if series.is_empty() {
        return vec![compress(&mut encoder, Vec::new())];
    }
    let mut bodies = Vec::with_capacity(series.len().div_ceil(max_series.max(1)));
    let mut series = series.into_iter().peekable();
    while series.peek().is_some() {
        let chunk: Vec<TimeSeries> = series.by_ref().take(max_series.max(1)).collect();
        bodies.push(compress(&mut encoder, chunk));
    }
    bodies
}

/// The bits of Prometheus' staleness marker (`value.StaleNaN`), the sample value that ends a
/// series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Remembers the series of the previous push, so that a series missing from the next
/// snapshot (a ratio whose window lost its traffic, a series evicted by the aggregator) gets a
/// staleness marker, as Prometheus gives a series that vanishes from a scrape, instead of
/// reading as its last value for the 5-minute lookback.
#[derive(Debug, Default)]
pub struct Staleness {
    previous: HashSet<Vec<Label>>,
}

impl Staleness {
    /// Appends one stale marker at `timestamp` (ms) for every series of the previous call
    /// missing from `series`, and remembers `series` for the next call.
    pub fn mark(&mut self, series: &mut Vec<TimeSeries>, timestamp: i64) {
        let current: HashSet<Vec<Label>> = series.iter().map(|ts| ts.labels.clone()).collect();
        let previous = std::mem::replace(&mut self.previous, current);
        let mut gone: Vec<Vec<Label>> = previous
            .into_iter()
            .filter(|labels| !self.previous.contains(labels))
            .collect();
        gone.sort_by(|a, b| {
            a.iter()
                .map(|l| (&l.name, &l.value))
                .cmp(b.iter().map(|l| (&l.name, &l.value)))
        });
        series.extend(gone.into_iter().map(|labels| TimeSeries {
            labels,
            samples: vec![Sample {
                value: f64::from_bits(STALE_NAN_BITS),
                timestamp,
            }],
            histograms: Vec::new(),
        }));
    }
}

/// Decodes a body [`encode`] made (for tests and tools).
pub fn decode(body: &[u8]) -> Result<WriteRequest, Error> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Error::Decode {
            format: "snappy",
            detail: e.to_string(),
        })?;
    WriteRequest::decode(&raw[..]).map_err(|e| Error::Decode {
        format: "protobuf",
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
