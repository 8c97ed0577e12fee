//! A worker's shard: its own series map and the counts recorded since the last tick.
//!
//! Only the worker that owns a shard writes to it, under a per-shard lock taken once per
//! request (uncontended except for the instant a tick swaps the [`Delta`] out). Everything a
//! span touches is plain memory: a key lookup in the shard's map, then an accumulator for its
//! (series, slot) with chunked bucket counts. All of it lives in vectors whose capacity the
//! ticker hands back cleared, so steady-state recording allocates nothing.

use slipstream_core::{
    Exemplar, Exemplars, Outcome, OutcomeRules, SAMPLING_THRESHOLD_RANGE, SpanKind, SpanRecord,
    UnixNanos,
};

use crate::histogram::{CHUNK, bucket_of};
use crate::key::{KeyLayout, fingerprint};
use crate::prefetch::prefetch;
use crate::threshold::{Inline, Thresholds};

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
    /// Whether requests with ids are offered as exemplars.
    pub(crate) exemplars: bool,
    /// What the bad requests share: the candidate attributes counted.
    pub(crate) explain: crate::explain::Spec,
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
    /// Spans whose adjusted count was above [`MAX_ADJUSTED_COUNT`] (counted as that).
    pub(crate) adjusted_count: u64,
}

/// Observations an accumulator keeps as raw bucket indices before it takes chunks.
const INLINE: usize = 8;

/// The counts of one series in one slot, recorded since the last tick.
///
/// A low-rate series' first observations are kept inline as bucket indices; past
/// [`INLINE`], the accumulator takes a run of contiguous 64-bucket chunks from the delta,
/// covering the octaves it has seen (grown, by copying, when an observation falls outside).
///
/// Requests above the latency thresholds are counted by how many thresholds they exceed (`k`
/// requests above the lowest `k`): counter `k` of the accumulator's `above` chunk, taken on
/// the first such request.
///
/// An accumulator counts spans of one weight (adjusted count, see [`weight_of`]): a series
/// whose spans come with several weights in one slot takes one accumulator per weight.
///
/// One cache line each (64 bytes of fields, aligned): an accumulator is found at random, and
/// the lookahead's one prefetch brings all of it.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub(crate) struct Acc {
    pub(crate) local: u32,
    /// The epoch of the delta this accumulator was started in. A primary accumulator stamped
    /// with another epoch is free ([`Delta::clear`] stamps those it frees with 0, which no
    /// epoch is).
    stamp: u32,
    pub(crate) slot: u64,
    pub(crate) total: u64,
    pub(crate) bad: u64,
    /// Index of this accumulator's first chunk in `Counts::chunks`, [`NONE`] while inline.
    run: u32,
    /// Chunk number (octave) of the run's first chunk.
    base: u8,
    /// Chunks in the run.
    span: u8,
    n_inline: u8,
    inline: [u16; INLINE],
    /// Index in `Counts::chunks` of the chunk counting requests by thresholds exceeded,
    /// [`NONE`] before the first above a threshold.
    above: u32,
    /// The adjusted count of every span counted here (see [`weight_of`]); 0 for spans
    /// without a sampling threshold, which count as one. The counts above are of spans; the
    /// tick multiplies them by the weight.
    pub(crate) weight: u32,
}

impl Acc {
    fn new(local: u32, stamp: u32, slot: u64, weight: u32) -> Self {
        Acc {
            local,
            stamp,
            slot,
            weight,
            total: 0,
            bad: 0,
            run: NONE,
            base: 0,
            span: 0,
            n_inline: 0,
            inline: [0; INLINE],
            above: NONE,
        }
    }
}

/// Chunk-counter increments a request has computed but not yet applied.
const PENDING: usize = 64;

/// Increments of `Counts::chunks` counters (flat indices), applied in one tight loop per
/// [`PENDING`] spans instead of one by one. The counters of 1,000 series are about 1 MiB,
/// so many increments miss the L2; with nothing else between them, the misses of a batch
/// overlap instead of each holding up its span.
#[derive(Debug, Clone, Copy)]
struct Pending {
    idx: [usize; PENDING],
    len: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            idx: [0; PENDING],
            len: 0,
        }
    }
}

/// Everything recorded since the last tick; swapped out whole by the ticker.
///
/// A series' accumulators: its *primary* one, at its local number in `primary`, holds the
/// first slot it records into in this delta; any other slot (a span from the slot before,
/// a late one) gets a *secondary* one, found through the series' map entry. A span of the
/// primary slot so finds its accumulator from the local number alone, which the table's
/// slot gives: the load of the accumulator does not wait for that of the map entry.
#[derive(Debug, Default)]
pub(crate) struct Delta {
    /// By local series number; in use when stamped with this delta's epoch.
    primary: Vec<Acc>,
    /// The local series whose primary accumulator is in use, in first-recorded order.
    touched: Vec<u32>,
    /// Accumulators of other slots.
    secondary: Vec<Acc>,
    counts: Counts,
    /// The shard's epoch while this delta records; primary accumulators stamped otherwise
    /// are free. Never 0.
    epoch: u32,
    /// Series keys created since the last tick, to be resolved to global series.
    pub(crate) new_keys: Vec<(u32, Box<[u8]>)>,
    /// `service.version` values that served requests in this delta on series whose version
    /// changed in it: (local series, version, end time of the span that brought it), once per
    /// series and version. A series whose version did not change served with its current one
    /// (see `current_versions`).
    pub(crate) versions: Vec<(u32, Box<str>, UnixNanos)>,
    /// The version each series ended this delta with, for those whose version changed in it
    /// and those announced again in `new_keys`: (local series, version).
    pub(crate) current_versions: Vec<(u32, Box<str>)>,
    /// Local series whose version changed in this delta, each once.
    switched: Vec<u32>,
    pub(crate) counters: Counters,
    /// The latency thresholds every request of this delta is compared with (installed when
    /// the delta starts recording), and a copy for the record path.
    pub(crate) thresholds: std::sync::Arc<Thresholds>,
    inline_thresholds: Inline,
    /// Per local series (by local number), whether and what it kept as exemplars in this
    /// delta: a dense array read for every span with ids (see [`Gate`]).
    gates: Vec<Gate>,
    /// Per local series, the exemplars it kept in this delta: `[most recent bad, slowest]`,
    /// valid as its gate says. Written only when a request is kept.
    kept: Vec<[Exemplar; 2]>,
    /// What the bad requests of this delta share ([`crate::explain`]).
    pub(crate) explain: crate::explain::Counts,
}

/// What a span with ids is compared with, 16 bytes per local series so that the comparison
/// rarely misses the cache: in use when stamped with the delta's epoch (as `primary`).
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    stamp: u32,
    /// [`KEPT_BAD`] and [`KEPT_SLOW`].
    kept: u32,
    /// The latency a request must reach to be kept as the slowest (one more than the kept
    /// one's; 0 before the first).
    floor: u64,
}

/// [`Gate::kept`]: a bad request is kept.
const KEPT_BAD: u32 = 1;
/// [`Gate::kept`]: a slowest request is kept.
const KEPT_SLOW: u32 = 2;

/// The bucket counters of a delta's chunked accumulators.
#[derive(Debug, Default)]
struct Counts {
    chunks: Vec<[u32; CHUNK]>,
    /// Always empty between requests ([`Shard::record`] applies it before returning).
    pending: Pending,
    nchunks: usize,
}

impl Delta {
    fn new(nchunks: usize, epoch: u32, thresholds: &std::sync::Arc<Thresholds>) -> Self {
        let mut d = Delta {
            counts: Counts {
                nchunks,
                ..Counts::default()
            },
            epoch,
            ..Delta::default()
        };
        d.set_thresholds(thresholds);
        d
    }

    /// The latency thresholds the requests recorded from now on are compared with; only
    /// while the delta is empty.
    pub(crate) fn set_thresholds(&mut self, thresholds: &std::sync::Arc<Thresholds>) {
        debug_assert_eq!(self.len(), 0);
        if !std::sync::Arc::ptr_eq(&self.thresholds, thresholds) {
            self.thresholds = thresholds.clone();
            self.inline_thresholds = Inline::of(thresholds);
        }
    }

    /// Replaces the contents of `out` with the requests of accumulator `acc` above each of
    /// [`Delta::thresholds`] (one count per threshold).
    pub(crate) fn above_into(&self, acc: &Acc, out: &mut Vec<u64>) {
        out.clear();
        let n = self.thresholds.len();
        out.resize(n, 0);
        if acc.above == NONE {
            return;
        }
        // Counter k: requests above exactly the lowest k thresholds.
        let by_k = &self.counts.chunks[acc.above as usize];
        let mut sum = 0u64;
        for i in (0..n).rev() {
            sum += u64::from(by_k[i + 1]);
            out[i] = sum;
        }
    }

    /// Number of accumulators in use; [`Delta::acc`] numbers them `0..len`.
    pub(crate) fn len(&self) -> usize {
        self.touched.len() + self.secondary.len()
    }

    /// The exemplars local series `l` recorded into this delta, if any: its most recent bad
    /// request and its slowest one (a delta keeps one of each per series; the slots' sets,
    /// two of each, gather them across deltas).
    pub(crate) fn exemplars_of(&self, l: u32) -> Option<Exemplars> {
        let g = self
            .gates
            .get(l as usize)
            .filter(|g| g.stamp == self.epoch && g.kept != 0)?;
        let kept = &self.kept[l as usize];
        let mut set = Exemplars::default();
        if g.kept & KEPT_BAD != 0 {
            set.offer(kept[0]);
        }
        if g.kept & KEPT_SLOW != 0 {
            set.offer(kept[1]);
        }
        Some(set)
    }

    /// Offers a request of local series `l` as an exemplar: a comparison unless it is bad or
    /// the slowest of its series in this delta.
    #[inline(always)]
    fn offer_exemplar(&mut self, l: u32, span: &SpanRecord<'_>, bad: bool) {
        match self.gates.get(l as usize) {
            Some(g) if g.stamp == self.epoch && !bad && span.duration_nanos() < g.floor => {}
            _ => self.keep_exemplar(l, span, bad),
        }
    }

    /// [`Delta::offer_exemplar`] of a request that may be kept.
    #[inline(never)]
    fn keep_exemplar(&mut self, l: u32, span: &SpanRecord<'_>, bad: bool) {
        let Some(e) = span.exemplar(bad) else {
            return;
        };
        let l = l as usize;
        if l >= self.gates.len() {
            self.gates.resize(l + 1, Gate::default());
            self.kept.resize(l + 1, [Exemplar::default(); 2]);
        }
        let g = &mut self.gates[l];
        if g.stamp != self.epoch {
            *g = Gate {
                stamp: self.epoch,
                ..Gate::default()
            };
        }
        let kept = &mut self.kept[l];
        if bad && (g.kept & KEPT_BAD == 0 || e.end_unix_nanos >= kept[0].end_unix_nanos) {
            kept[0] = e;
            g.kept |= KEPT_BAD;
        }
        if e.duration_nanos >= g.floor {
            kept[1] = e;
            g.kept |= KEPT_SLOW;
            g.floor = e.duration_nanos.saturating_add(1);
        }
    }

    /// Accumulator `a` (of `0..len`); `None` past the end.
    #[inline]
    pub(crate) fn acc(&self, a: usize) -> Option<&Acc> {
        match self.touched.get(a) {
            Some(&l) => self.primary.get(l as usize),
            None => self.secondary.get(a - self.touched.len()),
        }
    }

    /// Replaces the contents of `out` with the `(bucket, count)` pairs of an accumulator,
    /// ascending (a buffer the caller reuses, so that a tick allocates nothing per
    /// accumulator).
    pub(crate) fn buckets_into(&self, acc: &Acc, out: &mut Vec<(u32, u64)>) {
        out.clear();
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
            return;
        }
        let run = &self.counts.chunks[acc.run as usize..acc.run as usize + acc.span as usize];
        for (i, chunk) in run.iter().enumerate() {
            let first = (acc.base as usize + i) * CHUNK;
            for (j, &n) in chunk.iter().enumerate() {
                if n > 0 {
                    out.push(((first + j) as u32, u64::from(n)));
                }
            }
        }
    }

    /// Starts bringing accumulator `a` into cache (the tick reads them out of order).
    #[inline]
    pub(crate) fn prefetch_acc(&self, a: usize) {
        if let Some(acc) = self.acc(a) {
            prefetch(acc);
        }
    }

    /// Starts bringing the first counters of accumulator `a`'s run into cache (up to 1 KiB;
    /// the CPU's own prefetcher follows a run read in order). Reads the accumulator, which
    /// [`Delta::prefetch_acc`] should have brought in earlier.
    #[inline]
    pub(crate) fn prefetch_run(&self, a: usize) {
        let Some(acc) = self.acc(a).filter(|acc| acc.run != NONE) else {
            return;
        };
        let Some(run) = self
            .counts
            .chunks
            .get(acc.run as usize..acc.run as usize + acc.span as usize)
        else {
            return;
        };
        let p = run.as_ptr().cast::<u8>();
        for off in (0..size_of_val(run).min(1024)).step_by(64) {
            prefetch(p.wrapping_add(off));
        }
    }

    /// Starts bringing the primary accumulator of local series `l` into cache.
    #[inline]
    fn prefetch_primary(&self, l: usize) {
        if let Some(acc) = self.primary.get(l) {
            prefetch(acc);
        }
        if let Some(g) = self.gates.get(l) {
            prefetch(g);
        }
    }

    /// Counts one observation, bad or not, in bucket `b`, above the lowest `k` latency
    /// thresholds, for `hot`'s series in `slot`; `false` when the shard's accumulators are
    /// all in use.
    #[inline(always)]
    fn observe(&mut self, cfg: &ShardConfig, hot: &mut Hot, slot: u64, obs: Obs) -> bool {
        let Delta {
            primary,
            counts,
            epoch,
            ..
        } = self;
        match primary.get_mut(hot.local as usize) {
            Some(acc) if acc.stamp == *epoch && acc.slot == slot && acc.weight == obs.w => {
                counts.observe(acc, obs);
                true
            }
            _ => self.observe_other(cfg, hot, slot, obs),
        }
    }

    /// [`Delta::observe`] when the series' primary accumulator is free or holds another slot.
    #[inline(never)]
    fn observe_other(&mut self, cfg: &ShardConfig, hot: &mut Hot, slot: u64, obs: Obs) -> bool {
        let l = hot.local as usize;
        if l >= self.primary.len() {
            self.primary.resize(l + 1, Acc::new(NONE, 0, 0, 0));
        }
        let full = self.len() >= cfg.max_pending;
        let epoch = self.epoch;
        let acc = if self.primary[l].stamp != epoch {
            if full {
                return false;
            }
            self.touched.push(hot.local);
            self.primary[l] = Acc::new(hot.local, epoch, slot, obs.w);
            &mut self.primary[l]
        } else {
            if hot.epoch != epoch {
                hot.epoch = epoch;
                hot.acc = [NONE; 2];
            }
            let found = hot.acc.into_iter().find(|&a| {
                a != NONE && {
                    let acc = &self.secondary[a as usize];
                    acc.slot == slot && acc.weight == obs.w
                }
            });
            let a = match found {
                Some(a) => a,
                None => {
                    if full {
                        return false;
                    }
                    let a = self.secondary.len() as u32;
                    self.secondary.push(Acc::new(hot.local, epoch, slot, obs.w));
                    let i = match hot.acc {
                        [NONE, _] => 0,
                        [_, NONE] => 1,
                        [x, y] => usize::from(
                            self.secondary[x as usize].slot > self.secondary[y as usize].slot,
                        ),
                    };
                    hot.acc[i] = a;
                    a
                }
            };
            &mut self.secondary[a as usize]
        };
        self.counts.observe(acc, obs);
        true
    }

    /// Applies the pending chunk-counter increments.
    #[inline]
    fn flush(&mut self) {
        self.counts.apply_pending();
    }

    /// Whether local series `l` recorded into this delta.
    fn recorded(&self, l: usize, hot: &Hot) -> bool {
        self.primary
            .get(l)
            .is_some_and(|acc| acc.stamp == self.epoch)
            || (hot.epoch == self.epoch && hot.acc != [NONE; 2])
    }

    /// Whether the span just recorded for `hot`'s series is its first in this delta.
    fn only_one(&self, hot: &Hot) -> bool {
        self.primary
            .get(hot.local as usize)
            .is_some_and(|acc| acc.stamp == self.epoch && acc.total == 1)
            && !(hot.epoch == self.epoch && hot.acc != [NONE; 2])
    }

    /// The local series that recorded into this delta.
    pub(crate) fn touched(&self) -> &[u32] {
        &self.touched
    }

    /// Empties the delta, keeping its capacity. Its primary accumulators are freed here, not
    /// only by the next epoch: the ticker hands spare deltas to any shard, whose epoch may be
    /// the one they were stamped with.
    pub(crate) fn clear(&mut self) {
        debug_assert_eq!(self.counts.pending.len, 0);
        for &l in &self.touched {
            if let Some(acc) = self.primary.get_mut(l as usize) {
                acc.stamp = 0;
            }
            if let Some(g) = self.gates.get_mut(l as usize) {
                g.stamp = 0;
            }
        }
        self.touched.clear();
        self.secondary.clear();
        self.counts.chunks.clear();
        self.new_keys.clear();
        self.versions.clear();
        self.current_versions.clear();
        self.switched.clear();
        self.counters = Counters::default();
        self.explain.clear();
    }
}

/// One request as an accumulator counts it.
#[derive(Debug, Clone, Copy)]
struct Obs {
    /// The span's weight ([`Acc::weight`]).
    w: u32,
    bad: bool,
    /// Latency bucket.
    b: u32,
    /// Latency thresholds exceeded (the lowest `k`).
    k: usize,
}

impl Counts {
    /// Counts one observation in `acc`.
    #[inline(always)]
    fn observe(&mut self, acc: &mut Acc, obs: Obs) {
        let Obs { bad, b, k, .. } = obs;
        acc.total += 1;
        acc.bad += u64::from(bad);
        if k > 0 {
            self.above(acc, k);
        }
        let c = b as usize / CHUNK;
        let off = c.wrapping_sub(usize::from(acc.base));
        if acc.run != NONE && off < usize::from(acc.span) {
            let i = (acc.run as usize + off) * CHUNK + b as usize % CHUNK;
            self.push_pending(i);
        } else {
            self.add_slow(acc, b);
        }
    }

    /// [`Counts::observe`]'s bucket count when the accumulator is still inline or its run
    /// does not cover `b`.
    #[inline(never)]
    fn add_slow(&mut self, acc: &mut Acc, b: u32) {
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
                self.add_chunked(acc, u32::from(x));
            }
        }
        self.add_chunked(acc, b);
    }

    fn add_chunked(&mut self, acc: &mut Acc, b: u32) {
        let b = b as usize;
        let c = b / CHUNK;
        let (base, span) = (acc.base as usize, acc.span as usize);
        if c < base || c >= base + span {
            self.grow(acc, c);
        }
        self.push_pending((acc.run as usize + c - acc.base as usize) * CHUNK + b % CHUNK);
    }

    /// Counts a request above the lowest `k` thresholds (out of line: the record loop stays
    /// as small as it was, and requests within every threshold never call it).
    #[inline(never)]
    fn above(&mut self, acc: &mut Acc, k: usize) {
        if acc.above == NONE {
            self.take_above(acc);
        }
        self.push_pending(acc.above as usize * CHUNK + k);
    }

    /// Gives `acc` its chunk of counters of requests above the thresholds.
    #[cold]
    #[inline(never)]
    fn take_above(&mut self, acc: &mut Acc) {
        acc.above = self.chunks.len() as u32;
        self.chunks.push([0; CHUNK]);
    }

    #[inline(always)]
    fn push_pending(&mut self, i: usize) {
        if self.pending.len == PENDING {
            self.apply_pending();
        }
        self.pending.idx[self.pending.len] = i;
        self.pending.len += 1;
    }

    /// Applies the pending chunk-counter increments.
    #[inline]
    fn apply_pending(&mut self) {
        let counters = self.chunks.as_flattened_mut();
        for &i in &self.pending.idx[..self.pending.len] {
            counters[i] += 1;
        }
        self.pending.len = 0;
    }

    /// Moves `acc`'s run to a wider one that covers chunk `c`, at least doubling it so that
    /// the space left behind stays within twice what the run finally needs.
    #[cold]
    fn grow(&mut self, acc: &mut Acc, c: usize) {
        // Pending increments may point into the run about to be moved.
        self.apply_pending();
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
        acc.run = run as u32;
        acc.base = new_base as u8;
        acc.span = want as u8;
    }
}

/// What a span needs of its series, stored in the shard's map entry next to the key so that
/// a lookup brings it into cache with the key.
#[derive(Debug, Clone, Copy)]
struct Hot {
    local: u32,
    /// The delta epoch `acc` refers to; older references are stale.
    epoch: u32,
    /// The secondary accumulators (see [`Delta`]) of the (up to) two slots other than its
    /// primary one that this series last recorded into.
    acc: [u32; 2],
    last_seen: UnixNanos,
    /// A 64-bit hash ([`fingerprint`]) of the last `service.version` seen, [`NO_VERSION`]
    /// before the first. A version whose hash equals that of the one before it would go
    /// unnoticed: a chance of one in 2^64 per change of version.
    ver: u64,
}

/// [`Hot::ver`] of a series that has seen no `service.version` yet.
const NO_VERSION: u64 = 0;

impl Hot {
    fn new(local: u32, now: UnixNanos) -> Self {
        Hot {
            local,
            epoch: 0,
            acc: [NONE; 2],
            last_seen: now,
            ver: NO_VERSION,
        }
    }
}

/// The `service.version` values a local series has seen (bounded).
#[derive(Debug, Default)]
struct Cold {
    /// Least recently switched to first: the last one is the series' current version. Each
    /// with the delta epoch it was last reported in (0: none).
    versions: Vec<(Box<str>, u32)>,
    /// The delta epoch the series' version last changed in (0: none).
    switched: u32,
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

impl std::fmt::Debug for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

// === impl Table ===

/// A series the shard knows: its key, the key's hash and what a span needs of it.
#[derive(Debug)]
struct Entry {
    hash: u64,
    key: ShardKey,
    hot: Hot,
}

/// An empty slot of [`Table::slots`].
const EMPTY: u64 = u64::MAX;

/// The shard's series map: looked up by a hash of the span's key parts and compared part by
/// part against the stored key ([`KeyLayout::hash`], [`KeyLayout::matches`]), so a lookup
/// builds no key. Open addressing with linear probing over packed slots (the hash's high
/// 32 bits and the local series number), at most a quarter full (a second probe is a
/// branch the CPU mispredicts half the time); entries are indexed by local
/// series number.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<u64>,
    /// By local series number; a free number's entry has `hot.local == NONE`.
    entries: Vec<Entry>,
    len: usize,
}

impl Table {
    #[inline]
    fn shift(&self) -> u32 {
        64 - self.slots.len().trailing_zeros()
    }

    /// The entry of `span`'s series, whose key hashes to `hash`.
    #[inline(always)]
    fn get_mut(
        &mut self,
        layout: &KeyLayout,
        hash: u64,
        span: &SpanRecord<'_>,
    ) -> Option<&mut Hot> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = (hash >> self.shift()) as usize;
        let tag = hash >> 32;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s >> 32 == tag {
                let l = s as u32 as usize;
                if layout.matches(span, self.entries[l].key.as_slice()) {
                    return Some(&mut self.entries[l].hot);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a series not in the table.
    fn insert(&mut self, hash: u64, key: &[u8], hot: Hot) -> &mut Hot {
        if (self.len + 1) * 4 > self.slots.len() {
            self.rebuild((self.slots.len() * 2).max(16));
        }
        let l = hot.local as usize;
        let e = Entry {
            hash,
            key: ShardKey::new(key),
            hot,
        };
        if l >= self.entries.len() {
            self.entries.resize_with(l + 1, Entry::free);
        }
        self.entries[l] = e;
        self.place(hash, l as u32);
        self.len += 1;
        &mut self.entries[l].hot
    }

    fn place(&mut self, hash: u64, l: u32) {
        let mask = self.slots.len() - 1;
        let mut i = (hash >> self.shift()) as usize;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = (hash >> 32) << 32 | u64::from(l);
    }

    /// Refills the slots (`cap` of them) from the live entries.
    fn rebuild(&mut self, cap: usize) {
        self.slots.clear();
        self.slots.resize(cap, EMPTY);
        for l in 0..self.entries.len() {
            if self.entries[l].hot.local != NONE {
                self.place(self.entries[l].hash, l as u32);
            }
        }
    }

    /// Starts bringing the slot `hash` probes first into cache.
    #[inline]
    fn prefetch_slot(&self, hash: u64) {
        if let Some(s) = self.slots.get((hash >> self.shift()) as usize) {
            prefetch(s);
        }
    }

    /// Starts bringing into cache the entry `hash`'s first slot names, when the slot's tag
    /// matches (usually the series of `hash`; a prefetch only needs a likely address): both
    /// ends of the entry, which spans two cache lines, and the series' primary accumulator in
    /// `delta`.
    #[inline]
    fn prefetch_entry(&self, hash: u64, delta: &Delta) {
        let Some(&s) = self.slots.get((hash >> self.shift()) as usize) else {
            return;
        };
        if s == EMPTY || s >> 32 != hash >> 32 {
            return;
        }
        let l = s as u32 as usize;
        if let Some(e) = self.entries.get(l) {
            let p = std::ptr::from_ref(e).cast::<u8>();
            prefetch(p);
            prefetch(p.wrapping_add(size_of::<Entry>() - 1));
        }
        delta.prefetch_primary(l);
    }
}

// === impl Ahead ===

/// Tables of at least this many slots (8,192 series and more, a quarter full) are, with their
/// entries, bigger than the L2; smaller ones are recorded without lookahead.
const LOOKAHEAD_SLOTS: usize = 1 << 15;
/// Spans per block of a request recorded with lookahead.
const BLOCK: usize = 8;
/// Hashes kept: the block being recorded and the two ahead of it, rounded up to a power of 2.
const RING: usize = 4 * BLOCK;

/// The lookahead of a request recorded against a big table. A span's lookup is a chain of
/// dependent loads (table slot, then entry and accumulator) that each miss the cache when
/// series are many. Before block `k` is recorded, two stages run, each reading only what the
/// previous one prefetched a block earlier: the spans of block `k + 2` are hashed and their
/// first table slots prefetched; the entries and primary accumulators the slots of block
/// `k + 1` name are prefetched. So the misses of many spans are in flight together instead
/// of one after another.
#[derive(Debug)]
struct Ahead {
    hashes: [u64; RING],
}

impl Ahead {
    /// Runs the stages for the first blocks of `spans`.
    fn start(&mut self, cfg: &ShardConfig, keys: &Table, delta: &Delta, spans: &[SpanRecord<'_>]) {
        for j in 0..spans.len().min(2 * BLOCK) {
            self.stage_hash(cfg, keys, spans, j);
        }
        for j in 0..spans.len().min(BLOCK) {
            keys.prefetch_entry(self.hash(j), delta);
        }
    }

    /// The hash of span `j` (hashed by an earlier stage).
    #[inline]
    fn hash(&self, j: usize) -> u64 {
        self.hashes[j % RING]
    }

    #[inline(always)]
    fn stage_hash(&mut self, cfg: &ShardConfig, keys: &Table, spans: &[SpanRecord<'_>], j: usize) {
        let h = cfg.layout.hash(&spans[j]);
        self.hashes[j % RING] = h;
        keys.prefetch_slot(h);
    }

    /// The stages to run before recording the block that starts at span `first`.
    fn advance(
        &mut self,
        cfg: &ShardConfig,
        keys: &Table,
        delta: &Delta,
        spans: &[SpanRecord<'_>],
        first: usize,
    ) {
        let n = spans.len();
        for j in (first + 2 * BLOCK)..(first + 3 * BLOCK).min(n) {
            self.stage_hash(cfg, keys, spans, j);
        }
        for j in (first + BLOCK)..(first + 2 * BLOCK).min(n) {
            keys.prefetch_entry(self.hash(j), delta);
        }
    }
}

impl Entry {
    fn free() -> Self {
        Entry {
            hash: 0,
            key: ShardKey::new(&[]),
            hot: Hot::new(NONE, 0),
        }
    }
}

// === impl Shard ===

/// A worker's series map and pending counts.
#[derive(Debug)]
pub(crate) struct Shard {
    keys: Table,
    /// Where spans go once the map is full.
    overflow: Hot,
    cold: Vec<Cold>,
    free: Vec<u32>,
    pub(crate) delta: Delta,
    scratch: Vec<u8>,
    /// The state of the generator that rounds fractional adjusted counts ([`weight_of`]).
    rng: u64,
}

// === adjusted counts ===

/// The largest adjusted count a sampled span counts for (a sampling probability of about one
/// in a million); a span sampled with a lower probability counts as this many and is counted
/// as clamped.
pub(crate) const MAX_ADJUSTED_COUNT: u64 = 1 << 20;

/// A sampling threshold's adjusted count `2^56 / (2^56 - T)` as quotient and remainder of the
/// division by `d = 2^56 - T` (the remainder is the fractional part, in units of `1/d`).
#[derive(Debug, Clone, Copy)]
struct Adjusted {
    threshold: u64,
    q: u64,
    r: u64,
    d: u64,
}

impl Adjusted {
    fn of(threshold: u64) -> Option<Self> {
        let d = SAMPLING_THRESHOLD_RANGE
            .checked_sub(threshold)
            .filter(|d| *d > 0)?;
        Some(Adjusted {
            threshold,
            q: SAMPLING_THRESHOLD_RANGE / d,
            r: SAMPLING_THRESHOLD_RANGE % d,
            d,
        })
    }
}

/// The weight of a span ([`Acc::weight`]): 0 without a (valid) sampling threshold, else its
/// adjusted count as an integer. An adjusted count that is an integer (any probability
/// `1/2^n`, and `1/N` to within the threshold's 56 bits) is used as it is; otherwise the span
/// counts `floor` or `ceil` of it at random, `ceil` with the probability of the fractional
/// part, so that the expected count is exact. `last` caches the division for the spans of a
/// request, which mostly share a threshold.
#[inline(always)]
fn weight_of(
    threshold: Option<u64>,
    last: &mut Option<Adjusted>,
    rng: &mut u64,
    clamped: &mut u64,
) -> u32 {
    match threshold {
        None => 0,
        Some(t) => sampled_weight(t, last, rng, clamped),
    }
}

/// [`weight_of`] a span that carries sampling threshold `t` (out of line: the record loop
/// of unsampled traffic stays as small as it was).
#[inline(never)]
fn sampled_weight(t: u64, last: &mut Option<Adjusted>, rng: &mut u64, clamped: &mut u64) -> u32 {
    let a = match *last {
        Some(a) if a.threshold == t => a,
        _ => match Adjusted::of(t) {
            Some(a) => {
                *last = Some(a);
                a
            }
            None => return 0,
        },
    };
    if a.q >= MAX_ADJUSTED_COUNT {
        *clamped += 1;
        return MAX_ADJUSTED_COUNT as u32;
    }
    let up = a.r > 0 && {
        // xorshift64*: a uniform draw in [0, d), compared with the remainder.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let x = rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((u128::from(x) * u128::from(a.d)) >> 64) < u128::from(a.r)
    };
    (a.q + u64::from(up)) as u32
}

impl Shard {
    /// A shard comparing requests with the latency `thresholds` until the next tick installs
    /// the set then current.
    pub(crate) fn new(cfg: &ShardConfig, thresholds: &std::sync::Arc<Thresholds>) -> Self {
        Shard {
            keys: Table::default(),
            overflow: Hot::new(OVERFLOW_LOCAL, 0),
            cold: vec![Cold::default()],
            free: Vec::new(),
            delta: Delta::new(cfg.nchunks, 1, thresholds),
            scratch: Vec::with_capacity(256),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// A fresh, empty delta for this configuration (the ticker's spare).
    pub(crate) fn empty_delta(cfg: &ShardConfig) -> Delta {
        Delta::new(cfg.nchunks, 0, &std::sync::Arc::default())
    }

    /// Number of series keys the shard holds.
    pub(crate) fn len(&self) -> usize {
        self.keys.len
    }

    /// Records the spans of one request. `now` is read once per request.
    pub(crate) fn record(&mut self, cfg: &ShardConfig, now: UnixNanos, spans: &[SpanRecord<'_>]) {
        // With a table bigger than the L2, a request is recorded in blocks of [`BLOCK`] spans,
        // and the lookups of the next blocks are started ahead (see [`Ahead`]).
        if self.keys.slots.len() >= LOOKAHEAD_SLOTS {
            self.record_spans::<true>(cfg, now, spans);
        } else {
            self.record_spans::<false>(cfg, now, spans);
        }
    }

    /// [`Shard::record`], with or without lookahead (two copies, so that the plain one pays
    /// nothing for it).
    #[inline(never)]
    fn record_spans<const AHEAD: bool>(
        &mut self,
        cfg: &ShardConfig,
        now: UnixNanos,
        spans: &[SpanRecord<'_>],
    ) {
        let now_slot = now / cfg.slot_ns;
        let oldest_slot = (now_slot + 1).saturating_sub(cfg.retention_slots);
        let future_limit = now.saturating_add(cfg.future_skew_ns);
        let Shard {
            keys,
            overflow,
            cold,
            free,
            delta,
            scratch,
            rng,
        } = self;
        let mut observed = 0;
        // The last sampling threshold's adjusted count, and spans clamped to the largest.
        let mut adjusted: Option<Adjusted> = None;
        let mut clamped_weight = 0;
        // The latency thresholds, compared with every request's duration.
        let thresholds = delta.inline_thresholds;
        // The slot of the last span (most spans of a request end in the same slot) and the
        // end times it covers, less any in the future.
        let (mut slot_lo, mut slot_hi, mut last_slot) = (0, 0, 0);
        // The last `service.version` string hashed, and its hash.
        let mut last_ver: (&str, u64) = ("", fingerprint(b""));
        let mut ahead = Ahead { hashes: [0; RING] };
        if AHEAD {
            ahead.start(cfg, keys, delta, spans);
        }
        if cfg.explain.on() {
            delta.explain.new_request();
        }
        let block = if AHEAD { BLOCK } else { spans.len().max(1) };
        // The previous span and its series (local number), across blocks.
        let mut last: Option<(&SpanRecord<'_>, u32)> = None;
        for (b, chunk) in spans.chunks(block).enumerate() {
            let first = b * block;
            if AHEAD {
                ahead.advance(cfg, keys, delta, spans, first);
            }
            let mut prev: Option<(&SpanRecord<'_>, &mut Hot)> = last.map(|(p, l)| {
                let h = if l == OVERFLOW_LOCAL {
                    &mut *overflow
                } else {
                    &mut keys.entries[l as usize].hot
                };
                (p, h)
            });
            for (i, span) in chunk.iter().enumerate() {
                if !cfg.counts_kind(span.kind) {
                    delta.counters.filtered += 1;
                    continue;
                }
                let hot = match prev.take() {
                    Some((p, h)) if cfg.layout.same(p, span) => h,
                    _ => {
                        let hash = if AHEAD {
                            ahead.hash(first + i)
                        } else {
                            cfg.layout.hash(span)
                        };
                        if let Some(h) = keys.get_mut(&cfg.layout, hash, span) {
                            h
                        } else if keys.len >= cfg.max_local {
                            &mut *overflow
                        } else {
                            let l = match free.pop() {
                                Some(l) => {
                                    cold[l as usize] = Cold::default();
                                    l
                                }
                                None => {
                                    cold.push(Cold::default());
                                    (cold.len() - 1) as u32
                                }
                            };
                            cfg.layout.write(span, scratch);
                            delta.new_keys.push((l, scratch.as_slice().into()));
                            keys.insert(hash, scratch, Hot::new(l, now))
                        }
                    }
                };
                let end = span.end_unix_nano;
                let slot = if (slot_lo..slot_hi).contains(&end) {
                    last_slot
                } else if end > future_limit {
                    delta.counters.future += 1;
                    now_slot
                } else {
                    let s = end / cfg.slot_ns;
                    if s < oldest_slot {
                        delta.counters.late += 1;
                        prev = Some((span, hot));
                        continue;
                    }
                    // Later spans ending in this slot, and not in the future, skip all
                    // three tests above but the first.
                    last_slot = s;
                    slot_lo = s * cfg.slot_ns;
                    slot_hi =
                        (slot_lo.saturating_add(cfg.slot_ns)).min(future_limit.saturating_add(1));
                    s
                };
                let mut dur = span.duration_nanos();
                // Against the duration as it is, not as the histogram clamps it.
                let k = thresholds.exceeded(dur);
                if dur > cfg.max_value {
                    delta.counters.duration += 1;
                    dur = cfg.max_value;
                }
                let obs = Obs {
                    w: weight_of(
                        span.sampling_threshold,
                        &mut adjusted,
                        rng,
                        &mut clamped_weight,
                    ),
                    bad: cfg.rules.classify(span) == Outcome::Bad,
                    b: bucket_of(dur),
                    k,
                };
                if !delta.observe(cfg, hot, slot, obs) {
                    delta.counters.shard_full += 1;
                    prev = Some((span, hot));
                    continue;
                }
                observed += 1;
                hot.last_seen = now;
                if cfg.exemplars && !span.trace_id.is_empty() {
                    delta.offer_exemplar(hot.local, span, obs.bad);
                }
                if cfg.explain.on() {
                    delta.explain.offer(
                        &cfg.explain,
                        span,
                        slot,
                        obs.bad,
                        obs.w,
                        &thresholds.values[..thresholds.len],
                        obs.k,
                    );
                }
                if let Some(v) = span.service_version
                    && hot.local != OVERFLOW_LOCAL
                    && cfg.max_versions > 0
                {
                    // The spans of a resource share its version string: hashed once.
                    if !std::ptr::eq(v, last_ver.0) {
                        last_ver = (v, fingerprint(v.as_bytes()));
                    }
                    if hot.ver != last_ver.1 {
                        note_version(
                            cfg,
                            delta,
                            &mut cold[hot.local as usize],
                            hot,
                            v,
                            last_ver.1,
                            span.end_unix_nano,
                        );
                    }
                }
                prev = Some((span, hot));
            }
            last = prev.map(|(p, h)| (p, h.local));
        }
        delta.counters.observed += observed;
        delta.counters.adjusted_count += clamped_weight;
        delta.flush();
    }

    /// Swaps the pending counts out for `spare` (an empty delta); accumulator references into
    /// it go stale with the epoch. Then, when `sweep` says so, removes series idle since
    /// `sweep.idle_before` and those whose global series was retired; a retired one that
    /// recorded since is announced again so the tick resolves it afresh. The new delta
    /// compares requests with the latency `thresholds`.
    pub(crate) fn take(
        &mut self,
        spare: &mut Delta,
        sweep: Option<Sweep<'_>>,
        thresholds: &std::sync::Arc<Thresholds>,
    ) {
        spare.set_thresholds(thresholds);
        for &l in &self.delta.switched {
            if let Some((v, _)) = self.cold[l as usize].versions.last() {
                self.delta.current_versions.push((l, v.clone()));
            }
        }
        std::mem::swap(&mut self.delta, spare);
        let taken = spare;
        self.delta.epoch = taken.epoch.wrapping_add(1).max(1);
        if let Some(sw) = sweep {
            let mut removed = false;
            for e in &mut self.keys.entries {
                let h = &e.hot;
                if h.local == NONE {
                    continue;
                }
                let touched = taken.recorded(h.local as usize, h);
                let retired = sw
                    .global_of
                    .get(h.local as usize)
                    .is_some_and(|g| (sw.retired)(*g));
                if !touched && (retired || h.last_seen < sw.idle_before) {
                    self.cold[h.local as usize] = Cold::default();
                    self.free.push(h.local);
                    *e = Entry::free();
                    self.keys.len -= 1;
                    removed = true;
                } else if retired {
                    taken.new_keys.push((h.local, e.key.as_slice().into()));
                    if let Some((v, _)) = self.cold[h.local as usize].versions.last() {
                        taken.current_versions.push((h.local, v.clone()));
                    }
                }
            }
            if removed {
                let cap = self.keys.slots.len();
                self.keys.rebuild(cap);
            }
        }
    }
}

/// A `service.version` not the last one seen on this series: it becomes the current one.
/// Reports, once per delta, each version that served in it on a series whose version changed
/// (the one before the change too, unless the change came with the series' first span of the
/// delta), so that the tick knows which versions served and which one serves now.
#[cold]
fn note_version(
    cfg: &ShardConfig,
    d: &mut Delta,
    cold: &mut Cold,
    hot: &mut Hot,
    v: &str,
    fp: u64,
    end: UnixNanos,
) {
    if cold.switched != d.epoch {
        cold.switched = d.epoch;
        d.switched.push(hot.local);
        if !d.only_one(hot)
            && let Some((before, at)) = cold.versions.last_mut()
            && *at != d.epoch
        {
            *at = d.epoch;
            d.versions.push((hot.local, before.clone(), end));
        }
    }
    let mut seen = match cold.versions.iter().position(|(x, _)| **x == *v) {
        Some(i) => cold.versions.remove(i),
        None => {
            if cold.versions.len() >= cfg.max_versions {
                cold.versions.remove(0);
            }
            (v.into(), 0)
        }
    };
    if seen.1 != d.epoch {
        seen.1 = d.epoch;
        d.versions.push((hot.local, seen.0.clone(), end));
    }
    cold.versions.push(seen);
    hot.ver = fp;
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
