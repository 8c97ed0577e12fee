//! Series keys: the bytes a shard looks a series up by, and the labels they decode to.
//!
//! A key is the concatenation of its parts, each a tag byte and a value: `service.name`
//! first, then every configured dimension in order (resource, span, span name, span kind).
//! Building one writes into a reused buffer, so looking a series up allocates nothing.

use std::sync::Arc;

use slipstream_core::aggregates::{self, value::Value};
use slipstream_core::{AttrValue, SpanRecord};

const ABSENT: u8 = 0;
const STR: u8 = 1;
const INT: u8 = 2;
const BOOL: u8 = 3;
const DOUBLE: u8 = 4;
const KIND: u8 = 5;

/// Label name of the OTel overflow attribute.
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";
/// Label name of the service.
pub const SERVICE_LABEL: &str = "service.name";
/// Label name of the span-name pseudo-dimension.
pub const SPAN_NAME_LABEL: &str = "span.name";
/// Label name of the span-kind pseudo-dimension.
pub const SPAN_KIND_LABEL: &str = "span.kind";

/// Which parts of a span make up its series key.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    /// Number of attribute dimensions used from `SpanRecord::dims`.
    pub(crate) dims: usize,
    /// How many of them (the first) are resource attributes.
    pub(crate) resource_dims: usize,
    pub(crate) span_name: bool,
    pub(crate) span_kind: bool,
    /// Label names, in key order, `service.name` first.
    pub(crate) names: Arc<[Arc<str>]>,
}

impl KeyLayout {
    pub(crate) fn new(
        resource: &[String],
        span: &[String],
        span_name: bool,
        span_kind: bool,
    ) -> Self {
        let mut names: Vec<Arc<str>> = vec![SERVICE_LABEL.into()];
        names.extend(resource.iter().chain(span).map(|s| Arc::from(s.as_str())));
        if span_name {
            names.push(SPAN_NAME_LABEL.into());
        }
        if span_kind {
            names.push(SPAN_KIND_LABEL.into());
        }
        KeyLayout {
            dims: resource.len() + span.len(),
            resource_dims: resource.len(),
            span_name,
            span_kind,
            names: names.into(),
        }
    }

    /// Writes the key of `span` into `out` (cleared first).
    #[inline]
    pub(crate) fn write(&self, span: &SpanRecord<'_>, out: &mut Vec<u8>) {
        out.clear();
        match span.service_name {
            Some(s) => put_str(out, s),
            None => out.push(ABSENT),
        }
        for d in &span.dims[..self.dims] {
            match *d {
                AttrValue::Absent => out.push(ABSENT),
                AttrValue::Str(s) => put_str(out, s),
                AttrValue::Int(i) => {
                    out.push(INT);
                    out.extend_from_slice(&i.to_le_bytes());
                }
                AttrValue::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(b)]),
                AttrValue::Double(f) => {
                    out.push(DOUBLE);
                    out.extend_from_slice(&f.to_bits().to_le_bytes());
                }
            }
        }
        if self.span_name {
            put_str(out, span.name);
        }
        if self.span_kind {
            out.extend_from_slice(&[KIND, span.kind as u8]);
        }
    }

    /// A hash of the key of `span`, computed from its parts without writing the key: equal
    /// keys hash equal. Mostly word-at-a-time; good high bits (the shard's table indexes by
    /// them).
    #[inline(always)]
    pub(crate) fn hash(&self, span: &SpanRecord<'_>) -> u64 {
        let mut h = match span.service_name {
            Some(s) => hash_str(SEED, s.as_bytes()),
            None => mix(SEED, u64::from(ABSENT)),
        };
        for d in &span.dims[..self.dims] {
            h = match *d {
                AttrValue::Absent => mix(h, u64::from(ABSENT)),
                AttrValue::Str(s) => hash_str(h, s.as_bytes()),
                AttrValue::Int(i) => mix(mix(h, u64::from(INT)), i as u64),
                AttrValue::Bool(b) => mix(h, u64::from(BOOL) << 8 | u64::from(b)),
                AttrValue::Double(f) => mix(mix(h, u64::from(DOUBLE)), f.to_bits()),
            };
        }
        if self.span_name {
            h = hash_str(h, span.name.as_bytes());
        }
        if self.span_kind {
            h = mix(h, u64::from(KIND) << 8 | span.kind as u64);
        }
        // Fold the low bits into the high ones.
        (h ^ (h >> 32)).wrapping_mul(K)
    }

    /// Whether `key` (as [`KeyLayout::write`] writes it) is the key of `span`, compared part
    /// by part without writing the span's.
    #[inline(always)]
    pub(crate) fn matches(&self, span: &SpanRecord<'_>, key: &[u8]) -> bool {
        let mut rest = key;
        let ok = match span.service_name {
            Some(s) => eat_str(&mut rest, s),
            None => eat(&mut rest, &[ABSENT]),
        };
        if !ok {
            return false;
        }
        for d in &span.dims[..self.dims] {
            let ok = match *d {
                AttrValue::Absent => eat(&mut rest, &[ABSENT]),
                AttrValue::Str(s) => eat_str(&mut rest, s),
                AttrValue::Int(i) => eat(&mut rest, &[INT]) && eat(&mut rest, &i.to_le_bytes()),
                AttrValue::Bool(b) => eat(&mut rest, &[BOOL, u8::from(b)]),
                AttrValue::Double(f) => {
                    eat(&mut rest, &[DOUBLE]) && eat(&mut rest, &f.to_bits().to_le_bytes())
                }
            };
            if !ok {
                return false;
            }
        }
        if self.span_name && !eat_str(&mut rest, span.name) {
            return false;
        }
        if self.span_kind && !eat(&mut rest, &[KIND, span.kind as u8]) {
            return false;
        }
        rest.is_empty()
    }

    /// Whether two spans have the same key, cheaply; `false` may be wrong (the caller then
    /// looks the span up in full), `true` is not. Spans of one resource borrow the same
    /// strings for `service.name` and the resource dimensions, so those are compared by
    /// address only: spans of different resources are told apart at once, even when their
    /// values are equal. Span dimensions and the span name differ in address from span to
    /// span and are compared by value.
    #[inline(always)]
    pub(crate) fn same(&self, a: &SpanRecord<'_>, b: &SpanRecord<'_>) -> bool {
        let service = match (a.service_name, b.service_name) {
            (Some(x), Some(y)) => std::ptr::eq(x, y),
            (None, None) => true,
            _ => false,
        };
        // Most often told apart here, before any of the slicing below.
        if !service {
            return false;
        }
        let (res_a, span_a) = a.dims[..self.dims].split_at(self.resource_dims);
        let (res_b, span_b) = b.dims[..self.dims].split_at(self.resource_dims);
        res_a.iter().zip(res_b).all(|(x, y)| match (x, y) {
            (AttrValue::Str(x), AttrValue::Str(y)) => std::ptr::eq(*x, *y),
            _ => x == y,
        }) && span_a.iter().zip(span_b).all(|(x, y)| match (x, y) {
            (AttrValue::Str(x), AttrValue::Str(y)) => same_str(x, y),
            _ => x == y,
        }) && (!self.span_name || same_str(a.name, b.name))
            && (!self.span_kind || a.kind == b.kind)
    }

    /// The labels a key stands for.
    pub(crate) fn labels(&self, key: &[u8]) -> Labels {
        let mut values = Vec::with_capacity(self.names.len());
        let mut rest = key;
        while !rest.is_empty() {
            let (v, r) = take_part(rest);
            values.push(v);
            rest = r;
        }
        let pairs = self
            .names
            .iter()
            .cloned()
            .zip(values.into_iter().map(Box::<str>::from))
            .collect();
        Labels { pairs }
    }
}

#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(STR);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K: u64 = 0xf135_7aea_2e62_a9c5;

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(26) ^ w).wrapping_mul(K)
}

/// A 64-bit hash of a string's bytes (never 0, which callers may use for "none").
#[inline]
pub(crate) fn fingerprint(b: &[u8]) -> u64 {
    let h = hash_str(SEED, b);
    (h ^ (h >> 32)).wrapping_mul(K) | 1
}

/// Hashes the length, then the bytes in (up to) two overlapping words when there are at
/// most 16 of them, as most names are; longer ones 8 at a time and their last 8. Overlapping
/// loads instead of a copy of the tail, so no call to `memcpy`, and no loop for short ones.
#[inline(always)]
fn hash_str(h: u64, b: &[u8]) -> u64 {
    let n = b.len();
    let h = mix(h, (n as u64) << 8 | u64::from(STR));
    if n >= 8 {
        if n > 16 {
            return hash_long(h, b);
        }
        mix(mix(h, word8(b)), word8(&b[n - 8..]))
    } else if n >= 4 {
        mix(h, u64::from(word4(b)) | u64::from(word4(&b[n - 4..])) << 32)
    } else if n > 0 {
        mix(
            h,
            u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
        )
    } else {
        h
    }
}

/// [`hash_str`] of more than 16 bytes.
#[inline(never)]
fn hash_long(mut h: u64, b: &[u8]) -> u64 {
    let n = b.len();
    let mut i = 0;
    while i + 8 <= n {
        h = mix(h, word8(&b[i..]));
        i += 8;
    }
    if i < n { mix(h, word8(&b[n - 8..])) } else { h }
}

#[inline(always)]
fn word8(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn word4(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

/// `a == b`, by address first, then in word loads.
#[inline(always)]
fn same_str(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || eq_bytes(a.as_bytes(), b.as_bytes()))
}

/// `a == b` for slices of the same length: up to 16 bytes (most key parts) in two
/// overlapping loads from each, with no loop and no call to `bcmp`.
#[inline(always)]
pub(crate) fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    if n >= 8 {
        if n > 16 {
            return a == b;
        }
        word8(a) == word8(b) && word8(&a[n - 8..]) == word8(&b[n - 8..])
    } else if n >= 4 {
        word4(a) == word4(b) && word4(&a[n - 4..]) == word4(&b[n - 4..])
    } else {
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

/// Strips `want` off the front of `rest` when it is there.
#[inline(always)]
fn eat(rest: &mut &[u8], want: &[u8]) -> bool {
    match rest.split_at_checked(want.len()) {
        Some((head, tail)) if eq_bytes(head, want) => {
            *rest = tail;
            true
        }
        _ => false,
    }
}

/// Strips a string part (as `put_str` writes it) holding `s` off the front of `rest`.
#[inline(always)]
fn eat_str(rest: &mut &[u8], s: &str) -> bool {
    let n = s.len();
    match rest.split_at_checked(5 + n) {
        Some((head, tail))
            if head[0] == STR
                && head[1..5] == (n as u32).to_le_bytes()
                && eq_bytes(&head[5..], s.as_bytes()) =>
        {
            *rest = tail;
            true
        }
        _ => false,
    }
}

/// The first part of a key (the service), as raw bytes.
pub(crate) fn service_part(key: &[u8]) -> &[u8] {
    let (_, rest) = take_part(key);
    &key[..key.len() - rest.len()]
}

/// The service name of a key (empty when the span had none).
pub(crate) fn service_name(key: &[u8]) -> String {
    take_part(key).0
}

fn take_part(b: &[u8]) -> (String, &[u8]) {
    let (v, rest) = take_value(b);
    let label = match v {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(f)) => f.to_string(),
        Some(Value::SpanKind(k)) => slipstream_core::SpanKind::from_i32(k).as_str().to_owned(),
        None => String::new(),
    };
    (label, rest)
}

/// The first part of a key as a typed value (`None`: absent), and the rest.
fn take_value(b: &[u8]) -> (Option<Value>, &[u8]) {
    match b[0] {
        STR => {
            let n = u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")) as usize;
            let s = String::from_utf8_lossy(&b[5..5 + n]).into_owned();
            (Some(Value::StringValue(s)), &b[5 + n..])
        }
        INT => (
            Some(Value::IntValue(i64::from_le_bytes(
                b[1..9].try_into().expect("8 bytes"),
            ))),
            &b[9..],
        ),
        BOOL => (Some(Value::BoolValue(b[1] != 0)), &b[2..]),
        KIND => (Some(Value::SpanKind(i32::from(b[1]))), &b[2..]),
        DOUBLE => (
            Some(Value::DoubleValue(f64::from_bits(u64::from_le_bytes(
                b[1..9].try_into().expect("8 bytes"),
            )))),
            &b[9..],
        ),
        _ => (None, &b[1..]),
    }
}

/// Every part of `key` as a typed value, in order: what partial aggregates carry.
pub(crate) fn values(key: &[u8]) -> Vec<aggregates::Value> {
    let mut out = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        let (value, r) = take_value(rest);
        out.push(aggregates::Value { value });
        rest = r;
    }
    out
}

/// The key partial aggregates name by `values` (see [`values`]): all of `layout`'s parts for
/// an ordinary series, the service alone for a service's overflow series. Each part must
/// have the type a span would give it: `service.name` and `span.name` strings (or absent),
/// `span.kind` a span kind, dimensions any attribute type.
pub(crate) fn key_of_values(
    layout: &KeyLayout,
    values: &[aggregates::Value],
    service_only: bool,
) -> Result<Vec<u8>, String> {
    let want = if service_only { 1 } else { layout.names.len() };
    if values.len() != want {
        return Err(format!(
            "a series key has {} values, expected {want}",
            values.len()
        ));
    }
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let name = &layout.names[i];
        let is_kind = layout.span_kind && i == layout.names.len() - 1;
        let is_name = layout.span_name && i == 1 + layout.dims;
        let is_dim = i >= 1 && i <= layout.dims;
        match &v.value {
            None if !is_kind => out.push(ABSENT),
            Some(Value::StringValue(s)) if !is_kind => put_str(&mut out, s),
            Some(Value::IntValue(n)) if is_dim => {
                out.push(INT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Some(Value::BoolValue(b)) if is_dim => out.extend_from_slice(&[BOOL, u8::from(*b)]),
            Some(Value::DoubleValue(f)) if is_dim => {
                out.push(DOUBLE);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Some(Value::SpanKind(k)) if is_kind && (0..=5).contains(k) => {
                out.extend_from_slice(&[KIND, *k as u8]);
            }
            other => return Err(format!("`{name}` cannot have the value {other:?}")),
        }
        if is_name && v.value.is_none() {
            return Err(format!("`{name}` cannot be absent"));
        }
    }
    Ok(out)
}

// === impl Labels ===

/// The labels of a series: `service.name`, then each dimension; absent values are empty.
/// Overflow series carry `otel.metric.overflow="true"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    pairs: Vec<(Arc<str>, Box<str>)>,
}

impl Labels {
    /// The global overflow series: only `otel.metric.overflow="true"`.
    pub(crate) fn global_overflow() -> Self {
        Labels {
            pairs: vec![(OVERFLOW_LABEL.into(), "true".into())],
        }
    }

    /// A service's overflow series: `service.name` and `otel.metric.overflow="true"`.
    pub(crate) fn service_overflow(service: &str) -> Self {
        Labels {
            pairs: vec![
                (SERVICE_LABEL.into(), service.into()),
                (OVERFLOW_LABEL.into(), "true".into()),
            ],
        }
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The service name (empty for the global overflow series or a span without one).
    pub fn service(&self) -> &str {
        self.get(SERVICE_LABEL).unwrap_or("")
    }

    /// Whether this is an overflow series.
    pub fn is_overflow(&self) -> bool {
        self.get(OVERFLOW_LABEL) == Some("true")
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}
