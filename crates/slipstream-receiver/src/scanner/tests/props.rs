//! Property tests: the scanner reads what a full prost decode of the same bytes reads.
//!
//! Requests are generated as prost values, then encoded either by prost or by [`Enc`], an
//! encoder that writes the same tree the way other protobuf encoders (or adversaries) may:
//! fields shuffled, unknown fields of every wire type injected at every level (groups and
//! packed runs included), non-repeated fields written twice (scalars: last wins; messages:
//! merged), default values written explicitly, booleans as any non-zero varint, non-canonical
//! varints. The oracle is always prost's decode of the exact bytes the scanner saw.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

const KEYS: &[&str] = &[
    "service.name",
    "service.version",
    "http.response.status_code",
    "http.status_code",
    "rpc.grpc.status_code",
    "http.route",
    "deployment.environment",
    "net.peer.ip",
];

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(KEYS).prop_map(str::to_owned),
        1 => "[a-z.]{0,6}",
    ]
}

fn value_strategy() -> impl Strategy<Value = Option<AnyValue>> {
    let string = prop_oneof![
        "[0-9]{1,3}",
        " ?-?[0-9]{1,4} ?",
        "\\PC{0,6}",
        // Past the one-byte length of the fast paths.
        "[a-z]{120,140}",
        Just(String::new()),
    ];
    let double = prop_oneof![
        any::<f64>(),
        (100i32..600).prop_map(f64::from),
        Just(404.5),
        Just(-0.0),
        Just(f64::NAN),
        Just(1e300),
    ];
    let value = prop_oneof![
        3 => string.prop_map(Value::StringValue),
        1 => any::<bool>().prop_map(Value::BoolValue),
        3 => prop_oneof![any::<i64>(), 0i64..600].prop_map(Value::IntValue),
        2 => double.prop_map(Value::DoubleValue),
        1 => prop::collection::vec(any::<u8>(), 0..4).prop_map(Value::BytesValue),
        1 => any::<i32>().prop_map(Value::StringValueStrindex),
        1 => (0i64..3).prop_map(|i| Value::ArrayValue(ArrayValue {
            values: vec![AnyValue { value: Some(Value::IntValue(i)) }],
        })),
        1 => "[a-z]{0,3}".prop_map(|k| Value::KvlistValue(KeyValueList {
            values: vec![kv(&k, Value::StringValue("v".into()))],
        })),
    ];
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(AnyValue { value: None })),
        12 => value.prop_map(|v| Some(AnyValue { value: Some(v) })),
    ]
}

fn kv_strategy() -> impl Strategy<Value = KeyValue> {
    (
        key_strategy(),
        value_strategy(),
        prop_oneof![9 => Just(0), 1 => any::<i32>()],
    )
        .prop_map(|(key, value, key_strindex)| KeyValue {
            key,
            value,
            key_strindex,
        })
}

fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(kv_strategy(), 0..6)
}

fn span_strategy() -> impl Strategy<Value = Span> {
    let ids = (
        prop::collection::vec(any::<u8>(), 0..17),
        prop::collection::vec(any::<u8>(), 0..9),
        prop::collection::vec(any::<u8>(), 0..9),
        prop_oneof![
            "[a-z=,]{0,6}",
            // Trace states with an OpenTelemetry sampling threshold, valid or not, among
            // other vendors' members.
            "([ \t]?[a-z]{1,3}=[a-z0-9:;]{0,4}[ \t]?,)?[ \t]?ot=(rv:[0-9a-f]{0,3};)?th:[0-9a-fA-F]{0,15}[ \t]?(;[a-z]{1,2}:[0-9]{1,2})?[ \t]?(,[a-z]{1,3}=[a-z0-9:;]{0,4})?",
        ],
        any::<u32>(),
    );
    let head = (
        "\\PC{0,8}",
        prop_oneof![4 => 0i32..6, 1 => any::<i32>()],
        any::<u64>(),
        any::<u64>(),
        attrs(),
    );
    let status = prop::option::of(("\\PC{0,4}", prop_oneof![4 => 0i32..3, 1 => any::<i32>()]));
    let extra = (
        prop::collection::vec(("[a-z]{0,4}", attrs()), 0..2),
        prop::collection::vec(attrs(), 0..2),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    );
    (ids, head, status, extra).prop_map(
        |(
            (trace_id, span_id, parent_span_id, trace_state, flags),
            (name, kind, start, end, attributes),
            status,
            (events, links, d1, d2, d3),
        )| Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: d1,
            events: events
                .into_iter()
                .map(|(name, attributes)| span::Event {
                    time_unix_nano: 1,
                    name,
                    attributes,
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: d2,
            links: links
                .into_iter()
                .map(|attributes| span::Link {
                    trace_id: vec![1; 16],
                    attributes,
                    ..Default::default()
                })
                .collect(),
            dropped_links_count: d3,
            status: status.map(|(message, code)| Status { message, code }),
        },
    )
}

fn request_strategy() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope = (
        prop::option::of(("[a-z]{0,4}", attrs())),
        prop::collection::vec(span_strategy(), 0..4),
        "[a-z:/]{0,4}",
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
    let resource = prop::option::of((attrs(), any::<u32>())).prop_map(|r| {
        r.map(|(attributes, dropped_attributes_count)| Resource {
            attributes,
            dropped_attributes_count,
            ..Default::default()
        })
    });
    let rs = (resource, prop::collection::vec(scope, 0..3), "[a-z]{0,3}").prop_map(
        |(resource, scope_spans, schema_url)| ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        },
    );
    prop::collection::vec(rs, 0..4)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn spec_strategy() -> impl Strategy<Value = ScanSpec> {
    (
        prop::collection::vec(key_strategy(), 0..4),
        prop::collection::vec(key_strategy(), 0..7),
        prop::collection::vec(prop::collection::vec(key_strategy(), 0..4), 0..4),
    )
        .prop_map(
            |(resource_keys, span_keys, resource_alternatives)| ScanSpec {
                resource_keys,
                resource_alternatives,
                span_keys,
                candidate_keys: Vec::new(),
            },
        )
}

// === the tweaking encoder ===

/// Encodes requests field by field, with random liberties a valid encoding may take.
struct Enc {
    state: u64,
    /// Percent chance of each liberty; 0 encodes as prost does.
    odds: u64,
}

impl Enc {
    fn new(seed: u64, odds: u64) -> Self {
        Self { state: seed, odds }
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self) -> bool {
        self.odds > 0 && self.next() % 100 < self.odds
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A varint, sometimes padded with redundant continuation bytes (at most 10 in all).
    fn varint(&mut self, out: &mut Vec<u8>, v: u64) {
        let start = out.len();
        varint(out, v);
        let len = out.len() - start;
        if len < 10 && self.chance() {
            let pad = 1 + self.below((10 - len) as u64) as usize;
            let last = out.len() - 1;
            out[last] |= 0x80;
            out.extend(std::iter::repeat_n(0x80, pad - 1));
            out.push(0);
        }
    }

    fn key(&mut self, out: &mut Vec<u8>, field: u32, wire_type: u8) {
        self.varint(out, u64::from(field) << 3 | u64::from(wire_type));
    }

    fn len(&mut self, field: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.key(&mut out, field, 2);
        self.varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }

    fn uint(&mut self, field: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        self.key(&mut out, field, 0);
        self.varint(&mut out, v);
        out
    }

    fn fixed64(&mut self, field: u32, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        self.key(&mut out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    fn fixed32(&mut self, field: u32, v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.key(&mut out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
        out
    }

    /// Pushes a scalar field as prost would (omitted when default), or, at random, written
    /// explicitly when default, or preceded by a decoy occurrence that the last one overrides.
    fn scalar(
        &mut self,
        fields: &mut Vec<Vec<u8>>,
        is_default: bool,
        mut f: impl FnMut(&mut Self, bool) -> Vec<u8>,
    ) {
        if self.chance() {
            let decoy = f(self, true);
            fields.push(decoy);
        }
        if !is_default || self.chance() {
            let real = f(self, false);
            fields.push(real);
        }
    }

    /// A random field whose number `known` does not claim, of any wire type.
    fn unknown(&mut self, known: &dyn Fn(u32) -> bool, depth: u32) -> Vec<u8> {
        const NUMBERS: [u32; 9] = [1, 4, 9, 17, 20, 31, 100, 1000, (1 << 29) - 1];
        let mut field = NUMBERS[self.below(NUMBERS.len() as u64) as usize];
        while known(field) {
            field += 17;
        }
        let mut out = Vec::new();
        match self.below(if depth < 2 { 6 } else { 5 }) {
            0 => {
                let v = self.next() >> self.below(64);
                out = self.uint(field, v);
            }
            1 => out = self.fixed64(field, self.state),
            2 => out = self.fixed32(field, self.state as u32),
            3 => {
                let n = self.below(6) as usize;
                let body: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                out = self.len(field, &body);
            }
            4 => {
                // A packed run of varints.
                let mut body = Vec::new();
                for _ in 0..self.below(4) {
                    let v = self.next() >> self.below(64);
                    self.varint(&mut body, v);
                }
                out = self.len(field, &body);
            }
            _ => {
                self.key(&mut out, field, 3);
                for _ in 0..self.below(3) {
                    let inner = self.unknown(&|_| false, depth + 1);
                    out.extend_from_slice(&inner);
                }
                self.key(&mut out, field, 4);
            }
        }
        out
    }

    /// Finishes a message: unknown fields injected, fields sometimes shuffled.
    fn message(&mut self, mut fields: Vec<Vec<u8>>, known: &dyn Fn(u32) -> bool) -> Vec<u8> {
        if self.chance() {
            for _ in 0..1 + self.below(3) {
                let field = self.unknown(known, 0);
                let at = self.below(fields.len() as u64 + 1) as usize;
                fields.insert(at, field);
            }
        }
        if self.chance() {
            for i in (1..fields.len()).rev() {
                let j = self.below(i as u64 + 1) as usize;
                fields.swap(i, j);
            }
        }
        fields.concat()
    }

    fn request(&mut self, req: &ExportTraceServiceRequest) -> Vec<u8> {
        let mut fields = Vec::new();
        for rs in &req.resource_spans {
            let body = self.resource_spans(rs);
            fields.push(self.len(1, &body));
        }
        self.message(fields, &|f| f == 1)
    }

    fn resource_spans(&mut self, rs: &ResourceSpans) -> Vec<u8> {
        let mut fields = Vec::new();
        if let Some(resource) = &rs.resource {
            // Sometimes in two pieces, which merge.
            let split = if self.chance() {
                self.below(resource.attributes.len() as u64 + 1) as usize
            } else {
                0
            };
            if split > 0 {
                let head = self.resource(&resource.attributes[..split], 0);
                fields.push(self.len(1, &head));
            }
            let tail = self.resource(
                &resource.attributes[split..],
                resource.dropped_attributes_count,
            );
            fields.push(self.len(1, &tail));
        }
        for ss in &rs.scope_spans {
            let body = self.scope_spans(ss);
            fields.push(self.len(2, &body));
        }
        let url = rs.schema_url.clone();
        self.scalar(&mut fields, url.is_empty(), |e, decoy| {
            e.len(3, if decoy { &b"decoy"[..] } else { url.as_bytes() })
        });
        self.message(fields, &|f| (1..=3).contains(&f))
    }

    fn resource(&mut self, attributes: &[KeyValue], dropped: u32) -> Vec<u8> {
        let mut fields = Vec::new();
        for kv in attributes {
            let body = self.key_value(kv);
            fields.push(self.len(1, &body));
        }
        self.scalar(&mut fields, dropped == 0, |e, decoy| {
            e.uint(2, if decoy { 9 } else { u64::from(dropped) })
        });
        self.message(fields, &|f| (1..=3).contains(&f))
    }

    fn scope_spans(&mut self, ss: &ScopeSpans) -> Vec<u8> {
        let mut fields = Vec::new();
        if let Some(scope) = &ss.scope {
            fields.push(self.len(1, &scope.encode_to_vec()));
        }
        for span in &ss.spans {
            let body = self.span(span);
            fields.push(self.len(2, &body));
        }
        if !ss.schema_url.is_empty() {
            fields.push(self.len(3, ss.schema_url.as_bytes()));
        }
        self.message(fields, &|f| (1..=3).contains(&f))
    }

    fn span(&mut self, span: &Span) -> Vec<u8> {
        let mut fields = Vec::new();
        for (field, bytes) in [
            (1, &span.trace_id),
            (2, &span.span_id),
            (4, &span.parent_span_id),
        ] {
            self.scalar(&mut fields, bytes.is_empty(), |e, decoy| {
                e.len(field, if decoy { &[1u8, 2, 3][..] } else { &bytes[..] })
            });
        }
        if !span.trace_state.is_empty() {
            fields.push(self.len(3, span.trace_state.as_bytes()));
        }
        self.scalar(&mut fields, span.flags == 0, |e, decoy| {
            e.fixed32(16, if decoy { 7 } else { span.flags })
        });
        self.scalar(&mut fields, span.name.is_empty(), |e, decoy| {
            e.len(
                5,
                if decoy {
                    "decoy".as_bytes()
                } else {
                    span.name.as_bytes()
                },
            )
        });
        // Enums are int32: negative values are sign-extended to 10 bytes.
        self.scalar(&mut fields, span.kind == 0, |e, decoy| {
            let kind = if decoy { 3 } else { span.kind };
            e.uint(6, i64::from(kind) as u64)
        });
        self.scalar(&mut fields, span.start_time_unix_nano == 0, |e, decoy| {
            e.fixed64(7, if decoy { 1 } else { span.start_time_unix_nano })
        });
        self.scalar(&mut fields, span.end_time_unix_nano == 0, |e, decoy| {
            e.fixed64(8, if decoy { 2 } else { span.end_time_unix_nano })
        });
        for kv in &span.attributes {
            let body = self.key_value(kv);
            fields.push(self.len(9, &body));
        }
        for (field, count) in [
            (10, span.dropped_attributes_count),
            (12, span.dropped_events_count),
            (14, span.dropped_links_count),
        ] {
            self.scalar(&mut fields, count == 0, |e, decoy| {
                e.uint(field, if decoy { 5 } else { u64::from(count) })
            });
        }
        for event in &span.events {
            fields.push(self.len(11, &event.encode_to_vec()));
        }
        for link in &span.links {
            fields.push(self.len(13, &link.encode_to_vec()));
        }
        if let Some(status) = &span.status {
            if self.chance() {
                // Two pieces that merge: a decoy code (or the message) first.
                let first = if self.chance() {
                    self.uint(3, 2)
                } else {
                    self.len(2, b"first")
                };
                let first = self.message(vec![first], &|f| f == 2 || f == 3);
                fields.push(self.len(15, &first));
            }
            let body = self.status(status);
            fields.push(self.len(15, &body));
        }
        self.message(fields, &|f| (1..=16).contains(&f))
    }

    fn status(&mut self, status: &Status) -> Vec<u8> {
        let mut fields = Vec::new();
        if !status.message.is_empty() {
            fields.push(self.len(2, status.message.as_bytes()));
        }
        self.scalar(&mut fields, status.code == 0, |e, decoy| {
            e.uint(3, i64::from(if decoy { 1 } else { status.code }) as u64)
        });
        self.message(fields, &|f| f == 2 || f == 3)
    }

    fn key_value(&mut self, kv: &KeyValue) -> Vec<u8> {
        let mut fields = Vec::new();
        let key = kv.key.clone();
        self.scalar(&mut fields, key.is_empty(), |e, decoy| {
            e.len(
                1,
                if decoy {
                    &b"http.status_code"[..]
                } else {
                    key.as_bytes()
                },
            )
        });
        if let Some(value) = &kv.value {
            if self.chance() {
                // A decoy value first: it merges with the real one.
                let decoy = AnyValue {
                    value: Some(Value::StringValue("418".into())),
                };
                let body = self.any_value(&decoy);
                fields.push(self.len(2, &body));
            }
            let body = self.any_value(value);
            fields.push(self.len(2, &body));
        }
        self.scalar(&mut fields, kv.key_strindex == 0, |e, decoy| {
            e.uint(3, i64::from(if decoy { 4 } else { kv.key_strindex }) as u64)
        });
        self.message(fields, &|f| (1..=3).contains(&f))
    }

    fn any_value(&mut self, v: &AnyValue) -> Vec<u8> {
        let mut fields = Vec::new();
        if self.chance() {
            // A decoy member first: the last member set wins.
            fields.push(self.uint(3, 7));
        }
        match &v.value {
            None => {}
            Some(Value::StringValue(s)) => fields.push(self.len(1, s.as_bytes())),
            Some(Value::BoolValue(b)) => {
                // Any non-zero varint is true.
                let v = if *b { 1 + self.below(3) } else { 0 };
                fields.push(self.uint(2, v));
            }
            Some(Value::IntValue(i)) => fields.push(self.uint(3, *i as u64)),
            Some(Value::DoubleValue(d)) => fields.push(self.fixed64(4, d.to_bits())),
            Some(Value::ArrayValue(a)) => fields.push(self.len(5, &a.encode_to_vec())),
            Some(Value::KvlistValue(l)) => fields.push(self.len(6, &l.encode_to_vec())),
            Some(Value::BytesValue(b)) => fields.push(self.len(7, b)),
            Some(Value::StringValueStrindex(i)) => fields.push(self.uint(8, i64::from(*i) as u64)),
        }
        // A decoy placed after the real member would win: keep the real one last unless the
        // shuffle moves it, in which case the oracle (prost) says what wins.
        self.message(fields, &|f| (1..=8).contains(&f))
    }
}

/// The scanner accepts what prost accepts, and reads the same; returns the scan result.
fn check_against_prost(buf: &[u8], spec: &ScanSpec) -> Result<Option<usize>, TestCaseError> {
    let ours = scan(buf, spec);
    match ExportTraceServiceRequest::decode(buf) {
        Ok(req) => {
            let ours =
                ours.map_err(|e| TestCaseError::fail(format!("prost accepts, scanner: {e}")))?;
            prop_assert_eq!(debug(&ours), debug(&reference(&req, spec)));
            Ok(Some(ours.len()))
        }
        Err(_) => Ok(None),
    }
}

proptest! {
    // PROPTEST_CASES raises the count for a longer search.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_prost_on_prost_encodings(req in request_strategy(), spec in spec_strategy()) {
        let buf = req.encode_to_vec();
        let got = scan(&buf, &spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(debug(&got), debug(&reference(&req, &spec)));
    }

    #[test]
    fn matches_prost_on_liberal_encodings(
        req in request_strategy(),
        spec in spec_strategy(),
        seed in any::<u64>(),
        odds in prop_oneof![Just(10u64), Just(30), Just(60)],
    ) {
        let buf = Enc::new(seed, odds).request(&req);
        let decoded = ExportTraceServiceRequest::decode(&buf[..]);
        prop_assert!(decoded.is_ok(), "the encoder wrote an invalid request: {:?}", decoded);
        check_against_prost(&buf, &spec)?;
    }

    #[test]
    fn concatenated_requests_merge(
        a in request_strategy(),
        b in request_strategy(),
        spec in spec_strategy(),
        seed in any::<u64>(),
    ) {
        let buf = [Enc::new(seed, 20).request(&a), b.encode_to_vec()].concat();
        let n = check_against_prost(&buf, &spec)?;
        prop_assert_eq!(n, Some(reference(&a, &spec).len() + reference(&b, &spec).len()));
    }

    /// Random damage: whenever prost still accepts the bytes, the scanner reads the same; it
    /// never panics either way.
    #[test]
    fn damaged_requests_never_diverge_from_prost(
        req in request_strategy(),
        spec in spec_strategy(),
        seed in any::<u64>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
    ) {
        let mut buf = Enc::new(seed, 20).request(&req);
        for (at, op, byte) in edits {
            if buf.is_empty() {
                break;
            }
            let i = at.index(buf.len());
            match op {
                0 => buf[i] = byte,
                1 => buf[i] ^= 1 << (byte % 8),
                2 => buf.insert(i, byte),
                _ => {
                    buf.remove(i);
                }
            }
        }
        check_against_prost(&buf, &spec)?;
    }
}

proptest! {
    // Quadratic in the request size: fewer cases.
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases / 5,
        ..ProptestConfig::default()
    })]

    /// Every truncation errs or yields a prefix of the full result, as prost would read it.
    #[test]
    fn truncations_err_or_yield_a_prefix(
        req in request_strategy(),
        spec in spec_strategy(),
        seed in any::<u64>(),
    ) {
        let buf = Enc::new(seed, 20).request(&req);
        let full = scan(&buf, &spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let full = debug(&full);
        for n in 0..buf.len() {
            let prefix = &buf[..n];
            if let Ok(got) = scan(prefix, &spec) {
                prop_assert_eq!(&debug(&got)[..], &full[..got.len()], "truncated at {}", n);
            }
            check_against_prost(prefix, &spec)?;
        }
    }
}
