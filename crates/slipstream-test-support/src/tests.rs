use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn eventually_returns_the_first_value_that_holds() {
    let calls = Cell::new(0);
    let got = eventually("the third call", Duration::from_secs(5), || {
        calls.set(calls.get() + 1);
        (calls.get() >= 3).then_some(calls.get())
    });
    assert_eq!(got, 3);
}

#[test]
fn eventually_names_what_it_waited_for_and_what_it_saw_last() {
    let start = Instant::now();
    let calls = Cell::new(0);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("a counter at 10", Duration::from_millis(100), || {
            calls.set(calls.get() + 1);
            Err::<(), _>(format!("{} of 10", calls.get()))
        })
    }))
    .expect_err("it times out");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains("waiting for a counter at 10"), "{message}");
    assert!(
        message.contains(&format!("last seen: {} of 10", calls.get())),
        "{message}"
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn eventually_async_lets_other_tasks_run_while_it_waits() {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
    });
    eventually_async("the flag", Duration::from_secs(5), || {
        let v = *rx.borrow();
        async move { v }
    })
    .await;
}

#[test]
fn a_ready_file_gives_the_addresses_of_the_enabled_listeners() {
    let ready =
        process::Ready::parse(r#"{"otlp_http": "127.0.0.1:4318", "admin": "127.0.0.1:39001"}"#)
            .unwrap();
    assert_eq!(ready.otlp_http(), "127.0.0.1:4318".parse().unwrap());
    assert_eq!(ready.admin(), "127.0.0.1:39001".parse().unwrap());
    assert_eq!(ready.otlp_grpc, None);
    assert_eq!(ready.prometheus, None);
    assert!(process::Ready::parse(r#"{"admin": "nowhere"}"#).is_err());
    assert!(process::Ready::parse("[]").is_err());
}

#[test]
fn listening_sockets_are_read_from_the_proc_table() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F92 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0
";
    let inodes: HashSet<u64> = [4242, 4243].into();
    let addr = if cfg!(target_endian = "little") {
        "127.0.0.1:8080"
    } else {
        "1.0.0.127:8080"
    };
    assert_eq!(
        listening::listening_in(table, &inodes),
        vec![addr.parse().unwrap()]
    );
}

#[test]
fn a_listener_of_this_process_is_found() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(listening::listening(std::process::id()).contains(&addr));
}

#[test]
fn metrics_text_sums_the_matching_series() {
    let text =
        "# HELP x_total x\nx_total{reason=\"a\"} 2\nx_total{reason=\"b\"} 3\nx_total_other 7\n";
    assert_eq!(http::metric_in(text, "x_total", &[]), 5.0);
    assert_eq!(http::metric_in(text, "x_total", &["reason=\"b\""]), 3.0);
    assert_eq!(http::metric_in(text, "missing", &[]), 0.0);
}

#[test]
fn gzip_round_trips() {
    assert_eq!(&gunzip(&gzip(b"spans")[..])[..], b"spans");
}

#[test]
fn gzip_packs_a_long_run_tightly() {
    // The end-to-end tests' log bomb: 16 MiB of empty records in under 128 KiB (73 KiB at the
    // default level; the fastest level makes 159 KiB).
    let bomb = [0x12u8, 0x00].repeat(8 << 20);
    let packed = gzip(&bomb);
    assert!(packed.len() < 128 << 10, "{} bytes", packed.len());
    assert_eq!(gunzip(&packed).len(), bomb.len());
}

#[test]
fn traces_have_valid_ids_and_no_resource() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let req = ExportTraceServiceRequest::decode(otlp::traces(3)).unwrap();
    assert_eq!(req.resource_spans.len(), 1);
    assert_eq!(req.resource_spans[0].resource, None);
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    let ids: Vec<_> = spans.iter().map(|s| s.span_id.clone()).collect();
    assert_eq!(ids, [vec![1; 8], vec![2; 8], vec![3; 8]]);
    assert!(spans.iter().all(|s| s.trace_id == [1; 16] && s.kind == 2));
}

#[test]
fn attributes_of_each_kind_encode_as_the_messages_would() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let int = otlp::kv_int("server.port", 443);
    assert_eq!(int.key, "server.port");
    assert_eq!(int.value.unwrap().value, Some(Value::IntValue(443)));
    let s = otlp::kv("http.route", "/cart");
    assert_eq!(
        s.value.unwrap().value,
        Some(Value::StringValue("/cart".into()))
    );
}

#[test]
fn a_nested_value_has_the_depth_asked_for() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let mut v = otlp::nested_value(4);
    let mut depth = 1;
    while let Some(Value::ArrayValue(a)) = v.value {
        v = a.values.into_iter().next().unwrap();
        depth += 1;
    }
    assert_eq!(depth, 4);
    assert_eq!(v.value, Some(Value::StringValue("leaf".into())));
}

#[tokio::test]
async fn the_recorder_answers_as_told_and_keeps_every_request() {
    let (addr, log) = recorder::serve(|n, _| recorder::respond(200 + n as u16, &[], "ok")).await;
    assert_eq!(http_get(addr, "/a").await, (200, "ok".to_owned()));
    assert_eq!(http_get(addr, "/b?x=1").await.0, 201);
    let served = recorder::wait_for_requests(&log, 2).await;
    let paths: Vec<String> = served.iter().map(|s| s.uri.to_string()).collect();
    assert_eq!(paths, ["/a", "/b?x=1"]);
}

#[tokio::test]
async fn a_relay_refuses_until_it_knows_its_server_then_pipes() {
    let relay = relay::Relay::start().await;
    assert!(!answers(relay.addr, "/").await);
    let (server, _log) = recorder::serve(|_, _| recorder::respond(200, &[], "")).await;
    relay.forward_to(server);
    assert!(answers(relay.addr, "/").await);
}
