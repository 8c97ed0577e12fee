use slipstream_core::telemetry::LabelValue;
use slipstream_core::{Registry, Signal};

use super::*;

#[test]
fn signals_have_distinct_slots_in_the_order_of_all() {
    for (i, s) in Signal::ALL.into_iter().enumerate() {
        assert_eq!(SignalLabel(s).index(), i);
        assert_eq!(SignalLabel(s).as_str(), s.as_str());
    }
    let per = PerSignal::new(Signal::as_str);
    for s in Signal::ALL {
        assert_eq!(*per.get(s), s.as_str());
    }
}

#[test]
fn counters_keep_their_names_and_label_values() {
    let registry = Registry::new();
    let c = ForwardCounters::new(&registry);
    assert_eq!(
        registry.value("slipstream_forward_sent_requests_total", &["logs"]),
        None,
        "a counter appears on first use"
    );
    c.delivered(Signal::Logs, 100);
    c.delivered(Signal::Logs, 20);
    c.retried(Signal::Traces, FailureReason::GrpcStatus);
    c.dropped(Signal::Metrics, ForwardDrop::RejectedDownstream);
    c.dropped(Signal::Metrics, ForwardDrop::RetriesExhausted);
    c.dropped(Signal::Traces, ForwardDrop::Shutdown);
    let v = |name, labels: &[&str]| registry.value(name, labels);
    assert_eq!(
        v("slipstream_forward_sent_requests_total", &["logs"]),
        Some(2)
    );
    assert_eq!(
        v("slipstream_forward_sent_bytes_total", &["logs"]),
        Some(120)
    );
    assert_eq!(
        v(
            "slipstream_forward_retries_total",
            &["traces", "grpc_status"]
        ),
        Some(1)
    );
    for (signal, reason) in [
        ("metrics", "rejected_downstream"),
        ("metrics", "retries_exhausted"),
        ("traces", "shutdown"),
    ] {
        assert_eq!(
            v(
                "slipstream_forward_dropped_requests_total",
                &[signal, reason]
            ),
            Some(1),
            "{signal} {reason}"
        );
    }
    assert_eq!(ForwardDrop::SpillCorrupt.as_str(), "spill_corrupt");
    assert_eq!(
        [
            SpillReason::QueueFull.as_str(),
            SpillReason::Shutdown.as_str()
        ],
        ["queue_full", "shutdown"]
    );
}
