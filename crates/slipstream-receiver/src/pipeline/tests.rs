use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use slipstream_core::{Merged, Signal};

use super::{ExportError, Transport};
use crate::refusal::Refusal;
use crate::test_support::harness;

mod budget;

#[test]
fn an_accepted_request_is_forwarded_recorded_and_counted() {
    let h = harness(|p| p);
    h.pipeline
        .export(
            Signal::Traces,
            Transport::Grpc,
            crate::test_support::traces(3),
        )
        .unwrap();
    assert_eq!(h.downstream.bodies(), [crate::test_support::traces(3)]);
    assert_eq!(h.observed.0.load(Ordering::Relaxed), 3);
    assert_eq!(h.requests(Signal::Traces, Transport::Grpc, "accepted"), 1);
    assert_eq!(h.requests(Signal::Traces, Transport::Grpc, "refused"), 0);
    assert_eq!(
        h.value(
            "slipstream_receiver_accepted_items_total",
            &["traces", "grpc"]
        ),
        3
    );
}

#[test]
fn a_full_queue_refuses_retryably_and_leaves_no_trace_in_the_slis() {
    let h = harness(|p| p);
    h.downstream.full.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        let err = h
            .pipeline
            .export(
                Signal::Traces,
                Transport::Http,
                crate::test_support::traces(2),
            )
            .unwrap_err();
        assert_eq!(err, ExportError::Backpressure(Duration::from_millis(1500)));
    }
    assert_eq!(
        h.observed.0.load(Ordering::Relaxed),
        0,
        "nothing aggregated"
    );
    assert_eq!(h.refused(Signal::Traces, Transport::Http, "queue_full"), 3);
    assert_eq!(h.requests(Signal::Traces, Transport::Http, "refused"), 3);
    assert_eq!(h.requests(Signal::Traces, Transport::Http, "accepted"), 0);
    // Counted under its own signal and transport only.
    assert_eq!(h.refused(Signal::Traces, Transport::Grpc, "queue_full"), 0);
    assert_eq!(h.refused(Signal::Logs, Transport::Http, "queue_full"), 0);

    h.downstream.full.store(false, Ordering::Relaxed);
    h.pipeline
        .export(
            Signal::Traces,
            Transport::Http,
            crate::test_support::traces(2),
        )
        .unwrap();
    assert_eq!(h.observed.0.load(Ordering::Relaxed), 2);
}

#[test]
fn invalid_and_oversized_bodies_are_refused_by_reason_before_forwarding() {
    let h = harness(|p| p);
    let garbage = Bytes::from_static(&[0x0a, 0x7f, 0x01]);
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        let err = h
            .pipeline
            .export(signal, Transport::Grpc, garbage.clone())
            .unwrap_err();
        assert!(
            matches!(err, ExportError::Invalid(_)),
            "{signal:?}: {err:?}"
        );
        assert_eq!(
            h.refused(signal, Transport::Grpc, "invalid"),
            1,
            "{signal:?}"
        );
    }
    let big = Bytes::from(vec![0; (1 << 20) + 1]);
    let err = h
        .pipeline
        .export(Signal::Logs, Transport::Http, big)
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    assert_eq!(h.refused(Signal::Logs, Transport::Http, "too_large"), 1);
    assert!(h.downstream.bodies().is_empty());
}

#[test]
fn refusal_counters_appear_when_first_used() {
    let h = harness(|p| p);
    let before = h.registry.render_prometheus();
    assert!(before.contains("slipstream_receiver_requests_total"));
    assert!(!before.contains("slipstream_receiver_refused_requests_total{"));
    h.pipeline
        .count_refused(Signal::Metrics, Transport::Grpc, Refusal::MemoryLimit);
    h.pipeline
        .count_refused(Signal::Metrics, Transport::Grpc, Refusal::MemoryLimit);
    let after = h.registry.render_prometheus();
    assert!(
        after.contains(
            r#"slipstream_receiver_refused_requests_total{signal="metrics",transport="grpc",reason="memory_limit"} 2"#
        ),
        "{after}"
    );
    assert_eq!(
        after
            .matches("slipstream_receiver_refused_requests_total{")
            .count(),
        1
    );
}

#[test]
fn partial_aggregates_are_counted_by_outcome_and_reason() {
    let h = harness(|p| p);
    h.pipeline.count_aggregates_answered(Merged::Accepted);
    h.pipeline.count_aggregates_answered(Merged::Duplicate);
    h.pipeline.count_aggregates_answered(Merged::Duplicate);
    h.pipeline.count_aggregates_refused(Refusal::Busy);
    h.pipeline.count_aggregates_bytes(123);
    let requests = "slipstream_receiver_aggregates_requests_total";
    assert_eq!(h.value(requests, &["accepted"]), 1);
    assert_eq!(h.value(requests, &["duplicate"]), 2);
    assert_eq!(h.value(requests, &["refused"]), 1);
    assert_eq!(
        h.value("slipstream_receiver_aggregates_refused_total", &["busy"]),
        1
    );
    assert_eq!(
        h.value("slipstream_receiver_aggregates_bytes_total", &[]),
        123
    );
}
