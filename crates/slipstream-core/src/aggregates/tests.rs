//! The hand-written messages agree with `proto/slipstream/aggregates/v1/aggregates.proto`:
//! every field of the `.proto` file is encoded by the Rust type under the same number and
//! wire type, every Rust field is in the `.proto` file under the same name, and the enum
//! numbers match. Editing either side alone fails here.

use std::collections::BTreeMap;

use prost::Message;

use super::*;

const PROTO: &str = include_str!("../../../../proto/slipstream/aggregates/v1/aggregates.proto");

/// A field as the `.proto` file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProtoField {
    name: String,
    number: u32,
    ty: String,
    repeated: bool,
    /// The `oneof` it belongs to.
    oneof: Option<String>,
}

#[derive(Debug, Default)]
struct Proto {
    messages: BTreeMap<String, Vec<ProtoField>>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
}

/// Parses the subset of proto3 the file uses: top-level messages (fields, `repeated`, one
/// level of `oneof`) and enums.
fn parse(text: &str) -> Proto {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let spaced = code
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(';', " ; ")
        .replace('=', " = ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut proto = Proto::default();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            "message" => {
                let name = tokens[i + 1].to_owned();
                assert_eq!(tokens[i + 2], "{", "message {name}");
                i += 3;
                let mut fields = Vec::new();
                let mut oneof: Option<String> = None;
                loop {
                    match tokens[i] {
                        "}" if oneof.is_some() => {
                            oneof = None;
                            i += 1;
                        }
                        "}" => {
                            i += 1;
                            break;
                        }
                        "oneof" => {
                            oneof = Some(tokens[i + 1].to_owned());
                            assert_eq!(tokens[i + 2], "{");
                            i += 3;
                        }
                        _ => {
                            let repeated = tokens[i] == "repeated";
                            if repeated {
                                i += 1;
                            }
                            let (ty, fname, eq, number, semi) = (
                                tokens[i],
                                tokens[i + 1],
                                tokens[i + 2],
                                tokens[i + 3],
                                tokens[i + 4],
                            );
                            assert!(eq == "=" && semi == ";", "{name}.{fname}: cannot parse");
                            fields.push(ProtoField {
                                name: fname.to_owned(),
                                number: number.parse().expect("a field number"),
                                ty: ty.to_owned(),
                                repeated,
                                oneof: oneof.clone(),
                            });
                            i += 5;
                        }
                    }
                }
                proto.messages.insert(name, fields);
            }
            "enum" => {
                let name = tokens[i + 1].to_owned();
                i += 3;
                let mut values = Vec::new();
                while tokens[i] != "}" {
                    values.push((
                        tokens[i].to_owned(),
                        tokens[i + 2].parse().expect("an enum number"),
                    ));
                    i += 4;
                }
                i += 1;
                proto.enums.insert(name, values);
            }
            _ => i += 1,
        }
    }
    proto
}

/// The wire type a field of this `.proto` type is encoded with (repeated scalars packed).
fn wire_type(f: &ProtoField, proto: &Proto) -> u64 {
    match f.ty.as_str() {
        "string" | "bytes" => 2,
        "double" | "fixed64" | "sfixed64" => 1,
        "float" | "fixed32" | "sfixed32" => 5,
        "uint64" | "int64" | "uint32" | "int32" | "sint32" | "sint64" | "bool" => {
            if f.repeated {
                2
            } else {
                0
            }
        }
        t if proto.enums.contains_key(t) => {
            if f.repeated {
                2
            } else {
                0
            }
        }
        t if proto.messages.contains_key(t) => 2,
        t => panic!("{}: unknown type {t}", f.name),
    }
}

/// The (field number, wire type) of the one field `bytes` holds.
fn only_field(bytes: &[u8]) -> (u32, u64) {
    let mut pos = 0;
    let mut key = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[pos];
        pos += 1;
        key |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((key >> 3) as u32, key & 7)
}

/// The field names a message's `Debug` output lists at its top level.
fn debug_fields(debug: &str) -> Vec<String> {
    let inner = debug
        .split_once('{')
        .map(|(_, rest)| rest.trim_end().trim_end_matches('}'))
        .unwrap_or("");
    inner
        .split(", ")
        .filter_map(|part| part.split_once(':').map(|(k, _)| k.trim().to_owned()))
        .collect()
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Each message with one field set at a time, named as the `.proto` file names it.
fn samples() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let header = Header::default;
    let series = Series::default;
    let slot = Slot::default;
    let version = Version::default;
    let value = |v| Value { value: Some(v) }.encode_to_vec();
    vec![
        (
            "ExportAggregatesRequest",
            "header",
            ExportAggregatesRequest {
                header: Some(header()),
                series: vec![],
            }
            .encode_to_vec(),
        ),
        (
            "ExportAggregatesRequest",
            "series",
            ExportAggregatesRequest {
                header: None,
                series: vec![series()],
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "instance",
            Header {
                instance: "a".into(),
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "instance_started_unix_nanos",
            Header {
                instance_started_unix_nanos: 1,
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "sequence",
            Header {
                sequence: 1,
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "slot_width_nanos",
            Header {
                slot_width_nanos: 1,
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "histogram_layout",
            Header {
                histogram_layout: "a".into(),
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "histogram_max_value_nanos",
            Header {
                histogram_max_value_nanos: 1,
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Header",
            "dimensions",
            Header {
                dimensions: vec!["a".into()],
                ..header()
            }
            .encode_to_vec(),
        ),
        (
            "Series",
            "key",
            Series {
                key: vec![Value::default()],
                ..series()
            }
            .encode_to_vec(),
        ),
        (
            "Series",
            "overflow",
            Series {
                overflow: Overflow::Service as i32,
                ..series()
            }
            .encode_to_vec(),
        ),
        (
            "Series",
            "slots",
            Series {
                slots: vec![slot()],
                ..series()
            }
            .encode_to_vec(),
        ),
        (
            "Series",
            "versions",
            Series {
                versions: vec![version()],
                ..series()
            }
            .encode_to_vec(),
        ),
        (
            "Value",
            "string_value",
            value(value::Value::StringValue(String::new())),
        ),
        ("Value", "int_value", value(value::Value::IntValue(0))),
        ("Value", "bool_value", value(value::Value::BoolValue(false))),
        (
            "Value",
            "double_value",
            value(value::Value::DoubleValue(0.0)),
        ),
        ("Value", "span_kind", value(value::Value::SpanKind(0))),
        (
            "Slot",
            "start_unix_nanos",
            Slot {
                start_unix_nanos: 1,
                ..slot()
            }
            .encode_to_vec(),
        ),
        ("Slot", "total", Slot { total: 1, ..slot() }.encode_to_vec()),
        ("Slot", "bad", Slot { bad: 1, ..slot() }.encode_to_vec()),
        (
            "Slot",
            "bucket_indexes",
            Slot {
                bucket_indexes: vec![1],
                ..slot()
            }
            .encode_to_vec(),
        ),
        (
            "Slot",
            "bucket_counts",
            Slot {
                bucket_counts: vec![1],
                ..slot()
            }
            .encode_to_vec(),
        ),
        (
            "Slot",
            "latency_thresholds_nanos",
            Slot {
                latency_thresholds_nanos: vec![1],
                ..slot()
            }
            .encode_to_vec(),
        ),
        ("Slot", "spans", Slot { spans: 1, ..slot() }.encode_to_vec()),
        (
            "Slot",
            "sampled_spans",
            Slot {
                sampled_spans: 1,
                ..slot()
            }
            .encode_to_vec(),
        ),
        (
            "Slot",
            "above_threshold",
            Slot {
                above_threshold: vec![1],
                ..slot()
            }
            .encode_to_vec(),
        ),
        (
            "Version",
            "version",
            Version {
                version: "a".into(),
                ..version()
            }
            .encode_to_vec(),
        ),
        (
            "Version",
            "first_seen_unix_nanos",
            Version {
                first_seen_unix_nanos: 1,
                ..version()
            }
            .encode_to_vec(),
        ),
        (
            "Version",
            "last_seen_unix_nanos",
            Version {
                last_seen_unix_nanos: 1,
                ..version()
            }
            .encode_to_vec(),
        ),
    ]
}

#[test]
fn every_proto_field_is_encoded_with_its_number_and_wire_type() {
    let proto = parse(PROTO);
    assert_eq!(proto.messages.len(), 6, "{:?}", proto.messages.keys());
    let samples = samples();
    for (message, fields) in &proto.messages {
        for f in fields {
            let (_, _, bytes) = samples
                .iter()
                .find(|(m, n, _)| m == message && *n == f.name)
                .unwrap_or_else(|| panic!("{message}.{}: no Rust field for it", f.name));
            assert_eq!(
                only_field(bytes),
                (f.number, wire_type(f, &proto)),
                "{message}.{}: the Rust type encodes another number or wire type",
                f.name
            );
        }
    }
    for (message, name, _) in &samples {
        assert!(
            proto.messages[*message].iter().any(|f| f.name == *name),
            "{message}.{name} is not in the .proto file"
        );
    }
}

#[test]
fn every_rust_field_is_named_as_in_the_proto_file() {
    let proto = parse(PROTO);
    let names = |m: &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in &proto.messages[m] {
            let name = f.oneof.clone().unwrap_or_else(|| f.name.clone());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    };
    for (message, debug) in [
        (
            "ExportAggregatesRequest",
            format!("{:?}", ExportAggregatesRequest::default()),
        ),
        ("Header", format!("{:?}", Header::default())),
        ("Series", format!("{:?}", Series::default())),
        ("Value", format!("{:?}", Value::default())),
        ("Slot", format!("{:?}", Slot::default())),
        ("Version", format!("{:?}", Version::default())),
    ] {
        assert_eq!(debug_fields(&debug), names(message), "{message}: {debug}");
    }
    // The variants of the `oneof`.
    let variants: Vec<String> = [
        value::Value::StringValue(String::new()),
        value::Value::IntValue(0),
        value::Value::BoolValue(false),
        value::Value::DoubleValue(0.0),
        value::Value::SpanKind(0),
    ]
    .iter()
    .map(|v| camel_to_snake(format!("{v:?}").split('(').next().unwrap_or("")))
    .collect();
    let oneof: Vec<String> = proto.messages["Value"]
        .iter()
        .filter(|f| f.oneof.is_some())
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(variants, oneof);
}

#[test]
fn the_overflow_enum_has_the_proto_numbers_and_names() {
    let proto = parse(PROTO);
    let values = &proto.enums["Overflow"];
    let max = values.iter().map(|(_, n)| *n).max().unwrap();
    for n in 0..=max + 1 {
        let rust = Overflow::try_from(n).ok();
        let declared = values.iter().find(|(_, v)| *v == n).map(|(name, _)| name);
        match (rust, declared) {
            (Some(r), Some(name)) => assert_eq!(
                format!("OVERFLOW_{}", format!("{r:?}").to_ascii_uppercase()),
                *name
            ),
            (None, None) => {}
            (r, d) => panic!("Overflow number {n}: Rust {r:?}, .proto {d:?}"),
        }
    }
}

#[test]
fn the_parser_reads_what_the_checks_rely_on() {
    let p = parse(
        "message M { uint64 a = 3; repeated string b = 1; oneof o { int32 c = 7; } }\n\
         // message N { uint32 x = 1; }\nenum E { E_A = 0; E_B = 4; }",
    );
    assert_eq!(p.messages.len(), 1);
    let m = &p.messages["M"];
    assert_eq!(
        m.iter()
            .map(|f| (f.name.as_str(), f.number, f.repeated, f.oneof.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("a", 3, false, None),
            ("b", 1, true, None),
            ("c", 7, false, Some("o"))
        ]
    );
    assert_eq!(p.enums["E"], [("E_A".to_owned(), 0), ("E_B".to_owned(), 4)]);
    assert_eq!(
        debug_fields("Slot { start_unix_nanos: 0, bucket_counts: [] }"),
        ["start_unix_nanos", "bucket_counts"]
    );
}

#[test]
fn a_request_round_trips_and_counts_its_observations() {
    let req = ExportAggregatesRequest {
        header: Some(Header {
            instance: "pod-a".into(),
            sequence: 7,
            dimensions: vec!["service.name".into()],
            ..Header::default()
        }),
        series: vec![Series {
            key: vec![Value {
                value: Some(value::Value::StringValue("cart".into())),
            }],
            overflow: Overflow::None as i32,
            slots: vec![
                Slot {
                    start_unix_nanos: 60,
                    total: 3,
                    bad: 1,
                    bucket_indexes: vec![5, 900],
                    bucket_counts: vec![2, 1],
                    ..Slot::default()
                },
                Slot {
                    total: 4,
                    ..Slot::default()
                },
            ],
            versions: vec![],
        }],
    };
    let back = ExportAggregatesRequest::decode(&req.encode_to_vec()[..]).unwrap();
    assert_eq!(back, req);
    assert_eq!(back.observations(), 7);
    assert_eq!(back.series[0].service(), "cart");
    assert_eq!(Series::default().service(), "");
}
