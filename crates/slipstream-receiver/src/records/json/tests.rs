//! The one-pass decoder against the serde decoding of the OTLP types
//! ([`crate::Pipeline::json_to_protobuf`], the OTLP/HTTP receiver's), which stays the reference: for generated requests, both
//! give the same request once the fields replay does not read are left out, and the same
//! scan.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::prelude::*;
use prost::Message;
use slipstream_core::{ScanSpec, Signal, SpanRecord};

use super::{JsonError, plain_run, to_protobuf};
use crate::Pipeline;
use crate::scanner::scan_traces;

/// The new decoder's protobuf, decoded.
fn decode_new(json: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let mut out = Vec::new();
    to_protobuf(json, &mut out)?;
    Ok(ExportTraceServiceRequest::decode(&out[..]).expect("the decoder writes valid protobuf"))
}

/// The serde decoding, with the fields the new decoder leaves out cleared.
fn decode_old(json: &[u8]) -> Option<ExportTraceServiceRequest> {
    let body = Pipeline::json_to_protobuf(Signal::Traces, json).ok()?;
    let mut req = ExportTraceServiceRequest::decode(body).unwrap();
    for rs in &mut req.resource_spans {
        rs.schema_url.clear();
        if let Some(r) = &mut rs.resource {
            r.dropped_attributes_count = 0;
            r.entity_refs.clear();
        }
        for ss in &mut rs.scope_spans {
            ss.scope = None;
            ss.schema_url.clear();
            for s in &mut ss.spans {
                s.parent_span_id.clear();
                s.flags = 0;
                s.dropped_attributes_count = 0;
                s.events.clear();
                s.dropped_events_count = 0;
                s.links.clear();
                s.dropped_links_count = 0;
                if let Some(st) = &mut s.status {
                    st.message.clear();
                }
            }
        }
    }
    Some(req)
}

/// What the scanner reads. (Candidate attributes are read from the attributes the request
/// holds, which the decoded requests compare.)
fn scan(body: &[u8]) -> Vec<SpanRecord<'_>> {
    let spec = ScanSpec {
        resource_keys: vec!["env".into()],
        resource_alternatives: vec![vec!["deployment.environment".into()]],
        span_keys: vec!["http.route".into(), "n".into()],
        ..ScanSpec::default()
    };
    let mut out = Vec::new();
    scan_traces(body, &spec, &mut out).unwrap();
    out
}

// === generated requests ===

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z./ ]{0,12}",
        1 => "(?s).{0,8}",
        1 => Just("\"quoted\\ \u{1} é € 😀".to_owned()),
    ]
}

fn attribute_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service.name".to_owned()),
        Just("service.version".to_owned()),
        Just("env".to_owned()),
        Just("deployment.environment".to_owned()),
        Just("http.route".to_owned()),
        Just("http.response.status_code".to_owned()),
        Just("rpc.grpc.status_code".to_owned()),
        Just("n".to_owned()),
        text(),
    ]
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        text().prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        // Doubles of a few digits, which serde_json reads exactly: without its
        // `float_roundtrip` feature it may be a unit in the last place off on long mantissas,
        // where Rust's parser (and so the new decoder) is exact (`doubles_read_exactly`).
        (-10_000_000i64..10_000_000, 0i32..8)
            .prop_map(|(m, e)| any_value::Value::DoubleValue(m as f64 / 10f64.powi(e))),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(any_value::Value::BytesValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3)
                .prop_map(|values| any_value::Value::ArrayValue(ArrayValue { values })),
            proptest::collection::vec((attribute_key(), inner), 0..3).prop_map(|kvs| {
                any_value::Value::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value: Some(value),
                            ..Default::default()
                        })
                        .collect(),
                })
            }),
        ]
        .prop_map(|v| AnyValue { value: Some(v) })
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    proptest::collection::vec(
        (
            attribute_key(),
            proptest::option::weighted(0.9, any_value()),
        )
            .prop_map(|(key, value)| KeyValue {
                key,
                value,
                ..Default::default()
            }),
        0..4,
    )
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), len),
        1 => proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    (
        (id(16), id(8), id(8), text(), "(ot=th:[0-9a-f]{1,4})?"),
        (0..7i32, any::<u64>(), any::<u64>(), any::<u32>()),
        attributes(),
        proptest::option::of((0..4i32, text())),
        proptest::collection::vec((any::<u64>(), text(), attributes()), 0..2),
        proptest::collection::vec((id(16), id(8), attributes()), 0..2),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, name, trace_state),
                (kind, start, end, dropped),
                attributes,
                status,
                events,
                links,
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags: dropped ^ 0x301,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped,
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name, attributes)| span::Event {
                        time_unix_nano,
                        name,
                        attributes,
                        dropped_attributes_count: 1,
                    })
                    .collect(),
                dropped_events_count: dropped / 2,
                links: links
                    .into_iter()
                    .map(|(trace_id, span_id, attributes)| span::Link {
                        trace_id,
                        span_id,
                        attributes,
                        ..Default::default()
                    })
                    .collect(),
                dropped_links_count: 3,
                status: status.map(|(code, message)| Status { code, message }),
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans = (
        proptest::option::of((text(), attributes())),
        proptest::collection::vec(span(), 0..4),
        text(),
    )
        .prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope: scope.map(|(name, attributes)| InstrumentationScope {
                name,
                attributes,
                ..Default::default()
            }),
            spans,
            schema_url,
        });
    let resource_spans = (
        proptest::option::of(attributes()),
        proptest::collection::vec(scope_spans, 0..3),
        text(),
    )
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
            resource: resource.map(|attributes| Resource {
                attributes,
                dropped_attributes_count: 2,
                ..Default::default()
            }),
            scope_spans,
            schema_url,
        });
    proptest::collection::vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

/// The other spellings OTLP/JSON writers use, applied to a serde-written request: 64-bit
/// integers as numbers, enums by name, keys in snake_case.
fn respell(v: &mut serde_json::Value, numbers: bool, names: bool, snake: bool) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            for (k, mut value) in entries {
                respell(&mut value, numbers, names, snake);
                if numbers
                    && matches!(
                        k.as_str(),
                        "startTimeUnixNano" | "endTimeUnixNano" | "intValue"
                    )
                    && let Value::String(s) = &value
                {
                    value = serde_json::from_str(s).unwrap();
                }
                if names && let Value::Number(n) = &value {
                    let n = n.as_i64().unwrap_or(-1);
                    let kinds = [
                        "SPAN_KIND_UNSPECIFIED",
                        "SPAN_KIND_INTERNAL",
                        "SPAN_KIND_SERVER",
                        "SPAN_KIND_CLIENT",
                        "SPAN_KIND_PRODUCER",
                        "SPAN_KIND_CONSUMER",
                    ];
                    let codes = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
                    let table: &[&str] = match k.as_str() {
                        "kind" => &kinds,
                        "code" => &codes,
                        _ => &[],
                    };
                    if let Some(name) = usize::try_from(n).ok().and_then(|n| table.get(n)) {
                        value = Value::String((*name).to_owned());
                    }
                }
                let k = if snake { snake_case(&k) } else { k };
                map.insert(k, value);
            }
        }
        Value::Array(items) => {
            for item in items {
                respell(item, numbers, names, snake);
            }
        }
        _ => {}
    }
}

fn snake_case(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Both decoders agree on what replay reads, in every spelling the new one accepts and
    /// on the scan of what they write.
    #[test]
    fn decodes_as_serde_does(
        req in request(),
        pretty in any::<bool>(),
        numbers in any::<bool>(),
        names in any::<bool>(),
        snake in any::<bool>(),
    ) {
        let json = serde_json::to_vec(&req).unwrap();
        let expected = decode_old(&json).expect("serde reads what serde wrote");
        let mut new = Vec::new();
        to_protobuf(&json, &mut new).unwrap();
        prop_assert_eq!(&ExportTraceServiceRequest::decode(&new[..]).unwrap(), &expected);

        let old = Pipeline::json_to_protobuf(Signal::Traces, &json).unwrap();
        prop_assert_eq!(scan(&new), scan(&old));

        let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        respell(&mut value, numbers, names, snake);
        let respelled = if pretty {
            serde_json::to_vec_pretty(&value).unwrap()
        } else {
            serde_json::to_vec(&value).unwrap()
        };
        prop_assert_eq!(decode_new(&respelled).unwrap(), expected);
    }

    /// Every cut of a line short of its end is an error, not a panic and not a request.
    #[test]
    fn a_cut_line_is_an_error(req in request(), cut in any::<prop::sample::Index>()) {
        let json = serde_json::to_vec(&req).unwrap();
        let cut = cut.index(json.len());
        prop_assert!(decode_new(&json[..cut]).is_err());
    }

    /// The eight-bytes-at-a-time string scan finds what a byte-by-byte one finds.
    #[test]
    fn plain_runs_end_where_a_byte_loop_ends(
        bytes in proptest::collection::vec(
            prop_oneof![4 => b'a'..=b'z', 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 1 => 0x80u8..],
            0..40,
        ),
        from in any::<prop::sample::Index>(),
    ) {
        let from = from.index(bytes.len() + 1);
        let end = bytes[from..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .map_or(bytes.len(), |n| from + n);
        let high = bytes[from..end].iter().any(|&b| b >= 0x80);
        prop_assert_eq!(plain_run(&bytes, from), (end, high));
    }

    /// Arbitrary bytes never panic, and what they decode to is valid protobuf.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        if to_protobuf(&bytes, &mut out).is_ok() {
            prop_assert!(ExportTraceServiceRequest::decode(&out[..]).is_ok());
        }
    }
}

// === hand-written cases ===

#[test]
fn the_recorded_benchmark_line_decodes_as_serde_does() {
    let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"service-0"}}],"droppedAttributesCount":0,"entityRefs":[]},"scopeSpans":[{"scope":null,"spans":[{"traceId":"000000000000000000000000000000ff","spanId":"0000000000000001","traceState":"","parentSpanId":"","flags":0,"name":"GET /api/v0/items","kind":2,"startTimeUnixNano":"1767225599998000000","endTimeUnixNano":"1767225600000000000","attributes":[{"key":"http.route","value":{"stringValue":"/api/items"}}],"droppedAttributesCount":0,"events":[],"droppedEventsCount":0,"links":[],"droppedLinksCount":0,"status":{"code":2,"message":""}}]}]}]}"#;
    assert_eq!(decode_new(json).unwrap(), decode_old(json).unwrap());
    let spans = scan_traces_of(json);
    assert_eq!(spans.len(), 1);
}

fn scan_traces_of(json: &[u8]) -> Vec<SpanRecord<'static>> {
    let mut out = Vec::new();
    to_protobuf(json, &mut out).unwrap();
    let out: &'static [u8] = out.leak();
    let mut spans = Vec::new();
    scan_traces(out, &ScanSpec::default(), &mut spans).unwrap();
    spans
}

#[test]
fn the_resource_may_come_after_its_spans() {
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a","kind":2,"endTimeUnixNano":"5","attributes":[{"key":"http.route","value":{"stringValue":"/x"}}]}]}],"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}},{"key":"env","value":{"stringValue":"prod"}}]}}]}"#;
    let mut new = Vec::new();
    to_protobuf(json, &mut new).unwrap();
    let old = Pipeline::json_to_protobuf(Signal::Traces, json).unwrap();
    let spans = scan(&new);
    assert_eq!(spans, scan(&old));
    assert_eq!(spans[0].service_name, Some("cart"));
}

#[test]
fn lines_of_other_signals_hold_no_spans() {
    let json = br#"{"resourceMetrics":[{"resource":{},"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asDouble":1.5}]}}]}]}]}"#;
    assert_eq!(
        decode_new(json).unwrap(),
        ExportTraceServiceRequest::default()
    );
    assert_eq!(
        decode_new(b" {} \n").unwrap(),
        ExportTraceServiceRequest::default()
    );
}

#[test]
fn escapes_ids_and_nulls() {
    let json = br#"{"resourceSpans":[{"resource":null,"scopeSpans":[null,{"spans":[{"traceId":"0x000102030405060708090A0B0C0D0E0F","spanId":null,"name":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00","kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"key":"k\u0041","value":{"intValue":-5}},{"key":"d","value":{"doubleValue":"NaN"}},{"key":"n","value":null}]}]}]}]}"#;
    let req = decode_new(json).unwrap();
    let span = &req.resource_spans[0].scope_spans[1].spans[0];
    assert_eq!(span.trace_id, (0..16).collect::<Vec<u8>>());
    assert!(span.span_id.is_empty());
    assert_eq!(span.name, "a\"\\/\u{8}\u{c}\n\r\té😀");
    assert_eq!(span.kind, 3);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    assert_eq!(span.attributes[0].key, "kA");
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(-5))
    );
    assert!(matches!(
        span.attributes[1].value.as_ref().unwrap().value,
        Some(any_value::Value::DoubleValue(d)) if d.is_nan()
    ));
    assert_eq!(span.attributes[2].value, None);
    assert_eq!(req.resource_spans[0].resource, None);
}

#[test]
fn long_messages_get_longer_length_prefixes() {
    let name = "x".repeat(300);
    let spans: Vec<String> = (0..600)
        .map(|i| format!(r#"{{"name":"{name}","startTimeUnixNano":{i}}}"#))
        .collect();
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let req = decode_new(json.as_bytes()).unwrap();
    assert_eq!(req, decode_old(json.as_bytes()).unwrap());
    assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 600);

    // A span past 16 KiB, and a whole request under 128 bytes.
    for name in ["y".repeat(20_000), String::new()] {
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"{name}"}}]}}]}}]}}"#
        );
        assert_eq!(
            decode_new(json.as_bytes()).unwrap(),
            decode_old(json.as_bytes()).unwrap()
        );
    }
}

#[test]
fn malformed_lines_name_what_and_where() {
    let cases: &[(&[u8], &str, usize)] = &[
        (b"", "expected an object", 1),
        (b"[]", "expected an object", 1),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":1}]}]}]}"#,
            "expected a string",
            52,
        ),
        (br#"{"resourceSpans" []}"#, "expected `:`", 18),
        (br#"{"resourceSpans":[] "x":1}"#, "expected `,` or `}`", 21),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abc"}]}]}]}"#,
            "invalid hex id",
            55,
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            "invalid hex id",
            55,
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SERVER"}]}]}]}"#,
            "unknown enum name",
            52,
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":2.5}]}]}]}"#,
            "expected an integer",
            52,
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"endTimeUnixNano":-1}]}]}]}"#,
            "expected an unsigned 64-bit integer",
            63,
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"endTimeUnixNano":"x"}]}]}]}"#,
            "expected an unsigned 64-bit integer",
            63,
        ),
        (b"{\"x\":\"a\x01\"}", "control character in a string", 8),
        (br#"{"x":"\ud800"}"#, "lone leading surrogate", 13),
        (br#"{"x":"\q"}"#, "invalid escape", 8),
        (br#"{"x":tru}"#, "expected `true` or `false`", 6),
        (br#"{"x":1.}"#, "expected a digit", 8),
        (br#"{"x":"#, "expected a value", 6),
        (br#"{"x":"abc"#, "unterminated string", 10),
        (br#"{} {}"#, "trailing characters", 4),
        (b"{\"x\":\"\xff\"}", "invalid UTF-8", 7),
    ];
    for &(json, what, column) in cases {
        let err = decode_new(json).unwrap_err();
        assert_eq!(
            (err.what, err.column),
            (what, column),
            "{}",
            String::from_utf8_lossy(json)
        );
    }
    let err = decode_new(br#"{"x":[}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid OTLP/JSON ExportTraceServiceRequest: expected a value at column 7"
    );
}

#[test]
fn doubles_read_exactly() {
    for d in [
        5.832_175_616_990_982_5e299,
        0.1,
        -2.5e-300,
        1.797_693_134_862_315_7e308,
    ] {
        let json = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"d","value":{{"doubleValue":{}}}}}]}}}}]}}"#,
            serde_json::to_string(&d).unwrap()
        );
        let req = decode_new(json.as_bytes()).unwrap();
        let value = &req.resource_spans[0].resource.as_ref().unwrap().attributes[0].value;
        assert_eq!(
            value.as_ref().unwrap().value,
            Some(any_value::Value::DoubleValue(d))
        );
    }
}

#[test]
fn deep_nesting_is_refused() {
    let json = format!("{{\"x\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(
        decode_new(json.as_bytes()).unwrap_err().what,
        "nested too deeply"
    );
    let json = format!("{{\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
    assert!(decode_new(json.as_bytes()).is_ok());
}
