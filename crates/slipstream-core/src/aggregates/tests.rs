//! The checked-in messages are what prost-build generates from
//! `proto/slipstream/aggregates/v1/aggregates.proto`, and they encode a request to the same bytes
//! as the hand-written messages they replaced did.

use std::path::Path;

use prost::Message;

use super::*;

/// The generated file, under `src/aggregates/`: prost-build names it after the proto package.
const GENERATED: &str = "slipstream.aggregates.v1.rs";

/// Regenerates the messages into a temporary directory with protox and prost-build and compares
/// them with the checked-in file; `SLIPSTREAM_BLESS=1` rewrites the checked-in file instead.
#[test]
fn the_checked_in_messages_are_generated_from_the_proto_file() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_root = manifest.join("../../proto");
    let checked_in = manifest.join("src/aggregates").join(GENERATED);
    let files = protox::compile(["slipstream/aggregates/v1/aggregates.proto"], [&proto_root])
        .expect("aggregates.proto compiles");
    let out = tempfile::tempdir().expect("a temporary directory");
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_fds(files)
        .expect("prost-build generates the messages");
    let fresh = std::fs::read_to_string(out.path().join(GENERATED)).expect("the generated file");
    if std::env::var_os("SLIPSTREAM_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&checked_in, &fresh).expect("rewrite the checked-in file");
        return;
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    if current != fresh {
        let line = current
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(fresh.lines().count()));
        panic!(
            "{} is not what prost-build generates from aggregates.proto (first difference at \
             line {}: {:?} generated, {:?} checked in); refresh it with \
             `SLIPSTREAM_BLESS=1 cargo test -p slipstream-core aggregates` and commit it",
            checked_in.display(),
            line + 1,
            fresh.lines().nth(line).unwrap_or("<end of file>"),
            current.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

/// A request that sets every field of every message, every `oneof` variant (and none) and
/// every `Overflow` value.
fn every_field_set() -> ExportAggregatesRequest {
    let slot = |n: u64| Slot {
        start_unix_nanos: 60_000_000_000 * n,
        total: 300 + n,
        bad: 7,
        bucket_indexes: vec![5, 64, 900],
        bucket_counts: vec![100, 150, 50 + n],
        latency_thresholds_nanos: vec![250_000_000, 1_000_000_000],
        above_threshold: vec![20, 3],
        spans: 280,
        sampled_spans: 12,
        // Pinned on its own below: the bytes above predate the field.
        exemplars: vec![],
    };
    let value = |v| Value { value: Some(v) };
    ExportAggregatesRequest {
        header: Some(Header {
            instance: "pod-a".into(),
            instance_started_unix_nanos: 1_700_000_000_123_456_789,
            sequence: 42,
            slot_width_nanos: 10_000_000_000,
            histogram_layout: HISTOGRAM_LAYOUT.into(),
            histogram_max_value_nanos: 60_000_000_000,
            dimensions: vec![
                "service.name".into(),
                "http.route".into(),
                "span.kind".into(),
            ],
        }),
        series: vec![
            Series {
                key: vec![
                    value(value::Value::StringValue("cart".into())),
                    value(value::Value::IntValue(-3)),
                    value(value::Value::BoolValue(true)),
                    value(value::Value::DoubleValue(0.5)),
                    value(value::Value::SpanKind(2)),
                    Value { value: None },
                ],
                overflow: Overflow::None as i32,
                slots: vec![slot(1), slot(2)],
                versions: vec![Version {
                    version: "1.4.2".into(),
                    first_seen_unix_nanos: 1_700_000_001_000_000_000,
                    last_seen_unix_nanos: 1_700_000_061_000_000_000,
                }],
            },
            Series {
                key: vec![value(value::Value::StringValue("cart".into()))],
                overflow: Overflow::Service as i32,
                slots: vec![slot(3)],
                versions: vec![],
            },
            Series {
                key: vec![],
                overflow: Overflow::Global as i32,
                slots: vec![Slot {
                    total: 1,
                    ..Slot::default()
                }],
                versions: vec![],
            },
        ],
    }
}

/// [`every_field_set`] as the hand-written messages encoded it: field numbers, wire types and
/// packing pinned byte for byte.
const EVERY_FIELD_SET_HEX: [&str; 8] = [
    "0a5a0a05706f642d6110959a97ece39fe7cb17182a2080c8afa0252a136c6f672d6c696e6561722d6e732d36",
    "342f76313080b09dc2df013a0c736572766963652e6e616d653a0a687474702e726f7574653a097370616e2e",
    "6b696e6412a3010a060a04636172740a0b10fdffffffffffffffff010a0218010a0921000000000000e03f0a",
    "0228020a001a2c0880b09dc2df0110ad0218072204054084072a0464960133320980e59a778094ebdc033a02",
    "1403409802480c1a2c0880e0ba84bf0310ae0218072204054084072a0464960134320980e59a778094ebdc03",
    "3a021403409802480c221b0a05312e342e32108094938ee79fe7cb171880c4b0d0c6a1e7cb1712380a060a04",
    "6361727410011a2c088090d8c69e0510af0218072204054084072a0464960135320980e59a778094ebdc033a",
    "021403409802480c120610021a021001",
];

#[test]
fn the_wire_format_is_pinned_byte_for_byte() {
    let hex: String = every_field_set()
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, EVERY_FIELD_SET_HEX.concat());
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        ExportAggregatesRequest::decode(&bytes[..]).unwrap(),
        every_field_set()
    );
}

#[test]
fn the_overflow_enum_has_the_proto_numbers_and_names() {
    for (n, name) in [
        (0, "OVERFLOW_NONE"),
        (1, "OVERFLOW_SERVICE"),
        (2, "OVERFLOW_GLOBAL"),
    ] {
        let o = Overflow::try_from(n).unwrap();
        assert_eq!((o as i32, o.as_str_name()), (n, name));
    }
    assert!(Overflow::try_from(3).is_err());
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

#[test]
fn an_exemplar_is_pinned_byte_for_byte() {
    let slot = Slot {
        exemplars: vec![Exemplar {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            end_unix_nanos: 300,
            duration_nanos: 5,
            bad: true,
        }],
        ..Slot::default()
    };
    let hex: String = slot
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        format!(
            "52230a10{}1208{}18ac0220052801",
            "ab".repeat(16),
            "01".repeat(8)
        )
    );
    assert_eq!(Slot::decode(&slot.encode_to_vec()[..]).unwrap(), slot);
}
