//! Bad and hostile requests get the status the OTLP spec gives them, are counted with a
//! reason, and leave the receivers working: a valid request right after each succeeds.

use slipstream_e2e::{Sink, gzip, otlp, raw, self_metric, spans_in, start, test_config};

/// (what, method, path, headers, body, HTTP status, refusal reason counted)
type HttpCase<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    Option<&'a str>,
);

/// (what, path, headers, framed body, grpc-status)
type GrpcCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, i32);

fn valid_request(service: &str) -> Vec<u8> {
    otlp::trace_request(service, 1, |_| "GET /".to_owned())
}

/// A request whose service.name holds invalid UTF-8.
fn invalid_utf8_request() -> Vec<u8> {
    let mut b = valid_request("AAAA");
    let at = b.windows(4).position(|w| w == b"AAAA").unwrap();
    b[at] = 0xff;
    b
}

fn config(sink: &Sink) -> slipstream_config::Config {
    test_config(Some(("grpc", &sink.url())), "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_their_status_and_a_valid_one_still_succeeds() {
    let sink = Sink::start().await;
    let mut cfg = config(&sink);
    cfg.receivers
        .otlp
        .http
        .as_mut()
        .unwrap()
        .max_request_body_size = slipstream_config::ByteSize::kib(64);
    cfg.receivers.otlp.max_decompressed_size = slipstream_config::ByteSize::mib(1);
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();
    let pb = ("content-type", "application/x-protobuf");
    let json = ("content-type", "application/json");
    let bomb = gzip(&vec![0u8; 16 << 20]);
    let deep_json = format!(
        "{{\"resourceSpans\":{}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    // (what, method, path, headers, body, status, reason counted)
    let cases: Vec<HttpCase<'_>> = vec![
        (
            "wrong method",
            "GET",
            "/v1/traces",
            vec![],
            vec![],
            405,
            Some("method_not_allowed"),
        ),
        (
            "wrong content type",
            "POST",
            "/v1/traces",
            vec![("content-type", "text/plain")],
            b"hi".to_vec(),
            415,
            Some("unsupported_media_type"),
        ),
        (
            "unknown encoding",
            "POST",
            "/v1/traces",
            vec![pb, ("content-encoding", "br")],
            valid_request("x"),
            415,
            Some("unsupported_encoding"),
        ),
        (
            "unknown path",
            "POST",
            "/v1/spans",
            vec![pb],
            valid_request("x"),
            404,
            None,
        ),
        (
            "truncated varint",
            "POST",
            "/v1/traces",
            vec![pb],
            vec![0x0a, 0xff],
            400,
            Some("invalid"),
        ),
        (
            "wrong wire type",
            "POST",
            "/v1/traces",
            vec![pb],
            vec![0x0d, 1, 2, 3, 4],
            400,
            Some("invalid"),
        ),
        (
            "length past the end",
            "POST",
            "/v1/traces",
            vec![pb],
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1],
            400,
            Some("invalid"),
        ),
        (
            "nested garbage",
            "POST",
            "/v1/traces",
            vec![pb],
            vec![0x0a, 4, 0x12, 2, 0x12, 9],
            400,
            Some("invalid"),
        ),
        (
            "invalid utf-8 in service.name",
            "POST",
            "/v1/traces",
            vec![pb],
            invalid_utf8_request(),
            400,
            Some("invalid"),
        ),
        (
            "metrics garbage",
            "POST",
            "/v1/metrics",
            vec![pb],
            vec![0x0a, 0x05, 1],
            400,
            Some("invalid"),
        ),
        (
            "logs garbage",
            "POST",
            "/v1/logs",
            vec![pb],
            vec![0xff],
            400,
            Some("invalid"),
        ),
        (
            "malformed json",
            "POST",
            "/v1/traces",
            vec![json],
            b"{\"resourceSpans\": [".to_vec(),
            400,
            Some("invalid"),
        ),
        (
            "deep json",
            "POST",
            "/v1/traces",
            vec![json],
            deep_json.into_bytes(),
            400,
            Some("invalid"),
        ),
        (
            "not gzip",
            "POST",
            "/v1/traces",
            vec![pb, ("content-encoding", "gzip")],
            b"plain".to_vec(),
            400,
            Some("invalid"),
        ),
        (
            "body over the limit",
            "POST",
            "/v1/traces",
            vec![pb],
            vec![0u8; 65 << 10],
            413,
            Some("too_large"),
        ),
        (
            "gzip bomb",
            "POST",
            "/v1/traces",
            vec![pb, ("content-encoding", "gzip")],
            bomb,
            413,
            Some("too_large"),
        ),
    ];
    let mut accepted = 0;
    for (what, method, path, headers, body, want, reason) in cases {
        let before = match reason {
            Some(r) => {
                self_metric(
                    app.admin_addr.unwrap(),
                    "slipstream_receiver_refused_requests_total",
                    &[&format!("reason=\"{r}\"")],
                )
                .await
            }
            None => 0.0,
        };
        let r = raw::request_http(http, method, path, &headers, body).await;
        assert_eq!(
            r.status,
            want,
            "{what}: body {:?}",
            String::from_utf8_lossy(&r.body)
        );
        if let Some(reason) = reason {
            let after = self_metric(
                app.admin_addr.unwrap(),
                "slipstream_receiver_refused_requests_total",
                &[&format!("reason=\"{reason}\"")],
            )
            .await;
            assert_eq!(after, before + 1.0, "{what}: counted as {reason}");
        }
        if want == 400 && headers.contains(&json) {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON Status body");
            assert_eq!(v["code"], 3, "{what}");
        }
        let ok = raw::post_http(http, "/v1/traces", &[pb], valid_request(what)).await;
        assert_eq!(ok.status, 200, "a valid request after {what}");
        accepted += 1;
    }
    // Counted in spans: the forward exporter's readiness probe (an empty export) may be
    // among the requests.
    let got = sink
        .wait_for(std::time::Duration::from_secs(10), "valid requests", |r| {
            spans_in(r).len() >= accepted
        })
        .await;
    assert_eq!(
        spans_in(&got).len(),
        accepted,
        "only the valid requests were forwarded"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_get_their_status_and_a_valid_one_still_succeeds() {
    let sink = Sink::start().await;
    let mut cfg = config(&sink);
    cfg.receivers.otlp.grpc.as_mut().unwrap().max_recv_msg_size =
        slipstream_config::ByteSize::kib(64);
    cfg.receivers.otlp.max_decompressed_size = slipstream_config::ByteSize::mib(1);
    let app = start(cfg).await;
    let grpc = app.grpc_addr.unwrap();
    let bomb = gzip(&vec![0u8; 16 << 20]);
    let mut mismatched = raw::grpc_frame(&valid_request("x"));
    mismatched.truncate(mismatched.len() - 3);
    // (what, path, headers, framed body, grpc-status)
    let cases: Vec<GrpcCase<'_>> = vec![
        (
            "garbage message",
            raw::TRACES,
            vec![],
            raw::grpc_frame(&[0x0a, 0xff]),
            3,
        ),
        (
            "frame shorter than its header says",
            raw::TRACES,
            vec![],
            mismatched,
            3,
        ),
        ("no frame header", raw::TRACES, vec![], vec![0, 0], 3),
        (
            "message over the limit",
            raw::TRACES,
            vec![],
            raw::grpc_frame(&vec![0u8; 65 << 10]),
            8,
        ),
        (
            "gzip bomb",
            raw::TRACES,
            vec![("grpc-encoding", "gzip")],
            raw::frame_with_flag(1, &bomb),
            8,
        ),
        (
            "unknown grpc-encoding",
            raw::TRACES,
            vec![("grpc-encoding", "snappy")],
            raw::frame_with_flag(1, b"x"),
            12,
        ),
        (
            "unknown method",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
            vec![],
            raw::grpc_frame(b""),
            12,
        ),
        (
            "invalid utf-8",
            raw::TRACES,
            vec![],
            raw::grpc_frame(&invalid_utf8_request()),
            3,
        ),
    ];
    let mut accepted = 0;
    for (what, path, headers, body, want) in cases {
        let r = raw::post_grpc(grpc, path, &headers, body).await;
        assert_eq!(r.status, 200, "{what}: gRPC errors travel as grpc-status");
        assert_eq!(
            r.grpc_status(),
            Some(want),
            "{what}: {:?}",
            r.header("grpc-message")
        );
        let ok = raw::post_grpc(
            grpc,
            raw::TRACES,
            &[],
            raw::grpc_frame(&valid_request(what)),
        )
        .await;
        assert_eq!(ok.grpc_status(), Some(0), "a valid request after {what}");
        accepted += 1;
    }
    // gzip-compressed valid message.
    let ok = raw::post_grpc(
        grpc,
        raw::TRACES,
        &[("grpc-encoding", "gzip")],
        raw::frame_with_flag(1, &gzip(&valid_request("gz"))),
    )
    .await;
    assert_eq!(ok.grpc_status(), Some(0));
    accepted += 1;
    // Counted in spans: the forward exporter's readiness probe (an empty export) may be
    // among the requests.
    let got = sink
        .wait_for(std::time::Duration::from_secs(10), "valid requests", |r| {
            spans_in(r).len() >= accepted
        })
        .await;
    assert_eq!(spans_in(&got).len(), accepted);
    assert_eq!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_receiver_refused_requests_total",
            &["transport=\"grpc\""]
        )
        .await,
        7.0,
        "every refusal but the unknown method is counted"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_attribute_limits_are_refused_and_counted() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let sink = Sink::start().await;
    let mut cfg = config(&sink);
    cfg.receivers.otlp.max_attributes_per_span = 4;
    cfg.receivers.otlp.max_attribute_size = slipstream_config::ByteSize(128);
    let app = start(cfg).await;
    let (http, grpc, admin) = (
        app.http_addr.unwrap(),
        app.grpc_addr.unwrap(),
        app.admin_addr.unwrap(),
    );
    let with_attrs = |attrs: Vec<(&str, String)>| {
        let mut req = ExportTraceServiceRequest::decode(&valid_request("cart")[..]).unwrap();
        let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
        span.attributes = attrs.iter().map(|(k, v)| otlp::kv(k, v)).collect();
        req.encode_to_vec()
    };
    let pb = [("content-type", "application/x-protobuf")];
    let large = with_attrs(vec![("db.statement", "x".repeat(500))]);
    let r = raw::post_http(http, "/v1/traces", &pb, large).await;
    assert_eq!(r.status, 400);
    let many = with_attrs((0..5).map(|i| ("k", i.to_string())).collect());
    let g = raw::post_grpc(
        grpc,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        &[],
        raw::grpc_frame(&many),
    )
    .await;
    assert_eq!(g.grpc_status(), Some(3), "INVALID_ARGUMENT");
    assert_eq!(
        self_metric(
            admin,
            "slipstream_receiver_refused_requests_total",
            &["reason=\"attribute_limit\""]
        )
        .await,
        2.0
    );
    // Within the limits: accepted and forwarded; the refused ones never were.
    let fine = with_attrs(vec![("http.route", "/cart".into()), ("k", "v".into())]);
    let r = raw::post_http(http, "/v1/traces", &pb, fine).await;
    assert_eq!(r.status, 200);
    let got = sink
        .wait_for(std::time::Duration::from_secs(10), "one span", |r| {
            !spans_in(r).is_empty()
        })
        .await;
    assert_eq!(spans_in(&got).len(), 1);
    app.shutdown().await;
}
