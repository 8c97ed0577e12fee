//! OTLP requests built for tests.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An encoded trace request of `n` server spans of `service`, named by `name(i)`.
pub fn trace_request(service: &str, n: usize, name: impl Fn(usize) -> String) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![(i % 250) as u8 + 1; 16],
                        span_id: vec![(i % 250) as u8 + 1; 8],
                        name: name(i),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_250_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// One minute of traffic of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    /// Share of the minute's requests that fail (span status ERROR).
    pub error_share: f64,
    /// The `service.version` running.
    pub version: &'static str,
}

/// Steady traffic of `service`: for each minute `m` of `minutes`, one request of `per_minute`
/// server spans ending evenly spread over the minute starting at `start + m` minutes (Unix
/// nanoseconds), each taking 20 ms; the first `error_share * per_minute` of them fail.
pub fn scenario(
    service: &str,
    start: u64,
    per_minute: usize,
    minutes: impl IntoIterator<Item = Minute>,
) -> Vec<ExportTraceServiceRequest> {
    use opentelemetry_proto::tonic::trace::v1::Status;
    const MIN: u64 = 60_000_000_000;
    minutes
        .into_iter()
        .enumerate()
        .map(|(m, minute)| {
            let bad = (minute.error_share * per_minute as f64).round() as usize;
            let spans = (0..per_minute)
                .map(|i| {
                    let end = start + m as u64 * MIN + (i as u64 * MIN) / per_minute as u64;
                    Span {
                        trace_id: [(m as u64).to_be_bytes(), (i as u64).to_be_bytes()].concat(),
                        span_id: ((m * per_minute + i) as u64 + 1).to_be_bytes().to_vec(),
                        name: "GET /cart".into(),
                        kind: 2,
                        start_time_unix_nano: end - 20_000_000,
                        end_time_unix_nano: end,
                        status: (i < bad).then(|| Status {
                            code: 2,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                })
                .collect();
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", service),
                            kv("service.version", minute.version),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        })
        .collect()
}

/// Sends `req` to slipstream's OTLP/HTTP receiver at `addr` as protobuf; panics unless it is
/// accepted.
pub async fn export(addr: std::net::SocketAddr, req: &ExportTraceServiceRequest) {
    let r = crate::raw::post_http(
        addr,
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

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
