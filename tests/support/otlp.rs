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
