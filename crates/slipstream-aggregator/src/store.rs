//! The window store: every series' retained slots, fed by the tick from the shards' deltas.
//!
//! Runs on the ticking thread only. A tick takes each shard's delta (a swap under the shard's
//! lock), resolves new shard-local keys to global series (applying the cardinality limits),
//! merges the counts into slots, merges the partial aggregates other slipstreams shipped
//! (checked on arrival by `merge`, so they go through the same limits and slot handling),
//! drops slots that left the retention, expires idle series and builds the next
//! [`Snapshot`].

use std::sync::Arc as StdArc;

use rustc_hash::{FxHashMap, FxHashSet};
use slipstream_core::aggregates::Overflow;
use slipstream_core::{Exemplars, UnixNanos};

use crate::histogram::bucket_of;
use crate::key::{Labels, service_name, service_part};
use crate::loom::{Arc, Mutex, lock};
use crate::merge::{MergeSeries, SlotCounts};
use crate::shard::{Delta, OVERFLOW_LOCAL, Shard, ShardConfig, Sweep};
#[cfg(doc)]
use crate::snapshot::EXEMPLAR_SLOTS;
use crate::snapshot::{SeriesData, SeriesId, SlotData, Snapshot, Totals, VersionSeen};
use crate::threshold::{AboveCounts, Thresholds};

/// The global overflow series always has this id.
pub(crate) const GLOBAL_OVERFLOW: u32 = 0;

/// A worker's shard, shared between the worker (recording) and the ticker (taking).
#[derive(Debug)]
pub(crate) struct ShardCell {
    pub(crate) shard: Mutex<Shard>,
}

impl ShardCell {
    pub(crate) fn new(cfg: &ShardConfig, thresholds: &StdArc<Thresholds>) -> Self {
        ShardCell {
            shard: Mutex::new(Shard::new(cfg, thresholds)),
        }
    }
}

#[derive(Debug)]
struct Entry {
    data: StdArc<SeriesData>,
}

impl Entry {
    fn kind(&self) -> Overflow {
        self.data.overflow
    }
}

#[derive(Debug, Default)]
struct Service {
    count: usize,
    overflow: Option<u32>,
}

#[derive(Debug)]
struct Link {
    cell: Arc<ShardCell>,
    global_of: Vec<u32>,
    /// The `service.version` each local series serves with (its last span's), as the shard
    /// reported it; credited on every tick the series records.
    version_of: Vec<Option<StdArc<str>>>,
}

/// Limits and timings of the store.
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    pub(crate) max_series: usize,
    pub(crate) max_per_service: usize,
    pub(crate) idle_ns: u64,
}

/// Every series and the links to the shards that feed them.
#[derive(Debug)]
pub(crate) struct Store {
    cfg: StdArc<ShardConfig>,
    limits: StoreConfig,
    by_key: FxHashMap<Box<[u8]>, u32>,
    series: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Series counted against `max_series` (all but the global overflow).
    live: usize,
    services: FxHashMap<Box<[u8]>, Service>,
    shards: Vec<Link>,
    /// Retired on the previous tick; swept from the shards on this one, then reusable.
    retired: FxHashSet<u32>,
    last_sweep: UnixNanos,
    spare: Vec<Delta>,
    /// An accumulator's buckets while they are added (kept for its capacity).
    scratch: Vec<(u32, u64)>,
    /// A delta's accumulators as (global series, slot, index), sorted (kept for its capacity).
    order: Vec<(u32, u64, u32)>,
    /// An accumulator's requests above each latency threshold (kept for its capacity).
    above: Vec<u64>,
    /// The latency thresholds counted exactly now.
    thresholds: StdArc<Thresholds>,
    totals: Totals,
    /// What the bad requests share, per service and slot.
    explain: crate::explain::Kept,
}

impl Store {
    pub(crate) fn new(cfg: StdArc<ShardConfig>, limits: StoreConfig) -> Self {
        let overflow = SeriesData {
            id: SeriesId(GLOBAL_OVERFLOW),
            labels: StdArc::new(Labels::global_overflow()),
            slots: Vec::new(),
            versions: StdArc::default(),
            last_seen: 0,
            key: StdArc::from(&[][..]),
            overflow: Overflow::Global,
            exemplars: None,
        };
        let explain = crate::explain::Kept::new(cfg.explain.clone());
        Store {
            cfg,
            limits,
            by_key: FxHashMap::default(),
            series: vec![Some(Entry {
                data: StdArc::new(overflow),
            })],
            free: Vec::new(),
            live: 0,
            services: FxHashMap::default(),
            shards: Vec::new(),
            retired: FxHashSet::default(),
            last_sweep: 0,
            spare: Vec::new(),
            scratch: Vec::new(),
            order: Vec::new(),
            above: Vec::new(),
            thresholds: StdArc::default(),
            totals: Totals::default(),
            explain,
        }
    }

    /// Starts taking from a new shard.
    pub(crate) fn register(&mut self, cell: Arc<ShardCell>) {
        self.shards.push(Link {
            cell,
            global_of: vec![GLOBAL_OVERFLOW],
            version_of: Vec::new(),
        });
    }

    /// Merges every shard's pending counts and the partial aggregates `merges`, ages and
    /// expires, and returns the new snapshot. The shards' next deltas compare requests with
    /// the latency `thresholds`.
    pub(crate) fn tick(
        &mut self,
        now: UnixNanos,
        merges: &[Vec<MergeSeries>],
        thresholds: &StdArc<Thresholds>,
    ) -> Snapshot {
        self.thresholds = thresholds.clone();
        let slot_ns = self.cfg.slot_ns;
        let now_slot = now / slot_ns;
        let oldest = (now_slot + 1).saturating_sub(self.cfg.retention_slots);
        let retired = std::mem::take(&mut self.retired);
        let sweep_due =
            !retired.is_empty() || now.saturating_sub(self.last_sweep) >= self.limits.idle_ns / 4;
        if sweep_due {
            self.last_sweep = now;
        }
        let idle_before = now.saturating_sub(self.limits.idle_ns);
        let mut i = 0;
        while i < self.shards.len() {
            let mut delta = self
                .spare
                .pop()
                .unwrap_or_else(|| Shard::empty_delta(&self.cfg));
            {
                let link = &self.shards[i];
                let is_retired = |g: u32| retired.contains(&g);
                let sweep = sweep_due.then_some(Sweep {
                    idle_before,
                    global_of: &link.global_of,
                    retired: &is_retired,
                });
                lock(&link.cell.shard).take(&mut delta, sweep, thresholds);
            }
            self.apply(i, &delta, now, oldest);
            delta.clear();
            self.spare.push(delta);
            // The worker's thread is gone and its last counts are in: forget the shard.
            if Arc::strong_count(&self.shards[i].cell) == 1 {
                self.shards.swap_remove(i);
                self.spare.pop();
            } else {
                i += 1;
            }
        }
        for batch in merges {
            self.merge(batch, now, oldest);
        }
        self.free.extend(retired);
        self.age(now, oldest);
        self.explain.age(now_slot);
        self.totals.explain_uncounted = self.explain.dropped;
        self.totals.ticks += 1;
        self.totals.shards = self.shards.len() as u64;
        self.totals.series_active = (self.live + 1) as u64;
        Snapshot {
            taken_at: now,
            slot_ns,
            retention_slots: self.cfg.retention_slots,
            explain: self.explain.snapshot(slot_ns),
            series: self
                .series
                .iter()
                .flatten()
                .filter(|e| e.kind() != Overflow::Global || !e.data.slots.is_empty())
                .map(|e| e.data.clone())
                .collect(),
            totals: self.totals,
        }
    }

    fn apply(&mut self, shard: usize, delta: &Delta, now: UnixNanos, oldest: u64) {
        for (l, key) in &delta.new_keys {
            let g = self.resolve(key, now);
            let map = &mut self.shards[shard].global_of;
            let l = *l as usize;
            if map.len() <= l {
                map.resize(l + 1, GLOBAL_OVERFLOW);
            }
            map[l] = g;
            if let Some(v) = self.shards[shard].version_of.get_mut(l) {
                *v = None;
            }
        }
        for (l, v, t) in &delta.versions {
            let g = self.shards[shard].global_of[*l as usize];
            self.add_version(g, v, *t, now);
        }
        for (l, v) in &delta.current_versions {
            let map = &mut self.shards[shard].version_of;
            let l = *l as usize;
            if map.len() <= l {
                map.resize(l + 1, None);
            }
            map[l] = Some(StdArc::from(&**v));
        }
        // Every series that recorded served with its current version.
        for &l in delta.touched() {
            let link = &self.shards[shard];
            let Some(Some(v)) = link.version_of.get(l as usize) else {
                continue;
            };
            let (g, v) = (link.global_of[l as usize], v.clone());
            self.add_version(g, &v, now, now);
        }
        // Added in series order, not in the order the worker first recorded them: consecutive
        // series were mostly created one after another, so their data lies close together and
        // the walk is far kinder to the caches (at 100,000 series it halved the step's CPU).
        let mut order = std::mem::take(&mut self.order);
        order.extend((0..delta.len()).filter_map(|a| {
            let acc = delta.acc(a)?;
            let g = if acc.local == OVERFLOW_LOCAL {
                GLOBAL_OVERFLOW
            } else {
                self.shards[shard].global_of[acc.local as usize]
            };
            Some((g, acc.slot, a as u32))
        }));
        order.sort_unstable();
        let mut pairs = std::mem::take(&mut self.scratch);
        let mut above = std::mem::take(&mut self.above);
        for (k, &(g, _, a)) in order.iter().enumerate() {
            // The accumulators and their counters are still in first-recorded order: ask for
            // them some adds ahead.
            if let Some(&(_, _, next)) = order.get(k + 16) {
                delta.prefetch_acc(next as usize);
            }
            if let Some(&(_, _, next)) = order.get(k + 8) {
                delta.prefetch_run(next as usize);
            }
            let Some(acc) = delta.acc(a as usize) else {
                continue;
            };
            // The accumulator counted spans of one weight: requests are that many times more.
            let w = u64::from(acc.weight.max(1));
            let counts = SlotCounts {
                slot: acc.slot,
                total: acc.total * w,
                bad: acc.bad * w,
                spans: acc.total,
                sampled_spans: if acc.weight > 0 { acc.total } else { 0 },
            };
            delta.buckets_into(acc, &mut pairs);
            delta.above_into(acc, &mut above);
            if w > 1 {
                pairs.iter_mut().for_each(|p| p.1 *= w);
                above.iter_mut().for_each(|n| *n *= w);
            }
            let exact = Some((&delta.thresholds, &above[..]));
            self.add(g, counts, &pairs, exact, now, oldest);
        }
        order.clear();
        self.order = order;
        if self.cfg.exemplars {
            let latest = now.saturating_add(self.cfg.future_skew_ns) / self.cfg.slot_ns;
            for &l in delta.touched() {
                let Some(set) = delta.exemplars_of(l) else {
                    continue;
                };
                let set = &set;
                let g = if l == OVERFLOW_LOCAL {
                    GLOBAL_OVERFLOW
                } else {
                    self.shards[shard].global_of[l as usize]
                };
                self.add_exemplars(g, set, None, now / self.cfg.slot_ns, latest);
            }
        }
        self.scratch = pairs;
        self.above = above;
        self.explain.absorb(&delta.explain);
        let c = &delta.counters;
        let t = &mut self.totals;
        t.dropped_late += c.late;
        t.dropped_shard_full += c.shard_full;
        t.clamped_future += c.future;
        t.clamped_duration += c.duration;
        t.filtered += c.filtered;
        t.clamped_adjusted_count += c.adjusted_count;
    }

    /// Merges checked partial aggregates (see `merge`) as if their spans had been recorded
    /// here: same series (within the same cardinality limits), same slots, same histograms.
    /// Slots before the retention are dropped as late spans are; slots further in the future
    /// than the skew allowed are moved to the current slot as such spans are; latencies above
    /// this aggregator's histogram range are clamped to its top bucket.
    pub(crate) fn merge(&mut self, batch: &[MergeSeries], now: UnixNanos, oldest: u64) {
        let slot_ns = self.cfg.slot_ns;
        let now_slot = now / slot_ns;
        let latest = now.saturating_add(self.cfg.future_skew_ns) / slot_ns;
        let top = bucket_of(self.cfg.max_value);
        for series in batch {
            let g = match series.overflow {
                Overflow::None => self.resolve(&series.key, now),
                Overflow::Service => self.service_overflow(&series.key, now),
                Overflow::Global => GLOBAL_OVERFLOW,
            };
            for (v, first, last) in &series.versions {
                // A sender's clock is not trusted past this one's.
                self.add_version(g, v, *first, (*last).min(now));
            }
            for slot in &series.slots {
                let mut counts = slot.counts;
                if counts.slot > latest {
                    counts.slot = now_slot;
                    self.totals.clamped_future =
                        self.totals.clamped_future.saturating_add(counts.total);
                }
                let clamped: u64 = slot
                    .buckets
                    .iter()
                    .filter(|(b, _)| *b > top)
                    .map(|(_, n)| n)
                    .sum();
                self.totals.clamped_duration = self.totals.clamped_duration.saturating_add(clamped);
                let below = slot.buckets.iter().copied().filter(|(b, _)| *b <= top);
                let pairs: Vec<(u32, u64)> = below
                    .chain((clamped > 0).then_some((top, clamped)))
                    .collect();
                self.totals.merged_observations =
                    self.totals.merged_observations.saturating_add(counts.spans);
                let exact = slot.above.as_ref().map(|(set, n)| (set, &n[..]));
                if exact.is_none() && !self.thresholds.is_empty() {
                    self.totals.merged_slots_estimated += 1;
                }
                self.add(g, counts, &pairs, exact, now, oldest);
                if !slot.exemplars.is_empty() && counts.slot >= oldest {
                    self.add_exemplars(g, &slot.exemplars, Some(counts.slot), now_slot, latest);
                }
            }
        }
    }

    /// Adds `counts`, the latency buckets `pairs` (ascending; a bucket may repeat) and the
    /// requests above each latency threshold of a set (`None`: not compared with any) to
    /// series `g`, or counts them late when the slot is before `oldest`. Counts saturate:
    /// merged ones come from the network.
    fn add(
        &mut self,
        g: u32,
        counts: SlotCounts,
        pairs: &[(u32, u64)],
        exact: Option<(&StdArc<Thresholds>, &[u64])>,
        now: UnixNanos,
        oldest: u64,
    ) {
        let current = self.thresholds.clone();
        let Some(e) = self.series[g as usize]
            .as_mut()
            .filter(|_| counts.slot >= oldest)
        else {
            self.totals.dropped_late = self.totals.dropped_late.saturating_add(counts.spans);
            return;
        };
        if e.kind() != Overflow::None {
            self.totals.overflow_observations = self
                .totals
                .overflow_observations
                .saturating_add(counts.spans);
        }
        self.totals.observations = self.totals.observations.saturating_add(counts.spans);
        let d = StdArc::make_mut(&mut e.data);
        d.last_seen = now;
        let start = counts.slot * self.cfg.slot_ns;
        match d.slots.binary_search_by_key(&start, |s| s.start_unix_nanos) {
            Ok(i) => {
                let slot = &mut d.slots[i];
                let histogram = slot.histogram.merged_with(pairs.iter().copied());
                let total = slot.total.saturating_add(counts.total);
                let bad = slot.bad.saturating_add(counts.bad);
                let sampling = SlotData::sampling_of(
                    total,
                    slot.spans().saturating_add(counts.spans),
                    slot.sampled_spans().saturating_add(counts.sampled_spans),
                );
                let mut above = slot.above.clone();
                match exact {
                    Some((set, n)) => above.add(slot.total, set, n, &current),
                    None => above.clear(),
                }
                // The published snapshot usually shares the slot: a new one then, without
                // copying the histogram that is about to be replaced.
                match StdArc::get_mut(slot) {
                    Some(s) => {
                        s.total = total;
                        s.bad = bad;
                        s.histogram = histogram;
                        s.above = above;
                        s.sampling = sampling;
                    }
                    None => {
                        *slot = StdArc::new(SlotData {
                            start_unix_nanos: start,
                            total,
                            bad,
                            histogram,
                            above,
                            sampling,
                        })
                    }
                }
            }
            Err(i) => {
                let mut above = AboveCounts::default();
                if let Some((set, n)) = exact {
                    above.add(0, set, n, &current);
                }
                d.slots.insert(
                    i,
                    StdArc::new(SlotData {
                        start_unix_nanos: start,
                        total: counts.total,
                        bad: counts.bad,
                        histogram: crate::histogram::SparseHistogram::from_sorted(
                            pairs.iter().copied(),
                        ),
                        above,
                        sampling: SlotData::sampling_of(
                            counts.total,
                            counts.spans,
                            counts.sampled_spans,
                        ),
                    }),
                )
            }
        }
    }

    /// Adds the exemplars `set` to the slots of series `g` their requests ended in (`slot`:
    /// all to that one), as their counts were: an end after slot `latest` counts in
    /// `now_slot`; a slot the series does not hold (dropped as late) takes none. The series
    /// keeps those of its [`EXEMPLAR_SLOTS`] newest slots with some.
    fn add_exemplars(
        &mut self,
        g: u32,
        set: &Exemplars,
        slot: Option<u64>,
        now_slot: u64,
        latest: u64,
    ) {
        let slot_ns = self.cfg.slot_ns;
        let Some(e) = self.series[g as usize].as_mut() else {
            return;
        };
        let d = StdArc::make_mut(&mut e.data);
        for x in set.iter() {
            let s = slot.unwrap_or_else(|| {
                let s = x.end_unix_nanos / slot_ns;
                if s > latest { now_slot } else { s }
            });
            let start = s * slot_ns;
            if d.slots
                .binary_search_by_key(&start, |s| s.start_unix_nanos)
                .is_err()
            {
                continue;
            }
            let mut one = Exemplars::default();
            one.offer(*x);
            let slots = d.exemplars.get_or_insert_with(StdArc::default);
            if slots.get(start).is_some_and(|kept| {
                let mut merged = *kept;
                merged.merge(&one);
                merged == *kept
            }) {
                continue;
            }
            StdArc::make_mut(slots).add(start, &one);
        }
    }

    /// Remembers that series `g` served `service.version` `v`, first at `first` and last at
    /// `last` (the earliest first and the latest last win when it was already known),
    /// forgetting the least recently seen beyond the limit.
    fn add_version(&mut self, g: u32, v: &str, first: UnixNanos, last: UnixNanos) {
        let max_versions = self.cfg.max_versions;
        let Some(e) = self.series[g as usize]
            .as_mut()
            .filter(|_| max_versions > 0)
        else {
            return;
        };
        match e.data.versions.iter().position(|x| *x.version == *v) {
            Some(i) => {
                let x = &e.data.versions[i];
                if x.first_seen_unix_nanos <= first && x.last_seen_unix_nanos >= last {
                    return;
                }
                let d = StdArc::make_mut(&mut e.data);
                let x = &mut StdArc::make_mut(&mut d.versions)[i];
                x.first_seen_unix_nanos = x.first_seen_unix_nanos.min(first);
                x.last_seen_unix_nanos = x.last_seen_unix_nanos.max(last);
            }
            None => {
                let d = StdArc::make_mut(&mut e.data);
                let versions = StdArc::make_mut(&mut d.versions);
                if versions.len() >= max_versions
                    && let Some(i) = (0..versions.len()).min_by_key(|&i| {
                        let x = &versions[i];
                        (x.last_seen_unix_nanos, x.first_seen_unix_nanos)
                    })
                {
                    versions.remove(i);
                }
                versions.push(VersionSeen {
                    version: StdArc::from(v),
                    first_seen_unix_nanos: first,
                    last_seen_unix_nanos: last.max(first),
                });
            }
        }
    }

    /// The global series of a key, creating it within the limits or choosing an overflow one.
    fn resolve(&mut self, key: &[u8], now: UnixNanos) -> u32 {
        if let Some(&g) = self.by_key.get(key) {
            return g;
        }
        if self.live >= self.limits.max_series {
            return GLOBAL_OVERFLOW;
        }
        let svc_key = service_part(key);
        let svc_full = self
            .services
            .get(svc_key)
            .is_some_and(|s| s.count >= self.limits.max_per_service);
        if svc_full {
            return self.service_overflow(key, now);
        }
        let labels = self.cfg.layout.labels(key);
        let g = self.create(key, labels, Overflow::None, now);
        self.by_key.insert(key.into(), g);
        self.services.entry(svc_key.into()).or_default().count += 1;
        g
    }

    /// The overflow series of the service of `key` (a whole key or its service part),
    /// created when it has none; the global overflow series past the series limit.
    fn service_overflow(&mut self, key: &[u8], now: UnixNanos) -> u32 {
        let svc_key = service_part(key);
        if let Some(o) = self.services.get(svc_key).and_then(|s| s.overflow) {
            return o;
        }
        if self.live >= self.limits.max_series {
            return GLOBAL_OVERFLOW;
        }
        let labels = Labels::service_overflow(&service_name(key));
        let g = self.create(svc_key, labels, Overflow::Service, now);
        self.services.entry(svc_key.into()).or_default().overflow = Some(g);
        g
    }

    fn create(&mut self, key: &[u8], labels: Labels, kind: Overflow, now: UnixNanos) -> u32 {
        let g = self.free.pop().unwrap_or(self.series.len() as u32);
        let data = SeriesData {
            id: SeriesId(g),
            labels: StdArc::new(labels),
            slots: Vec::with_capacity(self.cfg.retention_slots as usize + 1),
            versions: StdArc::default(),
            last_seen: now,
            key: key.into(),
            overflow: kind,
            exemplars: None,
        };
        let e = Entry {
            data: StdArc::new(data),
        };
        if g as usize == self.series.len() {
            self.series.push(Some(e));
        } else {
            self.series[g as usize] = Some(e);
        }
        self.live += 1;
        self.totals.series_created += 1;
        g
    }

    /// Drops slots that left the retention and retires idle series.
    fn age(&mut self, now: UnixNanos, oldest: u64) {
        let oldest_start = oldest * self.cfg.slot_ns;
        let idle_before = now.saturating_sub(self.limits.idle_ns);
        for g in 0..self.series.len() {
            let Some(e) = self.series[g].as_mut() else {
                continue;
            };
            if e.data
                .slots
                .first()
                .is_some_and(|s| s.start_unix_nanos < oldest_start)
            {
                let d = StdArc::make_mut(&mut e.data);
                let n = d
                    .slots
                    .partition_point(|s| s.start_unix_nanos < oldest_start);
                d.slots.drain(..n);
            }
            if e.data
                .exemplars
                .as_ref()
                .is_some_and(|x| x.has_before(oldest_start))
            {
                let d = StdArc::make_mut(&mut e.data);
                if let Some(x) = d.exemplars.as_mut()
                    && !StdArc::make_mut(x).drop_before(oldest_start)
                {
                    d.exemplars = None;
                }
            }
            if e.kind() == Overflow::Global || e.data.last_seen >= idle_before {
                continue;
            }
            let Some(e) = self.series[g].take() else {
                continue;
            };
            let svc_key = service_part(&e.data.key);
            if e.kind() == Overflow::None {
                self.by_key.remove(&*e.data.key);
            }
            if let Some(s) = self.services.get_mut(svc_key) {
                match e.kind() {
                    Overflow::None => s.count -= 1,
                    _ => s.overflow = None,
                }
                if s.count == 0 && s.overflow.is_none() {
                    self.services.remove(svc_key);
                }
            }
            self.live -= 1;
            self.totals.series_expired += 1;
            self.retired.insert(g as u32);
        }
    }
}
