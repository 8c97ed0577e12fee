//! Exemplars: a few example requests kept per series and slot, so that a number (a counter, a
//! histogram bucket, a burn-rate event) can point at traces that made it.
//!
//! An [`Exemplars`] set is fixed-size (no allocation when a request is offered): the
//! [`BAD_EXEMPLARS`] most recent bad requests (by end time) and the [`SLOW_EXEMPLARS`] slowest
//! requests, bad or good. A request without a trace id and span id is never kept. Two sets
//! merge into one with the same bound ([`Exemplars::merge`]), which is how shards, ticks and
//! two-tier shipments combine them.

use std::fmt::Write as _;

use crate::UnixNanos;

/// Most recent bad requests an [`Exemplars`] set keeps.
pub const BAD_EXEMPLARS: usize = 2;
/// Slowest requests an [`Exemplars`] set keeps.
pub const SLOW_EXEMPLARS: usize = 2;

/// One example request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Exemplar {
    /// W3C trace id (16 bytes); all zero in an empty entry.
    pub trace_id: [u8; 16],
    /// Span id (8 bytes).
    pub span_id: [u8; 8],
    /// End time, Unix nanoseconds.
    pub end_unix_nanos: UnixNanos,
    /// Latency (end - start), nanoseconds.
    pub duration_nanos: u64,
    /// Whether the request was bad (per the outcome rules).
    pub bad: bool,
}

impl Exemplar {
    /// An exemplar of a request with these ids; `None` unless the trace id is 16 bytes and
    /// not all zero and the span id is 8 bytes (the ids of a valid span).
    pub fn new(
        trace_id: &[u8],
        span_id: &[u8],
        end_unix_nanos: UnixNanos,
        duration_nanos: u64,
        bad: bool,
    ) -> Option<Self> {
        let trace_id: [u8; 16] = trace_id.try_into().ok()?;
        let span_id: [u8; 8] = span_id.try_into().ok()?;
        (trace_id != [0; 16]).then_some(Exemplar {
            trace_id,
            span_id,
            end_unix_nanos,
            duration_nanos,
            bad,
        })
    }

    /// Whether this is an empty entry of a set.
    #[inline]
    pub fn is_empty(&self) -> bool {
        u128::from_ne_bytes(self.trace_id) == 0
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// `template` with `{trace_id}` and `{span_id}` replaced by the hex ids (a trace URL).
    pub fn link(&self, template: &str) -> String {
        template
            .replace("{trace_id}", &self.trace_id_hex())
            .replace("{span_id}", &self.span_id_hex())
    }
}

impl crate::SpanRecord<'_> {
    /// The span as an exemplar, bad or not; `None` when it lacks valid ids.
    #[inline]
    pub fn exemplar(&self, bad: bool) -> Option<Exemplar> {
        Exemplar::new(
            self.trace_id,
            self.span_id,
            self.end_unix_nano,
            self.duration_nanos(),
            bad,
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The example requests of one series in one slot (or any other scope): the most recent bad
/// ones, most recent first, and the slowest ones, slowest first. Empty entries come last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Exemplars {
    bad: [Exemplar; BAD_EXEMPLARS],
    slow: [Exemplar; SLOW_EXEMPLARS],
}

impl Exemplars {
    /// Keeps `e` if it is among the most recent bad requests or the slowest requests seen.
    /// Returns the latency a later request must reach to be kept as slow (see
    /// [`Exemplars::slow_floor`]).
    #[inline]
    pub fn offer(&mut self, e: Exemplar) -> u64 {
        if e.bad {
            insert(&mut self.bad, e, |x| x.end_unix_nanos);
        }
        if e.duration_nanos >= self.slow_floor() {
            insert(&mut self.slow, e, |x| x.duration_nanos);
        }
        self.slow_floor()
    }

    /// The least latency a request must have to be kept as slow: 0 while the slow entries
    /// are not all in use, else one more than the fastest of them.
    #[inline]
    pub fn slow_floor(&self) -> u64 {
        let last = &self.slow[SLOW_EXEMPLARS - 1];
        if last.is_empty() {
            0
        } else {
            last.duration_nanos.saturating_add(1)
        }
    }

    /// Adds every exemplar of `other`, keeping the bound.
    pub fn merge(&mut self, other: &Exemplars) {
        for e in other.iter() {
            self.offer(*e);
        }
    }

    /// The most recent bad requests, most recent first.
    pub fn bad(&self) -> impl Iterator<Item = &Exemplar> {
        self.bad.iter().take_while(|e| !e.is_empty())
    }

    /// The slowest requests, slowest first.
    pub fn slow(&self) -> impl Iterator<Item = &Exemplar> {
        self.slow.iter().take_while(|e| !e.is_empty())
    }

    /// Every kept exemplar, each once (a request both bad and slow is in both lists).
    pub fn iter(&self) -> impl Iterator<Item = &Exemplar> {
        let bad = self.bad();
        let slow = self.slow().filter(|s| !self.bad.iter().any(|b| b == *s));
        bad.chain(slow)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.bad[0].is_empty() && self.slow[0].is_empty()
    }
}

/// Inserts `e` into `list` (descending by `key`, empty entries last), dropping the last entry,
/// unless the same request is there already or `e` ranks below every kept one.
#[inline]
fn insert<const N: usize>(list: &mut [Exemplar; N], e: Exemplar, key: impl Fn(&Exemplar) -> u64) {
    if list
        .iter()
        .any(|x| x.span_id == e.span_id && x.trace_id == e.trace_id)
    {
        return;
    }
    let Some(i) = list.iter().position(|x| x.is_empty() || key(x) < key(&e)) else {
        return;
    };
    list.copy_within(i..N - 1, i + 1);
    list[i] = e;
}

#[cfg(test)]
mod tests;
