//! Latency thresholds counted exactly.
//!
//! A latency SLO counts a request good when `end - start <= threshold`. The histogram cannot
//! say that exactly: the bucket holding the threshold is up to 1/64 of it wide, and its
//! requests lie on both sides. So the aggregator compares every request with the configured
//! thresholds as it records it ([`Aggregator::set_latency_thresholds`]): a small sorted set
//! shared by all series, installed into each shard's pending counts on the tick (the record
//! path reads it from its own delta, once per request). Each (series, slot) keeps, next to
//! its histogram, the number of requests above each threshold ([`AboveCounts`]).
//!
//! A slot's counts cover a threshold only when every request of the slot was compared with
//! it. After a reload adds a threshold, the slots that already held requests (the current one
//! at least) do not cover it; [`AboveCounts::above`] says `None` for them and a latency SLO
//! falls back to the histogram there (the bucket holding the threshold counts as good, so
//! good is high by at most that bucket's requests above the threshold). The first slot that
//! starts after the tick following the reload is exact. Partial aggregates from a sender
//! that counts other thresholds (or none: an older version) cover only the thresholds both
//! count, and likewise fall back for the others.
//!
//! Memory: 24 bytes per slot in the window store (a pointer to the shared set, and the counts
//! inline for one threshold, 8 bytes per threshold on the heap for more): at 100,000 series
//! with the 60 slots an hour of retention keeps, 144 MB with one threshold, plus 8 bytes per
//! threshold per slot beyond the first. In a shard's pending counts, an accumulator that saw
//! a request above a threshold takes one 256-byte block of counters until the tick.
//!
//! [`Aggregator::set_latency_thresholds`]: crate::Aggregator::set_latency_thresholds

use std::sync::Arc;

/// The most distinct latency thresholds counted exactly; further ones (the longest) fall back
/// to the histogram estimate.
pub const MAX_LATENCY_THRESHOLDS: usize = 16;

/// A set of latency thresholds (nanoseconds), ascending and distinct, shared by every slot
/// counted against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thresholds {
    values: Box<[u64]>,
}

impl Thresholds {
    /// The set of `values` (any order, repeats allowed), the lowest
    /// [`MAX_LATENCY_THRESHOLDS`] of them.
    pub fn new(values: impl IntoIterator<Item = u64>) -> Self {
        let mut v: Vec<u64> = values.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        v.truncate(MAX_LATENCY_THRESHOLDS);
        Thresholds { values: v.into() }
    }

    /// The thresholds, ascending, nanoseconds.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// Number of thresholds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The thresholds inline, for the record path (copied once per request).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Inline {
    pub(crate) values: [u64; MAX_LATENCY_THRESHOLDS],
    pub(crate) len: usize,
}

impl Inline {
    pub(crate) fn of(t: &Thresholds) -> Self {
        let mut values = [0; MAX_LATENCY_THRESHOLDS];
        values[..t.len()].copy_from_slice(t.values());
        Inline {
            values,
            len: t.len(),
        }
    }

    /// How many thresholds `dur` is above: the request is bad for the lowest `k` of them.
    #[inline(always)]
    pub(crate) fn exceeded(&self, dur: u64) -> usize {
        if self.len == 0 {
            return 0;
        }
        self.values[..self.len]
            .iter()
            .take_while(|&&t| t < dur)
            .count()
    }
}

/// Counts per threshold: inline for one (the usual case), on the heap for more.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counts {
    One(u64),
    Many(Box<[u64]>),
}

impl Counts {
    fn of(v: &[u64]) -> Self {
        match v {
            [] => Counts::One(0),
            [x] => Counts::One(*x),
            _ => Counts::Many(v.into()),
        }
    }

    fn as_slice(&self) -> &[u64] {
        match self {
            Counts::One(x) => std::slice::from_ref(x),
            Counts::Many(b) => b,
        }
    }
}

/// Requests above each latency threshold in one slot (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AboveCounts {
    /// The thresholds every request of the slot was compared with; `None`: none.
    set: Option<Arc<Thresholds>>,
    /// One per threshold of `set` (a single zero without a set).
    counts: Counts,
}

impl Default for AboveCounts {
    fn default() -> Self {
        AboveCounts {
            set: None,
            counts: Counts::One(0),
        }
    }
}

impl AboveCounts {
    /// Counts of `set` (`counts[i]` above `set.values()[i]`); none when `set` is empty.
    pub(crate) fn new(set: &Arc<Thresholds>, counts: &[u64]) -> Self {
        debug_assert_eq!(set.len(), counts.len());
        if set.is_empty() {
            return AboveCounts::default();
        }
        AboveCounts {
            set: Some(set.clone()),
            counts: Counts::of(counts),
        }
    }

    /// Requests of the slot above `threshold` nanoseconds; `None` when the slot's requests
    /// were not all compared with it (use the histogram then).
    pub fn above(&self, threshold: u64) -> Option<u64> {
        let set = self.set.as_ref()?;
        let i = set.values().binary_search(&threshold).ok()?;
        self.counts.as_slice().get(i).copied()
    }

    /// The thresholds covered, ascending, nanoseconds.
    pub fn thresholds(&self) -> &[u64] {
        self.set.as_deref().map_or(&[], Thresholds::values)
    }

    /// `(threshold, requests above it)` of every threshold covered, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.thresholds()
            .iter()
            .copied()
            .zip(self.counts.as_slice().iter().copied())
    }

    /// Adds the counts of requests compared with `set` (`counts[i]` above `set.values()[i]`)
    /// to a slot that already held `before` requests (0: a new slot). The slot keeps covering
    /// only the thresholds both cover, and only those of `current` (the aggregator's set now);
    /// a slot that held requests before and covered nothing covers nothing.
    pub(crate) fn add(
        &mut self,
        before: u64,
        set: &Arc<Thresholds>,
        counts: &[u64],
        current: &Arc<Thresholds>,
    ) {
        if before == 0 {
            let (set, counts) = restrict(set, counts, current);
            *self = AboveCounts::new(&set, &counts);
            return;
        }
        let Some(mine) = self.set.clone() else {
            return;
        };
        if Arc::ptr_eq(&mine, set) || mine.values() == set.values() {
            let mut sum: Vec<u64> = self.counts.as_slice().to_vec();
            for (s, c) in sum.iter_mut().zip(counts) {
                *s = s.saturating_add(*c);
            }
            self.counts = Counts::of(&sum);
            return;
        }
        let mut keep = Vec::new();
        let mut sum = Vec::new();
        for (t, n) in self.iter() {
            if let Ok(j) = set.values().binary_search(&t) {
                keep.push(t);
                sum.push(n.saturating_add(counts[j]));
            }
        }
        *self = AboveCounts::new(&shared(keep, &[&mine, set, current]), &sum);
    }

    /// Marks the slot as covering nothing (requests were added without comparisons).
    pub(crate) fn clear(&mut self) {
        *self = AboveCounts::default();
    }

    /// What these counts gained since `before` (the same slot earlier; its set covers at
    /// least this one's): `(threshold, gained)` per threshold covered now.
    pub fn gained_since(&self, before: Option<&AboveCounts>) -> Vec<(u64, u64)> {
        self.iter()
            .map(|(t, n)| {
                let old = before.and_then(|b| b.above(t)).unwrap_or(0);
                (t, n.saturating_sub(old))
            })
            .collect()
    }
}

/// `set`'s counts restricted to the thresholds of `current`.
fn restrict(
    set: &Arc<Thresholds>,
    counts: &[u64],
    current: &Arc<Thresholds>,
) -> (Arc<Thresholds>, Vec<u64>) {
    if Arc::ptr_eq(set, current) || set.values() == current.values() {
        return (current.clone(), counts.to_vec());
    }
    let mut keep = Vec::new();
    let mut sum = Vec::new();
    for (i, &t) in set.values().iter().enumerate() {
        if current.values().binary_search(&t).is_ok() {
            keep.push(t);
            sum.push(counts[i]);
        }
    }
    (shared(keep, &[set, current]), sum)
}

/// The set of `values`: one of `known` when it holds exactly those (no allocation), else a
/// new one.
fn shared(values: Vec<u64>, known: &[&Arc<Thresholds>]) -> Arc<Thresholds> {
    known
        .iter()
        .find(|k| k.values() == values.as_slice())
        .map_or_else(
            || {
                Arc::new(Thresholds {
                    values: values.into(),
                })
            },
            |k| (*k).clone(),
        )
}
