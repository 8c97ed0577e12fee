//! Walks the OTLP protobuf wire format for the fields an SLI needs.
//!
//! [`scan_traces`] reads an encoded `ExportTraceServiceRequest` in place and produces one
//! [`SpanRecord`] per span, without building the prost tree: strings borrow from the request
//! and the fields an SLI does not need (ids, events, links, scopes, other attributes' values)
//! are skipped by their length. It is the receiver's hot path, about six times cheaper than a
//! full decode (see `docs/benchmarks.md`).
//!
//! # Semantics
//!
//! For every input a full prost decode accepts, the scanner returns what one would read from
//! the decoded tree (the property tests in `tests.rs` check exactly this):
//!
//! - fields may come in any order; unknown fields are skipped by wire type (groups included,
//!   within prost's nesting limit of 100);
//! - a scalar field that appears twice keeps its last value; an embedded message that appears
//!   twice (`resource`, `status`, an attribute's `value`) is merged, so a resource's attributes
//!   are those of all its occurrences, and in an `AnyValue` the last oneof member set wins;
//! - enum values outside the known range map through [`SpanKind::from_i32`] and
//!   [`StatusCode::from_i32`]; missing fields read as their defaults;
//! - when an attribute key appears more than once, the **first** occurrence counts, as with
//!   `attributes.iter().find(|kv| kv.key == key)` on the decoded tree (and the collector's
//!   `pcommon.Map.Get`), whatever the type of its value;
//! - dimension values that are arrays, key-value lists, bytes or string-table references read
//!   as [`AttrValue::Absent`];
//! - [`SpanRecord::sampling_threshold`] is the `th` of the `ot` member of the span's last
//!   `trace_state` (see `tracestate`), `None` without a valid one;
//! - [`SpanRecord::http_status_code`] is `http.response.status_code` read as an integer
//!   ([`AttrValue::as_i64`]: an int, or a string or integral double holding one), or else
//!   `http.status_code` read the same way; [`SpanRecord::rpc_grpc_status_code`] is
//!   `rpc.grpc.status_code` read the same way;
//! - with [`ScanSpec::candidate_keys`], [`SpanRecord::request`] is the request and
//!   [`SpanRecord::span_at`] and [`SpanRecord::resource_at`] say where the span and its
//!   resource are in it; the candidate keys are not matched here, but only for the spans the
//!   aggregator counts (`slipstream_core::explain::CandidateKeys::values`), so most spans
//!   pay nothing for them.
//!
//! A request that prost rejects is rejected too, with one deliberate exception: the interior
//! of fields the scanner skips (ids, trace state, events, links, scopes, status messages,
//! attribute values and keys it does not extract, nested arrays and key-value lists) is
//! checked only for fitting in its length, not decoded, so invalid UTF-8 or a malformed nested
//! message there goes unnoticed. Strings the scanner does return are always valid UTF-8.
//!
//! [`ScanSpec`] keys beyond [`MAX_DIMENSIONS`] in total are ignored (configuration
//! validation refuses such specs).

use slipstream_core::wire::{I32, I64, LEN, RECURSION_LIMIT, Reader, VARINT, WireError};
use slipstream_core::{AttrValue, MAX_DIMENSIONS, ScanSpec, SpanKind, SpanRecord, StatusCode};

mod tracestate;
mod walk;

pub use walk::{MAX_ANY_VALUE_DEPTH, walk_logs, walk_metrics};

#[cfg(test)]
mod tests;

/// Why a request could not be scanned. Offsets are bytes from the start of the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The request breaks the protobuf wire format; the message is the wire reader's.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A span holds more attributes than the limit.
    #[error("span at byte {offset} has {count} attributes, more than the limit of {limit}")]
    TooManyAttributes {
        /// Where the span starts.
        offset: usize,
        /// Attributes in it.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An attribute (key and value, encoded) is larger than the limit.
    #[error("attribute at byte {offset} takes {size} bytes, more than the limit of {limit}")]
    AttributeTooLarge {
        /// Where the attribute starts.
        offset: usize,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A string the scanner returns is not valid UTF-8.
    #[error("invalid UTF-8 in {what} at byte {offset}")]
    InvalidUtf8 {
        /// Which string: `service.name`, `span name`, `attribute http.route`, ...
        what: String,
        /// Where the string's bytes start.
        offset: usize,
    },
    /// A trace or span id of the wrong length: a trace id is 16 bytes, a span id 8, a parent
    /// span id 0 or 8; in log records and exemplars, when present, 16 and 8 (OTLP; a
    /// spec-following downstream refuses anything else).
    #[error("{item} at byte {offset} has a {what} of {len} bytes; expected {expected}")]
    InvalidId {
        /// `span`, `log record` or `exemplar`.
        item: &'static str,
        /// `trace_id`, `span_id` or `parent_span_id`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// What the specification allows.
        expected: &'static str,
        /// Where the span starts.
        offset: usize,
    },
    /// `AnyValue`s nested deeper than [`MAX_ANY_VALUE_DEPTH`].
    #[error("AnyValue nested more than {limit} levels deep at byte {offset}")]
    NestingLimit {
        /// The limit.
        limit: u32,
        /// Where the value past the limit starts.
        offset: usize,
    },
    /// The request holds more spans than the limit.
    #[error("request holds more than {limit} spans, the limit")]
    TooManySpans {
        /// The limit.
        limit: usize,
    },
    /// The memory budget has no room for the records of more spans.
    #[error("no memory budget for {bytes} more bytes of span records at {spans} spans")]
    NoRoom {
        /// Bytes asked for.
        bytes: usize,
        /// Spans scanned when it was asked.
        spans: usize,
    },
}

/// Checks on the spans of a request, besides the attribute limits ([`scan_traces_checked`]).
#[derive(Clone, Copy, Default)]
pub struct SpanChecks<'f> {
    /// Most spans in one request (0 = none), enforced as the spans are scanned.
    pub max_spans: usize,
    /// Refuse spans whose trace id is not 16 bytes, span id not 8 bytes, or parent span id
    /// neither empty nor 8 bytes ([`ScanError::InvalidId`]).
    pub ids: bool,
    /// Asked for room before the output grows: takes the bytes the larger buffer adds and
    /// answers whether they may be allocated ([`ScanError::NoRoom`] when not). Without it the
    /// buffer grows freely.
    pub room: Option<&'f dyn Fn(usize) -> bool>,
}

impl std::fmt::Debug for SpanChecks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanChecks")
            .field("max_spans", &self.max_spans)
            .field("ids", &self.ids)
            .field("room", &self.room.is_some())
            .finish()
    }
}

/// Scans an encoded ExportTraceServiceRequest. On success `out` holds one SpanRecord per span
/// (in order); strings borrow from `buf`. Returns Err on malformed input (and then `out`'s
/// content is unspecified; the caller discards it).
///
/// `out` is cleared first; its capacity is kept, so a caller that presizes it scans without
/// allocating. See the [module documentation](self) for how repeated, merged and unknown fields
/// are read.
pub fn scan_traces<'a>(
    buf: &'a [u8],
    spec: &ScanSpec,
    out: &mut Vec<SpanRecord<'a>>,
) -> Result<(), ScanError> {
    scan_traces_limited(buf, spec, AttributeLimits::default(), out)
}

/// Limits on the attributes of a request; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Most attributes on one span.
    pub max_per_span: usize,
    /// Largest attribute (key and value as encoded), on a span or a resource.
    pub max_size: usize,
}

/// [`scan_traces`], refusing a request whose spans or resources break `limits`
/// ([`ScanError::TooManyAttributes`], [`ScanError::AttributeTooLarge`]).
pub fn scan_traces_limited<'a>(
    buf: &'a [u8],
    spec: &ScanSpec,
    limits: AttributeLimits,
    out: &mut Vec<SpanRecord<'a>>,
) -> Result<(), ScanError> {
    scan_traces_checked(buf, spec, limits, SpanChecks::default(), out)
}

/// [`scan_traces_limited`] with the span checks of `checks`: ids of the right length, a span
/// count limit and a memory budget for the output, all applied while scanning (a request of
/// millions of empty spans is refused at the first span, or once the limit or the budget is
/// reached, never after all of them were read).
pub fn scan_traces_checked<'a>(
    buf: &'a [u8],
    spec: &ScanSpec,
    limits: AttributeLimits,
    checks: SpanChecks<'_>,
    out: &mut Vec<SpanRecord<'a>>,
) -> Result<(), ScanError> {
    out.clear();
    let mut keys = Keys::new(spec);
    keys.limits = limits;
    keys.checks = checks;
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(REQUEST)?;
        if field == 1 {
            Reader::expect(wt, LEN, field, REQUEST, at)?;
            // Candidate values are read later from the request itself (by offset).
            let request = if spec.candidate_keys.is_empty() {
                &[]
            } else {
                buf
            };
            scan_resource_spans(r.message()?, request, &keys, out)?;
        } else {
            r.skip(field, wt, at, RECURSION_LIMIT)?;
        }
    }
    Ok(())
}

// === message names, as errors name them ===

const REQUEST: &str = "ExportTraceServiceRequest";
const RESOURCE_SPANS: &str = "ResourceSpans";
const RESOURCE: &str = "Resource";
const SCOPE_SPANS: &str = "ScopeSpans";
const SPAN: &str = "Span";
const STATUS: &str = "Status";
const KEY_VALUE: &str = "KeyValue";
const ANY_VALUE: &str = "AnyValue";

/// Nesting depth of each message below the request, for the skip budget of unknown groups.
const DEPTH_RESOURCE_SPANS: u32 = 1;
const DEPTH_RESOURCE: u32 = 2;
const DEPTH_SCOPE_SPANS: u32 = 2;
const DEPTH_SPAN: u32 = 3;
const DEPTH_STATUS: u32 = 4;

// === key lookup ===

/// Targets a key fills, as bits: 0..MAX_DIMENSIONS are dimension slots, then the fixed ones,
/// numbered separately in the resource table (`T_SERVICE_*`) and the span table (`T_*_STATUS*`).
type Targets = u32;

const T_SERVICE_NAME: u32 = MAX_DIMENSIONS as u32;
const T_SERVICE_VERSION: u32 = MAX_DIMENSIONS as u32 + 1;
const T_HTTP_STATUS: u32 = MAX_DIMENSIONS as u32;
const T_HTTP_STATUS_OLD: u32 = MAX_DIMENSIONS as u32 + 1;
const T_GRPC_STATUS: u32 = MAX_DIMENSIONS as u32 + 2;
const DIM_MASK: Targets = (1 << MAX_DIMENSIONS) - 1;

const MAX_KEYS: usize = MAX_DIMENSIONS + 3;

/// The attribute keys one level (resource or span) extracts, each with the targets it fills.
#[derive(Debug)]
struct KeyTable<'s> {
    keys: [&'s [u8]; MAX_KEYS],
    /// The first 8 bytes of each key, zero-padded: most candidates are rejected on these.
    prefixes: [u64; MAX_KEYS],
    /// The last 8 bytes of each key (0 when shorter): with the prefix and the length they
    /// decide keys of up to 16 bytes without comparing bytes.
    suffixes: [u64; MAX_KEYS],
    /// Bytes 8 to 16 of each key longer than 16 bytes (else 0): with the others they decide
    /// keys of up to 24 bytes.
    middles: [u64; MAX_KEYS],
    targets: [Targets; MAX_KEYS],
    len: usize,
    /// By key length (`min(len, 63)`), the keys of that length as bits: most keys are
    /// rejected here, the others compared only with keys of their length.
    by_len: [u32; 64],
}

/// Bytes 8 to 16 of `key` as one word, for keys longer than 16 bytes; else 0.
#[inline]
fn middle(key: &[u8]) -> u64 {
    match key.get(8..16) {
        Some(w) if key.len() > 16 => u64::from_le_bytes(w.try_into().unwrap_or_default()),
        _ => 0,
    }
}

/// The last 8 bytes of `key` as one word; 0 for keys shorter than that.
#[inline]
fn suffix(key: &[u8]) -> u64 {
    match key.last_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => 0,
    }
}

/// The first 8 bytes of `key`, zero-padded, as one word.
#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = key.len().min(8);
    word[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(word)
}

impl<'s> KeyTable<'s> {
    fn new() -> Self {
        Self {
            keys: [&[]; MAX_KEYS],
            prefixes: [0; MAX_KEYS],
            suffixes: [0; MAX_KEYS],
            middles: [0; MAX_KEYS],
            targets: [0; MAX_KEYS],
            len: 0,
            by_len: [0; 64],
        }
    }

    fn add(&mut self, key: &'s str, target: u32) {
        let key = key.as_bytes();
        let bit = 1 << target;
        if let Some(i) = self.keys[..self.len].iter().position(|k| *k == key) {
            self.targets[i] |= bit;
        } else {
            self.keys[self.len] = key;
            self.prefixes[self.len] = prefix(key);
            self.suffixes[self.len] = suffix(key);
            self.middles[self.len] = middle(key);
            self.targets[self.len] = bit;
            self.by_len[key.len().min(63)] |= 1 << self.len;
            self.len += 1;
        }
    }

    /// The targets `key` fills; 0 for keys not extracted.
    #[inline]
    fn lookup(&self, key: &[u8]) -> Targets {
        let mut same_len = self.by_len[key.len().min(63)];
        if same_len == 0 {
            return 0;
        }
        let (p, s) = (prefix(key), suffix(key));
        let n = key.len();
        while same_len != 0 {
            let i = same_len.trailing_zeros() as usize;
            // Same length (below 63, the bucket says so), first, second and last 8 bytes:
            // only keys longer than 24 bytes have bytes left to compare.
            if self.prefixes[i] == p
                && self.suffixes[i] == s
                && self.keys[i].len() == n
                && (n <= 16
                    || (self.middles[i] == middle(key)
                        && (n <= 24 || self.keys[i][16..n - 8] == key[16..n - 8])))
            {
                return self.targets[i];
            }
            same_len &= same_len - 1;
        }
        0
    }
}

/// How many alternative keys (after the preferred one) a resource dimension may have.
const MAX_ALTERNATIVES: usize = 3;

/// Both levels' key tables, built once per request from the [`ScanSpec`].
#[derive(Debug)]
struct Keys<'s> {
    resource: KeyTable<'s>,
    /// The resource dimensions' alternative keys, one table per rank (the first alternatives
    /// of every dimension, then the second ones...); `n_alternatives` are in use.
    alternatives: [KeyTable<'s>; MAX_ALTERNATIVES],
    n_alternatives: usize,
    span: KeyTable<'s>,
    limits: AttributeLimits,
    checks: SpanChecks<'s>,
}

impl Keys<'_> {
    /// Makes room in `out` for one more record, within the span limit and the memory budget.
    #[cold]
    #[inline(never)]
    fn make_room(&self, out: &mut Vec<SpanRecord<'_>>) -> Result<(), ScanError> {
        let len = out.len();
        let max = self.checks.max_spans;
        if max > 0 && len >= max {
            return Err(ScanError::TooManySpans { limit: max });
        }
        // Half as much again: the records are most of a request's memory, and doubling
        // could leave nearly half of them unused.
        let mut want = len.saturating_add(len / 2).max(16);
        if max > 0 {
            want = want.min(max);
        }
        let bytes = (want - out.capacity()) * std::mem::size_of::<SpanRecord<'_>>();
        if let Some(room) = self.checks.room
            && !room(bytes)
        {
            return Err(ScanError::NoRoom { bytes, spans: len });
        }
        out.reserve_exact(want - len);
        Ok(())
    }

    /// The attribute message of field `at`, checked against the size limit.
    #[inline(always)]
    fn attribute<'a>(&self, r: &mut Reader<'a>, at: usize) -> Result<Reader<'a>, ScanError> {
        let m = r.message()?;
        let size = m.rest().len();
        if self.limits.max_size > 0 && size > self.limits.max_size {
            return Err(ScanError::AttributeTooLarge {
                offset: at,
                size,
                limit: self.limits.max_size,
            });
        }
        Ok(m)
    }
}

impl<'s> Keys<'s> {
    fn new(spec: &'s ScanSpec) -> Self {
        let mut resource = KeyTable::new();
        let mut span = KeyTable::new();
        resource.add("service.name", T_SERVICE_NAME);
        resource.add("service.version", T_SERVICE_VERSION);
        span.add("http.response.status_code", T_HTTP_STATUS);
        span.add("http.status_code", T_HTTP_STATUS_OLD);
        span.add("rpc.grpc.status_code", T_GRPC_STATUS);
        // Slots are numbered in ScanSpec order: resource keys, then span keys.
        let n_res = spec.resource_keys.len().min(MAX_DIMENSIONS);
        for (slot, key) in spec.resource_keys.iter().take(n_res).enumerate() {
            resource.add(key, slot as u32);
        }
        let mut alternatives = [KeyTable::new(), KeyTable::new(), KeyTable::new()];
        let mut n_alternatives = 0;
        for (slot, keys) in spec.resource_alternatives.iter().take(n_res).enumerate() {
            for (rank, key) in keys.iter().take(MAX_ALTERNATIVES).enumerate() {
                // At most one key per dimension in each table: never more than it holds.
                alternatives[rank].add(key, slot as u32);
                n_alternatives = n_alternatives.max(rank + 1);
            }
        }
        for (i, key) in spec.span_keys.iter().enumerate() {
            let slot = n_res + i;
            if slot >= MAX_DIMENSIONS {
                break;
            }
            span.add(key, slot as u32);
        }
        Self {
            resource,
            alternatives,
            n_alternatives,
            span,
            limits: AttributeLimits::default(),
            checks: SpanChecks::default(),
        }
    }
}

// === messages ===

/// `ResourceSpans`: the resource first (it may come after the spans, or in several pieces
/// that merge), then the spans, each starting from a copy of the resource-level values.
fn scan_resource_spans<'a>(
    r: Reader<'a>,
    request: &'a [u8],
    keys: &Keys<'_>,
    out: &mut Vec<SpanRecord<'a>>,
) -> Result<(), ScanError> {
    const BUDGET: u32 = RECURSION_LIMIT - DEPTH_RESOURCE_SPANS;
    let mut template = SpanRecord {
        request,
        ..SpanRecord::default()
    };
    let mut found: Targets = 0;
    let mut fallback = Fallback::default();
    let mut has_scopes = false;
    let mut pass = r.clone();
    while !pass.is_empty() {
        let at = pass.offset();
        let (field, wt) = pass.key(RESOURCE_SPANS)?;
        match field {
            1 => {
                Reader::expect(wt, LEN, field, RESOURCE_SPANS, at)?;
                scan_resource(
                    pass.message()?,
                    keys,
                    &mut template,
                    &mut found,
                    &mut fallback,
                )?;
                if !request.is_empty() {
                    // From the first piece to the end of the last: candidate values are
                    // looked up there for the spans counted.
                    if template.resource_at[1] == 0 {
                        template.resource_at[0] = offset32(at);
                    }
                    template.resource_at[1] = offset32(pass.offset());
                }
            }
            2 => {
                pass.skip_known(field, wt, LEN, RESOURCE_SPANS, at)?;
                has_scopes = true;
            }
            3 => pass.skip_known(field, wt, LEN, RESOURCE_SPANS, at)?,
            _ => pass.skip(field, wt, at, BUDGET)?,
        }
    }
    if !has_scopes {
        return Ok(());
    }
    fallback.fill(&mut template.dims, found);
    // Second pass, for the spans: the first one checked this level's structure.
    let mut r = r;
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(RESOURCE_SPANS)?;
        if field == 2 {
            scan_scope_spans(r.message()?, keys, &template, out)?;
        } else {
            r.skip(field, wt, at, BUDGET)?;
        }
    }
    Ok(())
}

/// The values of resource dimensions' alternative keys, until the resource is read: a
/// dimension whose preferred key the resource lacks takes the value of its best-ranked
/// alternative present (the first occurrence of it).
#[derive(Debug, Default)]
struct Fallback<'a> {
    /// Per dimension, 1 + the rank of the alternative held; 0 when none.
    rank: [u8; MAX_DIMENSIONS],
    values: [AttrValue<'a>; MAX_DIMENSIONS],
}

impl<'a> Fallback<'a> {
    /// Offers `value` of a key that is the alternative of rank `rank` for the dimensions
    /// in `targets`.
    fn offer(&mut self, targets: Targets, rank: usize, value: AttrValue<'a>) {
        let mut slots = targets & DIM_MASK;
        while slots != 0 {
            let slot = slots.trailing_zeros() as usize;
            let held = self.rank[slot];
            if held == 0 || usize::from(held) > rank + 1 {
                self.rank[slot] = rank as u8 + 1;
                self.values[slot] = value;
            }
            slots &= slots - 1;
        }
    }

    /// Fills the dimensions not `found` under their preferred key from their alternatives.
    fn fill(&self, dims: &mut [AttrValue<'a>; MAX_DIMENSIONS], found: Targets) {
        for (slot, dim) in dims.iter_mut().enumerate() {
            if self.rank[slot] != 0 && found & (1 << slot) == 0 {
                *dim = self.values[slot];
            }
        }
    }
}

/// `Resource`: its attributes fill `service_name`, `service_version` and the resource
/// dimensions of `template`; `found` tracks which were seen, across merged occurrences, and
/// `fallback` the values of alternative keys.
fn scan_resource<'a>(
    mut r: Reader<'a>,
    keys: &Keys<'_>,
    template: &mut SpanRecord<'a>,
    found: &mut Targets,
    fallback: &mut Fallback<'a>,
) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(RESOURCE)?;
        match field {
            1 => {
                Reader::expect(wt, LEN, field, RESOURCE, at)?;
                let attribute = keys.attribute(&mut r, at)?;
                for (rank, table) in keys.alternatives[..keys.n_alternatives].iter().enumerate() {
                    let (targets, value) =
                        scan_attribute(attribute.clone(), table, 0, DEPTH_RESOURCE + 1)?;
                    if targets != 0 {
                        fallback.offer(targets, rank, value);
                    }
                }
                let (targets, value) =
                    scan_attribute(attribute, &keys.resource, *found, DEPTH_RESOURCE + 1)?;
                if targets != 0 {
                    *found |= targets;
                    fill_dims(&mut template.dims, targets, value);
                    let s = match value {
                        AttrValue::Str(s) => Some(s),
                        _ => None,
                    };
                    if targets & (1 << T_SERVICE_NAME) != 0 {
                        template.service_name = s;
                    }
                    if targets & (1 << T_SERVICE_VERSION) != 0 {
                        template.service_version = s;
                    }
                }
            }
            2 => r.skip_known(field, wt, VARINT, RESOURCE, at)?,
            3 => r.skip_known(field, wt, LEN, RESOURCE, at)?,
            _ => r.skip(field, wt, at, RECURSION_LIMIT - DEPTH_RESOURCE)?,
        }
    }
    Ok(())
}

/// `ScopeSpans`: the scope is skipped; each span becomes a record.
fn scan_scope_spans<'a>(
    mut r: Reader<'a>,
    keys: &Keys<'_>,
    template: &SpanRecord<'a>,
    out: &mut Vec<SpanRecord<'a>>,
) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(SCOPE_SPANS)?;
        match field {
            2 => {
                Reader::expect(wt, LEN, field, SCOPE_SPANS, at)?;
                let span = r.message()?;
                if out.len() == out.capacity() {
                    keys.make_room(out)?;
                }
                // Filled in place: no copy of the record through the stack.
                out.push(*template);
                let last = out.len() - 1;
                let rec = &mut out[last];
                if !rec.request.is_empty() {
                    let start = span.offset();
                    rec.span_at = [offset32(start), offset32(start + span.rest().len())];
                }
                scan_span(span, keys, rec)?;
            }
            1 | 3 => r.skip_known(field, wt, LEN, SCOPE_SPANS, at)?,
            _ => r.skip(field, wt, at, RECURSION_LIMIT - DEPTH_SCOPE_SPANS)?,
        }
    }
    Ok(())
}

/// `Span`, into `rec`, which holds the resource-level values.
#[inline(always)]
fn scan_span<'a>(
    mut r: Reader<'a>,
    keys: &Keys<'_>,
    rec: &mut SpanRecord<'a>,
) -> Result<(), ScanError> {
    let mut found: Targets = 0;
    let mut http = AttrValue::Absent;
    let mut http_old = AttrValue::Absent;
    let mut grpc = AttrValue::Absent;
    let mut attributes = 0usize;
    // Lengths of the last trace id, span id and parent span id (a repeated bytes field keeps
    // its last occurrence); a missing one reads as empty.
    let mut ids = [0usize; 3];
    // The last trace state (a string field keeps its last occurrence), parsed once at the end.
    let mut trace_state: &[u8] = &[];
    let start = r.offset();
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(SPAN)?;
        match field {
            9 => {
                Reader::expect(wt, LEN, field, SPAN, at)?;
                attributes += 1;
                let (targets, value) = scan_attribute(
                    keys.attribute(&mut r, at)?,
                    &keys.span,
                    found,
                    DEPTH_SPAN + 1,
                )?;
                if targets != 0 {
                    found |= targets;
                    fill_dims(&mut rec.dims, targets, value);
                    if targets & (1 << T_HTTP_STATUS) != 0 {
                        http = value;
                    }
                    if targets & (1 << T_HTTP_STATUS_OLD) != 0 {
                        http_old = value;
                    }
                    if targets & (1 << T_GRPC_STATUS) != 0 {
                        grpc = value;
                    }
                }
            }
            5 => {
                Reader::expect(wt, LEN, field, SPAN, at)?;
                let (name, offset) = r.bytes()?;
                rec.name = utf8(name, offset, || "span name".to_owned())?;
            }
            6 => {
                Reader::expect(wt, VARINT, field, SPAN, at)?;
                rec.kind = SpanKind::from_i32(r.varint()? as i32);
            }
            7 => {
                Reader::expect(wt, I64, field, SPAN, at)?;
                rec.start_unix_nano = r.fixed64(field)?;
            }
            8 => {
                Reader::expect(wt, I64, field, SPAN, at)?;
                rec.end_unix_nano = r.fixed64(field)?;
            }
            15 => {
                Reader::expect(wt, LEN, field, SPAN, at)?;
                scan_status(r.message()?, &mut rec.status)?;
            }
            1 | 2 | 4 => {
                Reader::expect(wt, LEN, field, SPAN, at)?;
                let id = r.bytes()?.0;
                ids[(field as usize).min(3) - 1] = id.len();
                match field {
                    1 => rec.trace_id = id,
                    2 => rec.span_id = id,
                    _ => {}
                }
            }
            3 => {
                Reader::expect(wt, LEN, field, SPAN, at)?;
                trace_state = r.bytes()?.0;
            }
            11 | 13 => r.skip_known(field, wt, LEN, SPAN, at)?,
            10 | 12 | 14 => r.skip_known(field, wt, VARINT, SPAN, at)?,
            16 => r.skip_known(field, wt, I32, SPAN, at)?,
            _ => r.skip(field, wt, at, RECURSION_LIMIT - DEPTH_SPAN)?,
        }
    }
    if keys.checks.ids && (ids[0] != 16 || ids[1] != 8 || (ids[2] != 0 && ids[2] != 8)) {
        return Err(invalid_id(ids, start));
    }
    let limit = keys.limits.max_per_span;
    if limit > 0 && attributes > limit {
        return Err(ScanError::TooManyAttributes {
            offset: start,
            count: attributes,
            limit,
        });
    }
    // Ids of the wrong length (only where the id check is off) name no exemplar.
    if ids[0] != 16 || ids[1] != 8 {
        rec.trace_id = &[];
        rec.span_id = &[];
    }
    rec.http_status_code = http.as_i64().or_else(|| http_old.as_i64());
    rec.rpc_grpc_status_code = grpc.as_i64();
    if !trace_state.is_empty() {
        rec.sampling_threshold = tracestate::sampling_threshold(trace_state);
    }
    Ok(())
}

/// `Status`: only the code is read; merged occurrences keep the last code set.
fn scan_status(mut r: Reader<'_>, status: &mut StatusCode) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(STATUS)?;
        match field {
            3 => {
                Reader::expect(wt, VARINT, field, STATUS, at)?;
                *status = StatusCode::from_i32(r.varint()? as i32);
            }
            2 => r.skip_known(field, wt, LEN, STATUS, at)?,
            _ => r.skip(field, wt, at, RECURSION_LIMIT - DEPTH_STATUS)?,
        }
    }
    Ok(())
}

/// `KeyValue` at nesting `depth`: returns the targets its key fills that are not `found` yet
/// and its value.
#[inline(always)]
fn scan_attribute<'a>(
    mut kv: Reader<'a>,
    table: &KeyTable<'_>,
    found: Targets,
    depth: u32,
) -> Result<(Targets, AttrValue<'a>), ScanError> {
    // Fast path for the layout every encoder writes: the key, then one value, each shorter
    // than 128 bytes.
    let d = kv.rest();
    if let [0x0a, klen, ..] = *d {
        let klen = usize::from(klen);
        if klen < 0x80 && d.len() >= klen + 4 && d[klen + 2] == 0x12 {
            let vlen = usize::from(d[klen + 3]);
            if vlen < 0x80 && d.len() == klen + 4 + vlen {
                let key = &d[2..2 + klen];
                let targets = table.lookup(key) & !found;
                if targets == 0 {
                    return Ok((0, AttrValue::Absent));
                }
                let mut value = AttrValue::Absent;
                scan_any_value(kv.sub(klen + 4, d.len()), key, depth + 1, &mut value)?;
                return Ok((targets, value));
            }
        }
    }
    let whole = kv.clone();
    let mut key: &[u8] = &[];
    let mut first_value = None;
    let mut values = 0u32;
    while !kv.is_empty() {
        let at = kv.offset();
        let (field, wt) = kv.key(KEY_VALUE)?;
        match field {
            1 => {
                Reader::expect(wt, LEN, field, KEY_VALUE, at)?;
                key = kv.bytes()?.0;
            }
            2 => {
                Reader::expect(wt, LEN, field, KEY_VALUE, at)?;
                let value = kv.message()?;
                if values == 0 {
                    first_value = Some(value);
                }
                values += 1;
            }
            3 => kv.skip_known(field, wt, VARINT, KEY_VALUE, at)?,
            _ => kv.skip(field, wt, at, RECURSION_LIMIT - depth)?,
        }
    }
    let targets = table.lookup(key) & !found;
    if targets == 0 {
        return Ok((0, AttrValue::Absent));
    }
    let mut value = AttrValue::Absent;
    match first_value {
        Some(v) if values == 1 => scan_any_value(v, key, depth + 1, &mut value)?,
        Some(_) => {
            // The value field appears more than once: the occurrences merge, in order.
            let mut kv = whole;
            while !kv.is_empty() {
                let at = kv.offset();
                let (field, wt) = kv.key(KEY_VALUE)?;
                if field == 2 {
                    scan_any_value(kv.message()?, key, depth + 1, &mut value)?;
                } else {
                    kv.skip(field, wt, at, RECURSION_LIMIT - depth)?;
                }
            }
        }
        None => {}
    }
    Ok((targets, value))
}

/// `AnyValue` at nesting `depth`, merged into `value`: the last oneof member set wins, and an
/// occurrence that sets none keeps the previous value.
#[inline]
fn scan_any_value<'a>(
    mut r: Reader<'a>,
    key: &[u8],
    depth: u32,
    value: &mut AttrValue<'a>,
) -> Result<(), ScanError> {
    // Fast paths for an AnyValue that is one short string or one small integer.
    match *r.rest() {
        [0x0a, len, ref s @ ..] if usize::from(len) == s.len() && len < 0x80 => {
            *value = AttrValue::Str(utf8(s, r.offset() + 2, || {
                String::from_utf8_lossy(key).into_owned()
            })?);
            return Ok(());
        }
        [0x18, v] if v < 0x80 => {
            *value = AttrValue::Int(i64::from(v));
            return Ok(());
        }
        [0x18, lo, hi] if lo >= 0x80 && hi < 0x80 => {
            *value = AttrValue::Int(i64::from(lo & 0x7f) | i64::from(hi) << 7);
            return Ok(());
        }
        _ => {}
    }
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(ANY_VALUE)?;
        match field {
            1 => {
                Reader::expect(wt, LEN, field, ANY_VALUE, at)?;
                let (s, offset) = r.bytes()?;
                *value = AttrValue::Str(utf8(s, offset, || {
                    String::from_utf8_lossy(key).into_owned()
                })?);
            }
            2 => {
                Reader::expect(wt, VARINT, field, ANY_VALUE, at)?;
                *value = AttrValue::Bool(r.varint()? != 0);
            }
            3 => {
                Reader::expect(wt, VARINT, field, ANY_VALUE, at)?;
                *value = AttrValue::Int(r.varint()? as i64);
            }
            4 => {
                Reader::expect(wt, I64, field, ANY_VALUE, at)?;
                *value = AttrValue::Double(f64::from_bits(r.fixed64(field)?));
            }
            5..=7 => {
                r.skip_known(field, wt, LEN, ANY_VALUE, at)?;
                *value = AttrValue::Absent;
            }
            8 => {
                r.skip_known(field, wt, VARINT, ANY_VALUE, at)?;
                *value = AttrValue::Absent;
            }
            _ => r.skip(field, wt, at, RECURSION_LIMIT - depth)?,
        }
    }
    Ok(())
}

// === helpers ===

/// The error for span ids of lengths `ids` (trace, span, parent), one of which is wrong.
#[cold]
fn invalid_id(ids: [usize; 3], offset: usize) -> ScanError {
    let (what, len, expected) = if ids[0] != 16 {
        ("trace_id", ids[0], "16")
    } else if ids[1] != 8 {
        ("span_id", ids[1], "8")
    } else {
        ("parent_span_id", ids[2], "0 or 8")
    };
    ScanError::InvalidId {
        item: "span",
        what,
        len,
        expected,
        offset,
    }
}

/// Stores `value` in every dimension slot among `targets`.
#[inline]
fn fill_dims<'a>(
    dims: &mut [AttrValue<'a>; MAX_DIMENSIONS],
    targets: Targets,
    value: AttrValue<'a>,
) {
    let mut slots = targets & DIM_MASK;
    while slots != 0 {
        dims[slots.trailing_zeros() as usize] = value;
        slots &= slots - 1;
    }
}

/// An offset in the request as a record stores it: 0 (none) past 4 GiB.
#[inline]
fn offset32(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(0)
}

/// Checks that a string the scanner returns is UTF-8; `what` names it in the error.
#[inline]
fn utf8(bytes: &[u8], offset: usize, what: impl FnOnce() -> String) -> Result<&str, ScanError> {
    std::str::from_utf8(bytes).map_err(|_| ScanError::InvalidUtf8 {
        what: what(),
        offset,
    })
}
