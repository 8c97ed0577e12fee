//! The window store: multi-resolution rings of bad/total counts per SLO.
//!
//! Every observation is added to three rings of slots, each keyed by event time:
//!
//! | level  | slot   | holds                         | answers windows         |
//! |--------|--------|-------------------------------|-------------------------|
//! | fine   | 1 min  | min(6h, period) + 3 slots     | up to 6h                |
//! | medium | 5 min  | min(3d, period) + 3 slots     | above 6h, up to 3d      |
//! | coarse | 1 hour | period (31 days for a calendar month) + 3 slots | above 3d, up to the period |
//!
//! A query for window `W` at time `T` covers the event-time interval `[T - W, T)` on the
//! finest level that holds it. Slots inside the interval count whole; the slot that straddles
//! `T - W` counts by the share of it inside the interval (linear interpolation, exact for
//! steady traffic); the current slot, which holds the data up to `T`, counts whole. At
//! evaluation times on a slot boundary (every minute for windows up to 6h) the result is the
//! exact sum over the slots of the window, which is what Prometheus
//! `increase(counter[W])` gives for counters scraped on those boundaries.
//!
//! Memory for a 30-day period: (363 + 867 + 723) slots of 16 bytes, about 31 KiB.

use serde::{Deserialize, Serialize};
use slipstream_core::UnixNanos;

/// One minute in nanoseconds.
pub const MINUTE: u64 = 60_000_000_000;
/// One hour in nanoseconds.
pub const HOUR: u64 = 60 * MINUTE;
/// One day in nanoseconds.
pub const DAY: u64 = 24 * HOUR;

const FINE: u64 = MINUTE;
const MEDIUM: u64 = 5 * MINUTE;
const COARSE: u64 = HOUR;
const FINE_SPAN: u64 = 6 * HOUR;
const MEDIUM_SPAN: u64 = 3 * DAY;
/// Slots kept beyond the longest window: the straddling slot, the current one and one for
/// data slightly in the future.
const MARGIN: usize = 3;

/// Bad and total counts over a window; fractional where a slot was interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    /// Requests that were bad.
    pub bad: f64,
    /// All requests.
    pub total: f64,
}

impl Counts {
    /// `bad / total`, or `None` when there was no traffic.
    pub fn error_ratio(self) -> Option<f64> {
        (self.total > 0.0).then(|| self.bad / self.total)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bad: u64,
    total: u64,
}

/// One ring of equal slots.
#[derive(Debug, Clone)]
struct Ring {
    granularity: u64,
    slots: Vec<Slot>,
    /// Index (time / granularity) of the newest slot; slots older than `newest - len` are gone.
    newest: Option<u64>,
}

impl Ring {
    fn new(granularity: u64, span: u64) -> Ring {
        let len = if span == 0 {
            0
        } else {
            span.div_ceil(granularity) as usize + MARGIN
        };
        Ring {
            granularity,
            slots: vec![Slot::default(); len],
            newest: None,
        }
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The longest window this ring answers.
    fn span(&self) -> u64 {
        self.len().saturating_sub(MARGIN as u64) * self.granularity
    }

    fn advance(&mut self, idx: u64) {
        let len = self.len();
        if len == 0 {
            return;
        }
        match self.newest {
            Some(n) if idx <= n => {}
            Some(n) => {
                for i in (n + 1)..=idx.min(n + len) {
                    self.slots[(i % len) as usize] = Slot::default();
                }
                self.newest = Some(idx);
            }
            None => {
                self.slots.fill(Slot::default());
                self.newest = Some(idx);
            }
        }
    }

    /// Adds counts at time `t`; false when the slot is no longer held.
    fn add(&mut self, t: UnixNanos, bad: u64, total: u64) -> bool {
        let len = self.len();
        if len == 0 {
            return false;
        }
        let idx = t / self.granularity;
        self.advance(idx);
        let newest = self.newest.unwrap_or(idx);
        if idx + len <= newest {
            return false;
        }
        let s = &mut self.slots[(idx % len) as usize];
        s.bad += bad;
        s.total += total;
        true
    }

    fn get(&self, idx: u64) -> Slot {
        match self.newest {
            Some(n) if idx <= n && idx + self.len() > n => self.slots[(idx % self.len()) as usize],
            _ => Slot::default(),
        }
    }

    /// Counts over `[start, end)`, interpolating the slot that straddles `start`.
    fn sum(&self, start: UnixNanos, end: UnixNanos) -> Counts {
        if end <= start || self.len() == 0 {
            return Counts::default();
        }
        let g = self.granularity;
        let first = start / g;
        let last = (end - 1) / g;
        let mut bad = 0u64;
        let mut total = 0u64;
        for i in (first + 1)..=last {
            let s = self.get(i);
            bad += s.bad;
            total += s.total;
        }
        let s = self.get(first);
        let share = if first == last {
            1.0
        } else {
            ((first + 1) * g - start) as f64 / g as f64
        };
        let (mut fb, mut ft) = (bad as f64, total as f64);
        if share >= 1.0 {
            fb += s.bad as f64;
            ft += s.total as f64;
        } else {
            fb += s.bad as f64 * share;
            ft += s.total as f64 * share;
        }
        Counts { bad: fb, total: ft }
    }
}

/// The rings of one SLO.
#[derive(Debug, Clone)]
pub struct WindowStore {
    rings: [Ring; 3],
}

/// What became of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Held by every level.
    All,
    /// Too old for the finer levels, held by the coarser ones (short windows miss it).
    Partly,
    /// Older than the period: dropped.
    TooOld,
}

impl WindowStore {
    /// Rings that answer every window up to `longest` (the SLO period, or the longest alert
    /// window if that is longer).
    pub fn new(longest: std::time::Duration) -> WindowStore {
        let longest = u64::try_from(longest.as_nanos()).unwrap_or(u64::MAX / 2);
        let fine = Ring::new(FINE, longest.min(FINE_SPAN));
        let medium = if longest > FINE_SPAN {
            Ring::new(MEDIUM, longest.min(MEDIUM_SPAN))
        } else {
            Ring::new(MEDIUM, 0)
        };
        let coarse = if longest > MEDIUM_SPAN {
            Ring::new(COARSE, longest)
        } else {
            Ring::new(COARSE, 0)
        };
        WindowStore {
            rings: [fine, medium, coarse],
        }
    }

    /// Adds `bad` of `total` requests at event time `t`.
    pub fn add(&mut self, t: UnixNanos, bad: u64, total: u64) -> Stored {
        let mut held = 0;
        let mut present = 0;
        for r in &mut self.rings {
            if r.len() > 0 {
                present += 1;
                held += usize::from(r.add(t, bad, total));
            }
        }
        match held {
            0 => Stored::TooOld,
            h if h == present => Stored::All,
            _ => Stored::Partly,
        }
    }

    /// Moves every ring to `now`, forgetting slots that fell out of them.
    pub fn advance(&mut self, now: UnixNanos) {
        for r in &mut self.rings {
            if r.len() > 0 {
                r.advance(now / r.granularity);
            }
        }
    }

    /// The slot size used for a window of `window` nanoseconds.
    pub fn granularity(&self, window: u64) -> u64 {
        self.ring_for(window).granularity
    }

    fn ring_for(&self, window: u64) -> &Ring {
        self.rings
            .iter()
            .find(|r| r.len() > 0 && r.span() >= window)
            .or_else(|| self.rings.iter().rev().find(|r| r.len() > 0))
            .unwrap_or(&self.rings[0])
    }

    /// Counts over `[now - window, now)`.
    pub fn query(&self, now: UnixNanos, window: u64) -> Counts {
        self.ring_for(window).sum(now.saturating_sub(window), now)
    }

    /// Counts over `[start, now)` (a calendar-month period).
    pub fn query_since(&self, now: UnixNanos, start: UnixNanos) -> Counts {
        self.query(now, now.saturating_sub(start))
    }

    /// The rings' contents, for the persisted engine state: per level its slot size, newest
    /// slot and the slots held from the oldest non-empty one on.
    pub(crate) fn export(&self) -> Vec<SavedRing> {
        self.rings
            .iter()
            .filter(|r| r.len() > 0)
            .filter_map(|r| {
                let newest = r.newest?;
                let oldest = (newest + 1).saturating_sub(r.len());
                let first = (oldest..=newest)
                    .find(|&i| r.get(i).total > 0)
                    .unwrap_or(newest + 1);
                let (bad, total) = (first..=newest)
                    .map(|i| (r.get(i).bad, r.get(i).total))
                    .unzip();
                Some(SavedRing {
                    granularity: r.granularity,
                    newest,
                    first,
                    bad,
                    total,
                })
            })
            .collect()
    }

    /// Adds saved ring contents to the rings of the same slot size (the levels of a store
    /// for a different longest window hold what fits).
    pub(crate) fn import(&mut self, saved: &[SavedRing]) {
        for s in saved {
            let Some(r) = self
                .rings
                .iter_mut()
                .find(|r| r.len() > 0 && r.granularity == s.granularity)
            else {
                continue;
            };
            r.advance(s.newest);
            for (k, (&bad, &total)) in s.bad.iter().zip(&s.total).enumerate() {
                let Some(idx) = s.first.checked_add(k as u64) else {
                    break;
                };
                if idx <= s.newest && bad <= total && total > 0 {
                    r.add(idx * r.granularity, bad, total);
                }
            }
        }
    }

    /// Bytes this store occupies, its slots included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .rings
                .iter()
                .map(|r| r.slots.capacity() * std::mem::size_of::<Slot>())
                .sum::<usize>()
    }
}

/// One ring's contents as persisted: slots `first..=newest` (indices are times divided by
/// the slot size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedRing {
    /// Slot size in nanoseconds.
    pub(crate) granularity: u64,
    /// Index of the newest slot the ring had reached.
    pub(crate) newest: u64,
    /// Index of the first slot saved (the oldest with traffic; `newest + 1` when none has).
    pub(crate) first: u64,
    /// Bad counts of slots `first..=newest`.
    pub(crate) bad: Vec<u64>,
    /// Total counts of slots `first..=newest`.
    pub(crate) total: Vec<u64>,
}
