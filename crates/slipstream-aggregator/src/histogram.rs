//! Latency histograms in a log-linear HDR layout, in nanoseconds.
//!
//! Values below 64 ns have a bucket each (exact). Above, every power of two is split into 64
//! equal buckets, so a bucket is at most 1/64 of its lower bound wide; reporting its midpoint
//! puts any quantile within 1/128 (0.79%) of the exact value. Bucket `i` lies in 64-bucket
//! *chunk* `i / 64`; a 1 h range needs 37 chunks (2,368 buckets).
//!
//! Two representations: [`Histogram`] (dense counts, for queries and merges) and
//! [`SparseHistogram`] (sorted packed entries, 4 bytes per non-empty bucket, what the window
//! store keeps per slot). The per-worker shards keep their own chunked counts (see `shard`).

/// Buckets per chunk (one power of two above 64 ns).
pub(crate) const CHUNK: usize = 64;
const SUB_BITS: u32 = 6;
/// Bits of a packed sparse entry holding the count; the rest holds the bucket index.
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;

/// The bucket index of a value in nanoseconds.
#[inline]
pub fn bucket_of(v: u64) -> u32 {
    if v < CHUNK as u64 {
        v as u32
    } else {
        let e = 63 - v.leading_zeros();
        let shift = e - SUB_BITS;
        ((shift + 1) << SUB_BITS) | ((v >> shift) as u32 & (CHUNK as u32 - 1))
    }
}

/// The lowest value that lands in bucket `b`.
#[inline]
pub fn bucket_low(b: u32) -> u64 {
    let chunk = b >> SUB_BITS;
    if chunk == 0 {
        u64::from(b)
    } else {
        let shift = chunk - 1;
        (u64::from(CHUNK as u32 + (b & (CHUNK as u32 - 1)))) << shift
    }
}

/// The highest value that lands in bucket `b`.
#[inline]
pub fn bucket_high(b: u32) -> u64 {
    let chunk = b >> SUB_BITS;
    let width = if chunk == 0 { 1 } else { 1u64 << (chunk - 1) };
    bucket_low(b) + (width - 1)
}

/// The value reported for bucket `b`: its midpoint.
#[inline]
pub fn bucket_value(b: u32) -> u64 {
    let lo = bucket_low(b);
    lo + (bucket_high(b) - lo).div_ceil(2)
}

/// Number of chunks needed to hold values up to `max`.
pub(crate) fn chunks_for(max: u64) -> usize {
    (bucket_of(max) as usize >> SUB_BITS) + 1
}

/// The nearest-rank position (1-based) of quantile `q` among `n` values.
#[inline]
pub fn rank(q: f64, n: u64) -> u64 {
    let r = (q.clamp(0.0, 1.0) * n as f64).ceil() as u64;
    r.clamp(1, n.max(1))
}

// === impl Histogram ===

/// Dense bucket counts: what a window query merges slots into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `n` observations of `value` nanoseconds.
    pub fn record_n(&mut self, value: u64, n: u64) {
        self.add_bucket(bucket_of(value), n);
    }

    /// Records one observation.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    fn add_bucket(&mut self, b: u32, n: u64) {
        let b = b as usize;
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += n;
        self.total += n;
    }

    /// Adds every observation of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Adds every observation of a sparse histogram.
    pub fn merge_sparse(&mut self, other: &SparseHistogram) {
        for (b, n) in other.iter() {
            self.add_bucket(b, n);
        }
    }

    /// Number of observations.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// `(bucket, count)` of every non-empty bucket, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (b as u32, *n))
    }

    /// The nearest-rank quantile `q` (0..=1) in nanoseconds, within 0.79% of the exact one;
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.iter(), self.total, q)
    }

    /// Observations whose bucket is at or below the bucket of `threshold` nanoseconds: the
    /// good count of a latency SLI (the bucket holding the threshold counts as good, an error
    /// of at most 0.79% of the threshold).
    pub fn count_at_or_below(&self, threshold: u64) -> u64 {
        let b = bucket_of(threshold) as usize;
        self.counts.iter().take(b + 1).sum()
    }
}

fn quantile_of(iter: impl Iterator<Item = (u32, u64)>, total: u64, q: f64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let r = rank(q, total);
    let mut seen = 0;
    let mut last = None;
    for (b, n) in iter {
        seen += n;
        last = Some(b);
        if seen >= r {
            return Some(bucket_value(b));
        }
    }
    last.map(bucket_value)
}

// === impl SparseHistogram ===

/// Non-empty buckets only, sorted: each entry packs a bucket index (12 bits) and a count
/// (20 bits); a bucket with a larger count takes several entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SparseHistogram {
    entries: Box<[u32]>,
}

impl SparseHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds from `(bucket, count)` pairs in ascending bucket order.
    pub fn from_sorted(pairs: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut v = Vec::new();
        for (b, n) in pairs {
            push_packed(&mut v, b, n);
        }
        SparseHistogram {
            entries: v.into_boxed_slice(),
        }
    }

    /// Builds from a dense histogram.
    pub fn from_dense(h: &Histogram) -> Self {
        Self::from_sorted(h.iter())
    }

    /// A new histogram holding this one plus `(bucket, count)` pairs in ascending order.
    pub fn merged_with(&self, pairs: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut out = Vec::with_capacity(self.entries.len() + 8);
        let mut a = self.iter().peekable();
        let mut b = pairs.into_iter().filter(|p| p.1 > 0).peekable();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&(ba, na)), Some(&(bb, nb))) => {
                    if ba < bb {
                        a.next();
                        (ba, na)
                    } else if bb < ba {
                        b.next();
                        (bb, nb)
                    } else {
                        a.next();
                        b.next();
                        (ba, na + nb)
                    }
                }
                (Some(&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&x)) => {
                    b.next();
                    x
                }
                (None, None) => break,
            };
            push_packed(&mut out, next.0, next.1);
        }
        SparseHistogram {
            entries: out.into_boxed_slice(),
        }
    }

    /// `(bucket, count)` of every non-empty bucket, ascending, repeats coalesced.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let mut i = 0;
        let e = &self.entries;
        std::iter::from_fn(move || {
            let first = *e.get(i)?;
            let b = first >> COUNT_BITS;
            let mut n = u64::from(first & COUNT_MAX);
            i += 1;
            while let Some(&x) = e.get(i) {
                if x >> COUNT_BITS != b {
                    break;
                }
                n += u64::from(x & COUNT_MAX);
                i += 1;
            }
            Some((b, n))
        })
    }

    /// Number of observations.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|x| u64::from(x & COUNT_MAX)).sum()
    }

    /// The nearest-rank quantile `q` in nanoseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.iter(), self.total(), q)
    }

    /// Observations whose bucket is at or below the bucket of `threshold` nanoseconds (see
    /// [`Histogram::count_at_or_below`]).
    pub fn count_at_or_below(&self, threshold: u64) -> u64 {
        let b = bucket_of(threshold);
        self.entries
            .iter()
            .take_while(|x| *x >> COUNT_BITS <= b)
            .map(|x| u64::from(x & COUNT_MAX))
            .sum()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.entries.len() * 4
    }
}

fn push_packed(v: &mut Vec<u32>, b: u32, mut n: u64) {
    debug_assert!(b < (1 << (32 - COUNT_BITS)));
    while n > 0 {
        let c = n.min(u64::from(COUNT_MAX)) as u32;
        v.push((b << COUNT_BITS) | c);
        n -= u64::from(c);
    }
}
