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

// === hostile bodies against the memory limit (the real binary, its peak RSS read) ===

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// A request of `n` copies of `item` (an encoded repeated field of the scope level), wrapped
/// in one resource and one scope: field 1 of the request, field 2 of the resource level.
fn wrapped(item: &[u8], n: usize) -> Vec<u8> {
    fn len_field(field: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(field << 3 | 2);
        let mut v = body.len() as u64;
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out.extend_from_slice(body);
    }
    let scope = item.repeat(n);
    let mut resource = Vec::new();
    len_field(2, &scope, &mut resource);
    let mut req = Vec::new();
    len_field(1, &resource, &mut req);
    req
}

const MIB: u64 = 1 << 20;

/// With `memory.limit: 100MiB` (so `max_in_flight` 25 MiB), the bodies that took the old
/// receiver to 7x its limit: gzip bombs of empty log records and of spans, 40 concurrent
/// 6.5 MiB OTLP/HTTP trace requests, and 40 concurrent 3.9 MiB gRPC calls. Each gets its
/// answer (the valid log bomb 200 and forwarded, empty spans 400, spans whose records cannot
/// fit 413, concurrent requests 200 or 503 with Retry-After / OK or UNAVAILABLE, every one
/// taken forwarded, every one refused counted), and the process's peak RSS stays under the
/// limit plus its margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_bodies_keep_resident_memory_within_the_limit_and_its_margin() {
    use slipstream_e2e::process::Slipstream;

    let limit = 100 * MIB;
    let margin = limit / 4;
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slipstream.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:
  otlp:
    grpc: {{ endpoint: 127.0.0.1:0 }}
    http: {{ endpoint: 127.0.0.1:0 }}
admin: {{ endpoint: 127.0.0.1:0 }}
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
forward:
  endpoint: {sink}
  protocol: grpc
state:
  dir: null
memory:
  limit: 100MiB
",
            sink = sink.url(),
        ),
    )
    .unwrap();
    let proc = Slipstream::start(&config).await;
    let (http, grpc, admin) = (proc.ready.otlp_http(), proc.ready.otlp_grpc(), proc.admin);
    let pid = proc.pid();
    let at_start = peak_rss(pid);
    let pb = ("content-type", "application/x-protobuf");
    let gz = ("content-encoding", "gzip");

    // 16 MiB of empty log records (8M of them) in a 76 KiB gzip body: valid, so taken and
    // forwarded, counted by the wire walk without a LogRecord built.
    let logs = wrapped(&[0x12, 0x00], 8 << 20);
    let logs_gz = gzip(&logs);
    assert!(logs_gz.len() < 128 << 10, "{} bytes", logs_gz.len());
    let r = raw::post_http(http, "/v1/logs", &[pb, gz], logs_gz).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    sink.wait_for(
        std::time::Duration::from_secs(30),
        "the log bomb forwarded",
        |got| got.iter().any(|g| g.body.len() == logs.len()),
    )
    .await;
    let after_logs = peak_rss(pid);

    // 16 MiB of empty spans: refused at the first one (no trace id).
    let spans_gz = gzip(&wrapped(&[0x12, 0x00], 8 << 20));
    let r = raw::post_http(http, "/v1/traces", &[pb, gz], spans_gz).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // 16 MiB of minimal valid spans (ids only, 28 bytes each: 600k spans): their records
    // alone would take more than the in-flight budget, so 413 before they are built.
    let mut span = vec![0x0a, 16];
    span.extend_from_slice(&[7; 16]);
    span.extend_from_slice(&[0x12, 8]);
    span.extend_from_slice(&[9; 8]);
    let mut item = vec![0x12, span.len() as u8];
    item.extend_from_slice(&span);
    let minimal = gzip(&wrapped(&item, (16 << 20) / item.len()));
    let r = raw::post_http(http, "/v1/traces", &[pb, gz], minimal).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    let after_spans = peak_rss(pid);

    // 40 concurrent trace requests of 6.5 MiB each (about 33k spans).
    let long_name = "GET /".to_owned() + &"x".repeat(160);
    let body = otlp::trace_request("hostile", 33_000, |_| long_name.clone());
    assert!(body.len() > 6 << 20, "{} bytes", body.len());
    let sends = (0..40).map(|_| {
        let body = body.clone();
        tokio::spawn(async move { raw::try_post_http(http, "/v1/traces", &[pb], body).await })
    });
    let (mut accepted, mut refused, mut cut) = (0, 0, 0);
    for s in sends.collect::<Vec<_>>() {
        match s.await.unwrap() {
            Ok(r) if r.status == 200 => accepted += 1,
            Ok(r) if r.status == 503 => {
                assert!(r.header("retry-after").is_some(), "503 without Retry-After");
                refused += 1;
            }
            Ok(r) => panic!("answered {}: {:?}", r.status, r.body),
            // A refusal answered before the body was read closes the connection, and the
            // client, still sending, may see the reset first: it retries, as for a 503.
            Err(_) => cut += 1,
        }
    }
    assert!(accepted >= 1, "none of the 40 was accepted");
    let after_burst = peak_rss(pid);
    // Every request answered 200 is forwarded.
    sink.wait_for(
        std::time::Duration::from_secs(60),
        "every accepted trace request forwarded",
        |got| got.iter().filter(|g| g.body.len() == body.len()).count() >= accepted,
    )
    .await;

    // The same over gRPC: 40 concurrent calls of 3.9 MiB (under the 4 MiB message limit),
    // each on its own HTTP/2 connection.
    let call = otlp::trace_request("hostile-grpc", 18_000, |_| long_name.clone());
    assert!(call.len() < 4 << 20, "{} bytes", call.len());
    let calls = (0..40).map(|_| {
        let framed = raw::grpc_frame(&call);
        tokio::spawn(async move { raw::post_grpc(grpc, raw::TRACES, &[], framed).await })
    });
    let (mut grpc_ok, mut grpc_unavailable) = (0, 0);
    for c in calls.collect::<Vec<_>>() {
        let r = c.await.unwrap();
        match r.grpc_status() {
            Some(0) => grpc_ok += 1,
            Some(14) => grpc_unavailable += 1,
            other => panic!("grpc-status {other:?}: {:?}", r.headers),
        }
    }
    assert!(grpc_ok >= 1, "none of the 40 calls was accepted");
    assert_eq!(grpc_ok + grpc_unavailable, 40);
    let after_grpc = peak_rss(pid);
    sink.wait_for(
        std::time::Duration::from_secs(60),
        "every accepted call forwarded",
        |got| got.iter().filter(|g| g.body.len() == call.len()).count() >= grpc_ok,
    )
    .await;
    let metric = "slipstream_receiver_refused_requests_total";
    let memory = "reason=\"memory_limit\"";
    let http_refused = self_metric(admin, metric, &["transport=\"http\"", memory]).await;
    let grpc_refused = self_metric(admin, metric, &["transport=\"grpc\"", memory]).await;
    // Every request not taken was refused for memory, whether its client saw the 503 or not.
    assert_eq!(http_refused, (refused + cut) as f64);
    assert_eq!(grpc_refused, grpc_unavailable as f64);
    assert_eq!(accepted + refused + cut, 40);
    eprintln!(
        "peak RSS: start {} MiB, after the log bomb {} MiB, after the span bombs {} MiB, after 40 concurrent 6.5 MiB requests ({accepted} accepted, {refused} answered 503, {cut} cut) {} MiB, after 40 concurrent 3.9 MiB gRPC calls ({grpc_ok} OK, {grpc_unavailable} UNAVAILABLE) {} MiB; limit {} MiB + margin {} MiB",
        at_start / MIB,
        after_logs / MIB,
        after_spans / MIB,
        after_burst / MIB,
        after_grpc / MIB,
        limit / MIB,
        margin / MIB,
    );
    // What the stated margin leaves out: buffers of the transport before a body is read,
    // here up to hyper's 400 KiB read buffer on each of 40 HTTP/1.1 connections.
    let transport = 40 * 400 * 1024;
    assert!(
        after_grpc <= limit + margin + transport,
        "peak RSS {} MiB over the limit {} MiB + margin {} MiB + transport buffers {} MiB",
        after_grpc / MIB,
        limit / MIB,
        margin / MIB,
        transport / MIB
    );
    drop(proc);
}

/// A span with a 15-byte trace id is refused with 400 up front, counted as `invalid_id`, and
/// nothing of its request is forwarded (before, it was answered 200 and lost downstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_15_byte_trace_id_gets_400_and_nothing_is_forwarded() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let sink = Sink::start().await;
    let app = start(config(&sink)).await;
    let http = app.http_addr.unwrap();
    let grpc = app.grpc_addr.unwrap();
    let mut req = ExportTraceServiceRequest::decode(&valid_request("short-id")[..]).unwrap();
    req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 15];
    let bad = req.encode_to_vec();
    let r = raw::post_traces(http, bad.clone()).await;
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).contains("trace_id of 15 bytes"),
        "{:?}",
        r.body
    );
    let r = raw::post_grpc(grpc, raw::TRACES, &[], raw::grpc_frame(&bad)).await;
    assert_eq!(r.grpc_status(), Some(3), "INVALID_ARGUMENT");
    // The same in JSON: a trace id of 30 hex digits.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f","spanId":"0102030405060708","name":"x","kind":2}]}]}]}"#;
    let r = raw::post_http(
        http,
        "/v1/traces",
        &[("content-type", "application/json")],
        json.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_receiver_refused_requests_total",
            &["reason=\"invalid_id\""],
        )
        .await,
        3.0
    );
    // A valid request after them is forwarded, and it is the only one.
    let r = raw::post_traces(http, valid_request("after")).await;
    assert_eq!(r.status, 200);
    let got = sink
        .wait_for(
            std::time::Duration::from_secs(10),
            "the valid request forwarded",
            |got| !got.is_empty(),
        )
        .await;
    // Forwarding keeps the order of acceptance: had a refused request been queued, it would
    // have arrived before this one.
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(spans_in(&got).len(), 1, "{got:?}");
}
