//! What readers see: an immutable snapshot of every series and its slots, published on each
//! tick. Series and slots are shared (`Arc`) between consecutive snapshots, so publishing
//! costs a pointer per series and only what changed is copied.

use std::sync::Arc;
use std::time::Duration;

use slipstream_core::aggregates::{self, Overflow};
use slipstream_core::{Exemplars, UnixNanos};

use crate::histogram::{Histogram, SparseHistogram};
use crate::key::{self, Labels};
use crate::threshold::AboveCounts;

/// The counts of one series in one event-time slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotData {
    /// Start of the slot (Unix nanoseconds); it covers `[start, start + slot width)` of span
    /// end times.
    pub start_unix_nanos: UnixNanos,
    /// Requests.
    pub total: u64,
    /// Bad requests (per the outcome rules).
    pub bad: u64,
    /// Latencies (end - start), nanoseconds.
    pub histogram: SparseHistogram,
    /// Requests above each latency threshold, exact where every request of the slot was
    /// compared with it (see `Aggregator::set_latency_thresholds`).
    pub above: AboveCounts,
    /// Spans counted and, of those, spans that carried a sampling threshold; `None` when every
    /// span counted once and carried none (`total` spans), which saves the slot the bytes.
    pub(crate) sampling: Option<Box<[u64; 2]>>,
}

/// The newest slots of a series that keep their exemplars; older ones drop them, so that a
/// series holds at most this many sets (about 200 bytes each) whatever the retention.
pub const EXEMPLAR_SLOTS: usize = 3;

/// The exemplars of a series: one bounded set per slot, for its [`EXEMPLAR_SLOTS`] newest
/// slots that have any. Held by the series rather than by each slot, so that the slots of a
/// series cost nothing more however long the retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemplarSlots {
    /// `(slot start, set)`; an empty set marks an unused entry.
    slots: [(UnixNanos, Exemplars); EXEMPLAR_SLOTS],
}

impl ExemplarSlots {
    /// The set of the slot starting at `start`.
    pub fn get(&self, start: UnixNanos) -> Option<&Exemplars> {
        self.slots
            .iter()
            .find(|(s, e)| *s == start && !e.is_empty())
            .map(|(_, e)| e)
    }

    /// `(slot start, set)` of every slot that has exemplars, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (UnixNanos, &Exemplars)> {
        let mut v: Vec<(UnixNanos, &Exemplars)> = self
            .slots
            .iter()
            .filter(|(_, e)| !e.is_empty())
            .map(|(s, e)| (*s, e))
            .collect();
        v.sort_unstable_by_key(|(s, _)| *s);
        v.into_iter()
    }

    /// Adds `e` to the set of the slot starting at `start`: a slot new to the series takes
    /// the entry of its oldest (or an unused one); one older than every kept slot, when all
    /// are in use, is not kept. Whether anything changed.
    pub(crate) fn add(&mut self, start: UnixNanos, e: &Exemplars) -> bool {
        let i = match self
            .slots
            .iter()
            .position(|(s, x)| *s == start && !x.is_empty())
        {
            Some(i) => i,
            None => {
                let (i, oldest) = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (s, x))| if x.is_empty() { 0 } else { s.saturating_add(1) })
                    .map(|(i, (s, x))| (i, (!x.is_empty()).then_some(*s)))
                    .expect("EXEMPLAR_SLOTS > 0");
                if oldest.is_some_and(|o| o > start) {
                    return false;
                }
                self.slots[i] = (start, Exemplars::default());
                i
            }
        };
        let before = self.slots[i].1;
        self.slots[i].1.merge(e);
        self.slots[i].1 != before
    }

    /// Forgets the slots that start before `start`; whether any was kept.
    pub(crate) fn drop_before(&mut self, start: UnixNanos) -> bool {
        let mut kept = false;
        for (s, x) in &mut self.slots {
            if *s < start {
                *x = Exemplars::default();
            }
            kept |= !x.is_empty();
        }
        kept
    }

    /// Whether any slot starting before `start` has exemplars.
    pub(crate) fn has_before(&self, start: UnixNanos) -> bool {
        self.slots.iter().any(|(s, x)| *s < start && !x.is_empty())
    }
}

impl SlotData {
    /// Spans counted. Without sampling, `total`; a span that carried an OpenTelemetry sampling
    /// threshold counts its adjusted count (1 / sampling probability) in `total`, `bad`, the
    /// histogram and `above`, and one here.
    pub fn spans(&self) -> u64 {
        self.sampling.as_ref().map_or(self.total, |s| s[0])
    }

    /// Of [`SlotData::spans`], those that carried a sampling threshold.
    pub fn sampled_spans(&self) -> u64 {
        self.sampling.as_ref().map_or(0, |s| s[1])
    }

    /// What [`SlotData::sampling`] holds for these counts.
    pub(crate) fn sampling_of(total: u64, spans: u64, sampled: u64) -> Option<Box<[u64; 2]>> {
        (spans != total || sampled != 0).then(|| Box::new([spans, sampled]))
    }

    /// Requests at or below `threshold` nanoseconds, the good count of a latency SLI, and
    /// whether it is exact: from [`SlotData::above`] where the slot covers the threshold,
    /// otherwise estimated from the histogram (the bucket holding the threshold counts as
    /// good: high by at most that bucket's requests above the threshold, a bucket at most
    /// 1/64 of the threshold wide).
    pub fn good_within(&self, threshold: u64) -> (u64, bool) {
        match self.above.above(threshold) {
            Some(n) => (self.total.saturating_sub(n), true),
            None => (self.histogram.count_at_or_below(threshold), false),
        }
    }
}

/// A `service.version` seen on a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSeen {
    /// The version.
    pub version: Arc<str>,
    /// End time of the first span seen with it (Unix nanoseconds).
    pub first_seen_unix_nanos: UnixNanos,
    /// When a request with it was last recorded (tick time, Unix nanoseconds, as
    /// [`SeriesData::last_seen_unix_nanos`]): the version serving now is the one with the
    /// latest.
    pub last_seen_unix_nanos: UnixNanos,
}

/// Identifies a live series; reused after the series expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// One series: its labels, retained slots (ascending, only non-empty ones) and versions.
#[derive(Debug)]
pub struct SeriesData {
    pub(crate) id: SeriesId,
    pub(crate) labels: Arc<Labels>,
    pub(crate) slots: Vec<Arc<SlotData>>,
    /// Shared between copies: it changes far less often than the slots.
    pub(crate) versions: Arc<Vec<VersionSeen>>,
    pub(crate) last_seen: UnixNanos,
    /// The key (for a service's overflow series, its service part; empty for the global one).
    pub(crate) key: Arc<[u8]>,
    pub(crate) overflow: Overflow,
    /// Example requests of the newest slots; `None` before the first (shared between copies).
    pub(crate) exemplars: Option<Arc<ExemplarSlots>>,
}

impl Clone for SeriesData {
    /// Copies keep the slot vector's capacity: the window store copies a series on each tick
    /// it changes while a snapshot shares it, and same-sized blocks are reused by the
    /// allocator instead of fragmenting the heap as the vector grows.
    fn clone(&self) -> Self {
        let mut slots = Vec::with_capacity(self.slots.capacity());
        slots.extend(self.slots.iter().cloned());
        SeriesData {
            id: self.id,
            labels: self.labels.clone(),
            slots,
            versions: self.versions.clone(),
            last_seen: self.last_seen,
            key: self.key.clone(),
            overflow: self.overflow,
            exemplars: self.exemplars.clone(),
        }
    }
}

impl SeriesData {
    /// The series id.
    pub fn id(&self) -> SeriesId {
        self.id
    }

    /// `service.name` and the dimensions.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The retained non-empty slots, oldest first.
    pub fn slots(&self) -> &[Arc<SlotData>] {
        &self.slots
    }

    /// The `service.version` values seen, in the order they were first seen, each with when
    /// it last served a request (bounded by `max_versions_per_series`: the least recently
    /// seen is forgotten first).
    pub fn versions(&self) -> &[VersionSeen] {
        &self.versions
    }

    /// Whether this is an overflow series, and which.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// The key as partial aggregates carry it: one typed value per label (the service alone
    /// for a service's overflow series, nothing for the global one).
    pub fn key_values(&self) -> Vec<aggregates::Value> {
        key::values(&self.key)
    }

    /// When the series last received an observation (tick time, Unix nanoseconds).
    pub fn last_seen_unix_nanos(&self) -> UnixNanos {
        self.last_seen
    }

    /// Example requests of the slot starting at `start`: its most recent bad ones and its
    /// slowest ones. Kept for a series' [`EXEMPLAR_SLOTS`] newest slots that have any.
    pub fn slot_exemplars(&self, start: UnixNanos) -> Option<&Exemplars> {
        self.exemplars.as_ref()?.get(start)
    }

    /// `(slot start, exemplars)` of every slot that keeps some, oldest first.
    pub fn exemplar_slots(&self) -> Vec<(UnixNanos, &Exemplars)> {
        self.exemplars
            .as_ref()
            .map(|x| x.iter().collect())
            .unwrap_or_default()
    }

    /// The exemplars of the slots starting in `[from, to)`, merged into one bounded set (the
    /// most recent bad requests and the slowest of them all).
    pub fn exemplars_between(&self, from: UnixNanos, to: UnixNanos) -> Exemplars {
        let mut out = Exemplars::default();
        for (start, e) in self.exemplar_slots() {
            if (from..to).contains(&start) {
                out.merge(e);
            }
        }
        out
    }

    /// Totals and merged histogram of the slots starting in `[from, to)`.
    pub fn stats_between(&self, from: UnixNanos, to: UnixNanos) -> WindowStats {
        let mut w = WindowStats::default();
        let lo = self.slots.partition_point(|s| s.start_unix_nanos < from);
        for s in self.slots[lo..]
            .iter()
            .take_while(|s| s.start_unix_nanos < to)
        {
            w.total += s.total;
            w.bad += s.bad;
            w.spans += s.spans();
            w.sampled_spans += s.sampled_spans();
            w.histogram.merge_sparse(&s.histogram);
        }
        w
    }
}

/// Counts and latencies over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Requests.
    pub total: u64,
    /// Bad requests.
    pub bad: u64,
    /// Latencies, nanoseconds.
    pub histogram: Histogram,
    /// Spans the requests were counted from (see [`SlotData::spans`]).
    pub spans: u64,
    /// Of those, spans that carried a sampling threshold.
    pub sampled_spans: u64,
}

/// The quantiles slipstream reports.
pub const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

impl WindowStats {
    /// `(total - bad) / total`; `None` without traffic.
    pub fn success_ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| (self.total - self.bad) as f64 / self.total as f64)
    }

    /// `bad / total`; `None` without traffic.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| self.bad as f64 / self.total as f64)
    }

    /// The share of spans that carried a sampling threshold (and so were counted with their
    /// adjusted count); `None` without traffic.
    pub fn sampled_share(&self) -> Option<f64> {
        (self.spans > 0).then(|| self.sampled_spans as f64 / self.spans as f64)
    }

    /// Latency quantile `q` (0..=1), within 0.79% of the exact one; `None` without traffic.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.histogram.quantile(q).map(Duration::from_nanos)
    }

    /// p50, p90, p95, p99 and p99.9 (see [`QUANTILES`]).
    pub fn quantiles(&self) -> Option<[Duration; 5]> {
        let mut out = [Duration::ZERO; 5];
        for (o, q) in out.iter_mut().zip(QUANTILES) {
            *o = self.quantile(q)?;
        }
        Some(out)
    }
}

/// Cumulative counts since start, for the self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Spans aggregated into a series.
    pub observations: u64,
    /// Requests that arrived as partial aggregates of another slipstream (also in
    /// `observations` unless dropped late).
    pub merged_observations: u64,
    /// Of those, spans that went to an overflow series.
    pub overflow_observations: u64,
    /// Spans dropped because they ended before the retained slots.
    pub dropped_late: u64,
    /// Spans dropped because a shard's pending accumulators were full.
    pub dropped_shard_full: u64,
    /// Spans whose end time was too far in the future, clamped to now.
    pub clamped_future: u64,
    /// Spans whose duration was above the histogram range, clamped to its top.
    pub clamped_duration: u64,
    /// Sampled spans whose adjusted count was above the largest counted, clamped to it.
    pub clamped_adjusted_count: u64,
    /// Spans not counted as requests because of their kind.
    pub filtered: u64,
    /// Slots of partial aggregates merged without exact counts for this aggregator's latency
    /// thresholds (a sender of an older version, or one with other thresholds); latency SLOs
    /// estimate those slots from the histogram.
    pub merged_slots_estimated: u64,
    /// Series created.
    pub series_created: u64,
    /// Series expired for being idle.
    pub series_expired: u64,
    /// Series live now (overflow series included).
    pub series_active: u64,
    /// Worker shards registered now.
    pub shards: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Requests left out of what the bad requests share (`aggregator.explain`): their
    /// service was beyond `explain.max_services`.
    pub explain_uncounted: u64,
}

// === impl Snapshot ===

/// Every series as of one tick. Immutable; get the latest with `Aggregator::snapshot`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) taken_at: UnixNanos,
    pub(crate) slot_ns: u64,
    pub(crate) retention_slots: u64,
    pub(crate) series: Vec<Arc<SeriesData>>,
    pub(crate) totals: Totals,
    pub(crate) explain: Arc<crate::explain::Explained>,
}

impl Snapshot {
    /// The tick time this snapshot was taken at (Unix nanoseconds).
    pub fn taken_at(&self) -> UnixNanos {
        self.taken_at
    }

    /// Width of a slot.
    pub fn slot_width(&self) -> Duration {
        Duration::from_nanos(self.slot_ns)
    }

    /// The longest window that can be asked for.
    pub fn retention(&self) -> Duration {
        Duration::from_nanos(self.slot_ns * self.retention_slots)
    }

    /// Start of the slot holding `taken_at` (the current, still filling slot).
    pub fn current_slot_start(&self) -> UnixNanos {
        self.taken_at / self.slot_ns.max(1) * self.slot_ns
    }

    /// What the bad requests of each service share, over the kept slots.
    pub fn explained(&self) -> &crate::explain::Explained {
        &self.explain
    }

    /// Every series (with data or within its idle timeout), in id order.
    pub fn series(&self) -> &[Arc<SeriesData>] {
        &self.series
    }

    /// The series whose labels are exactly `labels` (in order).
    pub fn find(&self, labels: &[(&str, &str)]) -> Option<&Arc<SeriesData>> {
        self.series
            .iter()
            .find(|s| s.labels.iter().eq(labels.iter().copied()))
    }

    /// Stats of `series` over the window of `window` ending with the current slot, rounded up
    /// to whole slots and capped at the retention: `1m` with 10 s slots is the current slot
    /// and the five before it.
    pub fn window(&self, series: &SeriesData, window: Duration) -> WindowStats {
        let slots = (window.as_nanos() as u64)
            .div_ceil(self.slot_ns.max(1))
            .clamp(1, self.retention_slots.max(1));
        let to = self.current_slot_start() + self.slot_ns;
        series.stats_between(to.saturating_sub(slots * self.slot_ns), to)
    }

    /// The exemplars of `series` over the window of `window` ending with the current slot
    /// (whole slots, as [`Snapshot::window`]).
    pub fn window_exemplars(&self, series: &SeriesData, window: Duration) -> Exemplars {
        let slots = (window.as_nanos() as u64)
            .div_ceil(self.slot_ns.max(1))
            .clamp(1, self.retention_slots.max(1));
        let to = self.current_slot_start() + self.slot_ns;
        series.exemplars_between(to.saturating_sub(slots * self.slot_ns), to)
    }

    /// Cumulative counters (the values the self-metrics were set from).
    pub fn totals(&self) -> &Totals {
        &self.totals
    }
}
