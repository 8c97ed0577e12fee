use super::*;

fn span(kind: SpanKind) -> SpanRecord<'static> {
    SpanRecord {
        kind,
        ..Default::default()
    }
}

#[test]
fn status_error_is_bad_on_any_kind() {
    let rules = OutcomeRules::default();
    for kind in [
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Consumer,
        SpanKind::Internal,
    ] {
        let s = SpanRecord {
            status: StatusCode::Error,
            ..span(kind)
        };
        assert_eq!(rules.classify(&s), Outcome::Bad, "{kind:?}");
    }
    assert_eq!(rules.classify(&span(SpanKind::Server)), Outcome::Good);
}

#[test]
fn http_5xx_is_bad_on_server_spans_only() {
    let rules = OutcomeRules::default();
    for (code, want) in [
        (200, Outcome::Good),
        (404, Outcome::Good),
        (499, Outcome::Good),
        (500, Outcome::Bad),
        (503, Outcome::Bad),
        (599, Outcome::Bad),
        (600, Outcome::Good),
    ] {
        let s = SpanRecord {
            http_status_code: Some(code),
            ..span(SpanKind::Server)
        };
        assert_eq!(rules.classify(&s), want, "server {code}");
    }
    let client = SpanRecord {
        http_status_code: Some(503),
        ..span(SpanKind::Client)
    };
    assert_eq!(rules.classify(&client), Outcome::Good);
    let rules = OutcomeRules {
        http_rule_on_client_spans: true,
        ..rules
    };
    assert_eq!(rules.classify(&client), Outcome::Bad);
}

#[test]
fn grpc_server_failures_are_bad() {
    let rules = OutcomeRules::default();
    let bad = [2, 4, 12, 13, 14, 15];
    for code in 0..=16 {
        let s = SpanRecord {
            rpc_grpc_status_code: Some(code),
            ..span(SpanKind::Server)
        };
        let want = if bad.contains(&code) {
            Outcome::Bad
        } else {
            Outcome::Good
        };
        assert_eq!(rules.classify(&s), want, "grpc {code}");
    }
    let s = SpanRecord {
        rpc_grpc_status_code: Some(99),
        ..span(SpanKind::Server)
    };
    assert_eq!(rules.classify(&s), Outcome::Good);
}

#[test]
fn manual_clock_is_shared_between_clones() {
    let c = ManualClock::new(10);
    let d = c.clone();
    c.advance(5);
    assert_eq!(d.now_unix_nanos(), 15);
    d.set(3);
    assert_eq!(c.now_unix_nanos(), 3);
}

#[test]
fn attr_value_as_i64_accepts_strings() {
    assert_eq!(AttrValue::Str(" 503").as_i64(), Some(503));
    assert_eq!(AttrValue::Int(200).as_i64(), Some(200));
    assert_eq!(AttrValue::Double(404.0).as_i64(), Some(404));
    assert_eq!(AttrValue::Bool(true).as_i64(), None);
    assert_eq!(AttrValue::Absent.as_i64(), None);
}

#[test]
fn registry_renders_prometheus_text_in_registration_order() {
    let r = Registry::new();
    let refused = r.counter(
        &telemetry::names::REFUSED_REQUESTS,
        &["traces", "grpc", "queue_full"],
    );
    refused.add(3);
    r.gauge(&telemetry::names::QUEUE_BYTES, &[]).set(42);
    // The same label values give the same counter.
    r.counter(
        &telemetry::names::REFUSED_REQUESTS,
        &["traces", "grpc", "queue_full"],
    )
    .inc();
    r.counter(
        &telemetry::names::REFUSED_REQUESTS,
        &["logs", "http", "say \"hi\""],
    )
    .inc();
    let text = r.render_prometheus();
    let want = "# HELP slipstream_receiver_refused_requests_total Export requests refused by the receivers, by reason; the client keeps and may retry them.\n\
# TYPE slipstream_receiver_refused_requests_total counter\n\
slipstream_receiver_refused_requests_total{signal=\"traces\",transport=\"grpc\",reason=\"queue_full\"} 4\n\
slipstream_receiver_refused_requests_total{signal=\"logs\",transport=\"http\",reason=\"say \\\"hi\\\"\"} 1\n\
# HELP slipstream_forward_queue_bytes Bytes of requests waiting in the forward queue.\n\
# TYPE slipstream_forward_queue_bytes gauge\n\
slipstream_forward_queue_bytes 42\n";
    assert_eq!(text, want);
    assert_eq!(
        r.value(
            "slipstream_receiver_refused_requests_total",
            &["traces", "grpc", "queue_full"]
        ),
        Some(4)
    );
}

static TEST_SECONDS: telemetry::MetricDesc = telemetry::MetricDesc {
    name: "slipstream_test_step_seconds_total",
    kind: telemetry::MetricKind::Counter,
    help: "Time spent in test steps.",
    labels: &[],
};

#[test]
fn a_counter_of_seconds_renders_seconds() {
    let r = Registry::new();
    let c = r.seconds_counter(&TEST_SECONDS, &[]);
    c.add(std::time::Duration::from_millis(1500));
    r.seconds_counter(&TEST_SECONDS, &[])
        .add(std::time::Duration::from_micros(250));
    assert_eq!(c.get(), std::time::Duration::from_micros(1_500_250));
    assert_eq!(
        r.render_prometheus(),
        "# HELP slipstream_test_step_seconds_total Time spent in test steps.\n\
# TYPE slipstream_test_step_seconds_total counter\n\
slipstream_test_step_seconds_total 1.50025\n"
    );
    assert_eq!(
        r.value("slipstream_test_step_seconds_total", &[]),
        Some(1_500_250_000)
    );
}

#[test]
#[should_panic(expected = "is not a counter of seconds")]
fn a_counter_of_seconds_must_be_named_so() {
    Registry::new().seconds_counter(&telemetry::names::REFUSED_REQUESTS, &["a", "b", "c"]);
}

#[test]
fn retry_info_round_trips_through_status_details() {
    use prost::Message;
    let s = rpc::RpcStatus::new(rpc::GrpcCode::Unavailable, "full")
        .with_retry_delay(std::time::Duration::from_millis(1500));
    let back = rpc::RpcStatus::decode(&s.encode_to_vec()[..]).unwrap();
    assert_eq!(back.code, 14);
    assert_eq!(
        back.retry_delay(),
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(
        rpc::RpcStatus::new(rpc::GrpcCode::Unavailable, "x").retry_delay(),
        None
    );
    assert!(rpc::grpc_code_is_retryable(14, false));
    assert!(!rpc::grpc_code_is_retryable(8, false));
    assert!(rpc::grpc_code_is_retryable(8, true));
    assert!(!rpc::grpc_code_is_retryable(3, true));
}

#[test]
fn base64_round_trips_with_and_without_padding() {
    for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0, 255, 128, 7, 9]] {
        let e = rpc::base64_encode(data);
        assert!(!e.contains('='));
        assert_eq!(rpc::base64_decode(&e).unwrap(), data);
    }
    assert_eq!(rpc::base64_encode(b"hello"), "aGVsbG8");
    assert_eq!(rpc::base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(rpc::base64_decode("a*b"), None);
}

#[test]
fn windows_format_like_prometheus_durations() {
    use crate::export::format_duration;
    use std::time::Duration;
    assert_eq!(format_duration(Duration::from_secs(300)), "5m");
    assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
    assert_eq!(format_duration(Duration::from_secs(3 * 86_400)), "3d");
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
}

#[test]
fn burn_rate_event_json_names_windows_and_nulls() {
    use crate::export::{BurnRateEvent, EventState};
    use std::time::Duration;
    let e = BurnRateEvent {
        state: EventState::Firing,
        slo: "checkout-availability".into(),
        service: "checkout".into(),
        severity: "page".into(),
        long_window: Duration::from_secs(3600),
        short_window: Duration::from_secs(300),
        factor: 14.4,
        objective: 0.999,
        long_burn_rate: Some(20.0),
        short_burn_rate: None,
        budget_remaining: Some(0.5),
        versions: vec!["1.2.0".into()],
        newest_version: Some("1.2.0".into()),
        newest_version_since: Some(7),
        repeat: false,
        at: 10,
        firing_since: 10,
        labels: Default::default(),
        annotations: Default::default(),
        example_traces: Vec::new(),
        bad_requests_share: Vec::new(),
    };
    let v: serde_json::Value = serde_json::to_value(&e).unwrap();
    assert_eq!(v["state"], "firing");
    assert_eq!(v["long_window"], "1h");
    assert_eq!(v["short_window"], "5m");
    assert!(v["short_burn_rate"].is_null());
    assert_eq!(e.alert_key(), "checkout-availability/1h/5m");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    QueueFull,
    TooLarge,
}

impl telemetry::LabelValue for Why {
    const COUNT: usize = 2;
    fn as_str(self) -> &'static str {
        match self {
            Why::QueueFull => "queue_full",
            Why::TooLarge => "too_large",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

#[test]
fn counters_by_label_are_the_registry_counters_and_appear_on_first_use() {
    let r = Registry::new();
    let by = telemetry::ByLabel::<Why>::new(
        &r,
        &telemetry::names::REFUSED_REQUESTS,
        &["traces", "grpc"],
    );
    assert!(
        !r.render_prometheus().contains("refused_requests"),
        "nothing is rendered before first use"
    );
    by.inc(Why::QueueFull);
    by.add(Why::QueueFull, 2);
    // The same counter as a lookup by its labels.
    r.counter(
        &telemetry::names::REFUSED_REQUESTS,
        &["traces", "grpc", "queue_full"],
    )
    .inc();
    assert_eq!(by.get(Why::QueueFull).get(), 4);
    assert_eq!(
        by.get(Why::TooLarge).get(),
        0,
        "a first use creates the counter at zero"
    );
    assert_eq!(
        r.value(
            "slipstream_receiver_refused_requests_total",
            &["traces", "grpc", "queue_full"]
        ),
        Some(4)
    );
    assert_eq!(
        r.value(
            "slipstream_receiver_refused_requests_total",
            &["traces", "grpc", "too_large"]
        ),
        Some(0)
    );
}
