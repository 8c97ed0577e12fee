//! OTLP requests built for tests (from `slipstream-test-support`), and playing them into a
//! slipstream running in this process.

pub use slipstream_test_support::otlp::*;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// Plays minute `m` (counted from `start`, Unix nanoseconds) of recorded traffic into a
/// slipstream on the manual `clock`: the clock moves to one second before the minute ends,
/// `requests` are exported, the clock moves to the minute's end and slipstream evaluates.
/// Returns the events of that evaluation.
pub async fn play_minute(
    app: &slipstream_app::app::App,
    clock: &slipstream_core::ManualClock,
    start: u64,
    m: usize,
    requests: &[&ExportTraceServiceRequest],
) -> Vec<slipstream_slo::AlertEvent> {
    const MIN: u64 = 60_000_000_000;
    clock.set(start + m as u64 * MIN + MIN - 1_000_000_000);
    for req in requests {
        export(app.http_addr.unwrap(), req).await;
    }
    clock.set(start + (m as u64 + 1) * MIN);
    app.step().await.events
}

/// The top-level entries of an export request body (each a `resource_spans`, `resource_metrics`
/// or `resource_logs` field, its tag and length included), as slices of `body`. The forwarder
/// may join requests waiting in its queue into one export, so the downstream sees a request's
/// entries, not its boundaries: a request of one resource is delivered when an export holds
/// an entry equal to its whole body.
pub fn resource_entries(body: &[u8]) -> Vec<&[u8]> {
    fn varint(body: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = body[*at];
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
        }
        panic!("a varint longer than 10 bytes");
    }
    let mut entries = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let start = at;
        let tag = varint(body, &mut at);
        match tag & 7 {
            0 => {
                varint(body, &mut at);
            }
            1 => at += 8,
            2 => at += varint(body, &mut at) as usize,
            5 => at += 4,
            wire => panic!("wire type {wire} at the top level of an export request"),
        }
        assert!(at <= body.len(), "an entry runs past the end of the body");
        entries.push(&body[start..at]);
    }
    entries
}
