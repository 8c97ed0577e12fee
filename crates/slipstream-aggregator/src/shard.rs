//! A worker's shard: its own series map and the counts recorded since the last tick.
//!
//! Only the worker that owns a shard writes to it, under a per-shard lock taken once per
//! request (uncontended except for the instant a tick swaps the [`Delta`] out). Everything a
//! span touches is plain memory: a key lookup in the shard's map, then an accumulator for its
//! (series, slot) with chunked bucket counts. All of it lives in vectors whose capacity the
//! ticker hands back cleared, so steady-state recording allocates nothing.

use rustc_hash::FxHashMap;
use slipstream_core::{Outcome, OutcomeRules, SpanKind, SpanRecord, UnixNanos};

use crate::histogram::{CHUNK, bucket_of};
use crate::key::KeyLayout;

/// "No entry" in index fields.
pub(crate) const NONE: u32 = u32::MAX;
/// The local series every shard routes spans to once its own series limit is reached.
pub(crate) const OVERFLOW_LOCAL: u32 = 0;

/// What a shard needs to know to record spans; fixed at construction.
#[derive(Debug, Clone)]
pub(crate) struct ShardConfig {
    pub(crate) layout: KeyLayout,
    /// Bit `k` set: spans of kind `k` count as requests.
    pub(crate) kinds: u8,
    pub(crate) rules: OutcomeRules,
    pub(crate) slot_ns: u64,
    pub(crate) retention_slots: u64,
    pub(crate) future_skew_ns: u64,
    pub(crate) max_value: u64,
    pub(crate) nchunks: usize,
    pub(crate) max_local: usize,
    pub(crate) max_pending: usize,
    pub(crate) max_versions: usize,
}

impl ShardConfig {
    pub(crate) fn counts_kind(&self, k: SpanKind) -> bool {
        self.kinds & (1 << k as u8) != 0
    }
}

/// Per-shard event counts, summed into the global counters on the tick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Spans aggregated.
    pub(crate) observed: u64,
    /// Spans ending before the retained slots.
    pub(crate) late: u64,
    /// Spans ending too far in the future (clamped to now).
    pub(crate) future: u64,
    /// Durations above the histogram range (clamped to its top).
    pub(crate) duration: u64,
    /// Spans dropped because the shard's accumulators were full.
    pub(crate) shard_full: u64,
    /// Spans not counted because of their kind.
    pub(crate) filtered: u64,
}

/// Observations an accumulator keeps as raw bucket indices before it takes chunks.
const INLINE: usize = 8;

/// The counts of one series in one slot, recorded since the last tick.
///
/// A low-rate series' first observations are kept inline as bucket indices; past
/// [`INLINE`], the accumulator takes a chunk map and 64-bucket chunks from the delta.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acc {
    pub(crate) local: u32,
    pub(crate) slot: u64,
    pub(crate) total: u64,
    pub(crate) bad: u64,
    /// Offset of this accumulator's chunk map in `Delta::maps`, [`NONE`] while inline.
    map: u32,
    inline: [u16; INLINE],
    n_inline: u8,
}

/// Everything recorded since the last tick; swapped out whole by the ticker.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) accs: Vec<Acc>,
    /// Per accumulator, `nchunks` indices into `chunks` (or [`NONE`]).
    maps: Vec<u32>,
    chunks: Vec<[u32; CHUNK]>,
    /// Local series that have accumulators in this delta.
    pub(crate) touched: Vec<u32>,
    /// Series keys created since the last tick, to be resolved to global series.
    pub(crate) new_keys: Vec<(u32, Box<[u8]>)>,
    /// `service.version` values first seen: (local series, version, span end time).
    pub(crate) versions: Vec<(u32, Box<str>, UnixNanos)>,
    pub(crate) counters: Counters,
    nchunks: usize,
}

impl Delta {
    /// `(bucket, count)` pairs of an accumulator, ascending.
    pub(crate) fn buckets(&self, acc: &Acc) -> Vec<(u32, u64)> {
        let mut out: Vec<(u32, u64)> = Vec::new();
        if acc.map == NONE {
            let mut inline = acc.inline;
            let inline = &mut inline[..acc.n_inline as usize];
            inline.sort_unstable();
            for &b in inline.iter() {
                match out.last_mut() {
                    Some((lb, n)) if *lb == u32::from(b) => *n += 1,
                    _ => out.push((u32::from(b), 1)),
                }
            }
            return out;
        }
        let map = &self.maps[acc.map as usize..acc.map as usize + self.nchunks];
        for (ci, &c) in map.iter().enumerate().filter(|(_, c)| **c != NONE) {
            for (i, &n) in self.chunks[c as usize].iter().enumerate() {
                if n > 0 {
                    out.push(((ci * CHUNK + i) as u32, u64::from(n)));
                }
            }
        }
        out
    }

    /// Adds one observation in bucket `b` to accumulator `a`.
    #[inline]
    fn add(&mut self, a: usize, b: u32) {
        let acc = &mut self.accs[a];
        if acc.map == NONE {
            if (acc.n_inline as usize) < INLINE {
                acc.inline[acc.n_inline as usize] = b as u16;
                acc.n_inline += 1;
                return;
            }
            acc.map = self.maps.len() as u32;
            let inline = acc.inline;
            acc.n_inline = 0;
            self.maps.extend(std::iter::repeat_n(NONE, self.nchunks));
            for x in inline {
                self.add_chunked(a, u32::from(x));
            }
        }
        self.add_chunked(a, b);
    }

    #[inline]
    fn add_chunked(&mut self, a: usize, b: u32) {
        let b = b as usize;
        let m = &mut self.maps[self.accs[a].map as usize + b / CHUNK];
        if *m == NONE {
            *m = self.chunks.len() as u32;
            self.chunks.push([0; CHUNK]);
        }
        self.chunks[*m as usize][b % CHUNK] += 1;
    }

    /// Empties the delta, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.accs.clear();
        self.maps.clear();
        self.chunks.clear();
        self.touched.clear();
        self.new_keys.clear();
        self.versions.clear();
        self.counters = Counters::default();
    }
}

#[derive(Debug)]
struct LocalSeries {
    /// The accumulators of the (up to) two slots this series last recorded into.
    acc: [u32; 2],
    last_seen: UnixNanos,
    versions: Vec<Box<str>>,
}

impl LocalSeries {
    fn new(now: UnixNanos) -> Self {
        LocalSeries {
            acc: [NONE; 2],
            last_seen: now,
            versions: Vec::new(),
        }
    }
}

// === impl Shard ===

/// A worker's series map and pending counts.
#[derive(Debug)]
pub(crate) struct Shard {
    keys: FxHashMap<Box<[u8]>, u32>,
    series: Vec<LocalSeries>,
    free: Vec<u32>,
    pub(crate) delta: Delta,
    scratch: Vec<u8>,
}

impl Shard {
    pub(crate) fn new(cfg: &ShardConfig) -> Self {
        Shard {
            keys: FxHashMap::default(),
            series: vec![LocalSeries::new(0)],
            free: Vec::new(),
            delta: Delta {
                nchunks: cfg.nchunks,
                ..Delta::default()
            },
            scratch: Vec::with_capacity(256),
        }
    }

    /// A fresh, empty delta for this configuration (the ticker's spare).
    pub(crate) fn empty_delta(cfg: &ShardConfig) -> Delta {
        Delta {
            nchunks: cfg.nchunks,
            ..Delta::default()
        }
    }

    /// Number of series keys the shard holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Records the spans of one request. `now` is read once per request.
    pub(crate) fn record(&mut self, cfg: &ShardConfig, now: UnixNanos, spans: &[SpanRecord<'_>]) {
        let now_slot = now / cfg.slot_ns;
        let oldest_slot = (now_slot + 1).saturating_sub(cfg.retention_slots);
        let future_limit = now.saturating_add(cfg.future_skew_ns);
        let mut prev: Option<(&SpanRecord<'_>, u32)> = None;
        for span in spans {
            if !cfg.counts_kind(span.kind) {
                self.delta.counters.filtered += 1;
                continue;
            }
            let local = match prev {
                Some((p, l)) if cfg.layout.same(p, span) => l,
                _ => self.lookup(cfg, span, now),
            };
            prev = Some((span, local));
            let mut slot = span.end_unix_nano / cfg.slot_ns;
            if span.end_unix_nano > future_limit {
                self.delta.counters.future += 1;
                slot = now_slot;
            } else if slot < oldest_slot {
                self.delta.counters.late += 1;
                continue;
            }
            let mut dur = span.duration_nanos();
            if dur > cfg.max_value {
                self.delta.counters.duration += 1;
                dur = cfg.max_value;
            }
            let Some(a) = self.acc_for(cfg, local, slot) else {
                self.delta.counters.shard_full += 1;
                continue;
            };
            let bad = cfg.rules.classify(span) == Outcome::Bad;
            let d = &mut self.delta;
            let acc = &mut d.accs[a as usize];
            acc.total += 1;
            acc.bad += u64::from(bad);
            d.add(a as usize, bucket_of(dur));
            d.counters.observed += 1;
            let ls = &mut self.series[local as usize];
            ls.last_seen = now;
            if let Some(v) = span.service_version
                && local != OVERFLOW_LOCAL
                && cfg.max_versions > 0
                && !ls.versions.iter().any(|x| **x == *v)
            {
                if ls.versions.len() >= cfg.max_versions {
                    ls.versions.remove(0);
                }
                ls.versions.push(v.into());
                d.versions.push((local, v.into(), span.end_unix_nano));
            }
        }
    }

    #[inline]
    fn lookup(&mut self, cfg: &ShardConfig, span: &SpanRecord<'_>, now: UnixNanos) -> u32 {
        cfg.layout.write(span, &mut self.scratch);
        if let Some(&l) = self.keys.get(self.scratch.as_slice()) {
            return l;
        }
        self.insert(cfg, now)
    }

    #[cold]
    fn insert(&mut self, cfg: &ShardConfig, now: UnixNanos) -> u32 {
        if self.keys.len() >= cfg.max_local {
            return OVERFLOW_LOCAL;
        }
        let l = match self.free.pop() {
            Some(l) => {
                self.series[l as usize] = LocalSeries::new(now);
                l
            }
            None => {
                self.series.push(LocalSeries::new(now));
                (self.series.len() - 1) as u32
            }
        };
        let key: Box<[u8]> = self.scratch.as_slice().into();
        self.keys.insert(key.clone(), l);
        self.delta.new_keys.push((l, key));
        l
    }

    #[inline]
    fn acc_for(&mut self, cfg: &ShardConfig, local: u32, slot: u64) -> Option<u32> {
        let ls = &mut self.series[local as usize];
        let d = &mut self.delta;
        for a in ls.acc {
            if a != NONE && d.accs[a as usize].slot == slot {
                return Some(a);
            }
        }
        if d.accs.len() >= cfg.max_pending {
            return None;
        }
        let a = d.accs.len() as u32;
        d.accs.push(Acc {
            local,
            slot,
            total: 0,
            bad: 0,
            map: NONE,
            inline: [0; INLINE],
            n_inline: 0,
        });
        let i = match ls.acc {
            [NONE, NONE] => {
                d.touched.push(local);
                0
            }
            [NONE, _] => 0,
            [_, NONE] => 1,
            [x, y] => usize::from(d.accs[x as usize].slot > d.accs[y as usize].slot),
        };
        ls.acc[i] = a;
        Some(a)
    }

    /// Swaps the pending counts out for `spare` (an empty delta) and forgets the accumulator
    /// references of the series they touched. Then, when `sweep` says so, removes series
    /// idle since `sweep.idle_before` and those whose global series was retired; a retired
    /// one that recorded since is announced again so the tick resolves it afresh.
    pub(crate) fn take(&mut self, spare: &mut Delta, sweep: Option<Sweep<'_>>) {
        std::mem::swap(&mut self.delta, spare);
        let taken = spare;
        if let Some(sw) = sweep {
            let series = &self.series;
            let mut removed = Vec::new();
            self.keys.retain(|k, l| {
                let ls = &series[*l as usize];
                let touched = ls.acc != [NONE; 2];
                let retired = sw
                    .global_of
                    .get(*l as usize)
                    .is_some_and(|g| (sw.retired)(*g));
                if !touched && (retired || ls.last_seen < sw.idle_before) {
                    removed.push(*l);
                    false
                } else {
                    if retired {
                        taken.new_keys.push((*l, k.clone()));
                    }
                    true
                }
            });
            for l in removed {
                self.series[l as usize] = LocalSeries::new(0);
                self.free.push(l);
            }
        }
        for &l in &taken.touched {
            self.series[l as usize].acc = [NONE; 2];
        }
    }
}

/// What a tick asks [`Shard::take`] to clean up.
pub(crate) struct Sweep<'a> {
    /// Series last seen before this are removed.
    pub(crate) idle_before: UnixNanos,
    /// The global series each local one maps to.
    pub(crate) global_of: &'a [u32],
    /// Whether a global series was retired.
    pub(crate) retired: &'a dyn Fn(u32) -> bool,
}

impl std::fmt::Debug for Sweep<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep")
            .field("idle_before", &self.idle_before)
            .finish_non_exhaustive()
    }
}
