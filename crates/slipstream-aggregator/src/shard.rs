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
/// [`INLINE`], the accumulator takes a run of contiguous 64-bucket chunks from the delta,
/// covering the octaves it has seen (grown, by copying, when an observation falls outside).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acc {
    pub(crate) local: u32,
    pub(crate) slot: u64,
    pub(crate) total: u64,
    pub(crate) bad: u64,
    /// Index of this accumulator's first chunk in `Delta::chunks`, [`NONE`] while inline.
    run: u32,
    /// Chunk number (octave) of the run's first chunk.
    base: u8,
    /// Chunks in the run.
    span: u8,
    n_inline: u8,
    inline: [u16; INLINE],
}

/// Everything recorded since the last tick; swapped out whole by the ticker.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    pub(crate) accs: Vec<Acc>,
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
        if acc.run == NONE {
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
        let run = &self.chunks[acc.run as usize..acc.run as usize + acc.span as usize];
        for (i, chunk) in run.iter().enumerate() {
            let first = (acc.base as usize + i) * CHUNK;
            for (j, &n) in chunk.iter().enumerate() {
                if n > 0 {
                    out.push(((first + j) as u32, u64::from(n)));
                }
            }
        }
        out
    }

    /// Adds one observation in bucket `b` to accumulator `a`.
    #[inline]
    fn add(&mut self, a: usize, b: u32) {
        let acc = &mut self.accs[a];
        if acc.run == NONE {
            if (acc.n_inline as usize) < INLINE {
                acc.inline[acc.n_inline as usize] = b as u16;
                acc.n_inline += 1;
                return;
            }
            let inline = acc.inline;
            let lo = inline
                .iter()
                .map(|x| *x as usize / CHUNK)
                .min()
                .unwrap_or(0);
            let hi = inline
                .iter()
                .map(|x| *x as usize / CHUNK)
                .max()
                .unwrap_or(0);
            let (lo, hi) = (lo.min(b as usize / CHUNK), hi.max(b as usize / CHUNK));
            acc.run = self.chunks.len() as u32;
            acc.base = lo as u8;
            acc.span = (hi - lo + 1) as u8;
            acc.n_inline = 0;
            self.chunks
                .extend(std::iter::repeat_n([0; CHUNK], hi - lo + 1));
            for x in inline {
                self.add_chunked(a, u32::from(x));
            }
        }
        self.add_chunked(a, b);
    }

    #[inline]
    fn add_chunked(&mut self, a: usize, b: u32) {
        let b = b as usize;
        let c = b / CHUNK;
        let acc = self.accs[a];
        let (base, span) = (acc.base as usize, acc.span as usize);
        if c < base || c >= base + span {
            self.grow(a, c);
        }
        let acc = &self.accs[a];
        self.chunks[acc.run as usize + c - acc.base as usize][b % CHUNK] += 1;
    }

    /// Moves accumulator `a`'s run to a wider one that covers chunk `c`, at least doubling
    /// it so that the space left behind stays within twice what the run finally needs.
    #[cold]
    fn grow(&mut self, a: usize, c: usize) {
        let acc = self.accs[a];
        let (base, span) = (acc.base as usize, acc.span as usize);
        let lo = base.min(c);
        let hi = (base + span - 1).max(c);
        let want = (hi - lo + 1).max((span * 2).min(self.nchunks));
        let mut new_base = if c < base {
            (hi + 1).saturating_sub(want)
        } else {
            lo
        };
        if new_base + want > self.nchunks {
            new_base = self.nchunks - want;
        }
        let run = self.chunks.len();
        self.chunks.extend(std::iter::repeat_n([0; CHUNK], want));
        let from = acc.run as usize;
        let to = run + (base - new_base);
        self.chunks.copy_within(from..from + span, to);
        let acc = &mut self.accs[a];
        acc.run = run as u32;
        acc.base = new_base as u8;
        acc.span = want as u8;
    }

    /// Empties the delta, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.accs.clear();
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

/// Longest key stored inside the map entry itself.
const INLINE_KEY: usize = 54;

/// A series key as the shard's map holds it: short keys inline (no pointer to chase on
/// lookup), long ones on the heap. Hashes and compares as the `[u8]` it holds.
#[derive(Clone)]
enum ShardKey {
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl ShardKey {
    fn new(k: &[u8]) -> Self {
        if k.len() <= INLINE_KEY {
            let mut buf = [0; INLINE_KEY];
            buf[..k.len()].copy_from_slice(k);
            ShardKey::Inline {
                len: k.len() as u8,
                buf,
            }
        } else {
            ShardKey::Heap(k.into())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            ShardKey::Inline { len, buf } => &buf[..*len as usize],
            ShardKey::Heap(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for ShardKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::hash::Hash for ShardKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for ShardKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ShardKey {}

impl std::fmt::Debug for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

// === impl Shard ===

/// A worker's series map and pending counts.
#[derive(Debug)]
pub(crate) struct Shard {
    keys: FxHashMap<ShardKey, u32>,
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
        self.keys.insert(ShardKey::new(&self.scratch), l);
        self.delta
            .new_keys
            .push((l, self.scratch.as_slice().into()));
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
            run: NONE,
            base: 0,
            span: 0,
            n_inline: 0,
            inline: [0; INLINE],
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
                        taken.new_keys.push((*l, k.as_slice().into()));
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
