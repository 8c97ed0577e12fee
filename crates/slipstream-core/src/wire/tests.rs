use super::{I32, I64, LEN, RECURSION_LIMIT, Reader, SGROUP, VARINT, WireError};

fn varint_bytes(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn key(field: u32, wire: u8) -> Vec<u8> {
    varint_bytes(u64::from(field << 3 | u32::from(wire)))
}

#[test]
fn varints_read_as_prost_encodes_them_on_every_path() {
    for v in [
        0,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        1 << 35,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut buf = varint_bytes(v);
        let mut encoded = Vec::new();
        prost::encoding::encode_varint(v, &mut encoded);
        assert_eq!(buf, encoded, "{v}");
        buf.push(0xaa);
        let mut r = Reader::new(&buf);
        assert_eq!(r.varint(), Ok(v));
        assert_eq!(r.rest(), [0xaa], "{v} leaves the next byte");
    }
}

#[test]
fn bad_varints_are_refused_where_they_start() {
    let mut r = Reader::new(&[0x05, 0x80, 0x80]);
    assert_eq!(r.varint(), Ok(5));
    assert_eq!(r.varint(), Err(WireError::TruncatedVarint { offset: 1 }));
    // Ten bytes whose last carries more than the 64th bit.
    let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    assert_eq!(
        Reader::new(&over).varint(),
        Err(WireError::VarintOverflow { offset: 0 })
    );
    let eleven = [0x80; 11];
    assert_eq!(
        Reader::new(&eleven).varint(),
        Err(WireError::VarintOverflow { offset: 0 })
    );
}

#[test]
fn keys_name_a_field_above_zero_with_a_wire_type_that_exists() {
    let mut buf = key(7, LEN);
    buf.extend(key(1, I32));
    let mut r = Reader::new(&buf);
    assert_eq!(r.key("M"), Ok((7, LEN)));
    assert_eq!(r.key("M"), Ok((1, I32)));
    assert!(r.is_empty());
    assert_eq!(
        Reader::new(&key(0, VARINT)).key("M"),
        Err(WireError::FieldZero { offset: 0 })
    );
    assert_eq!(
        Reader::new(&key(3, 6)).key("M"),
        Err(WireError::InvalidWireType {
            wire_type: 6,
            field: 3,
            message: "M",
            offset: 0
        })
    );
    let wide = varint_bytes(1 << 32);
    assert_eq!(
        Reader::new(&wide).key("M"),
        Err(WireError::InvalidKey {
            key: 1 << 32,
            offset: 0
        })
    );
}

#[test]
fn payloads_and_embedded_messages_keep_absolute_offsets() {
    // A payload of 4 bytes holding a payload of 2, after one byte of something else.
    let buf = [0x00, 0x04, 0x02, 0xaa, 0xbb, 0xcc];
    let mut r = Reader::new(&buf);
    assert_eq!(r.varint(), Ok(0));
    let mut outer = r.message().unwrap();
    assert!(r.is_empty());
    assert_eq!(outer.offset(), 2);
    assert_eq!(outer.bytes(), Ok((&[0xaa, 0xbb][..], 3)));
    assert_eq!(outer.offset(), 5);
    // 0xcc continues into a byte the payload does not have.
    assert_eq!(outer.bytes(), Err(WireError::TruncatedVarint { offset: 5 }));
    let mut past = Reader::new(&[0x05, 0x01]);
    assert_eq!(
        past.bytes(),
        Err(WireError::LengthPastEnd {
            len: 5,
            offset: 0,
            available: 1
        })
    );
    assert_eq!(Reader::new(&buf).sub(2, 4).offset(), 2);
}

#[test]
fn fixed_values_are_read_or_refused_when_cut() {
    let v = 0x0102_0304_0506_0708u64;
    let le = v.to_le_bytes();
    let mut r = Reader::new(&le);
    assert_eq!(r.fixed64(9), Ok(v));
    assert_eq!(
        Reader::new(&[1, 2, 3]).fixed64(9),
        Err(WireError::TruncatedFixed {
            bits: 64,
            field: 9,
            offset: 0
        })
    );
    assert_eq!(
        Reader::new(&[1, 2, 3]).skip_known(4, I32, I32, "M", 0),
        Err(WireError::TruncatedFixed {
            bits: 32,
            field: 4,
            offset: 0
        })
    );
}

#[test]
fn known_fields_must_come_with_their_wire_type() {
    assert_eq!(
        Reader::new(&[0; 8]).skip_known(2, I64, LEN, "M", 7),
        Err(WireError::InvalidWireType {
            wire_type: I64,
            field: 2,
            message: "M",
            offset: 7
        })
    );
    let mut r = Reader::new(&[0; 8]);
    assert_eq!(r.skip_known(2, I64, I64, "M", 0), Ok(()));
    assert!(r.is_empty());
}

/// `depth` groups of field 5 nested in one another, each closed.
fn groups(depth: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for _ in 0..depth {
        buf.extend(key(5, SGROUP));
    }
    buf.extend(key(1, VARINT));
    buf.push(1);
    for _ in 0..depth {
        buf.extend(key(5, super::EGROUP));
    }
    buf
}

#[test]
fn groups_are_skipped_within_the_recursion_limit() {
    // The field inside the innermost group is one level deeper than the groups.
    let depth = RECURSION_LIMIT as usize - 1;
    let ok = groups(depth);
    let mut r = Reader::new(&ok);
    let (field, wire) = r.key("M").unwrap();
    assert_eq!(r.skip(field, wire, 0, RECURSION_LIMIT), Ok(()));
    assert!(r.is_empty());

    let deep = groups(depth + 1);
    let mut r = Reader::new(&deep);
    let (field, wire) = r.key("M").unwrap();
    assert!(matches!(
        r.skip(field, wire, 0, RECURSION_LIMIT),
        Err(WireError::RecursionLimit { .. })
    ));

    let open = &ok[..ok.len() - 1];
    let mut r = Reader::new(open);
    let (field, wire) = r.key("M").unwrap();
    assert!(r.skip(field, wire, 0, RECURSION_LIMIT).is_err());

    let mut crossed = key(5, SGROUP);
    crossed.extend(key(6, super::EGROUP));
    let mut r = Reader::new(&crossed);
    let (field, wire) = r.key("M").unwrap();
    assert_eq!(
        r.skip(field, wire, 0, RECURSION_LIMIT),
        Err(WireError::UnexpectedEndGroup {
            field: 6,
            offset: 1
        })
    );
    assert_eq!(
        Reader::new(&[]).skip(5, super::EGROUP, 3, RECURSION_LIMIT),
        Err(WireError::UnexpectedEndGroup {
            field: 5,
            offset: 3
        })
    );
}
