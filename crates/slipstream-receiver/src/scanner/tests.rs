//! Scanner tests: fields, merge rules and errors one by one here; properties against a full
//! prost decode in `tests/props.rs`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use slipstream_core::explain::CandidateKeys;
use slipstream_core::{
    AttrValue, MAX_CANDIDATES, MAX_DIMENSIONS, ScanSpec, SpanKind, SpanRecord, StatusCode,
};
use slipstream_test_support::otlp::kv_value as kv;

use super::{ScanError, scan_traces};

mod props;
mod walk;

// === reference extraction from the decoded tree ===

/// What a user of the prost tree reads for `key`: the first attribute with that key.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> AttrValue<'a> {
    let value = attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    match value {
        Some(Value::StringValue(s)) => AttrValue::Str(s),
        Some(Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(Value::IntValue(i)) => AttrValue::Int(*i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(*d),
        _ => AttrValue::Absent,
    }
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        AttrValue::Str(s) => Some(s),
        _ => None,
    }
}

/// The records the scanner must produce, read from a decoded request.
fn reference<'a>(req: &'a ExportTraceServiceRequest, spec: &ScanSpec) -> Vec<SpanRecord<'a>> {
    let n_res = spec.resource_keys.len().min(MAX_DIMENSIONS);
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let res: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let attrs = &span.attributes[..];
                let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                for (slot, key) in spec.resource_keys.iter().take(n_res).enumerate() {
                    let alternatives = spec.resource_alternatives.get(slot);
                    let present = std::iter::once(key)
                        .chain(alternatives.into_iter().flatten().take(3))
                        .find(|k| res.iter().any(|kv| kv.key == **k));
                    dims[slot] = present.map_or(AttrValue::Absent, |k| attr(res, k));
                }
                for (i, key) in spec.span_keys.iter().enumerate() {
                    if n_res + i < MAX_DIMENSIONS {
                        dims[n_res + i] = attr(attrs, key);
                    }
                }
                out.push(SpanRecord {
                    service_name: attr_str(res, "service.name"),
                    service_version: attr_str(res, "service.version"),
                    name: &span.name,
                    kind: SpanKind::from_i32(span.kind),
                    status: StatusCode::from_i32(span.status.as_ref().map_or(0, |s| s.code)),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    http_status_code: attr(attrs, "http.response.status_code")
                        .as_i64()
                        .or_else(|| attr(attrs, "http.status_code").as_i64()),
                    rpc_grpc_status_code: attr(attrs, "rpc.grpc.status_code").as_i64(),
                    dims,
                    sampling_threshold: threshold_of(&span.trace_state),
                    request: &[],
                    span_at: [0, 0],
                    resource_at: [0, 0],
                    // Ids only when both are valid (a span may lack them with the id check off).
                    trace_id: ids_of(span).0,
                    span_id: ids_of(span).1,
                });
            }
        }
    }
    out
}

/// A span's trace and span ids as a record holds them: both, when 16 and 8 bytes; else none.
fn ids_of(span: &Span) -> (&[u8], &[u8]) {
    if span.trace_id.len() == 16 && span.span_id.len() == 8 {
        (&span.trace_id, &span.span_id)
    } else {
        (&[], &[])
    }
}

/// The OpenTelemetry sampling threshold of a trace state, read as the specification words it:
/// the first member keyed `ot`, its first sub-key `th`, 1 to 14 lowercase hex digits padded
/// on the right to 14.
fn threshold_of(trace_state: &str) -> Option<u64> {
    let ot = trace_state
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .find_map(|m| m.strip_prefix("ot="))?;
    let th = ot.split(';').find_map(|kv| kv.strip_prefix("th:"))?;
    let valid = (1..=14).contains(&th.len())
        && th
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    valid.then(|| u64::from_str_radix(&format!("{th:0<14}"), 16).unwrap())
}

/// Records compared through `Debug`, so that a NaN dimension equals itself.
fn debug(records: &[SpanRecord<'_>]) -> Vec<String> {
    records.iter().map(|r| format!("{r:?}")).collect()
}

// === building requests ===

fn s(v: &str) -> Value {
    Value::StringValue(v.to_owned())
}

fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.2.3".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn server_span(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        parent_span_id: vec![3; 8],
        name: name.to_owned(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes,
        events: vec![span::Event {
            time_unix_nano: 5,
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("Boom"))],
            dropped_attributes_count: 0,
        }],
        links: vec![span::Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        }],
        status: Some(Status {
            message: "oops".into(),
            code: 2,
        }),
        flags: 0x301,
        ..Default::default()
    }
}

fn spec(resource: &[&str], span: &[&str]) -> ScanSpec {
    ScanSpec {
        resource_keys: resource.iter().map(|k| (*k).to_owned()).collect(),
        span_keys: span.iter().map(|k| (*k).to_owned()).collect(),
        ..ScanSpec::default()
    }
}

fn scan<'a>(buf: &'a [u8], spec: &ScanSpec) -> Result<Vec<SpanRecord<'a>>, ScanError> {
    let mut out = Vec::new();
    scan_traces(buf, spec, &mut out).map(|()| out)
}

fn scan_err(buf: &[u8]) -> String {
    scan(buf, &ScanSpec::default())
        .expect_err("the scan should fail")
        .to_string()
}

// Hand-written wire bytes.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire_type: u8) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(field) << 3 | u64::from(wire_type));
    out
}

fn len_field(field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

fn varint_field(field: u32, v: u64) -> Vec<u8> {
    let mut out = key(field, 0);
    varint(&mut out, v);
    out
}

fn fixed64_field(field: u32, v: u64) -> Vec<u8> {
    let mut out = key(field, 1);
    out.extend_from_slice(&v.to_le_bytes());
    out
}

/// Wraps span bodies into a request with one resource (given as its body) and one scope.
fn wrap(resource: &[u8], spans: &[&[u8]]) -> Vec<u8> {
    let scope: Vec<u8> = spans.iter().flat_map(|s| len_field(2, s)).collect();
    let rs = [len_field(1, resource), len_field(2, &scope)].concat();
    len_field(1, &rs)
}

/// Checks that prost reads `buf` as the scanner does (or refuses it too).
fn agree_with_prost(buf: &[u8], spec: &ScanSpec) {
    let ours = scan(buf, spec);
    match ExportTraceServiceRequest::decode(buf) {
        Ok(req) => assert_eq!(
            debug(&ours.expect("prost accepts it, so must the scanner")),
            debug(&reference(&req, spec))
        ),
        Err(e) => assert!(
            ours.is_err(),
            "prost refuses it ({e}), the scanner accepted it"
        ),
    }
}

// === fields ===

#[test]
fn empty_buffer_is_zero_spans() {
    let mut out = vec![SpanRecord::default()];
    scan_traces(&[], &ScanSpec::default(), &mut out).unwrap();
    assert!(out.is_empty(), "out is cleared");
}

#[test]
fn a_dimension_reads_the_first_of_its_keys_that_the_resource_has() {
    let spec = ScanSpec {
        resource_keys: vec!["deployment.environment.name".into(), "region".into()],
        resource_alternatives: vec![vec!["deployment.environment".into()]],
        ..ScanSpec::default()
    };
    let env = |resource: Vec<KeyValue>| {
        let buf = request(resource, vec![server_span("GET /", vec![])]).encode_to_vec();
        let got = scan(&buf, &spec).unwrap();
        assert_eq!(got.len(), 1);
        format!("{:?}", got[0].dims[0])
    };
    let new = || kv("deployment.environment.name", s("prod"));
    let old = || kv("deployment.environment", s("staging"));
    assert_eq!(env(vec![new()]), "Str(\"prod\")", "the current key alone");
    assert_eq!(env(vec![old()]), "Str(\"staging\")", "the older key alone");
    assert_eq!(
        env(vec![new(), old()]),
        "Str(\"prod\")",
        "both: the current one"
    );
    assert_eq!(
        env(vec![old(), new()]),
        "Str(\"prod\")",
        "whatever their order"
    );
    assert_eq!(env(vec![kv("region", s("eu"))]), "Absent", "neither");
}

#[test]
fn reads_every_field_of_a_realistic_request() {
    let req = request(
        vec![
            kv("service.name", s("checkout")),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment", s("prod")),
            kv("host.cores", Value::IntValue(8)),
        ],
        vec![
            server_span(
                "GET /cart",
                vec![
                    kv("http.request.method", s("GET")),
                    kv("http.route", s("/cart")),
                    kv("http.response.status_code", Value::IntValue(503)),
                    kv("sampled", Value::BoolValue(true)),
                    kv("ratio", Value::DoubleValue(0.25)),
                ],
            ),
            Span {
                name: "grpc call".into(),
                kind: 3,
                start_time_unix_nano: 10,
                end_time_unix_nano: 30,
                attributes: vec![kv("rpc.grpc.status_code", Value::IntValue(14))],
                ..Default::default()
            },
        ],
    );
    let buf = req.encode_to_vec();
    let spec = spec(
        &["deployment.environment", "host.cores"],
        &["http.route", "sampled", "ratio", "missing"],
    );
    let got = scan(&buf, &spec).unwrap();
    assert_eq!(got.len(), 2);
    let a = &got[0];
    assert_eq!(a.service_name, Some("checkout"));
    assert_eq!(a.service_version, Some("1.4.2"));
    assert_eq!(a.name, "GET /cart");
    assert_eq!(a.kind, SpanKind::Server);
    assert_eq!(a.status, StatusCode::Error);
    assert_eq!(a.start_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(a.end_unix_nano, 1_700_000_000_250_000_000);
    assert_eq!(a.duration_nanos(), 250_000_000);
    assert_eq!(a.http_status_code, Some(503));
    assert_eq!(a.rpc_grpc_status_code, None);
    assert_eq!(
        a.dims,
        [
            AttrValue::Str("prod"),
            AttrValue::Int(8),
            AttrValue::Str("/cart"),
            AttrValue::Bool(true),
            AttrValue::Double(0.25),
            AttrValue::Absent,
            AttrValue::Absent,
            AttrValue::Absent,
        ]
    );
    let b = &got[1];
    assert_eq!(b.service_name, Some("checkout"), "resource values copied");
    assert_eq!(b.dims[0], AttrValue::Str("prod"));
    assert_eq!(b.dims[2], AttrValue::Absent);
    assert_eq!(b.name, "grpc call");
    assert_eq!(b.kind, SpanKind::Client);
    assert_eq!(b.status, StatusCode::Unset);
    assert_eq!((b.start_unix_nano, b.end_unix_nano), (10, 30));
    assert_eq!(b.http_status_code, None);
    assert_eq!(b.rpc_grpc_status_code, Some(14));
    assert_eq!(debug(&got), debug(&reference(&req, &spec)));
}

#[test]
fn several_resources_keep_their_own_values() {
    let mut req = request(
        vec![kv("service.name", s("a"))],
        vec![server_span("x", vec![])],
    );
    let mut second = request(
        vec![],
        vec![server_span("y", vec![]), server_span("z", vec![])],
    );
    req.resource_spans.append(&mut second.resource_spans);
    req.resource_spans.push(ResourceSpans::default());
    let buf = req.encode_to_vec();
    let got = scan(&buf, &ScanSpec::default()).unwrap();
    let names: Vec<_> = got.iter().map(|r| (r.service_name, r.name)).collect();
    assert_eq!(names, [(Some("a"), "x"), (None, "y"), (None, "z")]);
}

#[test]
fn http_status_prefers_the_new_attribute_and_reads_integers_in_strings_and_doubles() {
    let cases: Vec<(Vec<KeyValue>, Option<i64>)> = vec![
        (
            vec![kv("http.status_code", Value::IntValue(404))],
            Some(404),
        ),
        (
            vec![
                kv("http.status_code", Value::IntValue(404)),
                kv("http.response.status_code", Value::IntValue(500)),
            ],
            Some(500),
        ),
        (vec![kv("http.response.status_code", s(" 502 "))], Some(502)),
        (
            vec![kv("http.response.status_code", Value::DoubleValue(503.0))],
            Some(503),
        ),
        (
            vec![kv("http.response.status_code", Value::DoubleValue(503.5))],
            None,
        ),
        // A new attribute that is not an integer falls back to the old one.
        (
            vec![
                kv("http.response.status_code", s("n/a")),
                kv("http.status_code", s("418")),
            ],
            Some(418),
        ),
        (
            vec![kv("http.response.status_code", Value::BoolValue(true))],
            None,
        ),
        (vec![], None),
    ];
    for (attrs, want) in cases {
        let req = request(vec![], vec![server_span("s", attrs.clone())]);
        let buf = req.encode_to_vec();
        let got = scan(&buf, &ScanSpec::default()).unwrap();
        assert_eq!(got[0].http_status_code, want, "{attrs:?}");
    }
    let req = request(
        vec![],
        vec![server_span("s", vec![kv("rpc.grpc.status_code", s("4"))])],
    );
    let buf = req.encode_to_vec();
    assert_eq!(
        scan(&buf, &ScanSpec::default()).unwrap()[0].rpc_grpc_status_code,
        Some(4)
    );
}

#[test]
fn the_first_occurrence_of_a_repeated_key_counts() {
    let req = request(
        vec![
            kv("service.name", s("first")),
            kv("service.name", s("second")),
            kv("env", Value::ArrayValue(ArrayValue::default())),
            kv("env", s("prod")),
        ],
        vec![server_span(
            "s",
            vec![
                kv("http.response.status_code", Value::IntValue(200)),
                kv("http.response.status_code", Value::IntValue(500)),
                kv("route", s("/a")),
                kv("route", s("/b")),
            ],
        )],
    );
    let buf = req.encode_to_vec();
    let spec = spec(&["env"], &["route"]);
    let got = scan(&buf, &spec).unwrap();
    assert_eq!(got[0].service_name, Some("first"));
    assert_eq!(got[0].http_status_code, Some(200));
    assert_eq!(
        got[0].dims[0],
        AttrValue::Absent,
        "the first env is an array"
    );
    assert_eq!(got[0].dims[1], AttrValue::Str("/a"));
    assert_eq!(debug(&got), debug(&reference(&req, &spec)));
}

#[test]
fn unusable_value_types_read_as_absent() {
    let req = request(
        vec![kv("service.name", Value::IntValue(3))],
        vec![server_span(
            "s",
            vec![
                kv("a", Value::ArrayValue(ArrayValue::default())),
                kv("b", Value::KvlistValue(KeyValueList::default())),
                kv("c", Value::BytesValue(vec![0xff, 0])),
                kv("d", Value::StringValueStrindex(4)),
                KeyValue {
                    key: "e".into(),
                    value: None,
                    key_strindex: 0,
                },
                KeyValue {
                    key: "f".into(),
                    value: Some(AnyValue { value: None }),
                    key_strindex: 0,
                },
            ],
        )],
    );
    let buf = req.encode_to_vec();
    let got = scan(&buf, &spec(&[], &["a", "b", "c", "d", "e", "f"])).unwrap();
    assert_eq!(got[0].service_name, None, "service.name must be a string");
    assert_eq!(got[0].dims, [AttrValue::Absent; MAX_DIMENSIONS]);
}

#[test]
fn out_of_range_enums_map_to_their_defaults() {
    for (kind, status) in [(6, 3), (-1, -1), (i32::MAX, i32::MIN)] {
        let mut span = server_span("s", vec![]);
        span.kind = kind;
        span.status = Some(Status {
            message: String::new(),
            code: status,
        });
        let buf = request(vec![], vec![span]).encode_to_vec();
        let got = scan(&buf, &ScanSpec::default()).unwrap();
        assert_eq!(got[0].kind, SpanKind::Unspecified);
        assert_eq!(got[0].status, StatusCode::Unset);
    }
}

#[test]
fn dimension_slots_follow_the_spec_and_stop_at_the_maximum() {
    let res = vec![kv("r", s("R")), kv("both", s("res"))];
    let attrs = (0..10)
        .map(|i| kv(&format!("k{i}"), Value::IntValue(i)))
        .collect();
    let mut attrs: Vec<KeyValue> = attrs;
    attrs.push(kv("both", s("span")));
    let req = request(res, vec![server_span("s", attrs)]);
    let buf = req.encode_to_vec();
    // The same key twice fills both slots; a key that is both a resource and a span key reads
    // each level's value; keys past MAX_DIMENSIONS are ignored.
    let wide = spec(
        &["r", "both", "r"],
        &["both", "k1", "k1", "k2", "k3", "k4", "k5"],
    );
    let got = scan(&buf, &wide).unwrap();
    assert_eq!(
        got[0].dims,
        [
            AttrValue::Str("R"),
            AttrValue::Str("res"),
            AttrValue::Str("R"),
            AttrValue::Str("span"),
            AttrValue::Int(1),
            AttrValue::Int(1),
            AttrValue::Int(2),
            AttrValue::Int(3),
        ]
    );
    assert_eq!(debug(&got), debug(&reference(&req, &wide)));
    // A spec key equal to a fixed one fills both.
    let spec2 = spec(&["service.name"], &["http.response.status_code"]);
    let req = request(
        vec![kv("service.name", s("svc"))],
        vec![server_span(
            "s",
            vec![kv("http.response.status_code", Value::IntValue(201))],
        )],
    );
    let buf = req.encode_to_vec();
    let got = scan(&buf, &spec2).unwrap();
    assert_eq!(got[0].service_name, Some("svc"));
    assert_eq!(got[0].dims[0], AttrValue::Str("svc"));
    assert_eq!(got[0].dims[1], AttrValue::Int(201));
    assert_eq!(got[0].http_status_code, Some(201));
}

#[test]
fn long_keys_are_matched() {
    let long = "x".repeat(100);
    let other = "y".repeat(100);
    let req = request(
        vec![],
        vec![server_span(
            "s",
            vec![kv(&other, s("no")), kv(&long, s("yes"))],
        )],
    );
    let buf = req.encode_to_vec();
    let got = scan(&buf, &spec(&[], &[&long])).unwrap();
    assert_eq!(got[0].dims[0], AttrValue::Str("yes"));
}

// === wire-level rules ===

#[test]
fn fields_in_any_order_and_the_resource_after_the_spans() {
    let span = [
        fixed64_field(8, 20),
        len_field(15, &varint_field(3, 1)),
        len_field(
            9,
            &[
                len_field(2, &varint_field(3, 200)),
                len_field(1, b"http.status_code"),
            ]
            .concat(),
        ),
        varint_field(6, 2),
        fixed64_field(7, 5),
        len_field(5, b"late name"),
    ]
    .concat();
    let scope = len_field(2, &span);
    let resource = len_field(
        1,
        &[
            len_field(2, &len_field(1, b"svc")),
            len_field(1, b"service.name"),
        ]
        .concat(),
    );
    let rs = [len_field(2, &scope), len_field(1, &resource)].concat();
    let buf = len_field(1, &rs);
    let got = scan(&buf, &ScanSpec::default()).unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.service_name, Some("svc"));
    assert_eq!(r.name, "late name");
    assert_eq!((r.kind, r.status), (SpanKind::Server, StatusCode::Ok));
    assert_eq!((r.start_unix_nano, r.end_unix_nano), (5, 20));
    assert_eq!(r.http_status_code, Some(200));
    agree_with_prost(&buf, &ScanSpec::default());
}

#[test]
fn repeated_scalars_keep_the_last_and_messages_merge() {
    let attr = |k: &[u8], v: &[u8]| len_field(9, &[len_field(1, k), len_field(2, v)].concat());
    let span = [
        len_field(5, b"first"),
        len_field(5, b"second"),
        varint_field(6, 3),
        varint_field(6, 5),
        fixed64_field(7, 1),
        fixed64_field(7, 2),
        // Status twice: the code of the first survives a second without one, a later code wins.
        len_field(15, &varint_field(3, 2)),
        len_field(15, &len_field(2, b"msg")),
        // An attribute whose value appears twice: the AnyValues merge, the last member wins.
        len_field(
            9,
            &[
                len_field(1, b"http.response.status_code"),
                len_field(2, &len_field(1, b"x")),
                len_field(2, &varint_field(3, 504)),
            ]
            .concat(),
        ),
        // An empty second AnyValue keeps the first.
        len_field(
            9,
            &[
                len_field(1, b"rpc.grpc.status_code"),
                len_field(2, &varint_field(3, 13)),
                len_field(2, &[]),
            ]
            .concat(),
        ),
        // A key that appears twice in one KeyValue: the last is the key.
        len_field(
            9,
            &[
                len_field(1, b"nope"),
                len_field(2, &len_field(1, b"/r")),
                len_field(1, b"route"),
            ]
            .concat(),
        ),
        // One AnyValue with two members.
        attr(
            b"d",
            &[varint_field(2, 1), fixed64_field(4, 2.5f64.to_bits())].concat(),
        ),
    ]
    .concat();
    // The resource in two pieces: their attributes add up.
    let scope = len_field(2, &span);
    let rs = [
        len_field(
            1,
            &len_field(
                1,
                &[
                    len_field(1, b"service.name"),
                    len_field(2, &len_field(1, b"svc")),
                ]
                .concat(),
            ),
        ),
        len_field(2, &scope),
        len_field(
            1,
            &len_field(
                1,
                &[
                    len_field(1, b"service.version"),
                    len_field(2, &len_field(1, b"v2")),
                ]
                .concat(),
            ),
        ),
    ]
    .concat();
    let buf = len_field(1, &rs);
    let spec = spec(&[], &["route", "d"]);
    let got = scan(&buf, &spec).unwrap();
    let r = &got[0];
    assert_eq!(r.name, "second");
    assert_eq!(r.kind, SpanKind::Consumer);
    assert_eq!(r.start_unix_nano, 2);
    assert_eq!(r.status, StatusCode::Error);
    assert_eq!(r.http_status_code, Some(504));
    assert_eq!(r.rpc_grpc_status_code, Some(13));
    assert_eq!(r.dims[0], AttrValue::Str("/r"));
    assert_eq!(r.dims[1], AttrValue::Double(2.5));
    assert_eq!(
        (r.service_name, r.service_version),
        (Some("svc"), Some("v2"))
    );
    agree_with_prost(&buf, &spec);
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let group = [
        key(40, 3),
        varint_field(1, 300),
        key(2, 3),
        fixed64_field(1, 1),
        key(2, 4),
        len_field(3, b"\x01\x02"),
        key(40, 4),
    ]
    .concat();
    let unknown = [
        varint_field(99, u64::MAX),
        fixed64_field(100, 7),
        key(101, 5),
        vec![1, 2, 3, 4],
        // Packed varints under an unknown number.
        len_field(102, &[0x96, 0x01, 0x05, 0xff, 0x7f]),
        group,
    ]
    .concat();
    let kvb = [
        len_field(1, b"http.status_code"),
        unknown.clone(),
        len_field(2, &[unknown.clone(), varint_field(3, 201)].concat()),
    ]
    .concat();
    let span = [
        unknown.clone(),
        len_field(5, b"n"),
        len_field(9, &kvb),
        len_field(15, &[unknown.clone(), varint_field(3, 1)].concat()),
    ]
    .concat();
    let resource = [
        unknown.clone(),
        len_field(
            1,
            &[
                len_field(1, b"service.name"),
                len_field(2, &[len_field(1, b"svc"), unknown.clone()].concat()),
            ]
            .concat(),
        ),
    ]
    .concat();
    let scope = [unknown.clone(), len_field(2, &span)].concat();
    let rs = [
        unknown.clone(),
        len_field(1, &resource),
        len_field(2, &scope),
    ]
    .concat();
    let buf = [unknown.clone(), len_field(1, &rs), unknown].concat();
    let got = scan(&buf, &ScanSpec::default()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "n");
    assert_eq!(got[0].service_name, Some("svc"));
    assert_eq!(got[0].http_status_code, Some(201));
    assert_eq!(got[0].status, StatusCode::Ok);
    agree_with_prost(&buf, &ScanSpec::default());
}

#[test]
fn non_canonical_varints_are_accepted() {
    // 2 as a 10-byte varint, and a length padded to 3 bytes.
    let mut kind = key(6, 0);
    kind.extend_from_slice(&[0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    let mut name = key(5, 2);
    name.extend_from_slice(&[0x01 | 0x80, 0x80, 0x00]);
    name.push(b'n');
    let span = [kind, name].concat();
    let buf = wrap(&[], &[&span]);
    let got = scan(&buf, &ScanSpec::default()).unwrap();
    assert_eq!((got[0].kind, got[0].name), (SpanKind::Server, "n"));
    agree_with_prost(&buf, &ScanSpec::default());
}

#[test]
fn group_nesting_stops_where_prost_stops() {
    // An unknown group nested n deep inside a span (depth 3 below the request).
    for n in [90, 95, 96, 97, 98, 99, 100] {
        let mut field = varint_field(1, 1);
        for _ in 0..n {
            field = [key(50, 3), field, key(50, 4)].concat();
        }
        let buf = wrap(&[], &[&field]);
        agree_with_prost(&buf, &ScanSpec::default());
    }
    let mut field = varint_field(1, 1);
    for _ in 0..120 {
        field = [key(50, 3), field, key(50, 4)].concat();
    }
    assert!(scan_err(&wrap(&[], &[&field])).starts_with("fields nested too deep at byte"));
}

// === errors ===

#[test]
fn truncated_varint() {
    // An unknown field 2 whose varint value is cut.
    assert_eq!(scan_err(&[0x10, 0x96]), "truncated varint at byte 1");
    // Inside an embedded message the message's end counts, not the buffer's.
    let buf = [len_field(1, &[0x20]), vec![0x01]].concat();
    assert_eq!(scan_err(&buf), "truncated varint at byte 3");
}

#[test]
fn overlong_varint() {
    let mut buf = key(99, 0);
    buf.extend_from_slice(&[0xff; 9]);
    buf.push(0x02);
    assert_eq!(scan_err(&buf), "varint at byte 2 does not fit in 64 bits");
    let mut buf = key(99, 0);
    buf.extend_from_slice(&[0xff; 11]);
    assert_eq!(scan_err(&buf), "varint at byte 2 does not fit in 64 bits");
}

#[test]
fn invalid_keys() {
    assert_eq!(scan_err(&[0x00]), "field number 0 at byte 0");
    assert_eq!(
        scan_err(&[0x0f, 0x00]),
        "invalid wire type 7 for field 1 of ExportTraceServiceRequest at byte 0"
    );
    let mut buf = Vec::new();
    varint(&mut buf, 1 << 35);
    assert_eq!(
        scan_err(&buf),
        "field key 34359738368 at byte 0 does not fit in 32 bits"
    );
}

#[test]
fn wrong_wire_type_for_a_known_field() {
    // resource_spans as a varint.
    assert_eq!(
        scan_err(&varint_field(1, 3)),
        "invalid wire type 0 for field 1 of ExportTraceServiceRequest at byte 0"
    );
    // Span.kind as a length-delimited field.
    let buf = wrap(&[], &[&len_field(6, b"x")]);
    assert!(
        scan_err(&buf).starts_with("invalid wire type 2 for field 6 of Span at byte"),
        "{}",
        scan_err(&buf)
    );
    // Known fields the scanner does not read are checked too, as prost does.
    for (field, wire) in [(16u32, 0u8), (10, 2), (11, 0), (1, 5), (7, 0), (8, 5)] {
        let mut f = key(field, wire);
        f.extend_from_slice(&[0; 8]);
        let buf = wrap(&[], &[&f]);
        assert!(
            scan(&buf, &ScanSpec::default()).is_err(),
            "field {field} wire {wire}"
        );
        agree_with_prost(&buf, &ScanSpec::default());
    }
    // AnyValue.int_value as fixed64 in an extracted attribute.
    let bad = len_field(
        9,
        &[
            len_field(1, b"http.status_code"),
            len_field(2, &fixed64_field(3, 1)),
        ]
        .concat(),
    );
    assert!(scan_err(&wrap(&[], &[&bad])).contains("for field 3 of AnyValue"));
    // Status.code, Resource.dropped_attributes_count, KeyValue.key.
    for buf in [
        wrap(&[], &[&len_field(15, &fixed64_field(3, 1))]),
        wrap(&len_field(2, b""), &[]),
        wrap(&len_field(1, &varint_field(1, 1)), &[]),
    ] {
        assert!(
            scan_err(&buf).starts_with("invalid wire type"),
            "{}",
            scan_err(&buf)
        );
        agree_with_prost(&buf, &ScanSpec::default());
    }
}

#[test]
fn length_past_the_end() {
    let mut buf = key(1, 2);
    varint(&mut buf, u64::from(u32::MAX));
    buf.extend_from_slice(&[0; 6]);
    assert_eq!(
        scan_err(&buf),
        "length 4294967295 at byte 1 runs past the end (6 bytes left)"
    );
    // A span name longer than its span.
    let mut span = key(5, 2);
    span.push(5);
    span.extend_from_slice(b"abc");
    let buf = wrap(&[], &[&span]);
    assert!(
        scan_err(&buf).contains("runs past the end (3 bytes left)"),
        "{}",
        scan_err(&buf)
    );
}

#[test]
fn truncated_fixed_width_values() {
    let mut span = key(7, 1);
    span.extend_from_slice(&[1, 2, 3]);
    let buf = wrap(&[], &[&span]);
    assert!(
        scan_err(&buf).starts_with("fixed64 field 7 at byte"),
        "{}",
        scan_err(&buf)
    );
    let mut span = key(16, 5);
    span.extend_from_slice(&[1, 2, 3]);
    assert!(scan_err(&wrap(&[], &[&span])).starts_with("fixed32 field 16 at byte"));
}

#[test]
fn invalid_utf8_in_strings_the_scanner_returns() {
    let res = len_field(
        1,
        &[
            len_field(1, b"service.name"),
            len_field(2, &len_field(1, b"a\xffb")),
        ]
        .concat(),
    );
    let buf = wrap(&res, &[]);
    let err = scan_err(&buf);
    assert!(
        err.starts_with("invalid UTF-8 in service.name at byte"),
        "{err}"
    );
    let offset: usize = err.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(&buf[offset..offset + 3], b"a\xffb");

    let buf = wrap(&[], &[&len_field(5, b"\xc3\x28")]);
    assert!(scan_err(&buf).starts_with("invalid UTF-8 in span name at byte"));

    let attr = len_field(
        9,
        &[
            len_field(1, b"http.route"),
            len_field(2, &len_field(1, b"/\xed\xa0\x80")),
        ]
        .concat(),
    );
    let buf = wrap(&[], &[&attr]);
    assert_eq!(
        scan(&buf, &ScanSpec::default()).map(|v| v.len()),
        Ok(1),
        "not extracted, not read"
    );
    let mut out = Vec::new();
    let err = scan_traces(&buf, &spec(&[], &["http.route"]), &mut out).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid UTF-8 in http.route at byte"),
        "{err}"
    );
}

#[test]
fn groups_must_be_closed_by_their_own_end() {
    let buf = [key(50, 3), varint_field(1, 1)].concat();
    assert_eq!(scan_err(&buf), "group 50 at byte 0 is not closed");
    let buf = [key(50, 3), key(51, 4)].concat();
    assert_eq!(scan_err(&buf), "unexpected end of group 51 at byte 2");
    let buf = key(50, 4);
    assert_eq!(scan_err(&buf), "unexpected end of group 50 at byte 0");
    for buf in [[key(50, 3), key(51, 4)].concat(), key(50, 4)] {
        agree_with_prost(&buf, &ScanSpec::default());
    }
}

#[test]
fn every_truncation_errs_or_yields_a_prefix() {
    let mut req = request(
        vec![kv("service.name", s("a")), kv("env", s("prod"))],
        (0..3)
            .map(|i| {
                server_span(
                    &format!("s{i}"),
                    vec![kv("http.status_code", Value::IntValue(200 + i))],
                )
            })
            .collect(),
    );
    let mut more = request(
        vec![kv("service.name", s("b"))],
        vec![server_span("t", vec![])],
    );
    req.resource_spans.append(&mut more.resource_spans);
    let buf = req.encode_to_vec();
    let spec = spec(&["env"], &["http.status_code"]);
    let full = scan(&buf, &spec).unwrap();
    let mut ok = 0;
    for n in 0..buf.len() {
        let prefix = &buf[..n];
        if let Ok(got) = scan(prefix, &spec) {
            assert_eq!(debug(&got), debug(&full[..got.len()]), "truncated at {n}");
            ok += 1;
        }
        agree_with_prost(prefix, &spec);
    }
    // Empty, after the first resource, and the whole.
    assert_eq!(ok, 2);
}

#[test]
fn attribute_limits_refuse_too_many_or_too_large_attributes() {
    use super::{AttributeLimits, scan_traces_limited};
    let attrs = |n: usize| (0..n).map(|i| kv(&format!("k{i}"), s("v"))).collect();
    let req = |span_attrs, resource_value: &str| {
        request(
            vec![
                kv("service.name", s("checkout")),
                kv("note", s(resource_value)),
            ],
            vec![server_span("GET /", span_attrs)],
        )
        .encode_to_vec()
    };
    let limits = AttributeLimits {
        max_per_span: 3,
        max_size: 64,
    };
    let spec = spec(&[], &[]);
    let mut out = Vec::new();
    // At the limits: accepted, and the same spans as without limits.
    let ok = req(attrs(3), &"x".repeat(40));
    scan_traces_limited(&ok, &spec, limits, &mut out).unwrap();
    assert_eq!(debug(&out), debug(&scan(&ok, &spec).unwrap()));
    // One attribute too many on a span.
    let many = req(attrs(4), "x");
    let e = scan_traces_limited(&many, &spec, limits, &mut out).unwrap_err();
    assert!(
        matches!(
            e,
            ScanError::TooManyAttributes {
                count: 4,
                limit: 3,
                ..
            }
        ),
        "{e}"
    );
    // A resource attribute larger than 64 bytes.
    let large = req(attrs(1), &"x".repeat(100));
    let e = scan_traces_limited(&large, &spec, limits, &mut out).unwrap_err();
    assert!(
        matches!(e, ScanError::AttributeTooLarge { limit: 64, .. }),
        "{e}"
    );
    // No limits: all accepted.
    for buf in [&many, &large] {
        scan_traces_limited(buf, &spec, AttributeLimits::default(), &mut out).unwrap();
    }
}

#[test]
fn span_checks_apply_while_scanning() {
    use super::{AttributeLimits, SpanChecks, scan_traces_checked};
    let spec = spec(&[], &[]);
    let span = |trace: usize, id: usize, parent: usize| Span {
        trace_id: vec![1; trace],
        span_id: vec![2; id],
        parent_span_id: vec![3; parent],
        ..server_span("GET /", vec![])
    };
    let checked = |buf: &[u8], checks: SpanChecks<'_>| {
        let mut out = Vec::new();
        scan_traces_checked(buf, &spec, AttributeLimits::default(), checks, &mut out)
            .map(|()| out.len())
    };
    let ids = SpanChecks {
        ids: true,
        ..SpanChecks::default()
    };
    let one = |s: Span| request(vec![], vec![s]).encode_to_vec();
    assert_eq!(checked(&one(span(16, 8, 0)), ids), Ok(1));
    assert_eq!(checked(&one(span(16, 8, 8)), ids), Ok(1));
    for (t, s, p, what, len) in [
        (0, 8, 0, "trace_id", 0),
        (15, 8, 0, "trace_id", 15),
        (16, 0, 0, "span_id", 0),
        (16, 8, 7, "parent_span_id", 7),
    ] {
        let e = checked(&one(span(t, s, p)), ids).unwrap_err();
        assert!(
            matches!(e, ScanError::InvalidId { what: w, len: l, .. } if w == what && l == len),
            "{e}"
        );
        // Without the check, the scanner reads them as a decode would.
        assert_eq!(checked(&one(span(t, s, p)), SpanChecks::default()), Ok(1));
    }
    // A repeated id field keeps its last occurrence, as the decoded tree does.
    let mut extra = Vec::new();
    extra.extend(len_field(1, &[9; 15]));
    extra.extend(len_field(1, &[9; 16]));
    let span_bytes = [len_field(1, &[1; 16]), len_field(2, &[2; 8]), extra].concat();
    let twice = wrap(&[], &[&span_bytes]);
    assert_eq!(checked(&twice, ids), Ok(1));

    // The span limit stops the scan at the limit, not after the request.
    let many = request(vec![], (0..100).map(|_| span(16, 8, 0)).collect()).encode_to_vec();
    let limit = SpanChecks {
        max_spans: 40,
        ..SpanChecks::default()
    };
    assert_eq!(
        checked(&many, limit),
        Err(ScanError::TooManySpans { limit: 40 })
    );
    // Room is asked for before the buffer grows; a refusal stops the scan.
    let asked = std::cell::Cell::new(0usize);
    let room = |n: usize| {
        asked.set(asked.get() + n);
        asked.get() <= 32 * std::mem::size_of::<SpanRecord<'_>>()
    };
    let budget = SpanChecks {
        room: Some(&room),
        ..SpanChecks::default()
    };
    let e = checked(&many, budget).unwrap_err();
    assert!(matches!(e, ScanError::NoRoom { .. }), "{e}");
    let plenty = |_: usize| true;
    let budget = SpanChecks {
        room: Some(&plenty),
        ..SpanChecks::default()
    };
    assert_eq!(checked(&many, budget), Ok(100));
}

#[test]
fn the_sampling_threshold_is_read_from_the_trace_state() {
    let cases: &[(&str, Option<u64>)] = &[
        // Absent: no trace state, other vendors only, an `ot` member without `th`.
        ("", None),
        ("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", None),
        ("ot=rv:abcdef01234567", None),
        // Valid: 1 in 4, always, 1 in 2 with the randomness and other sub-keys around it.
        ("ot=th:c", Some(0xc0_0000_0000_0000)),
        ("ot=th:0", Some(0)),
        ("ot=rv:1234;th:8;x:1", Some(0x80_0000_0000_0000)),
        ("ot=th:fd70a3d70a3d71", Some(0xfd_70a3_d70a_3d71)),
        // Among other vendors, in any position, with optional whitespace around the commas.
        (
            "congo=t61rcWkgMzE, ot=th:c ,rojo=00f067aa",
            Some(0xc0_0000_0000_0000),
        ),
        ("rojo=00f067aa,\tot=th:e", Some(0xe0_0000_0000_0000)),
        ("ot=th:8;x:1 , a=b", Some(0x80_0000_0000_0000)),
        ("ot=th:8 ;x:1", None),
        // Not `ot`: a key that only ends with it, or `th` as another member's sub-key.
        ("foot=th:c", None),
        ("xot=th:c,ot=th:8", Some(0x80_0000_0000_0000)),
        ("vendor=th:c", None),
        // Invalid thresholds: empty, too long, not lowercase hex.
        ("ot=th:", None),
        ("ot=th:123456789abcdef", None),
        ("ot=th:C", None),
        ("ot=th:1g", None),
        ("ot=th:-1", None),
    ];
    for &(trace_state, want) in cases {
        let mut span = server_span("GET /", vec![]);
        span.trace_state = trace_state.to_owned();
        let buf = request(vec![kv("service.name", s("shop"))], vec![span]).encode_to_vec();
        let got = scan(&buf, &ScanSpec::default()).unwrap()[0].sampling_threshold;
        assert_eq!(got, want, "{trace_state:?}");
        assert_eq!(
            threshold_of(trace_state),
            want,
            "the reference, {trace_state:?}"
        );
    }
}

#[test]
fn the_last_trace_state_of_a_span_counts_and_each_span_has_its_own() {
    // Two occurrences of field 3: a string keeps the last one.
    let mut first = server_span("GET /", vec![]).encode_to_vec();
    first.extend(len_field(3, b"ot=th:c"));
    first.extend(len_field(3, b"ot=th:8"));
    let second = server_span("GET /b", vec![]).encode_to_vec();
    let scope = [len_field(2, &first), len_field(2, &second)].concat();
    let rs = len_field(2, &scope);
    let buf = len_field(1, &rs);
    let got = scan(&buf, &ScanSpec::default()).unwrap();
    assert_eq!(got[0].sampling_threshold, Some(0x80_0000_0000_0000));
    assert_eq!(got[1].sampling_threshold, None);
}

/// A candidate's encoded value, decoded by prost (`None` when it is empty: not found).
fn candidate(raw: &[u8]) -> Option<Value> {
    if raw.is_empty() {
        return None;
    }
    AnyValue::decode(raw)
        .expect("a candidate is an encoded AnyValue")
        .value
}

/// The candidate values of `rec`, as the aggregator looks them up.
fn candidates<'a>(spec: &ScanSpec, rec: &SpanRecord<'a>) -> [&'a [u8]; MAX_CANDIDATES] {
    let mut out = [&[][..]; MAX_CANDIDATES];
    CandidateKeys::new(&spec.candidate_keys).values(rec, &mut out);
    out
}

#[test]
fn candidates_are_read_on_the_span_then_on_the_resource() {
    let dims = spec(&["k8s.pod.name"], &["http.route"]);
    let spec = ScanSpec {
        candidate_keys: [
            "http.route",
            "k8s.pod.name",
            "http.response.status_code",
            "absent",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..dims.clone()
    };
    let resource = vec![
        kv("service.name", s("checkout")),
        kv("k8s.pod.name", s("pod-1")),
        kv("k8s.pod.name", s("pod-2")),
    ];
    let spans = vec![
        server_span(
            "GET /pay",
            vec![
                kv("http.route", s("/pay")),
                kv("http.response.status_code", Value::IntValue(503)),
                kv("http.route", s("/later")),
            ],
        ),
        server_span("GET /", vec![kv("k8s.pod.name", s("pod-9"))]),
    ];
    let buf = request(resource, spans).encode_to_vec();
    let got = scan(&buf, &spec).unwrap();
    // The first occurrence on the span; else the resource's first; absent is empty.
    let (c0, c1) = (candidates(&spec, &got[0]), candidates(&spec, &got[1]));
    assert_eq!(candidate(c0[0]), Some(s("/pay")));
    assert_eq!(candidate(c0[1]), Some(s("pod-1")));
    assert_eq!(candidate(c0[2]), Some(Value::IntValue(503)));
    assert_eq!(candidate(c0[3]), None);
    assert_eq!(candidate(c1[0]), None);
    assert_eq!(candidate(c1[1]), Some(s("pod-9")));
    assert!([c0, c1].iter().all(|c| c[4..].iter().all(|v| v.is_empty())));
    // Dimensions and the fixed fields read as without candidates.
    let plain = scan(&buf, &dims).unwrap();
    for (a, b) in got.iter().zip(&plain) {
        assert_eq!(
            SpanRecord {
                request: &[],
                span_at: [0, 0],
                resource_at: [0, 0],
                ..*a
            },
            *b
        );
    }
    assert_eq!(got[0].dims[0], AttrValue::Str("pod-1"));
    assert_eq!(got[0].http_status_code, Some(503));
    // Without candidate keys the record says nothing of where the span is.
    assert!(
        plain
            .iter()
            .all(|r| r.request.is_empty() && r.span_at == [0, 0])
    );
}

#[test]
fn candidates_are_read_from_a_resource_in_pieces() {
    // A resource in two pieces, one after the spans: the first occurrence of a key across
    // the pieces counts, as in the merged tree.
    let spec = ScanSpec {
        candidate_keys: ["k8s.pod.name", "cloud.region", "http.route"]
            .map(str::to_owned)
            .to_vec(),
        ..ScanSpec::default()
    };
    let piece = |attributes: Vec<KeyValue>, spans: Vec<Span>| {
        ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: if spans.is_empty() {
                Vec::new()
            } else {
                vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }]
            },
            ..Default::default()
        }
        .encode_to_vec()
    };
    let rs = [
        piece(
            vec![kv("service.name", s("a")), kv("k8s.pod.name", s("pod-1"))],
            vec![server_span("x", vec![kv("http.route", s("/r"))])],
        ),
        piece(
            vec![
                kv("k8s.pod.name", s("pod-2")),
                kv("cloud.region", s("eu-1")),
            ],
            Vec::new(),
        ),
    ]
    .concat();
    let buf = len_field(1, &rs);
    let got = scan(&buf, &spec).unwrap();
    assert_eq!(got.len(), 1);
    let c = candidates(&spec, &got[0]);
    assert_eq!(candidate(c[0]), Some(s("pod-1")));
    assert_eq!(candidate(c[1]), Some(s("eu-1")));
    assert_eq!(candidate(c[2]), Some(s("/r")));
}

#[test]
fn candidates_agree_with_the_decoded_tree() {
    let keys = [
        "http.route",
        "service.version",
        "k8s.pod.name",
        "error.type",
    ];
    let spec = ScanSpec {
        candidate_keys: keys.map(str::to_owned).to_vec(),
        ..ScanSpec::default()
    };
    let resource = vec![
        kv("service.name", s("a")),
        kv("service.version", s("1.2")),
        kv("k8s.pod.name", Value::BoolValue(true)),
    ];
    let spans = (0..6)
        .map(|i| {
            let mut attrs = vec![kv("http.route", s(&format!("/r{i}")))];
            if i % 2 == 0 {
                attrs.push(kv("error.type", Value::IntValue(i)));
                attrs.push(kv("service.version", Value::DoubleValue(2.5)));
            }
            server_span("x", attrs)
        })
        .collect();
    let req = request(resource, spans);
    let buf = req.encode_to_vec();
    let got = scan(&buf, &spec).unwrap();
    let rs = &req.resource_spans[0];
    let res = &rs.resource.as_ref().unwrap().attributes;
    for (rec, span) in got.iter().zip(&rs.scope_spans[0].spans) {
        for (i, key) in keys.iter().enumerate() {
            let find = |attrs: &[KeyValue]| {
                attrs
                    .iter()
                    .find(|kv| kv.key == *key)
                    .and_then(|kv| kv.value.clone())
                    .and_then(|v| v.value)
            };
            let expected = find(&span.attributes).or_else(|| find(res));
            assert_eq!(candidate(candidates(&spec, rec)[i]), expected, "{key}");
        }
    }
}
