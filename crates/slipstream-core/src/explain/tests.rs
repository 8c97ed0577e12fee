use super::*;

/// A length-delimited field.
fn field(n: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    [&[n << 3 | 2, body.len() as u8][..], body].concat()
}

/// A `KeyValue` of a string value.
fn kv(key: &str, value: &str) -> Vec<u8> {
    [
        field(1, key.as_bytes()),
        field(2, &field(1, value.as_bytes())),
    ]
    .concat()
}

/// A request of one span with `span_attrs` whose resource is in `pieces` (each the
/// attributes of one `Resource` field), with a scope between the pieces: the record as the
/// scanner leaves it.
fn record(span_attrs: &[(&str, &str)], pieces: &[&[(&str, &str)]]) -> SpanRecord<'static> {
    let span: Vec<u8> = [field(5, b"GET")]
        .into_iter()
        .chain(span_attrs.iter().map(|(k, v)| field(9, &kv(k, v))))
        .collect::<Vec<_>>()
        .concat();
    let mut request = field(2, &field(2, &span));
    let span_at = [4, 4 + span.len() as u32];
    let start = request.len() as u32;
    for (i, attrs) in pieces.iter().enumerate() {
        if i > 0 {
            request.extend(field(3, b"https://schema"));
        }
        let resource: Vec<u8> = attrs
            .iter()
            .flat_map(|(k, v)| field(1, &kv(k, v)))
            .collect();
        request.extend(field(1, &resource));
    }
    SpanRecord {
        span_at,
        resource_at: [start, request.len() as u32],
        request: Box::leak(request.into_boxed_slice()),
        ..SpanRecord::default()
    }
}

/// The value text of an encoded `AnyValue` string.
fn text(raw: &[u8]) -> &str {
    std::str::from_utf8(&raw[2..]).unwrap()
}

#[test]
fn values_come_from_the_span_then_the_resource_pieces_first_occurrence_first() {
    let keys = CandidateKeys::new(&["http.route", "k8s.pod.name", "cloud.region", "absent"]);
    let rec = record(
        &[
            ("http.route", "/pay"),
            ("http.route", "/later"),
            ("k8s.pod.name", "span-pod"),
        ],
        &[
            &[("service.name", "a"), ("k8s.pod.name", "res-pod")],
            &[("cloud.region", "eu-1"), ("cloud.region", "us-1")],
        ],
    );
    assert_eq!(&rec.request[rec.span_at[0] as usize..][..2], &[0x2a, 3]);
    let mut out = [&[][..]; MAX_CANDIDATES];
    let found = keys.values(&rec, &mut out);
    assert_eq!(found, 0b0111);
    assert_eq!(text(out[0]), "/pay");
    assert_eq!(text(out[1]), "span-pod");
    assert_eq!(text(out[2]), "eu-1");
    assert!(out[3..].iter().all(|v| v.is_empty()));
}

#[test]
fn the_resource_cache_serves_the_spans_of_one_request_and_is_cleared_for_the_next() {
    let keys = CandidateKeys::new(&["http.route", "k8s.pod.name"]);
    let mut cache = ResourceValues::default();
    let mut out = [&[][..]; MAX_CANDIDATES];
    let first = record(&[("http.route", "/a")], &[&[("k8s.pod.name", "pod-1")]]);
    keys.values_cached(&first, &mut out, &mut cache);
    assert_eq!(text(out[1]), "pod-1");
    // Another span of the same resource: its own route, the cached pod.
    let again = SpanRecord {
        span_at: first.span_at,
        ..first
    };
    assert_eq!(keys.values_cached(&again, &mut out, &mut cache), 0b11);
    assert_eq!(text(out[1]), "pod-1");
    // A request of the same layout with another pod: read anew once the cache is cleared.
    let second = record(&[("http.route", "/a")], &[&[("k8s.pod.name", "pod-2")]]);
    assert_eq!(second.resource_at, first.resource_at);
    cache.clear();
    keys.values_cached(&second, &mut out, &mut cache);
    assert_eq!(text(out[1]), "pod-2");
}

#[test]
fn a_record_without_a_request_has_no_values() {
    let keys = CandidateKeys::new(&["http.route"]);
    let mut out = [&b"x"[..]; MAX_CANDIDATES];
    assert_eq!(keys.values(&SpanRecord::default(), &mut out), 0);
    assert!(out.iter().all(|v| v.is_empty()));
    assert_eq!(
        CandidateKeys::new::<&str>(&[]).values(&SpanRecord::default(), &mut out),
        0
    );
}

#[test]
fn keys_of_one_length_are_told_apart_and_repeated_keys_fill_both() {
    let keys = CandidateKeys::new(&["http.route", "url.scheme", "http.route"]);
    let rec = record(&[("url.scheme", "https"), ("http.route", "/x")], &[]);
    let mut out = [&[][..]; MAX_CANDIDATES];
    assert_eq!(keys.values(&rec, &mut out), 0b111);
    assert_eq!(text(out[0]), "/x");
    assert_eq!(text(out[1]), "https");
    assert_eq!(text(out[2]), "/x");
}

#[test]
fn a_share_shows_its_example_linked_through_the_trace_url() {
    let mut share = ValueShare {
        attribute: "http.route".into(),
        value: "/pay".into(),
        bad_share: 0.92,
        all_share: 0.07,
        example: None,
    };
    assert_eq!(share.to_string(), "http.route=/pay: 92% of bad, 7% of all");
    share.link("https://tempo.example/trace/{trace_id}");
    assert_eq!(share.example, None);
    share.example = ValueExample::new(&[0xab; 16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let trace = "ab".repeat(16);
    assert_eq!(
        share.to_string(),
        format!("http.route=/pay: 92% of bad, 7% of all (example: {trace})")
    );
    share.link("https://tempo.example/trace/{trace_id}?span={span_id}");
    assert_eq!(
        share.to_string(),
        format!(
            "http.route=/pay: 92% of bad, 7% of all (example: \
             https://tempo.example/trace/{trace}?span=0102030405060708)"
        )
    );
    let json = serde_json::to_value(&share).unwrap();
    assert_eq!(json["example"]["span_id"], "0102030405060708");
    // Without one, the JSON is as before.
    share.example = None;
    assert!(
        serde_json::to_value(&share)
            .unwrap()
            .get("example")
            .is_none()
    );
    assert_eq!(ValueExample::new(&[0; 16], &[1; 8]), None);
    assert_eq!(ValueExample::new(&[1; 15], &[1; 8]), None);
}
