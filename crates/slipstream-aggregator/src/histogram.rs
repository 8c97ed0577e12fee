//! Latency histograms in a log-linear HDR layout, in nanoseconds.
//!
//! Values below 64 ns have a bucket each (exact). Above, every power of two is split into 64
//! equal buckets, so a bucket is at most 1/64 of its lower bound wide; reporting its midpoint
//! puts any quantile within 1/128 (0.79%) of the exact value. Bucket `i` lies in 64-bucket
//! *chunk* `i / 64`; a 1 h range needs 37 chunks (2,368 buckets).
//!
//! Two representations: [`Histogram`] (dense counts, for queries and merges) and
//! [`SparseHistogram`] (non-empty buckets as a varint-coded byte string of about a byte
//! per bucket, inline up to 30 bytes: what the window store keeps per slot). The per-worker
//! shards keep their own chunked counts (see `shard`).

/// Buckets per chunk (one power of two above 64 ns).
pub(crate) const CHUNK: usize = 64;
const SUB_BITS: u32 = 6;

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

    /// Observations whose bucket is at or below the bucket of `threshold` nanoseconds: an
    /// estimate of the requests within a latency threshold. The whole bucket holding the
    /// threshold counts, so every observation from the threshold up to that bucket's top,
    /// up to 1/64 of the bucket's lower bound above the threshold (one-sided: never fewer
    /// than the exact count), is counted too. Latency SLOs use the exact counts the
    /// aggregator keeps per slot instead ([`crate::SlotData::good_within`]) and this only where
    /// a slot lacks them.
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

/// Encoded bytes held inside the histogram itself, without an allocation of their own: the
/// window store keeps one histogram per series and slot, most of them small.
const INLINE_BYTES: usize = 30;

#[derive(Clone)]
enum Bytes {
    Inline { len: u8, buf: [u8; INLINE_BYTES] },
    Heap(Box<[u8]>),
}

impl Bytes {
    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, buf } => &buf[..usize::from(*len)],
            Bytes::Heap(b) => b,
        }
    }
}

impl Default for Bytes {
    fn default() -> Self {
        Bytes::Inline {
            len: 0,
            buf: [0; INLINE_BYTES],
        }
    }
}

/// Non-empty buckets only, ascending, as a compact byte string: per bucket one LEB128
/// varint holding (the gap since the previous bucket + 1) << 1 and a flag for a count above
/// one, then, when flagged, the count - 2 as a varint. A bucket seen once next to the
/// previous one takes one byte; up to 30 bytes are held inline.
#[derive(Clone, Default)]
pub struct SparseHistogram {
    bytes: Bytes,
}

impl PartialEq for SparseHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.as_slice() == other.bytes.as_slice()
    }
}

impl Eq for SparseHistogram {}

impl std::fmt::Debug for SparseHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Writes the encoding, inline until it outgrows [`INLINE_BYTES`].
struct Encoder {
    buf: [u8; INLINE_BYTES],
    len: usize,
    heap: Vec<u8>,
    /// The bucket after the last one written.
    next: u32,
    /// A bucket not written yet (repeats of it are summed).
    pending: Option<(u32, u64)>,
}

impl Encoder {
    fn new() -> Self {
        Encoder {
            buf: [0; INLINE_BYTES],
            len: 0,
            heap: Vec::new(),
            next: 0,
            pending: None,
        }
    }

    #[inline]
    fn push(&mut self, b: u32, n: u64) {
        if n == 0 {
            return;
        }
        match &mut self.pending {
            Some((pb, pn)) if *pb == b => *pn += n,
            _ => {
                if let Some((pb, pn)) = self.pending.take() {
                    self.write(pb, pn);
                }
                self.pending = Some((b, n));
            }
        }
    }

    fn write(&mut self, b: u32, n: u64) {
        debug_assert!(b >= self.next, "buckets must ascend");
        let gap = u64::from(b.saturating_sub(self.next));
        self.next = b + 1;
        self.varint(gap << 1 | u64::from(n > 1));
        if n > 1 {
            self.varint(n - 2);
        }
    }

    #[inline]
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            self.byte(if v == 0 { byte } else { byte | 0x80 });
            if v == 0 {
                return;
            }
        }
    }

    #[inline]
    fn byte(&mut self, x: u8) {
        if self.len < INLINE_BYTES {
            self.buf[self.len] = x;
            self.len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.reserve(INLINE_BYTES * 2);
                self.heap.extend_from_slice(&self.buf);
            }
            self.heap.push(x);
        }
    }

    fn finish(mut self) -> SparseHistogram {
        if let Some((b, n)) = self.pending.take() {
            self.write(b, n);
        }
        let bytes = if self.heap.is_empty() {
            Bytes::Inline {
                len: self.len as u8,
                buf: self.buf,
            }
        } else {
            Bytes::Heap(self.heap.into_boxed_slice())
        };
        SparseHistogram { bytes }
    }
}

#[inline]
fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let x = b[*i];
        *i += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

impl SparseHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds from `(bucket, count)` pairs in ascending bucket order.
    pub fn from_sorted(pairs: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut e = Encoder::new();
        for (b, n) in pairs {
            e.push(b, n);
        }
        e.finish()
    }

    /// Builds from a dense histogram.
    pub fn from_dense(h: &Histogram) -> Self {
        Self::from_sorted(h.iter())
    }

    /// A new histogram holding this one plus `(bucket, count)` pairs in ascending order.
    pub fn merged_with(&self, pairs: impl IntoIterator<Item = (u32, u64)>) -> Self {
        let mut e = Encoder::new();
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
            e.push(next.0, next.1);
        }
        e.finish()
    }

    /// `(bucket, count)` of every non-empty bucket, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let bytes = self.bytes.as_slice();
        let mut i = 0;
        let mut next = 0u32;
        std::iter::from_fn(move || {
            if i >= bytes.len() {
                return None;
            }
            let v = read_varint(bytes, &mut i);
            let b = next + (v >> 1) as u32;
            let n = if v & 1 == 0 {
                1
            } else {
                read_varint(bytes, &mut i) + 2
            };
            next = b + 1;
            Some((b, n))
        })
    }

    /// Number of observations.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    /// The nearest-rank quantile `q` in nanoseconds; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        quantile_of(self.iter(), self.total(), q)
    }

    /// Observations whose bucket is at or below the bucket of `threshold` nanoseconds (see
    /// [`Histogram::count_at_or_below`]).
    pub fn count_at_or_below(&self, threshold: u64) -> u64 {
        let b = bucket_of(threshold);
        self.iter()
            .take_while(|(x, _)| *x <= b)
            .map(|(_, n)| n)
            .sum()
    }

    /// Heap bytes held (beyond the histogram itself).
    pub fn heap_bytes(&self) -> usize {
        match &self.bytes {
            Bytes::Inline { .. } => 0,
            Bytes::Heap(b) => b.len(),
        }
    }
}
