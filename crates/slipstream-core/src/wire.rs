//! The protobuf wire format, read in place: varints, keys, fixed-width values, length-delimited
//! payloads and the skipping of fields a reader does not need, with the checks a full prost
//! decode makes. One reader for every crate that walks protobuf without decoding it: the
//! receiver's span scanner (its hot path, so every step is `#[inline]`) and the router that
//! splits requests by service ([`crate::route`]).
//!
//! Offsets in errors are absolute: a [`Reader`] over an embedded message remembers where its
//! bytes start in the request.

/// Wire type 0: `int32`, `int64`, `uint32`, `bool`, `enum`, ...
pub const VARINT: u8 = 0;
/// Wire type 1: `fixed64`, `sfixed64`, `double`.
pub const I64: u8 = 1;
/// Wire type 2: strings, bytes, embedded messages, packed repeated fields.
pub const LEN: u8 = 2;
/// Wire type 3: start of a (deprecated) group.
pub const SGROUP: u8 = 3;
/// Wire type 4: end of a group.
pub const EGROUP: u8 = 4;
/// Wire type 5: `fixed32`, `sfixed32`, `float`.
pub const I32: u8 = 5;

/// How deep prost lets messages and groups nest before it refuses the request
/// (`prost::RECURSION_LIMIT`). The scanner applies the same budget when it skips groups, so it
/// accepts exactly the nesting a full decode accepts.
pub const RECURSION_LIMIT: u32 = 100;

/// A cursor over one message's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data[0]` in the whole request.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole request.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            base: 0,
        }
    }

    /// Whether every byte of the message was read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Absolute offset of the next byte.
    #[inline]
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// A reader over `rest()[start..end]`, for a payload whose bounds the caller checked
    /// (it panics when they are past the end).
    #[inline]
    pub fn sub(&self, start: usize, end: usize) -> Reader<'a> {
        Reader {
            data: &self.data[self.pos + start..self.pos + end],
            pos: 0,
            base: self.base + self.pos + start,
        }
    }

    /// Reads a base-128 varint, as prost does: at most 10 bytes, the 10th at most 1.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        match *self.rest() {
            [b, ..] if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            [lo, hi, ..] if hi < 0x80 => {
                self.pos += 2;
                Ok(u64::from(lo & 0x7f) | u64::from(hi) << 7)
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.data.get(start + i) else {
                return Err(WireError::TruncatedVarint {
                    offset: self.base + start,
                });
            };
            if i == 9 && b > 1 {
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos = start + i + 1;
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow {
            offset: self.base + start,
        })
    }

    /// Reads a field key: the field number (at least 1) and a valid wire type.
    #[inline]
    pub fn key(&mut self, message: &'static str) -> Result<(u32, u8), WireError> {
        let offset = self.offset();
        let key = self.varint()?;
        let Ok(key32) = u32::try_from(key) else {
            return Err(WireError::InvalidKey { key, offset });
        };
        let wire_type = (key32 & 7) as u8;
        let field = key32 >> 3;
        if wire_type > I32 {
            return Err(WireError::InvalidWireType {
                wire_type,
                field,
                message,
                offset,
            });
        }
        if field == 0 {
            return Err(WireError::FieldZero { offset });
        }
        Ok((field, wire_type))
    }

    /// Reads a length prefix and returns the payload's bytes and absolute offset.
    #[inline]
    pub fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let offset = self.offset();
        let len = self.varint()?;
        let start = self.pos;
        let available = self.data.len() - start;
        if len > available as u64 {
            return Err(WireError::LengthPastEnd {
                len,
                offset,
                available,
            });
        }
        let end = start + len as usize;
        self.pos = end;
        Ok((&self.data[start..end], self.base + start))
    }

    /// Reads a length prefix and returns a reader over the embedded message.
    #[inline]
    pub fn message(&mut self) -> Result<Reader<'a>, WireError> {
        let (data, base) = self.bytes()?;
        Ok(Reader { data, pos: 0, base })
    }

    /// Reads a little-endian `fixed64`.
    #[inline]
    pub fn fixed64(&mut self, field: u32) -> Result<u64, WireError> {
        match self.data.get(self.pos..self.pos + 8) {
            Some(b) => {
                self.pos += 8;
                let mut le = [0u8; 8];
                le.copy_from_slice(b);
                Ok(u64::from_le_bytes(le))
            }
            None => Err(WireError::TruncatedFixed {
                bits: 64,
                field,
                offset: self.offset(),
            }),
        }
    }

    /// Skips `n` bytes of a fixed-width value.
    #[inline]
    pub fn skip_fixed(&mut self, n: usize, field: u32) -> Result<(), WireError> {
        if self.data.len() - self.pos < n {
            return Err(WireError::TruncatedFixed {
                bits: (n * 8) as u8,
                field,
                offset: self.offset(),
            });
        }
        self.pos += n;
        Ok(())
    }

    /// Checks that a known field arrived with the wire type its declaration implies, as prost's
    /// `check_wire_type` does.
    #[inline]
    pub fn expect(
        wire_type: u8,
        expected: u8,
        field: u32,
        message: &'static str,
        key_offset: usize,
    ) -> Result<(), WireError> {
        if wire_type == expected {
            Ok(())
        } else {
            Err(WireError::InvalidWireType {
                wire_type,
                field,
                message,
                offset: key_offset,
            })
        }
    }

    /// Skips a known field of the given wire type after checking it is the expected one.
    #[inline]
    pub fn skip_known(
        &mut self,
        field: u32,
        wire_type: u8,
        expected: u8,
        message: &'static str,
        key_offset: usize,
    ) -> Result<(), WireError> {
        Self::expect(wire_type, expected, field, message, key_offset)?;
        // A known field never has a group wire type.
        match wire_type {
            VARINT => self.varint().map(drop),
            I64 => self.skip_fixed(8, field),
            LEN => self.bytes().map(drop),
            _ => self.skip_fixed(4, field),
        }
    }

    /// Skips an unknown field by its wire type, groups included, with `budget` levels of
    /// nesting left (prost's recursion limit minus the depth of the enclosing message).
    /// Inlinable across crates, as it was within the scanner's.
    #[inline]
    pub fn skip(
        &mut self,
        field: u32,
        wire_type: u8,
        key_offset: usize,
        budget: u32,
    ) -> Result<(), WireError> {
        if budget == 0 {
            return Err(WireError::RecursionLimit { offset: key_offset });
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            I64 => self.skip_fixed(8, field),
            LEN => self.bytes().map(drop),
            I32 => self.skip_fixed(4, field),
            SGROUP => loop {
                if self.is_empty() {
                    return Err(WireError::UnterminatedGroup {
                        field,
                        offset: key_offset,
                    });
                }
                let inner_offset = self.offset();
                let (inner, inner_type) = self.key("group")?;
                if inner_type == EGROUP {
                    if inner != field {
                        return Err(WireError::UnexpectedEndGroup {
                            field: inner,
                            offset: inner_offset,
                        });
                    }
                    return Ok(());
                }
                self.skip(inner, inner_type, inner_offset, budget - 1)?;
            },
            _ => Err(WireError::UnexpectedEndGroup {
                field,
                offset: key_offset,
            }),
        }
    }
}

/// A request that breaks the protobuf wire format. Offsets are bytes from the start of the
/// request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A varint runs past the end of its message.
    #[error("truncated varint at byte {offset}")]
    TruncatedVarint {
        /// Where the varint starts.
        offset: usize,
    },
    /// A varint is longer than 10 bytes or does not fit in 64 bits.
    #[error("varint at byte {offset} does not fit in 64 bits")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
    /// A field key does not fit in 32 bits.
    #[error("field key {key} at byte {offset} does not fit in 32 bits")]
    InvalidKey {
        /// The key as read.
        key: u64,
        /// Where the key starts.
        offset: usize,
    },
    /// A field key names field number 0.
    #[error("field number 0 at byte {offset}")]
    FieldZero {
        /// Where the key starts.
        offset: usize,
    },
    /// A wire type that does not exist (6, 7), or that does not match the field's type.
    #[error("invalid wire type {wire_type} for field {field} of {message} at byte {offset}")]
    InvalidWireType {
        /// The wire type in the key.
        wire_type: u8,
        /// The field number in the key.
        field: u32,
        /// The message the field belongs to.
        message: &'static str,
        /// Where the key starts.
        offset: usize,
    },
    /// A length prefix says more bytes than its message has left.
    #[error("length {len} at byte {offset} runs past the end ({available} bytes left)")]
    LengthPastEnd {
        /// The length as read.
        len: u64,
        /// Where the length prefix starts.
        offset: usize,
        /// How many bytes the enclosing message has after the prefix.
        available: usize,
    },
    /// A `fixed32`/`fixed64` value runs past the end of its message.
    #[error("fixed{bits} field {field} at byte {offset} runs past the end")]
    TruncatedFixed {
        /// 32 or 64.
        bits: u8,
        /// The field number.
        field: u32,
        /// Where the value starts.
        offset: usize,
    },
    /// An end-group key without the matching start-group.
    #[error("unexpected end of group {field} at byte {offset}")]
    UnexpectedEndGroup {
        /// The field number in the end-group key.
        field: u32,
        /// Where the key starts.
        offset: usize,
    },
    /// A group that its message ends inside.
    #[error("group {field} at byte {offset} is not closed")]
    UnterminatedGroup {
        /// The group's field number.
        field: u32,
        /// Where the start-group key starts.
        offset: usize,
    },
    /// Groups nested deeper than prost's recursion limit.
    #[error("fields nested too deep at byte {offset}")]
    RecursionLimit {
        /// Where the field that exceeds the limit starts.
        offset: usize,
    },
}

#[cfg(test)]
mod tests;
