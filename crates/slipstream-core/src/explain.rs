//! What the bad requests share: an attribute value's share of the bad requests against its
//! share of all requests, as burn-rate events name them, and [`CandidateKeys`], which finds
//! the candidate attributes' values of a counted span.
//!
//! The scanner does not match candidate keys: a span record only says where its own message
//! and its resource are in the request ([`SpanRecord::span_at`],
//! [`SpanRecord::resource_at`]). The aggregator counts a small share of the spans (the bad
//! ones and a sample of the good ones), and walks only those spans' attributes for the
//! candidate keys.

use std::fmt;

use crate::span::{MAX_CANDIDATES, SpanRecord};
use crate::wire::{LEN, RECURSION_LIMIT, Reader};

/// An attribute value that concentrates the bad requests of a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValueShare {
    /// The candidate attribute (`http.route`).
    pub attribute: String,
    /// Its value, as text (`/pay`).
    pub value: String,
    /// Share of the window's bad requests that carry the value (0 to 1).
    pub bad_share: f64,
    /// Share of all the window's requests that carry it (0 to 1).
    pub all_share: f64,
    /// One bad request that carries the value (the last one counted with it), when the
    /// spans had valid ids; left out of the JSON without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<ValueExample>,
}

/// An example bad request of a [`ValueShare`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValueExample {
    /// W3C trace id, 32 lower-case hex digits.
    pub trace_id: String,
    /// Span id, 16 lower-case hex digits.
    pub span_id: String,
    /// The link to its trace from `exemplars.trace_url`; `null` without a template.
    pub url: Option<String>,
}

impl ValueExample {
    /// The request of `trace_id` (16 bytes) and `span_id` (8 bytes); `None` when either
    /// has another length or the trace id is all zeros.
    pub fn new(trace_id: &[u8], span_id: &[u8]) -> Option<Self> {
        let e = crate::Exemplar::new(trace_id, span_id, 0, 0, true)?;
        Some(ValueExample {
            trace_id: e.trace_id_hex(),
            span_id: e.span_id_hex(),
            url: None,
        })
    }
}

impl ValueShare {
    /// How much more the value is among the bad requests than among all: the ranking score.
    pub fn score(&self) -> f64 {
        self.bad_share - self.all_share
    }

    /// Links the example request through the trace URL template (`exemplars.trace_url`,
    /// `{trace_id}` and `{span_id}` replaced by the hex ids).
    pub fn link(&mut self, template: &str) {
        if let Some(x) = &mut self.example {
            x.url = Some(
                template
                    .replace("{trace_id}", &x.trace_id)
                    .replace("{span_id}", &x.span_id),
            );
        }
    }
}

impl fmt::Display for ValueShare {
    /// `http.route=/pay: 92% of bad, 7% of all`, then, with an example request,
    /// ` (example: <its link, else its trace id>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}: {:.0}% of bad, {:.0}% of all",
            self.attribute,
            self.value,
            self.bad_share * 100.0,
            self.all_share * 100.0
        )?;
        if let Some(x) = &self.example {
            write!(f, " (example: {})", x.url.as_ref().unwrap_or(&x.trace_id))?;
        }
        Ok(())
    }
}

/// The annotation of an event's shares (`bad_requests_share`): each as [`ValueShare`]
/// displays it, best ranked first, separated by `; `.
pub fn render_shares(shares: &[ValueShare]) -> String {
    shares
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The annotation key events carry [`render_shares`] under.
pub const SHARES_ANNOTATION: &str = "bad_requests_share";

// === candidate keys ===

/// The candidate attribute keys (at most [`MAX_CANDIDATES`]), matched against a counted
/// span's attributes by [`CandidateKeys::values`].
#[derive(Debug, Clone)]
pub struct CandidateKeys {
    keys: Vec<Box<[u8]>>,
    /// The first 8 bytes of each key, zero-padded: most keys are told apart on these.
    prefixes: [u64; MAX_CANDIDATES],
    /// By key length (`min(len, 63)`), the keys of that length as bits.
    by_len: [u16; 64],
}

/// The first 8 bytes of `key`, zero-padded, as one word.
#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = key.len().min(8);
    word[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(word)
}

impl Default for CandidateKeys {
    fn default() -> Self {
        CandidateKeys {
            keys: Vec::new(),
            prefixes: [0; MAX_CANDIDATES],
            by_len: [0; 64],
        }
    }
}

impl CandidateKeys {
    /// The keys, in order; those past [`MAX_CANDIDATES`] are ignored.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        let mut out = CandidateKeys::default();
        for (i, key) in keys.iter().take(MAX_CANDIDATES).enumerate() {
            let key = key.as_ref().as_bytes();
            out.prefixes[i] = prefix(key);
            out.by_len[key.len().min(63)] |= 1 << i;
            out.keys.push(key.into());
        }
        out
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys equal to `key`, as bits.
    #[inline]
    fn lookup(&self, key: &[u8]) -> u16 {
        let mut same_len = self.by_len[key.len().min(63)];
        if same_len == 0 {
            return 0;
        }
        let p = prefix(key);
        let mut hit = 0;
        while same_len != 0 {
            let i = same_len.trailing_zeros() as usize;
            if self.prefixes[i] == p && *self.keys[i] == *key {
                hit |= 1 << i;
            }
            same_len &= same_len - 1;
        }
        hit
    }

    /// The keys, as bits.
    #[inline]
    fn all(&self) -> u16 {
        match self.keys.len() {
            0 => 0,
            n => u16::MAX >> (16 - n.min(16)) as u32,
        }
    }

    /// The encoded `AnyValue` of each key in `span` (in `out`, by key; empty where it has
    /// none): the span's attribute of that key (its first occurrence), else its resource's
    /// (the first occurrence across the resource's pieces); of an attribute whose value
    /// field occurs more than once, the last occurrence. Returns the keys found, as bits.
    ///
    /// The scanner checked the request's structure; bytes that do not parse end the walk
    /// (the values found before stay).
    pub fn values<'a>(&self, span: &SpanRecord<'a>, out: &mut [&'a [u8]; MAX_CANDIDATES]) -> u16 {
        self.values_cached(span, out, &mut ResourceValues::default())
    }

    /// [`CandidateKeys::values`], with the resource's values read from `cache` when it holds
    /// those of the same resource of the same request, else looked up and kept there (the
    /// spans of a resource share them). The cache must be cleared
    /// ([`ResourceValues::clear`]) before a new request is looked up in.
    pub fn values_cached<'a>(
        &self,
        span: &SpanRecord<'a>,
        out: &mut [&'a [u8]; MAX_CANDIDATES],
        cache: &mut ResourceValues,
    ) -> u16 {
        *out = [&[]; MAX_CANDIDATES];
        let all = self.all();
        if all == 0 {
            return 0;
        }
        let mut found = 0u16;
        if let Some(bytes) = range(span.request, span.span_at) {
            // Span attributes are field 9 of `Span`.
            self.attributes(bytes, 9, &mut found, out);
        }
        if found == all || span.resource_at[0] >= span.resource_at[1] {
            return found;
        }
        if !cache.valid || cache.at != span.resource_at {
            self.resource(span, cache);
        }
        let mut from_resource = cache.found & !found;
        found |= from_resource;
        while from_resource != 0 {
            let i = from_resource.trailing_zeros() as usize;
            let [start, end] = cache.values[i];
            out[i] = span
                .request
                .get(start as usize..end as usize)
                .unwrap_or(&[]);
            from_resource &= from_resource - 1;
        }
        found
    }

    /// Looks up the values of `span`'s resource into `cache`.
    #[cold]
    fn resource(&self, span: &SpanRecord<'_>, cache: &mut ResourceValues) {
        let mut found = 0u16;
        let mut out = [&[][..]; MAX_CANDIDATES];
        if let Some(bytes) = range(span.request, span.resource_at) {
            // The resource's pieces: field 1 of `ResourceSpans`; attributes: field 1 of
            // `Resource`.
            let all = self.all();
            let mut r = Reader::new(bytes);
            while !r.is_empty() && found != all {
                let Ok((field, wt)) = r.key("ResourceSpans") else {
                    break;
                };
                if field == 1 && wt == LEN {
                    let Ok((resource, _)) = r.bytes() else {
                        break;
                    };
                    self.attributes(resource, 1, &mut found, &mut out);
                } else if r.skip(field, wt, 0, RECURSION_LIMIT).is_err() {
                    break;
                }
            }
        }
        let base = span.request.as_ptr() as usize;
        for (at, v) in cache.values.iter_mut().zip(out) {
            // Within the request: offsets below 4 GiB (the scanner keeps none past that).
            let start = (v.as_ptr() as usize).wrapping_sub(base) as u32;
            *at = if v.is_empty() {
                [0, 0]
            } else {
                [start, start + v.len() as u32]
            };
        }
        cache.found = found;
        cache.at = span.resource_at;
        cache.valid = true;
    }

    /// Reads the `KeyValue`s of field `attrs` of a message into `out`, where not `found`.
    #[inline]
    fn attributes<'a>(
        &self,
        msg: &'a [u8],
        attrs: u32,
        found: &mut u16,
        out: &mut [&'a [u8]; MAX_CANDIDATES],
    ) {
        let mut r = Reader::new(msg);
        while !r.is_empty() {
            let Ok((field, wt)) = r.key("message") else {
                return;
            };
            if field == attrs && wt == LEN {
                let Ok((kv, _)) = r.bytes() else {
                    return;
                };
                let Some((key, value)) = key_value(kv) else {
                    return;
                };
                let mut hit = self.lookup(key) & !*found;
                *found |= hit;
                while hit != 0 {
                    out[hit.trailing_zeros() as usize] = value;
                    hit &= hit - 1;
                }
            } else if r.skip(field, wt, 0, RECURSION_LIMIT).is_err() {
                return;
            }
        }
    }
}

/// The candidate values of the last resource looked up in a request, as offsets into it
/// ([`CandidateKeys::values_cached`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceValues {
    valid: bool,
    /// The resource ([`SpanRecord::resource_at`]).
    at: [u32; 2],
    /// The keys it has, as bits.
    found: u16,
    /// Where each value is in the request.
    values: [[u32; 2]; MAX_CANDIDATES],
}

impl ResourceValues {
    /// Forgets the resource held: call it before each request.
    #[inline]
    pub fn clear(&mut self) {
        self.valid = false;
    }
}

/// `request[at[0]..at[1]]`, when not empty and within it.
#[inline]
fn range(request: &[u8], at: [u32; 2]) -> Option<&[u8]> {
    let (start, end) = (at[0] as usize, at[1] as usize);
    if start >= end {
        return None;
    }
    request.get(start..end)
}

/// A `KeyValue`'s key and encoded value (of the last occurrence of each field; the value
/// empty without one); `None` when it does not parse.
#[inline]
fn key_value(d: &[u8]) -> Option<(&[u8], &[u8])> {
    // Fast path for the layout every encoder writes: the key, then one value, each shorter
    // than 128 bytes.
    if let [0x0a, klen, ..] = *d {
        let klen = usize::from(klen);
        if klen < 0x80 && d.len() >= klen + 4 && d[klen + 2] == 0x12 {
            let vlen = usize::from(d[klen + 3]);
            if vlen < 0x80 && d.len() == klen + 4 + vlen {
                return Some((&d[2..2 + klen], &d[klen + 4..]));
            }
        }
    }
    let mut r = Reader::new(d);
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.is_empty() {
        let (field, wt) = r.key("KeyValue").ok()?;
        match (field, wt) {
            (1, LEN) => key = r.bytes().ok()?.0,
            (2, LEN) => value = r.bytes().ok()?.0,
            _ => r.skip(field, wt, 0, RECURSION_LIMIT).ok()?,
        }
    }
    Some((key, value))
}

#[cfg(test)]
mod tests;
