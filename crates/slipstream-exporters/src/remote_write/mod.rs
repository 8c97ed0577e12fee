//! SLI series pushed with Prometheus remote write 1.0.
//!
//! Every `interval` the remote writer collects a [`MetricsSnapshot`], encodes it as
//! `prometheus.WriteRequest`s ([`encode`]: protobuf, snappy block compression, at most
//! [`MAX_SERIES_PER_REQUEST`] series each) and hands them to the delivery queue, which
//! retries 5xx, 429 and connection errors with backoff and drops other 4xx answers as
//! permanent.
//!
//! Series are named as on the scrape endpoint ([`crate::prometheus`]): counters and gauges
//! keep the family name (`_total` included), histograms become `_bucket{le}`, `_sum` and
//! `_count`. Labels are sorted by name, `__name__` among them (first, unless a label name
//! starts with an upper-case letter). Every sample carries the snapshot's time in
//! milliseconds.

mod proto;

pub use proto::{Label, Sample, TimeSeries, WriteRequest};

use bytes::Bytes;
use prost::Message;
use slipstream_core::MetricsSnapshot;

use crate::prometheus::{for_each_sample, format_le};

/// Most series in one request; a larger snapshot is split (Prometheus' own default
/// `max_samples_per_send` is 2000).
pub const MAX_SERIES_PER_REQUEST: usize = 2000;

/// `Content-Type` of a remote-write body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Encoding` of a remote-write body.
pub const CONTENT_ENCODING: &str = "snappy";
/// `X-Prometheus-Remote-Write-Version` of remote write 1.0.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// The snapshot as remote-write time series, in family order, each with one sample at the
/// snapshot's time (`at`, or `now` when the snapshot has none).
pub fn timeseries(snapshot: &MetricsSnapshot, now_ms: i64) -> Vec<TimeSeries> {
    let timestamp = if snapshot.at == 0 {
        now_ms
    } else {
        i64::try_from(snapshot.at / 1_000_000).unwrap_or(i64::MAX)
    };
    let mut out = Vec::new();
    for family in &snapshot.families {
        for point in &family.points {
            for_each_sample(family, point, |suffix, le, value| {
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
                });
            });
        }
    }
    out
}

/// The snapshot as snappy-compressed `WriteRequest` bodies of at most `max_series` series
/// each (at least one body, possibly empty, so an empty snapshot still shows the target is
/// reachable).
pub fn encode(snapshot: &MetricsSnapshot, now_ms: i64, max_series: usize) -> Vec<Bytes> {
    let series = timeseries(snapshot, now_ms);
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

/// Decodes a body [`encode`] made (for tests and tools).
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(&raw[..]).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests;
