//! The window store: every series' retained slots, fed by the tick from the shards' deltas.
//!
//! Runs on the ticking thread only. A tick takes each shard's delta (a swap under the shard's
//! lock), resolves new shard-local keys to global series (applying the cardinality limits),
//! merges the counts into slots, drops slots that left the retention, expires idle series
//! and builds the next [`Snapshot`].

use std::sync::Arc as StdArc;

use rustc_hash::{FxHashMap, FxHashSet};
use slipstream_core::UnixNanos;

use crate::key::{Labels, service_name, service_part};
use crate::loom::{Arc, Mutex, lock};
use crate::shard::{Delta, OVERFLOW_LOCAL, Shard, ShardConfig, Sweep};
use crate::snapshot::{SeriesData, SeriesId, SlotData, Snapshot, Totals, VersionSeen};

/// The global overflow series always has this id.
pub(crate) const GLOBAL_OVERFLOW: u32 = 0;

/// A worker's shard, shared between the worker (recording) and the ticker (taking).
#[derive(Debug)]
pub(crate) struct ShardCell {
    pub(crate) shard: Mutex<Shard>,
}

impl ShardCell {
    pub(crate) fn new(cfg: &ShardConfig) -> Self {
        ShardCell {
            shard: Mutex::new(Shard::new(cfg)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    ServiceOverflow,
    GlobalOverflow,
}

#[derive(Debug)]
struct Entry {
    data: StdArc<SeriesData>,
    key: Box<[u8]>,
    kind: Kind,
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
    totals: Totals,
}

impl Store {
    pub(crate) fn new(cfg: StdArc<ShardConfig>, limits: StoreConfig) -> Self {
        let overflow = SeriesData {
            id: SeriesId(GLOBAL_OVERFLOW),
            labels: StdArc::new(Labels::global_overflow()),
            slots: Vec::new(),
            versions: Vec::new(),
            last_seen: 0,
        };
        Store {
            cfg,
            limits,
            by_key: FxHashMap::default(),
            series: vec![Some(Entry {
                data: StdArc::new(overflow),
                key: Box::new([]),
                kind: Kind::GlobalOverflow,
            })],
            free: Vec::new(),
            live: 0,
            services: FxHashMap::default(),
            shards: Vec::new(),
            retired: FxHashSet::default(),
            last_sweep: 0,
            spare: Vec::new(),
            totals: Totals::default(),
        }
    }

    /// Starts taking from a new shard.
    pub(crate) fn register(&mut self, cell: Arc<ShardCell>) {
        self.shards.push(Link {
            cell,
            global_of: vec![GLOBAL_OVERFLOW],
        });
    }

    /// Merges every shard's pending counts, ages and expires, and returns the new snapshot.
    pub(crate) fn tick(&mut self, now: UnixNanos) -> Snapshot {
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
                lock(&link.cell.shard).take(&mut delta, sweep);
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
        self.free.extend(retired);
        self.age(now, oldest);
        self.totals.ticks += 1;
        self.totals.shards = self.shards.len() as u64;
        self.totals.series_active = (self.live + 1) as u64;
        Snapshot {
            taken_at: now,
            slot_ns,
            retention_slots: self.cfg.retention_slots,
            series: self
                .series
                .iter()
                .flatten()
                .filter(|e| e.kind != Kind::GlobalOverflow || !e.data.slots.is_empty())
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
        }
        let max_versions = self.cfg.max_versions;
        for (l, v, t) in &delta.versions {
            let g = self.shards[shard].global_of[*l as usize];
            if let Some(e) = self.series[g as usize].as_mut()
                && !e.data.versions.iter().any(|x| *x.version == **v)
            {
                let d = StdArc::make_mut(&mut e.data);
                if d.versions.len() >= max_versions {
                    d.versions.remove(0);
                }
                d.versions.push(VersionSeen {
                    version: StdArc::from(&**v),
                    first_seen_unix_nanos: *t,
                });
            }
        }
        let slot_ns = self.cfg.slot_ns;
        for acc in &delta.accs {
            let g = if acc.local == OVERFLOW_LOCAL {
                GLOBAL_OVERFLOW
            } else {
                self.shards[shard].global_of[acc.local as usize]
            };
            let Some(e) = self.series[g as usize]
                .as_mut()
                .filter(|_| acc.slot >= oldest)
            else {
                self.totals.dropped_late += acc.total;
                continue;
            };
            if e.kind != Kind::Normal {
                self.totals.overflow_observations += acc.total;
            }
            self.totals.observations += acc.total;
            let d = StdArc::make_mut(&mut e.data);
            d.last_seen = now;
            let start = acc.slot * slot_ns;
            let pairs = delta.buckets(acc);
            match d.slots.binary_search_by_key(&start, |s| s.start_unix_nanos) {
                Ok(i) => {
                    let s = StdArc::make_mut(&mut d.slots[i]);
                    s.total += acc.total;
                    s.bad += acc.bad;
                    s.histogram = s.histogram.merged_with(pairs);
                }
                Err(i) => d.slots.insert(
                    i,
                    StdArc::new(SlotData {
                        start_unix_nanos: start,
                        total: acc.total,
                        bad: acc.bad,
                        histogram: crate::histogram::SparseHistogram::from_sorted(pairs),
                    }),
                ),
            }
        }
        let c = &delta.counters;
        let t = &mut self.totals;
        t.dropped_late += c.late;
        t.dropped_shard_full += c.shard_full;
        t.clamped_future += c.future;
        t.clamped_duration += c.duration;
        t.filtered += c.filtered;
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
            if let Some(o) = self.services[svc_key].overflow {
                return o;
            }
            let labels = Labels::service_overflow(&service_name(key));
            let g = self.create(key, labels, Kind::ServiceOverflow, now);
            if let Some(s) = self.services.get_mut(svc_key) {
                s.overflow = Some(g);
            }
            return g;
        }
        let labels = self.cfg.layout.labels(key);
        let g = self.create(key, labels, Kind::Normal, now);
        self.by_key.insert(key.into(), g);
        self.services.entry(svc_key.into()).or_default().count += 1;
        g
    }

    fn create(&mut self, key: &[u8], labels: Labels, kind: Kind, now: UnixNanos) -> u32 {
        let g = self.free.pop().unwrap_or(self.series.len() as u32);
        let data = SeriesData {
            id: SeriesId(g),
            labels: StdArc::new(labels),
            slots: Vec::with_capacity(self.cfg.retention_slots as usize + 1),
            versions: Vec::new(),
            last_seen: now,
        };
        let e = Entry {
            data: StdArc::new(data),
            key: key.into(),
            kind,
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
            if e.kind == Kind::GlobalOverflow || e.data.last_seen >= idle_before {
                continue;
            }
            let Some(e) = self.series[g].take() else {
                continue;
            };
            let svc_key = service_part(&e.key);
            if e.kind == Kind::Normal {
                self.by_key.remove(&e.key);
            }
            if let Some(s) = self.services.get_mut(svc_key) {
                match e.kind {
                    Kind::Normal => s.count -= 1,
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
