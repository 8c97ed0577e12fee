//! What the bad requests share: per service and event-time slot, the bad requests and all
//! requests counted by the value of each candidate attribute
//! ([`CandidateKeys::values`], looked up only in the spans counted), in sketches of a fixed
//! size.
//!
//! # Sketches and their error
//!
//! A worker's shard counts, per (service, slot) it sees between two ticks, each candidate
//! attribute's values in two Space-Saving sketches of `counters` (K) entries: one over the bad
//! requests, one over all. A value already held adds its weight; a new one takes a free entry,
//! or replaces the entry with the lowest count and starts from that count plus its weight (so
//! a count overestimates by at most `N / K`, `N` the sketch's total). The tick merges the
//! shards' sketches into the kept ones Misra-Gries style: counts of a value add up and, past
//! K values, the (K+1)-th largest count is subtracted from all and the values left at zero
//! dropped (underestimating by at most `N / (K + 1)`). A value holding more than `1 / K` of
//! the requests is never dropped, and a share read from the sketches is within about `1 / K`
//! of the exact one. Totals (the denominators) are exact sums.
//!
//! Good requests are counted one in `good_sample` (chosen by a hash of the span id, random
//! per the W3C trace context, so the same requests are chosen live and in a replay), each as
//! `good_sample` requests, so the shares of all requests are unbiased; bad requests are all
//! counted in the totals, and in the sketches the first [`BAD_EXACT`] of a (service, slot)
//! per shard between two ticks, then one in [`BAD_SAMPLE`] (chosen the same way) as that
//! many: a share's sampling error is then at most `sqrt(2 / N)` for `N` bad requests (one
//! standard deviation). Requests carry their adjusted count ([`crate::SlotData::spans`]) as
//! weight.
//!
//! # Bad requests per SLO kind
//!
//! "Bad" is counted in classes, each with its own sketches ([`BadRequests`]): the errors
//! (what an availability SLO counts bad), and, for each of the lowest [`MAX_SLOW`] latency
//! thresholds of the aggregator's set (every latency SLO's), the requests slower than it
//! (what that latency SLO counts bad), whatever their outcome. A table holds at most
//! `2 + MAX_SLOW` sets of sketches (all requests, errors, the slow classes), each taken on
//! the first value it counts: at most `6 * attributes * K` entries of 88 bytes (value,
//! count, hash and the example's ids; 107 KiB with the defaults) per (service, slot) between
//! two ticks, and a service without slow requests takes none for the slow classes. A kept
//! slot holds at most as many, where every class sees `counters` values of every attribute
//! (a service's sketches hold only the values its requests carry). A latency SLO whose
//! threshold is beyond the lowest [`MAX_SLOW`] names no values. Kept slots store the
//! threshold of each slow class, so a reload that changes the set leaves each slot's counts
//! readable by threshold.
//!
//! Recording allocates nothing once a shard's tables exist (they are reused across ticks,
//! with their capacity); values are kept inline, cut at [`VALUE_BYTES`] bytes.
//!
//! # Ranking
//!
//! [`Explained::shares`] (errors; [`Explained::shares_of`] for the slow requests of a
//! threshold) merges the kept slots of a window and ranks, across attributes, the
//! values by their share of the bad requests less their share of all requests (values no
//! more frequent among the bad requests than among all are left out, and so are values under
//! [`MIN_BAD_SHARE`] of the bad requests); the first `top` are named. Values of
//! [`OUTCOME_ATTRIBUTES`] (status codes, error types) say how requests fail rather than where,
//! and often hold every bad request by definition: they rank after the others.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use slipstream_config::ExplainConfig;
use slipstream_core::explain::{CandidateKeys, ResourceValues, ValueExample, ValueShare};
use slipstream_core::{MAX_CANDIDATES, SpanRecord, UnixNanos};

use crate::key::fingerprint;

/// Bytes of a value (its encoded `AnyValue`) or service name kept; longer ones are cut.
pub(crate) const VALUE_BYTES: usize = 46;
/// Bad requests (weighted) of a (service, slot) that a shard counts in the sketches, between
/// two ticks, before it samples them ([`BAD_SAMPLE`]).
pub(crate) const BAD_EXACT: u64 = 512;
/// Past [`BAD_EXACT`], one bad request in this many is counted in the sketches (by a hash of
/// its span id), as this many.
pub(crate) const BAD_SAMPLE: u32 = 8;
/// The smallest share of the bad requests a value must hold to be named.
pub const MIN_BAD_SHARE: f64 = 0.1;

/// Attributes that say how a request failed rather than where: ranked after the others.
pub const OUTCOME_ATTRIBUTES: &[&str] = &[
    "http.response.status_code",
    "http.status_code",
    "rpc.grpc.status_code",
    "error.type",
];

/// Latency thresholds (the lowest of the aggregator's set) whose slow requests are counted in
/// sketches of their own: with all requests and the bad ones, at most `2 + MAX_SLOW` sets of
/// sketches per (service, slot).
pub const MAX_SLOW: usize = 4;

/// The sets of sketches, one sketch per attribute in each (sketch `set * attributes + a`):
/// all requests, the bad ones (errors), then those slower than each latency threshold
/// counted (`SLOW + j`).
const ALL: usize = 0;
const BAD: usize = 1;
const SLOW: usize = 2;
const SETS: usize = SLOW + MAX_SLOW;

/// Which requests are bad, for [`Explained::shares_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequests {
    /// Those whose outcome is an error (an availability SLO's).
    Errors,
    /// Those slower than this many nanoseconds (a latency SLO's threshold).
    SlowerThan(u64),
}

// === Spec ===

/// What the shards and the store count, from `aggregator.explain`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spec {
    /// Candidate attributes counted (0: off).
    pub(crate) attrs: usize,
    /// Their names, for the ranking.
    names: Arc<[String]>,
    /// The same, to find their values in a counted span.
    keys: CandidateKeys,
    k: usize,
    good_sample: u32,
    /// [`BAD_EXACT`] and [`BAD_SAMPLE`].
    bad_exact: u64,
    bad_sample: u32,
    /// Tables a shard holds between two ticks.
    max_tables: usize,
    max_services: usize,
    /// Slots kept per service.
    window_slots: u64,
    pub(crate) top: usize,
}

impl Spec {
    pub(crate) fn new(cfg: &ExplainConfig, retention_slots: u64, slot_ns: u64) -> Self {
        let names: Vec<String> = cfg.candidate_keys();
        let window = (cfg.window.as_nanos() as u64).div_ceil(slot_ns.max(1));
        Spec {
            attrs: names.len().min(MAX_CANDIDATES),
            keys: CandidateKeys::new(&names),
            names: names.into(),
            k: cfg.counters.max(1),
            good_sample: cfg.good_sample.max(1),
            bad_exact: BAD_EXACT,
            bad_sample: BAD_SAMPLE,
            // A tick's spans fall in one or two slots, a few in older ones.
            max_tables: cfg.max_services.saturating_mul(2).max(1),
            max_services: cfg.max_services.max(1),
            window_slots: window.clamp(1, retention_slots.max(1)),
            top: cfg.top,
        }
    }

    /// Whether anything is counted.
    #[inline(always)]
    pub(crate) fn on(&self) -> bool {
        self.attrs > 0
    }
}

// === Val ===

/// Bytes kept inline (a value's encoding or a service name), cut at [`VALUE_BYTES`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Val {
    len: u8,
    /// Whether bytes were cut off.
    cut: bool,
    bytes: [u8; VALUE_BYTES],
}

impl Default for Val {
    fn default() -> Self {
        Val {
            len: 0,
            cut: false,
            bytes: [0; VALUE_BYTES],
        }
    }
}

impl Val {
    #[inline]
    fn new(b: &[u8]) -> Self {
        let n = b.len().min(VALUE_BYTES);
        let mut v = Val {
            len: n as u8,
            cut: b.len() > n,
            bytes: [0; VALUE_BYTES],
        };
        v.bytes[..n].copy_from_slice(&b[..n]);
        v
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// The text of an encoded `AnyValue` (`cut`: its end is missing): strings as they are,
/// numbers and booleans as written, other types `?`.
pub(crate) fn value_text(raw: &[u8], cut: bool) -> String {
    let mut r = slipstream_core::wire::Reader::new(raw);
    let mut text = String::from("?");
    while !r.is_empty() {
        let Ok((field, wt)) = r.key("AnyValue") else {
            break;
        };
        let read = match (field, wt) {
            (1, slipstream_core::wire::LEN) => {
                // A cut string holds fewer bytes than its length says: take those there are.
                let rest = r.rest();
                let mut len = slipstream_core::wire::Reader::new(rest);
                match len.varint() {
                    Ok(n) => {
                        let start = len.offset();
                        let end = (start + n as usize).min(rest.len());
                        text = String::from_utf8_lossy(&rest[start..end]).into_owned();
                        if cut && start + n as usize > rest.len() {
                            text.push('…');
                        }
                        r.skip(field, wt, 0, 1).ok()
                    }
                    Err(_) => None,
                }
            }
            (2, slipstream_core::wire::VARINT) => r.varint().ok().map(|v| {
                text = (v != 0).to_string();
            }),
            (3, slipstream_core::wire::VARINT) => r.varint().ok().map(|v| {
                text = (v as i64).to_string();
            }),
            (4, slipstream_core::wire::I64) => r.fixed64(field).ok().map(|v| {
                text = f64::from_bits(v).to_string();
            }),
            _ => {
                text = "?".to_owned();
                r.skip(field, wt, 0, 1).ok()
            }
        };
        if read.is_none() {
            break;
        }
    }
    text
}

// === shard side ===

/// One (service, slot)'s sketches in a shard, between two ticks.
#[derive(Debug, Clone)]
struct Table {
    service: Val,
    service_hash: u64,
    slot: u64,
    /// Weighted requests counted, all (good ones sampled) and bad per class: errors, then
    /// slower than each of `slow` (exact).
    all: u64,
    bad: [u64; 1 + MAX_SLOW],
    /// The latency thresholds of the slow classes (the shard's, when the table was taken).
    slow: [u64; MAX_SLOW],
    n_slow: usize,
    /// Entries in use per sketch.
    n: Vec<u16>,
    hashes: Vec<u64>,
    counts: Vec<u64>,
    vals: Vec<Val>,
    /// Per entry of a bad set, the last request counted with it: trace id and span id
    /// (zeros: none).
    ids: Vec<Ids>,
}

/// A request's trace id and span id, side by side (zeros: none).
type Ids = [u8; 24];

/// The ids of `span`, zeros when it has no valid ones.
#[inline]
fn ids_of(span: &SpanRecord<'_>) -> Ids {
    let mut ids = [0; 24];
    if span.trace_id.len() == 16 && span.span_id.len() == 8 {
        ids[..16].copy_from_slice(span.trace_id);
        ids[16..].copy_from_slice(span.span_id);
    }
    ids
}

impl Table {
    fn new(spec: &Spec) -> Self {
        let sketches = SETS * spec.attrs;
        Table {
            service: Val::default(),
            service_hash: 0,
            slot: 0,
            all: 0,
            bad: [0; 1 + MAX_SLOW],
            slow: [0; MAX_SLOW],
            n_slow: 0,
            n: vec![0; sketches],
            hashes: Vec::new(),
            counts: Vec::new(),
            vals: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Takes the memory of the sketches up to sketch `s`, on the first value counted there (a
    /// service whose spans carry no candidate attribute takes none, one without slow
    /// requests none for the slow classes).
    #[cold]
    fn grow(&mut self, k: usize, s: usize, attrs: usize) {
        let entries = (s / attrs.max(1) + 1) * attrs * k;
        self.hashes.resize(entries, 0);
        self.counts.resize(entries, 0);
        self.vals.resize(entries, Val::default());
        self.ids.resize(entries, [0; 24]);
    }

    fn reset(&mut self, service: &[u8], hash: u64, slot: u64, slow: &[u64]) {
        self.service = Val::new(service);
        self.service_hash = hash;
        self.slot = slot;
        self.all = 0;
        self.bad = [0; 1 + MAX_SLOW];
        self.n_slow = slow.len().min(MAX_SLOW);
        self.slow[..self.n_slow].copy_from_slice(&slow[..self.n_slow]);
        self.n.fill(0);
    }

    /// Counts a bad request of weight `w` in class `c` (0: errors, `1 + j`: slower than
    /// `slow[j]`); returns its weight in the sketches: `w` for the first `bad_exact`, then
    /// `w * bad_sample` for one in `bad_sample` (by span id), else 0.
    #[inline]
    fn take(&mut self, spec: &Spec, span: &SpanRecord<'_>, c: usize, w: u64) -> u64 {
        let before = self.bad[c];
        self.bad[c] += w;
        if before < spec.bad_exact {
            w
        } else if sampled(span, spec.bad_sample) {
            w * u64::from(spec.bad_sample)
        } else {
            0
        }
    }

    /// Space-Saving: counts value `raw` (hash `h`) with weight `w` in sketch `s`, and, in a
    /// sketch of bad requests, `ids` as its last request.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        k: usize,
        attrs: usize,
        s: usize,
        h: u64,
        raw: &[u8],
        w: u64,
        ids: Option<&Ids>,
    ) {
        if self.hashes.len() < (s + 1) * k {
            self.grow(k, s, attrs);
        }
        let base = s * k;
        let n = usize::from(self.n[s]);
        if let Some(i) = self.hashes[base..base + n].iter().position(|&x| x == h) {
            self.counts[base + i] += w;
            if let Some(ids) = ids
                && ids[0..16] != [0; 16]
            {
                self.ids[base + i] = *ids;
            }
            return;
        }
        let i = if n < k {
            self.n[s] += 1;
            self.counts[base + n] = 0;
            base + n
        } else {
            let counts = &self.counts[base..base + k];
            let mut min = 0;
            for (j, &c) in counts.iter().enumerate() {
                if c < counts[min] {
                    min = j;
                }
            }
            base + min
        };
        self.hashes[i] = h;
        self.vals[i] = Val::new(raw);
        self.counts[i] += w;
        self.ids[i] = ids.copied().unwrap_or([0; 24]);
    }

    /// The entries of sketch `s`: (hash, value, count).
    #[cfg(test)]
    fn entries(&self, k: usize, s: usize) -> impl Iterator<Item = (u64, &Val, u64)> + '_ {
        self.entries_ids(k, s).map(|(h, v, c, _)| (h, v, c))
    }

    /// [`Table::entries`], with each one's last request.
    fn entries_ids(&self, k: usize, s: usize) -> impl Iterator<Item = (u64, &Val, u64, &Ids)> + '_ {
        let base = s * k;
        (base..base + usize::from(self.n[s]))
            .map(move |i| (self.hashes[i], &self.vals[i], self.counts[i], &self.ids[i]))
    }
}

/// A shard's sketches between two ticks (part of its delta).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    tables: Vec<Table>,
    used: usize,
    /// The table of the last request counted: (service name address and length, slot,
    /// table): the spans of a request mostly share both.
    last: Option<(usize, usize, u64, usize)>,
    /// Requests not counted (weighted as counted): their service found no table.
    pub(crate) dropped: u64,
    /// The candidate values of the last resource looked up in the request being recorded.
    resource: ResourceValues,
}

impl Counts {
    /// Starts a request: values looked up in the one before are forgotten.
    #[inline]
    pub(crate) fn new_request(&mut self) {
        self.resource.clear();
    }

    /// Offers a request recorded in `slot`, `bad` by its outcome and slower than the lowest
    /// `above` of the latency thresholds `slow` (ascending): counted when bad or slow, else
    /// one in `good_sample` ([`sampled`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer(
        &mut self,
        spec: &Spec,
        span: &SpanRecord<'_>,
        slot: u64,
        bad: bool,
        weight: u32,
        slow: &[u64],
        above: usize,
    ) {
        if bad || (above > 0 && !slow.is_empty()) || sampled(span, spec.good_sample) {
            self.count(spec, span, slot, bad, u64::from(weight.max(1)), slow, above);
        }
    }

    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn count(
        &mut self,
        spec: &Spec,
        span: &SpanRecord<'_>,
        slot: u64,
        bad: bool,
        w: u64,
        slow: &[u64],
        above: usize,
    ) {
        let service = span.service_name.unwrap_or("");
        let Some(t) = self.table(spec, service, slot, slow) else {
            self.dropped += w;
            return;
        };
        let t = &mut self.tables[t];
        // Each set's weight in the sketches (0: not counted there). Totals stay exact; past
        // `bad_exact`, the sketches of a class count a sample.
        let mut ws = [0u64; SETS];
        if bad {
            t.all += w;
            ws[BAD] = t.take(spec, span, 0, w);
            ws[ALL] = ws[BAD];
        } else if sampled(span, spec.good_sample) {
            let g = w * u64::from(spec.good_sample);
            t.all += g;
            ws[ALL] = g;
        }
        let above = above.min(t.n_slow);
        for j in 0..above {
            ws[SLOW + j] = t.take(spec, span, 1 + j, w);
        }
        let sets = SLOW + above;
        if ws[..sets].iter().all(|&x| x == 0) {
            return;
        }
        let mut vals = [&[][..]; MAX_CANDIDATES];
        if spec.keys.values_cached(span, &mut vals, &mut self.resource) == 0 {
            return;
        }
        let ids = ids_of(span);
        for (a, &raw) in vals.iter().enumerate().take(spec.attrs) {
            if raw.is_empty() {
                continue;
            }
            let h = fingerprint(raw);
            for (set, &x) in ws[..sets].iter().enumerate() {
                if x != 0 {
                    let ids = (set != ALL).then_some(&ids);
                    t.add(spec.k, spec.attrs, set * spec.attrs + a, h, raw, x, ids);
                }
            }
        }
    }

    /// The table of (`service`, `slot`), taken when new (counting the slow requests of the
    /// thresholds `slow`); `None` when all are in use.
    #[inline]
    fn table(&mut self, spec: &Spec, service: &str, slot: u64, slow: &[u64]) -> Option<usize> {
        let key = (service.as_ptr() as usize, service.len(), slot);
        if let Some((p, l, s, t)) = self.last
            && (p, l, s) == key
        {
            return Some(t);
        }
        let b = service.as_bytes();
        let h = fingerprint(b);
        let found = self.tables[..self.used]
            .iter()
            .position(|t| t.service_hash == h && t.slot == slot && t.service.as_slice() == cut(b));
        let t = match found {
            Some(t) => t,
            None => {
                if self.used >= spec.max_tables {
                    return None;
                }
                if self.used == self.tables.len() {
                    self.tables.push(Table::new(spec));
                }
                self.tables[self.used].reset(b, h, slot, slow);
                self.used += 1;
                self.used - 1
            }
        };
        self.last = Some((key.0, key.1, key.2, t));
        Some(t)
    }

    /// Empties the counts, keeping the tables.
    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.last = None;
        self.dropped = 0;
    }
}

fn cut(b: &[u8]) -> &[u8] {
    &b[..b.len().min(VALUE_BYTES)]
}

/// Whether a good request is one of the one in `n` counted: chosen by a hash of its span id
/// (random by the W3C trace context; its end time when it has none), so that the choice is
/// the same whichever worker records it, live or replayed.
#[inline(always)]
pub(crate) fn sampled(span: &SpanRecord<'_>, n: u32) -> bool {
    if n <= 1 {
        return true;
    }
    let x = match span.span_id.first_chunk::<8>() {
        Some(id) => u64::from_le_bytes(*id),
        None => span.end_unix_nano ^ span.start_unix_nano.rotate_left(32),
    };
    // Multiplied (Fibonacci hashing), so that sequential ids are spread too.
    let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    h % u64::from(n) == 0
}

// === kept side ===

/// One entry of a kept sketch: the value's hash, value and count, and (of bad requests) the
/// last request counted with it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    val: Val,
    count: u64,
    ids: Ids,
}

/// A service's counts in one slot, merged from every shard.
#[derive(Debug, Clone, Default)]
pub struct SlotCounts {
    /// Requests counted (weighted; good ones sampled and scaled).
    pub all: u64,
    /// Bad requests counted (weighted).
    pub bad: u64,
    /// Per latency threshold counted (nanoseconds): the requests slower than it (weighted).
    pub slow: Vec<(u64, u64)>,
    /// Per sketch (`set * attributes + attribute`, the slow sets in the order of `slow`), at
    /// most K entries.
    sketches: Vec<Vec<Entry>>,
}

impl SlotCounts {
    fn merge_table(&mut self, spec: &Spec, t: &Table) {
        self.all += t.all;
        self.bad += t.bad[0];
        // The table's sets, as this slot numbers them.
        let mut sets = [ALL; SETS];
        sets[BAD] = BAD;
        for j in 0..t.n_slow {
            let i = match self.slow.iter().position(|(x, _)| *x == t.slow[j]) {
                Some(i) => i,
                None => {
                    self.slow.push((t.slow[j], 0));
                    self.slow.len() - 1
                }
            };
            self.slow[i].1 += t.bad[1 + j];
            sets[SLOW + j] = SLOW + i;
        }
        if t.n.iter().all(|&n| n == 0) {
            return;
        }
        let attrs = spec.attrs;
        let held = (SLOW + self.slow.len()) * attrs;
        if self.sketches.len() < held {
            self.sketches.resize_with(held, Vec::new);
        }
        let table_sets = (t.hashes.len() / (spec.k * attrs).max(1)).min(SLOW + t.n_slow);
        for (set, &to) in sets.iter().enumerate().take(table_sets) {
            for a in 0..attrs {
                let kept = &mut self.sketches[to * attrs + a];
                for (hash, val, count, ids) in t.entries_ids(spec.k, set * attrs + a) {
                    add_entry(kept, hash, val, count, ids);
                }
                prune(kept, spec.k);
            }
        }
    }
}

/// Adds `count` to the value's entry (the request `ids`, when any, becomes its last).
fn add_entry(list: &mut Vec<Entry>, hash: u64, val: &Val, count: u64, ids: &Ids) {
    match list.iter_mut().find(|e| e.hash == hash) {
        Some(e) => {
            e.count += count;
            if ids[..16] != [0; 16] {
                e.ids = *ids;
            }
        }
        None => list.push(Entry {
            hash,
            val: *val,
            count,
            ids: *ids,
        }),
    }
}

/// Misra-Gries: past `k` entries, subtracts the (k+1)-th largest count from all and drops
/// those left at zero.
fn prune(list: &mut Vec<Entry>, k: usize) {
    if list.len() <= k {
        return;
    }
    list.sort_unstable_by_key(|e| std::cmp::Reverse(e.count));
    let c = list[k].count;
    list.truncate(k);
    for e in list.iter_mut() {
        e.count -= c;
    }
    list.retain(|e| e.count > 0);
}

/// A service's kept slots, ascending: (slot, counts).
type Slots = Vec<(u64, Arc<SlotCounts>)>;

/// The kept counts of every service, by slot (the store's side).
#[derive(Debug, Default)]
pub(crate) struct Kept {
    spec: Spec,
    /// By service name (as cut): its slots, ascending.
    services: FxHashMap<Box<[u8]>, Slots>,
    /// Requests not counted (weighted as counted, good ones sampled): their service was
    /// beyond `max_services` or a shard's tables.
    pub(crate) dropped: u64,
}

impl Kept {
    pub(crate) fn new(spec: Spec) -> Self {
        Kept {
            spec,
            ..Kept::default()
        }
    }

    /// Adds a shard's counts (of slots from `oldest` on; older ones are dropped).
    pub(crate) fn absorb(&mut self, counts: &Counts) {
        self.dropped += counts.dropped;
        for t in &counts.tables[..counts.used] {
            let service = t.service.as_slice();
            let slots = match self.services.get_mut(service) {
                Some(s) => s,
                None => {
                    if self.services.len() >= self.spec.max_services {
                        self.dropped += t.all;
                        continue;
                    }
                    self.services.entry(service.into()).or_default()
                }
            };
            let i = match slots.binary_search_by_key(&t.slot, |(s, _)| *s) {
                Ok(i) => i,
                Err(i) => {
                    slots.insert(i, (t.slot, Arc::default()));
                    i
                }
            };
            Arc::make_mut(&mut slots[i].1).merge_table(&self.spec, t);
        }
    }

    /// Forgets slots before the window that ends with `now_slot`, and services left without.
    pub(crate) fn age(&mut self, now_slot: u64) {
        let oldest = (now_slot + 1).saturating_sub(self.spec.window_slots);
        self.services.retain(|_, slots| {
            let old = slots.partition_point(|(s, _)| *s < oldest);
            slots.drain(..old);
            !slots.is_empty()
        });
    }

    /// What readers see.
    pub(crate) fn snapshot(&self, slot_ns: u64) -> Arc<Explained> {
        Arc::new(Explained {
            names: self.spec.names.clone(),
            top: self.spec.top,
            slot_ns,
            services: self
                .services
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                .collect(),
        })
    }
}

// === readers ===

/// The kept counts of a snapshot: per service, per slot, what the bad requests share
/// ([`crate::Snapshot::explained`]).
#[derive(Debug, Default)]
pub struct Explained {
    names: Arc<[String]>,
    top: usize,
    slot_ns: u64,
    services: FxHashMap<String, Slots>,
}

impl Explained {
    /// The candidate attributes counted (none when `aggregator.explain` is off).
    pub fn attributes(&self) -> &[String] {
        &self.names
    }

    /// Values named at most (`aggregator.explain.top`).
    pub fn top(&self) -> usize {
        self.top
    }

    /// The values that concentrate the bad requests of `service` in the slots that end after
    /// `from` and start before `to` (Unix nanoseconds), best ranked first, at most
    /// `aggregator.explain.top`, ranked by share of the bad requests less share of all (values
    /// under [`MIN_BAD_SHARE`] of the bad requests left out; status codes and error types,
    /// [`OUTCOME_ATTRIBUTES`], after the others). Empty without bad
    /// requests in the window.
    pub fn shares(&self, service: &str, from: UnixNanos, to: UnixNanos) -> Vec<ValueShare> {
        self.shares_top(service, from, to, self.top)
    }

    /// [`Explained::shares`], at most `top` of them.
    pub fn shares_top(
        &self,
        service: &str,
        from: UnixNanos,
        to: UnixNanos,
        top: usize,
    ) -> Vec<ValueShare> {
        self.shares_of(service, BadRequests::Errors, from, to, top)
    }

    /// [`Explained::shares_top`], the bad requests being `bad`: for a latency SLO, those
    /// slower than its threshold, counted when the threshold is one of the lowest
    /// [`MAX_SLOW`] of the aggregator's (else, and in slots counted before the threshold
    /// was, none).
    pub fn shares_of(
        &self,
        service: &str,
        bad_requests: BadRequests,
        from: UnixNanos,
        to: UnixNanos,
        top: usize,
    ) -> Vec<ValueShare> {
        // Kept under the name as cut (a name longer than that is rare).
        let name = String::from_utf8_lossy(cut(service.as_bytes()));
        let Some(slots) = self.services.get(name.as_ref()) else {
            return Vec::new();
        };
        let slot_ns = self.slot_ns.max(1);
        let (mut all, mut bad) = (0u64, 0u64);
        let attrs = self.names.len();
        // The sketches of all requests, then of the bad ones, per attribute.
        let mut merged: Vec<Vec<Entry>> = vec![Vec::new(); 2 * attrs];
        for (slot, counts) in slots {
            let start = slot * slot_ns;
            if start.saturating_add(slot_ns) <= from || start >= to {
                continue;
            }
            all += counts.all;
            let set = match bad_requests {
                BadRequests::Errors => {
                    bad += counts.bad;
                    Some(BAD)
                }
                BadRequests::SlowerThan(t) => {
                    counts.slow.iter().position(|(x, _)| *x == t).map(|i| {
                        bad += counts.slow[i].1;
                        SLOW + i
                    })
                }
            };
            for (class, set) in [(ALL, Some(ALL)), (BAD, set)] {
                let Some(set) = set else { continue };
                for a in 0..attrs {
                    for e in counts.sketches.get(set * attrs + a).into_iter().flatten() {
                        add_entry(
                            &mut merged[class * attrs + a],
                            e.hash,
                            &e.val,
                            e.count,
                            &e.ids,
                        );
                    }
                }
            }
        }
        if bad == 0 || all == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (a, name) in self.names.iter().enumerate() {
            let (all_list, bad_list) = (&merged[ALL * attrs + a], &merged[BAD * attrs + a]);
            for e in bad_list {
                let bad_share = e.count as f64 / bad as f64;
                // A value's requests are at least its bad ones (errors are all counted among
                // all requests; slow ones that are not errors only as sampled).
                let in_all = all_list
                    .iter()
                    .find(|x| x.hash == e.hash)
                    .map_or(0, |x| x.count)
                    .max(e.count);
                let all_share = (in_all as f64 / all as f64).min(1.0);
                let share = ValueShare {
                    attribute: name.clone(),
                    value: value_text(e.val.as_slice(), e.val.cut),
                    bad_share: bad_share.min(1.0),
                    all_share,
                    example: ValueExample::new(&e.ids[..16], &e.ids[16..]),
                };
                if share.bad_share >= MIN_BAD_SHARE && share.score() > 0.0 {
                    out.push(share);
                }
            }
        }
        // Values that say how requests fail rather than where come after the others.
        let how = |s: &ValueShare| OUTCOME_ATTRIBUTES.contains(&s.attribute.as_str());
        out.sort_by(|x, y| {
            how(x)
                .cmp(&how(y))
                .then_with(|| y.score().total_cmp(&x.score()))
                .then_with(|| y.bad_share.total_cmp(&x.bad_share))
                .then_with(|| x.attribute.cmp(&y.attribute))
                .then_with(|| x.value.cmp(&y.value))
        });
        out.truncate(top);
        out
    }
}

#[cfg(test)]
mod tests;
