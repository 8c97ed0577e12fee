//! OTLP/JSON trace requests, decoded for replay in one pass straight into the protobuf the
//! span scanner reads, with no tree in between.
//!
//! Replay reads recorded requests only to scan them, so the protobuf written here holds what
//! the scanner reads, and nothing the scanner skips: per `ResourceSpans` its resource's
//! attributes and its spans; per span the trace and span ids, the trace state, name, kind,
//! start and end times, attributes and status code; attribute values of every type. Scopes,
//! events, links, parent span ids, flags, dropped counts, schema URLs and status messages are
//! checked for JSON syntax and skipped. Strings are copied from the input as they are unless
//! they hold escapes; each string is checked to be UTF-8 where it holds bytes past ASCII (a
//! byte past ASCII outside a string is a syntax error).
//!
//! What is accepted, the OTLP/JSON encoding and a little more (every request the serde
//! decoding of the OTLP types accepts decodes here to the same scan):
//! - keys in lowerCamelCase, as OTLP/JSON writes them, or in the protobuf's snake_case; keys
//!   that are not known are skipped;
//! - trace and span ids as hex strings (either case, with an optional `0x`);
//! - 64-bit integers (times, `intValue`) as JSON numbers or decimal strings;
//! - span kind and status code as numbers or as their enum names (`SPAN_KIND_SERVER`);
//! - `null` for any field, meaning it is absent.
//!
//! A malformed line is an error naming what was expected and the column (the byte offset
//! in the line, from 1) where it was not found.

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use base64::Engine as _;

/// JSON containers nested deeper than this are refused (serde_json's limit), so that a hostile
/// line cannot overflow the stack.
const MAX_DEPTH: u32 = 128;

/// Why a line is not an OTLP/JSON `ExportTraceServiceRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTLP/JSON ExportTraceServiceRequest: {what} at column {column}")]
pub struct JsonError {
    /// What was expected, or what was wrong.
    pub what: &'static str,
    /// Where, in bytes from the start of the line, from 1.
    pub column: usize,
}

/// Decodes one line of OTLP/JSON (an `ExportTraceServiceRequest`) into the protobuf encoding
/// of the fields the span scanner reads, appended to `out`.
pub fn to_protobuf(json: &[u8], out: &mut Vec<u8>) -> Result<(), JsonError> {
    out.reserve(json.len() / 3);
    let mut p = Parser {
        s: json,
        i: 0,
        depth: 0,
        out,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(p.err("expected an object"));
    }
    p.request()?;
    p.ws();
    if p.i != json.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(())
}

// === protobuf keys: (field number << 3) | wire type ===

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;

const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

// === room left for an embedded message's length, by what it usually takes ===

/// Attributes, values, statuses: under 128 bytes.
const SMALL: usize = 1;
/// Spans and resources: under 16 KiB.
const MEDIUM: usize = 2;
/// A resource's or a scope's spans: under 2 MiB.
const LARGE: usize = 3;

/// The parser: a cursor over the line and the protobuf written so far.
struct Parser<'a, 'o> {
    s: &'a [u8],
    i: usize,
    depth: u32,
    out: &'o mut Vec<u8>,
}

impl<'a> Parser<'a, '_> {
    // === messages ===

    /// `ExportTraceServiceRequest`.
    fn request(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"resourceSpans" | b"resource_spans" => {
                p.messages(key(1, LEN), LARGE, Self::resource_spans)
            }
            _ => p.skip(),
        })
    }

    /// `ResourceSpans`: its resource and its scopes' spans.
    fn resource_spans(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"resource" => p.message(key(1, LEN), MEDIUM, Self::resource),
            b"scopeSpans" | b"scope_spans" => p.messages(key(2, LEN), LARGE, Self::scope_spans),
            _ => p.skip(),
        })
    }

    /// `Resource`: its attributes.
    fn resource(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"attributes" => p.messages(key(1, LEN), SMALL, Self::key_value),
            _ => p.skip(),
        })
    }

    /// `ScopeSpans`: its spans (the scope is skipped).
    fn scope_spans(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"spans" => p.messages(key(2, LEN), MEDIUM, Self::span),
            _ => p.skip(),
        })
    }

    /// `Span`: what the scanner reads of it.
    fn span(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"traceId" | b"trace_id" => p.hex_id(key(1, LEN)),
            b"spanId" | b"span_id" => p.hex_id(key(2, LEN)),
            b"traceState" | b"trace_state" => p.string_field(key(3, LEN)),
            b"name" => p.string_field(key(5, LEN)),
            b"kind" => p.enum_field(key(6, VARINT), span_kind),
            b"startTimeUnixNano" | b"start_time_unix_nano" => p.fixed64_field(key(7, I64)),
            b"endTimeUnixNano" | b"end_time_unix_nano" => p.fixed64_field(key(8, I64)),
            b"attributes" => p.messages(key(9, LEN), SMALL, Self::key_value),
            b"status" => p.message(key(15, LEN), SMALL, Self::status),
            _ => p.skip(),
        })
    }

    /// `Status`: its code.
    fn status(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"code" => p.enum_field(key(3, VARINT), status_code),
            _ => p.skip(),
        })
    }

    /// `KeyValue`.
    fn key_value(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| match k {
            b"key" => p.string_field(key(1, LEN)),
            b"value" => p.message(key(2, LEN), SMALL, Self::any_value),
            _ => p.skip(),
        })
    }

    /// `AnyValue`: each member is written as it comes (a later one wins, as in protobuf).
    fn any_value(&mut self) -> Result<(), JsonError> {
        self.object(|p, k| {
            if p.null()? {
                return Ok(());
            }
            match k {
                b"stringValue" | b"string_value" => {
                    let s = p.string()?;
                    p.put_bytes(key(1, LEN), &s);
                }
                b"boolValue" | b"bool_value" => {
                    let b = p.bool()?;
                    p.out.extend_from_slice(&[key(2, VARINT), u8::from(b)]);
                }
                b"intValue" | b"int_value" => {
                    let v = p.int64()?;
                    p.out.push(key(3, VARINT));
                    p.varint(v as u64);
                }
                b"doubleValue" | b"double_value" => {
                    let v = p.double()?;
                    p.out.push(key(4, I64));
                    p.out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                b"arrayValue" | b"array_value" => {
                    p.message(key(5, LEN), SMALL, |p| {
                        p.object(|p, k| match k {
                            b"values" => p.messages(key(1, LEN), SMALL, Self::any_value),
                            _ => p.skip(),
                        })
                    })?;
                }
                b"kvlistValue" | b"kvlist_value" => {
                    p.message(key(6, LEN), SMALL, |p| {
                        p.object(|p, k| match k {
                            b"values" => p.messages(key(1, LEN), SMALL, Self::key_value),
                            _ => p.skip(),
                        })
                    })?;
                }
                b"bytesValue" | b"bytes_value" => {
                    let at = p.i;
                    let s = p.string()?;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&*s)
                        .map_err(|_| JsonError {
                            what: "invalid base64 in bytesValue",
                            column: at + 1,
                        })?;
                    p.put_bytes(key(7, LEN), &bytes);
                }
                _ => p.skip()?,
            }
            Ok(())
        })
    }

    // === fields ===

    /// An embedded message in field `tag`, whose length is expected to take `room` bytes,
    /// unless the value is `null`.
    fn message(
        &mut self,
        tag: u8,
        room: usize,
        body: impl FnOnce(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        let at = self.open(tag, room);
        body(self)?;
        self.close(at, room);
        Ok(())
    }

    /// A repeated embedded message in field `tag`, whose lengths are expected to take `room`
    /// bytes: one per element of an array (`null` is an empty array, a `null` element an
    /// empty message).
    fn messages(
        &mut self,
        tag: u8,
        room: usize,
        mut body: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.array(|p| {
            let at = p.open(tag, room);
            body(p)?;
            p.close(at, room);
            Ok(())
        })
    }

    /// A string field, left out when empty (as protobuf encodes proto3 defaults).
    fn string_field(&mut self, tag: u8) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        let s = self.string()?;
        if !s.is_empty() {
            self.put_bytes(tag, &s);
        }
        Ok(())
    }

    /// A trace or span id: hex in JSON, bytes in protobuf.
    fn hex_id(&mut self, tag: u8) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        let at = self.i;
        let s = self.string()?;
        let bad = JsonError {
            what: "invalid hex id",
            column: at + 1,
        };
        if s.len() % 2 != 0 {
            return Err(bad);
        }
        let hex = s.strip_prefix(b"0x").unwrap_or(&s);
        if hex.is_empty() {
            return Ok(());
        }
        self.out.push(tag);
        self.varint(hex.len() as u64 / 2);
        for pair in hex.chunks_exact(2) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => self.out.push((hi << 4) | lo),
                _ => return Err(bad),
            }
        }
        Ok(())
    }

    /// A `fixed64` field from a number or a decimal string, left out when 0.
    fn fixed64_field(&mut self, tag: u8) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        let at = self.i;
        let v = if self.peek() == Some(b'"') {
            let s = self.string()?;
            parse_u64(&s).ok_or(JsonError {
                what: "expected an unsigned 64-bit integer",
                column: at + 1,
            })?
        } else {
            let (negative, magnitude) = self.integer()?;
            if negative && magnitude != 0 {
                return Err(JsonError {
                    what: "expected an unsigned 64-bit integer",
                    column: at + 1,
                });
            }
            magnitude
        };
        if v != 0 {
            self.out.push(tag);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// An enum field from its number or its name (`names` maps a name to its number), left
    /// out when 0.
    fn enum_field(&mut self, tag: u8, names: fn(&[u8]) -> Option<i32>) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        let at = self.i;
        let v = if self.peek() == Some(b'"') {
            let s = self.string()?;
            names(&s).ok_or(JsonError {
                what: "unknown enum name",
                column: at + 1,
            })?
        } else {
            let (negative, magnitude) = self.integer()?;
            let v = if negative {
                0i64.checked_sub_unsigned(magnitude)
            } else {
                i64::try_from(magnitude).ok()
            };
            v.and_then(|v| i32::try_from(v).ok()).ok_or(JsonError {
                what: "expected a 32-bit integer",
                column: at + 1,
            })?
        };
        if v != 0 {
            self.out.push(tag);
            // An int32 is encoded sign-extended to 64 bits.
            self.varint(i64::from(v) as u64);
        }
        Ok(())
    }

    // === values ===

    /// A signed 64-bit integer from a number or a decimal string.
    fn int64(&mut self) -> Result<i64, JsonError> {
        let at = self.i;
        let bad = JsonError {
            what: "expected a signed 64-bit integer",
            column: at + 1,
        };
        if self.peek() == Some(b'"') {
            let s = self.string()?;
            return parse_str::<i64>(&s).ok_or(bad);
        }
        let (negative, magnitude) = self.integer()?;
        if negative {
            0i64.checked_sub_unsigned(magnitude).ok_or(bad)
        } else {
            i64::try_from(magnitude).map_err(|_| bad)
        }
    }

    /// A double from a number, or from a string (a number, `NaN`, `Infinity`, `-Infinity`).
    fn double(&mut self) -> Result<f64, JsonError> {
        let at = self.i;
        let bad = JsonError {
            what: "expected a number",
            column: at + 1,
        };
        if self.peek() == Some(b'"') {
            let s = self.string()?;
            return match &*s {
                b"NaN" => Ok(f64::NAN),
                b"Infinity" => Ok(f64::INFINITY),
                b"-Infinity" => Ok(f64::NEG_INFINITY),
                s => parse_str::<f64>(s).ok_or(bad),
            };
        }
        let (start, end, _) = self.number()?;
        parse_str::<f64>(&self.s[start..end]).ok_or(bad)
    }

    /// `true` or `false`.
    fn bool(&mut self) -> Result<bool, JsonError> {
        if self.literal(b"true") {
            Ok(true)
        } else if self.literal(b"false") {
            Ok(false)
        } else {
            Err(self.err("expected `true` or `false`"))
        }
    }

    /// A JSON integer (no fraction, no exponent): its sign and magnitude.
    fn integer(&mut self) -> Result<(bool, u64), JsonError> {
        let at = self.i;
        let (start, end, integral) = self.number()?;
        let bad = JsonError {
            what: "expected an integer",
            column: at + 1,
        };
        if !integral {
            return Err(bad);
        }
        let digits = &self.s[start..end];
        let (negative, digits) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        let mut v = 0u64;
        for &d in digits {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or(bad)?;
        }
        Ok((negative, v))
    }

    /// A JSON number: where it starts and ends, and whether it is an integer.
    fn number(&mut self) -> Result<(usize, usize, bool), JsonError> {
        let s = self.s;
        let start = self.i;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(self.err("expected a value")),
        }
        let mut integral = true;
        if s.get(i) == Some(&b'.') {
            integral = false;
            i += 1;
            if !s.get(i).is_some_and(u8::is_ascii_digit) {
                self.i = i;
                return Err(self.err("expected a digit"));
            }
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            integral = false;
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !s.get(i).is_some_and(u8::is_ascii_digit) {
                self.i = i;
                return Err(self.err("expected a digit"));
            }
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        Ok((start, i, integral))
    }

    /// A string's contents: borrowed from the line unless it holds escapes.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, JsonError> {
        let s = self.s;
        if s.get(self.i) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        let start = self.i + 1;
        let (end, non_ascii) = plain_run(s, start);
        match s.get(end) {
            Some(b'"') => {
                let body = &s[start..end];
                if non_ascii {
                    check_utf8(body, start)?;
                }
                self.i = end + 1;
                Ok(Cow::Borrowed(body))
            }
            Some(b'\\') => {
                let body = self.escaped_string(start)?;
                check_utf8(&body, start)?;
                Ok(Cow::Owned(body))
            }
            Some(_) => {
                self.i = end;
                Err(self.err("control character in a string"))
            }
            None => {
                self.i = s.len();
                Err(self.err("unterminated string"))
            }
        }
    }

    /// A string with escapes, from its first byte after the quote (not yet checked to be
    /// UTF-8).
    #[cold]
    fn escaped_string(&mut self, start: usize) -> Result<Vec<u8>, JsonError> {
        let s = self.s;
        let mut buf = Vec::with_capacity(32);
        self.i = start;
        loop {
            let (end, _) = plain_run(s, self.i);
            buf.extend_from_slice(&s[self.i..end]);
            self.i = end;
            match s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(buf);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match s.get(self.i) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.unicode_escape()?;
                            buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                            continue;
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    buf.push(c);
                    self.i += 1;
                }
                Some(_) => return Err(self.err("control character in a string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// The character of a `\u` escape (and of the low surrogate's escape after a high one),
    /// from the first hex digit.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = match hi {
            0xd800..=0xdbff => {
                if self.s.get(self.i) != Some(&b'\\') || self.s.get(self.i + 1) != Some(&b'u') {
                    return Err(self.err("lone leading surrogate"));
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.err("invalid trailing surrogate"));
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.err("lone trailing surrogate")),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid escape"))
    }

    /// Four hex digits.
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let Some(d) = self.s.get(self.i).copied().and_then(nibble) else {
                return Err(self.err("invalid \\u escape"));
            };
            v = (v << 4) | u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// Skips any value, checking its syntax.
    fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(|p, _| p.skip()),
            Some(b'[') => self.array(Self::skip),
            Some(b'"') => self.string().map(drop),
            Some(b't' | b'f') => self.bool().map(drop),
            Some(b'n') => {
                if self.null()? {
                    Ok(())
                } else {
                    Err(self.err("expected a value"))
                }
            }
            _ => self.number().map(drop),
        }
    }

    // === structure ===

    /// An object: `field` is called with each key, at its value (after the colon and any
    /// white space), and reads the value. `null` is an object without keys.
    fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &[u8]) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.container(*b"{}", "expected an object", "expected `,` or `}`", |p| {
            let k = p.string()?;
            p.ws();
            if p.peek() != Some(b':') {
                return Err(p.err("expected `:`"));
            }
            p.i += 1;
            p.ws();
            field(p, &k)
        })
    }

    /// An array: `element` is called at each element and reads it. `null` is an empty array.
    fn array(
        &mut self,
        element: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.container(*b"[]", "expected an array", "expected `,` or `]`", element)
    }

    /// An object or an array between `open` and `close`, its items separated by commas; `null`
    /// holds none.
    #[inline(always)]
    fn container(
        &mut self,
        [open, close]: [u8; 2],
        expected: &'static str,
        expected_next: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.null()? {
            return Ok(());
        }
        if self.peek() != Some(open) {
            return Err(self.err(expected));
        }
        self.i += 1;
        self.enter()?;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.ws();
                }
                Some(c) if c == close => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(self.err(expected_next)),
            }
        }
    }

    /// One level deeper into containers.
    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        Ok(())
    }

    /// Reads a `null` if one is here.
    fn null(&mut self) -> Result<bool, JsonError> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        if self.literal(b"null") {
            Ok(true)
        } else {
            Err(self.err("expected a value"))
        }
    }

    /// Reads `word` if it is here.
    fn literal(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips white space.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError {
            what,
            column: self.i + 1,
        }
    }

    // === protobuf output ===

    /// Starts an embedded message in field `tag`, with `room` bytes for its length: returns
    /// where the length goes.
    #[inline]
    fn open(&mut self, tag: u8, room: usize) -> usize {
        self.out.push(tag);
        let at = self.out.len();
        self.out.resize(at + room, 0);
        at
    }

    /// Ends the embedded message whose length goes at `at`, in `room` bytes; when its varint
    /// takes more or fewer, the message's bytes move along (the encoding stays the shortest).
    #[inline]
    fn close(&mut self, at: usize, room: usize) {
        let end = self.out.len();
        let len = end - at - room;
        let mut prefix = [0u8; 10];
        let n = encode_varint(len as u64, &mut prefix);
        if n > room {
            self.out.resize(end + n - room, 0);
            self.out.copy_within(at + room..end, at + n);
        } else if n < room {
            self.out.copy_within(at + room..end, at + n);
            self.out.truncate(end + n - room);
        }
        self.out[at..at + n].copy_from_slice(&prefix[..n]);
    }

    /// A length-delimited field.
    fn put_bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.out.push(tag);
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    fn varint(&mut self, v: u64) {
        let mut buf = [0u8; 10];
        let n = encode_varint(v, &mut buf);
        self.out.extend_from_slice(&buf[..n]);
    }
}

/// Writes `v` as a protobuf varint into `buf`; returns its length.
fn encode_varint(mut v: u64, buf: &mut [u8; 10]) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    n + 1
}

/// Where the run of plain string bytes from `i` ends (at a quote, a backslash, a control
/// character or the end of `s`), and whether it holds bytes past ASCII. Eight bytes at a time:
/// a quote or backslash is a zero byte of the word xored with it, a control character a byte
/// below 0x20 (the usual SWAR tests; a borrow can only mark bytes after a true match, so the
/// lowest mark is exact).
#[inline]
fn plain_run(s: &[u8], mut i: usize) -> (usize, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut high = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let stop = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if stop != 0 {
            let at = i + (stop.trailing_zeros() / 8) as usize;
            let before = s[i..at].iter().any(|&b| b >= 0x80);
            return (at, high & HIGH != 0 || before);
        }
        high |= w;
        i += 8;
    }
    let mut non_ascii = high & HIGH != 0;
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        non_ascii |= b >= 0x80;
        i += 1;
    }
    (i, non_ascii)
}

/// Checks that a string's bytes, which start at `start` in the line, are UTF-8.
#[cold]
fn check_utf8(bytes: &[u8], start: usize) -> Result<(), JsonError> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(JsonError {
            what: "invalid UTF-8",
            column: start + e.valid_up_to() + 1,
        }),
    }
}

/// Hex digits' values; 0xff for bytes that are not hex digits.
const NIBBLES: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A hex digit's value.
#[inline]
fn nibble(b: u8) -> Option<u8> {
    let v = NIBBLES[usize::from(b)];
    (v != 0xff).then_some(v)
}

/// `s` parsed as a `u64` as Rust's `FromStr` reads it, with a quick path for the usual
/// 1 to 19 plain digits (which cannot overflow).
#[inline]
fn parse_u64(s: &[u8]) -> Option<u64> {
    if (1..=19).contains(&s.len()) && s.iter().all(u8::is_ascii_digit) {
        return Some(s.iter().fold(0, |v, &d| v * 10 + u64::from(d - b'0')));
    }
    parse_str(s)
}

/// `s` parsed as a `T` (as Rust's `FromStr` reads it), when it is one.
fn parse_str<T: std::str::FromStr>(s: &[u8]) -> Option<T> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A `SpanKind` name's number.
fn span_kind(name: &[u8]) -> Option<i32> {
    Some(match name {
        b"SPAN_KIND_UNSPECIFIED" => 0,
        b"SPAN_KIND_INTERNAL" => 1,
        b"SPAN_KIND_SERVER" => 2,
        b"SPAN_KIND_CLIENT" => 3,
        b"SPAN_KIND_PRODUCER" => 4,
        b"SPAN_KIND_CONSUMER" => 5,
        _ => return None,
    })
}

/// A `StatusCode` name's number.
fn status_code(name: &[u8]) -> Option<i32> {
    Some(match name {
        b"STATUS_CODE_UNSET" => 0,
        b"STATUS_CODE_OK" => 1,
        b"STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}
