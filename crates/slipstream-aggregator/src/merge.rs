//! Partial aggregates from another slipstream (two-tier mode), on their way into the window
//! store.
//!
//! [`check`] runs when a request arrives, on the receiver's thread: it compares the sender's
//! header with this aggregator (slot width, histogram layout and range, dimensions: anything
//! else would not merge losslessly), checks every series and slot against the schema's rules
//! and turns the series keys back into the bytes a span of that series would have. Nothing
//! touches the window store then: the checked batch waits in [`Pending`] and the next tick
//! merges it (`Store::merge`), so the store keeps its single writer.
//!
//! [`Pending::offer`] first checks that the batch is plausible now: no slot further in the
//! future than the aggregator's skew allows (a span's end time would be clamped into the
//! current slot; a shipment's slot is refused instead, or a forged one could fill the slot
//! every alert window reads), none long gone (before the retention by more than the skew).
//! A batch that is not is refused whole ([`MergeError::Implausible`]); nothing of it is merged.

use std::time::Duration;

use rustc_hash::FxHashMap;
use slipstream_core::aggregates::{
    ExportAggregatesRequest, HISTOGRAM_LAYOUT, Header, Overflow, Series,
};
use slipstream_core::exemplar::{BAD_EXEMPLARS, SLOW_EXEMPLARS};
use slipstream_core::{Exemplars, MergeError, Merged, UnixNanos};

use std::sync::Arc;

use crate::histogram::bucket_of;
use crate::key;
use crate::shard::ShardConfig;
use crate::threshold::{MAX_LATENCY_THRESHOLDS, Thresholds};

/// The requests, bad requests and slot of one (series, slot) addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotCounts {
    /// Slot number (start / slot width).
    pub(crate) slot: u64,
    /// Requests (a sampled span counts its adjusted count).
    pub(crate) total: u64,
    pub(crate) bad: u64,
    /// Spans they came from.
    pub(crate) spans: u64,
    /// Of those, spans that carried a sampling threshold.
    pub(crate) sampled_spans: u64,
}

/// One slot of a checked series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeSlot {
    pub(crate) counts: SlotCounts,
    /// `(bucket, count)`, strictly ascending, adding up to `counts.total`.
    pub(crate) buckets: Vec<(u32, u64)>,
    /// The latency thresholds the sender compared every request of the slot with, and the
    /// requests above each; `None` when it sent none.
    pub(crate) above: Option<Above>,
    /// The example requests the sender kept for the slot.
    pub(crate) exemplars: Exemplars,
}

/// Latency thresholds and the requests above each.
pub(crate) type Above = (Arc<Thresholds>, Vec<u64>);

/// One checked series of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MergeSeries {
    /// The key (the service part alone for a service's overflow series; empty for the global
    /// one).
    pub(crate) key: Box<[u8]>,
    pub(crate) overflow: Overflow,
    /// `(version, first seen, last seen)`.
    pub(crate) versions: Vec<(Box<str>, UnixNanos, UnixNanos)>,
    pub(crate) slots: Vec<MergeSlot>,
}

/// The most requests one slot of one request may add (2^40, a trillion): far beyond any real
/// traffic, and small enough that no realistic number of merges overflows a counter.
const MAX_SLOT_TOTAL: u64 = 1 << 40;

/// One run of a sender: its instance name and start time.
type Run = (String, UnixNanos);

/// Checked batches waiting for the next tick, and the last sequence merged from each sender
/// run.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    batches: Vec<Vec<MergeSeries>>,
    /// Slots in `batches`.
    slots: usize,
    /// Last sequence merged, and when, per sender run.
    senders: FxHashMap<Run, (u64, UnixNanos)>,
}

impl Pending {
    /// Queues a checked batch, unless it is not plausible at `now` ([`Checked::plausible`]),
    /// repeats one already merged from the same sender run (`sequence` 0 is never a repeat)
    /// or the queue holds `max_slots` slots already (one batch is always taken when the queue
    /// is empty, however large).
    pub(crate) fn offer(
        &mut self,
        checked: Checked,
        now: UnixNanos,
        max_slots: usize,
        retry_after: Duration,
    ) -> Result<Merged, MergeError> {
        checked.plausible(now)?;
        let run = (checked.instance, checked.started);
        if checked.sequence > 0
            && self
                .senders
                .get(&run)
                .is_some_and(|(last, _)| *last >= checked.sequence)
        {
            return Ok(Merged::Duplicate);
        }
        if !self.batches.is_empty() && self.slots + checked.slots > max_slots {
            return Err(MergeError::Busy(retry_after));
        }
        if checked.sequence > 0 {
            self.senders.insert(run, (checked.sequence, now));
        }
        self.slots += checked.slots;
        self.batches.push(checked.series);
        Ok(Merged::Accepted)
    }

    /// Takes every queued batch, and forgets sender runs not heard from since `forget_before`.
    pub(crate) fn take(&mut self, forget_before: UnixNanos) -> Vec<Vec<MergeSeries>> {
        self.senders.retain(|_, (_, at)| *at >= forget_before);
        self.slots = 0;
        std::mem::take(&mut self.batches)
    }
}

/// A request that passed [`check`].
#[derive(Debug)]
pub(crate) struct Checked {
    instance: String,
    started: UnixNanos,
    sequence: u64,
    series: Vec<MergeSeries>,
    slots: usize,
    /// The first and last slot numbers of `series` (`None` without a slot).
    span: Option<(u64, u64)>,
    /// The aggregator's slot width, retention (slots) and future skew.
    slot_ns: u64,
    retention_slots: u64,
    future_skew_ns: u64,
}

impl Checked {
    /// `Err(Implausible)` when a slot starts after the one holding `now` plus the future skew
    /// (what a span's end time would be clamped from), or ended before the retention by more
    /// than the skew (a sender's clock may be behind by that much; a slot within it but
    /// before the retention is dropped as late, as a late span is).
    pub(crate) fn plausible(&self, now: UnixNanos) -> Result<(), MergeError> {
        let Some((first, last)) = self.span else {
            return Ok(());
        };
        let start = |slot: u64| slot.saturating_mul(self.slot_ns);
        let latest = now.saturating_add(self.future_skew_ns) / self.slot_ns;
        if last > latest {
            return Err(MergeError::Implausible(format!(
                "a slot starts {:?} ahead of this aggregator's clock; the limit is aggregator.max_future_skew ({:?})",
                Duration::from_nanos(start(last).saturating_sub(now)),
                Duration::from_nanos(self.future_skew_ns)
            )));
        }
        let skew_slots = self.future_skew_ns.div_ceil(self.slot_ns);
        let oldest = (now / self.slot_ns + 1)
            .saturating_sub(self.retention_slots)
            .saturating_sub(skew_slots);
        if first < oldest {
            return Err(MergeError::Implausible(format!(
                "a slot started {:?} ago, before this aggregator's retention ({:?}) plus aggregator.max_future_skew ({:?})",
                Duration::from_nanos(now.saturating_sub(start(first))),
                Duration::from_nanos(start(self.retention_slots)),
                Duration::from_nanos(self.future_skew_ns)
            )));
        }
        Ok(())
    }
}

/// What a sender puts in the header for an aggregator configured as `cfg` (the sender's
/// instance, run and sequence left unset).
pub(crate) fn header(cfg: &ShardConfig) -> Header {
    Header {
        slot_width_nanos: cfg.slot_ns,
        histogram_layout: HISTOGRAM_LAYOUT.to_owned(),
        histogram_max_value_nanos: cfg.max_value,
        dimensions: cfg.layout.names.iter().map(|n| n.to_string()).collect(),
        ..Header::default()
    }
}

/// Checks `req` against an aggregator configured as `cfg` and turns it into what the store
/// merges.
pub(crate) fn check(
    cfg: &ShardConfig,
    req: ExportAggregatesRequest,
) -> Result<Checked, MergeError> {
    let h = req
        .header
        .ok_or_else(|| MergeError::Invalid("the request has no header".to_owned()))?;
    check_header(cfg, &h)?;
    let mut series = Vec::with_capacity(req.series.len());
    let mut slots = 0;
    let mut span: Option<(u64, u64)> = None;
    for (i, s) in req.series.into_iter().enumerate() {
        let s =
            check_series(cfg, s).map_err(|e| MergeError::Invalid(format!("series[{i}]: {e}")))?;
        slots += s.slots.len();
        for n in s.slots.iter().map(|x| x.counts.slot) {
            span = Some(span.map_or((n, n), |(a, b)| (a.min(n), b.max(n))));
        }
        series.push(s);
    }
    Ok(Checked {
        instance: h.instance,
        started: h.instance_started_unix_nanos,
        sequence: h.sequence,
        series,
        slots,
        span,
        slot_ns: cfg.slot_ns,
        retention_slots: cfg.retention_slots,
        future_skew_ns: cfg.future_skew_ns,
    })
}

fn check_header(cfg: &ShardConfig, h: &Header) -> Result<(), MergeError> {
    let incompatible = |m: String| Err(MergeError::Incompatible(m));
    if h.slot_width_nanos != cfg.slot_ns {
        return incompatible(format!(
            "the sender's slots are {:?} wide, this aggregator's {:?} (aggregator.slot_width must be the same on both tiers)",
            Duration::from_nanos(h.slot_width_nanos),
            Duration::from_nanos(cfg.slot_ns)
        ));
    }
    if h.histogram_layout != HISTOGRAM_LAYOUT {
        return incompatible(format!(
            "histogram layout `{}` is not this aggregator's `{HISTOGRAM_LAYOUT}`",
            h.histogram_layout
        ));
    }
    if h.histogram_max_value_nanos < cfg.max_value {
        return incompatible(format!(
            "the sender clamps latencies at {:?}, below this aggregator's {:?} (aggregator.histogram_max_value must be at least as large on the sender)",
            Duration::from_nanos(h.histogram_max_value_nanos),
            Duration::from_nanos(cfg.max_value)
        ));
    }
    if !h
        .dimensions
        .iter()
        .map(String::as_str)
        .eq(cfg.layout.names.iter().map(|n| &**n))
    {
        let ours: Vec<&str> = cfg.layout.names.iter().map(|n| &**n).collect();
        return incompatible(format!(
            "the sender's series labels {:?} are not this aggregator's {ours:?} (the aggregator's dimensions must be the same on both tiers)",
            h.dimensions
        ));
    }
    Ok(())
}

fn check_series(cfg: &ShardConfig, s: Series) -> Result<MergeSeries, String> {
    let overflow = Overflow::try_from(s.overflow)
        .map_err(|_| format!("unknown overflow value {}", s.overflow))?;
    let key = match overflow {
        Overflow::None => key::key_of_values(&cfg.layout, &s.key, false)?,
        Overflow::Service => key::key_of_values(&cfg.layout, &s.key, true)?,
        Overflow::Global if s.key.is_empty() => Vec::new(),
        Overflow::Global => return Err("the global overflow series has a key".to_owned()),
    };
    let mut slots = Vec::with_capacity(s.slots.len());
    for (j, slot) in s.slots.into_iter().enumerate() {
        if slot.total == 0 && slot.bucket_indexes.is_empty() {
            continue;
        }
        slots.push(check_slot(cfg, slot).map_err(|e| format!("slots[{j}]: {e}"))?);
    }
    Ok(MergeSeries {
        key: key.into(),
        overflow,
        versions: s
            .versions
            .into_iter()
            .map(|v| {
                // A sender that does not say when it last saw the version: when it first did.
                let last = match v.last_seen_unix_nanos {
                    0 => v.first_seen_unix_nanos,
                    t => t,
                };
                (v.version.into(), v.first_seen_unix_nanos, last)
            })
            .collect(),
        slots,
    })
}

fn check_slot(
    cfg: &ShardConfig,
    slot: slipstream_core::aggregates::Slot,
) -> Result<MergeSlot, String> {
    if !slot.start_unix_nanos.is_multiple_of(cfg.slot_ns) {
        return Err(format!(
            "start {} is not on a slot boundary",
            slot.start_unix_nanos
        ));
    }
    if slot.total > MAX_SLOT_TOTAL {
        return Err(format!(
            "total {} is beyond what one slot can hold ({MAX_SLOT_TOTAL})",
            slot.total
        ));
    }
    if slot.bad > slot.total {
        return Err(format!("bad {} is above total {}", slot.bad, slot.total));
    }
    if slot.bucket_indexes.len() != slot.bucket_counts.len() {
        return Err("bucket_indexes and bucket_counts differ in length".to_owned());
    }
    let top = bucket_of(u64::MAX);
    let mut sum = 0u64;
    let mut previous: Option<u32> = None;
    for (&b, &n) in slot.bucket_indexes.iter().zip(&slot.bucket_counts) {
        if b > top || previous.is_some_and(|p| p >= b) {
            return Err(format!(
                "bucket index {b} is out of order or beyond the last bucket ({top})"
            ));
        }
        previous = Some(b);
        sum = sum.saturating_add(n);
    }
    if sum != slot.total {
        return Err(format!(
            "the buckets add up to {sum}, not to total {}",
            slot.total
        ));
    }
    let above = check_above(&slot)?;
    let exemplars = check_exemplars(&slot)?;
    // From an older sender: one span per request, none sampled.
    let spans = if slot.spans == 0 {
        slot.total
    } else {
        slot.spans
    };
    if spans > slot.total || slot.sampled_spans > spans {
        return Err(format!(
            "{spans} spans ({} sampled) for total {}: every span counts at least one request",
            slot.sampled_spans, slot.total
        ));
    }
    Ok(MergeSlot {
        counts: SlotCounts {
            slot: slot.start_unix_nanos / cfg.slot_ns,
            total: slot.total,
            bad: slot.bad,
            spans,
            sampled_spans: slot.sampled_spans,
        },
        buckets: slot
            .bucket_indexes
            .into_iter()
            .zip(slot.bucket_counts)
            .filter(|(_, n)| *n > 0)
            .collect(),
        above,
        exemplars,
    })
}

/// The slot's exemplars: at most as many as a set keeps, each with the ids of a valid span.
fn check_exemplars(slot: &slipstream_core::aggregates::Slot) -> Result<Exemplars, String> {
    let max = BAD_EXEMPLARS + SLOW_EXEMPLARS;
    if slot.exemplars.len() > max {
        return Err(format!(
            "{} exemplars, more than {max}",
            slot.exemplars.len()
        ));
    }
    let mut set = Exemplars::default();
    for (i, e) in slot.exemplars.iter().enumerate() {
        let e = e.to_exemplar().ok_or_else(|| {
            format!("exemplars[{i}]: the trace id must be 16 bytes (not all zero), the span id 8")
        })?;
        set.offer(e);
    }
    Ok(set)
}

/// The slot's exact latency-threshold counts: thresholds strictly ascending, at most
/// [`MAX_LATENCY_THRESHOLDS`], one count each, none above `total`.
fn check_above(slot: &slipstream_core::aggregates::Slot) -> Result<Option<Above>, String> {
    let (t, n) = (&slot.latency_thresholds_nanos, &slot.above_threshold);
    if t.len() != n.len() {
        return Err("latency_thresholds_nanos and above_threshold differ in length".to_owned());
    }
    if t.is_empty() {
        return Ok(None);
    }
    if t.len() > MAX_LATENCY_THRESHOLDS {
        return Err(format!(
            "{} latency thresholds, more than {MAX_LATENCY_THRESHOLDS}",
            t.len()
        ));
    }
    if t.windows(2).any(|w| w[0] >= w[1]) {
        return Err("latency_thresholds_nanos are not strictly ascending".to_owned());
    }
    if let Some(x) = n.iter().find(|&&x| x > slot.total) {
        return Err(format!(
            "{x} requests above a threshold, more than total {}",
            slot.total
        ));
    }
    if n.windows(2).any(|w| w[0] < w[1]) {
        return Err("above_threshold grows with the threshold".to_owned());
    }
    Ok(Some((
        Arc::new(Thresholds::new(t.iter().copied())),
        n.clone(),
    )))
}

#[cfg(all(test, not(loom)))]
mod tests;
