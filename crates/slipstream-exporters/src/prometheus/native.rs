//! Latency histograms as Prometheus native histograms, shared by the protobuf exposition
//! ([`super::proto`]) and remote write.
//!
//! slipstream's buckets are log-linear (64 equal buckets per power of two, each 1/64 to
//! 1/128 of its value wide); native buckets are exponential. Each input bucket goes whole to
//! the schema-8 bucket holding its midpoint (schema 8 is the finest Prometheus has: 256
//! buckets per power of two, each at most 0.271% wide). An input bucket is at least 0.78% wide,
//! so no two share a native bucket: the native histogram keeps every bucket's count, placed
//! at its midpoint to within 0.271%. A quantile Prometheus computes from it is within half an
//! input bucket plus one native bucket of the exact one: at most 1/128 + 0.271% (1.05%), and
//! typically far less on traffic spread over many buckets. Whole buckets keep every native
//! count an integer that only grows while the input only grows, as `rate()` needs (a split
//! count rounded per native bucket could shrink and read as a counter reset).

use slipstream_core::export::HistogramValue;

use crate::otlp_metrics::bucket_index;

/// The schema of every native histogram slipstream exports.
pub const SCHEMA: i32 = 8;
/// The zero bucket's half-width: `client_golang`'s default (2^-128), so only
/// zero-length spans land in it.
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// A native histogram with integer counts, in Prometheus' span-and-delta form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Native {
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// `(offset, length)` of each run of positive buckets: the first offset is the index of
    /// the first bucket, each next one the gap since the previous run. An empty histogram has
    /// one `(0, 0)` span, which marks it native.
    pub spans: Vec<(i32, u32)>,
    /// Each bucket's count minus the previous one's (the first: its count).
    pub deltas: Vec<i64>,
}

/// The Prometheus index of the schema-8 bucket `(base^(i-1), base^i]` holding `v > 0`.
pub fn index(v: f64) -> i32 {
    // The OTLP index `j` names `(base^j, base^(j+1)]`.
    bucket_index(v, SCHEMA) + 1
}

/// `h` as a schema-8 native histogram (see the module docs for the mapping and its error).
pub fn native(h: &HistogramValue) -> Native {
    let mut out = Native {
        count: h.count,
        sum: h.sum,
        ..Native::default()
    };
    let mut buckets: Vec<(i32, u64)> = Vec::with_capacity(h.buckets.len());
    for &(lower, upper, n) in &h.buckets {
        if n == 0 {
            continue;
        }
        let at = if upper.is_infinite() {
            lower
        } else {
            (lower.max(0.0) + upper) / 2.0
        };
        if at.is_nan() || at <= ZERO_THRESHOLD {
            out.zero_count += n;
            continue;
        }
        let i = index(at);
        match buckets.last_mut() {
            Some((last, c)) if *last == i => *c += n,
            _ => buckets.push((i, n)),
        }
    }
    buckets.sort_by_key(|b| b.0);
    buckets.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    let mut previous_index: Option<i32> = None;
    let mut previous_count = 0i64;
    for (i, n) in buckets {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        match previous_index {
            Some(p) if i == p + 1 => {
                if let Some(last) = out.spans.last_mut() {
                    last.1 += 1;
                }
            }
            Some(p) => out.spans.push((i - p - 1, 1)),
            None => out.spans.push((i, 1)),
        }
        out.deltas.push(n - previous_count);
        previous_count = n;
        previous_index = Some(i);
    }
    if out.spans.is_empty() {
        out.spans.push((0, 0));
    }
    out
}
