//! OTLP requests built for tests and benches: attributes, server spans, trace requests of one
//! resource, minutes of steady traffic, log requests and nested values, and sending a request
//! to a receiver.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// One minute in nanoseconds.
const MIN: u64 = 60_000_000_000;

/// An attribute of any value.
pub fn kv_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    kv_value(key, any_value::Value::StringValue(value.into()))
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    kv_value(key, any_value::Value::IntValue(value))
}

/// A server span (kind SERVER, status unset) `name` from `start` to `end` (Unix ns).
pub fn server_span(trace_id: Vec<u8>, span_id: Vec<u8>, name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id,
        span_id,
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

/// The spans of one resource with the attributes `resource`, in one scope.
pub fn resource_spans(resource: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A request of one resource with the attributes `resource` and `spans`.
pub fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(resource, spans)],
    }
}

/// An encoded trace request of `n` server spans of `service`, named by `name(i)`.
pub fn trace_request(service: &str, n: usize, name: impl Fn(usize) -> String) -> Vec<u8> {
    let spans = (0..n)
        .map(|i| {
            let id = (i % 250) as u8 + 1;
            server_span(
                vec![id; 16],
                vec![id; 8],
                &name(i),
                1_700_000_000_000_000_000,
                1_700_000_000_250_000_000,
            )
        })
        .collect();
    request(vec![kv("service.name", service)], spans).encode_to_vec()
}

/// An encoded trace request of `n` server spans named `GET /` with valid ids (one trace, span
/// ids 1, 2, ...), under one resource without attributes.
pub fn traces(n: usize) -> Bytes {
    let spans = (0..n)
        .map(|i| server_span(vec![1; 16], vec![i as u8 + 1; 8], "GET /", 1_000, 2_000))
        .collect();
    traces_of(spans)
}

/// An encoded trace request of `spans` under one resource (no `Resource` message) and scope.
pub fn traces_of(spans: Vec<Span>) -> Bytes {
    Bytes::from(
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec(),
    )
}

/// A log body of `depth` levels of `AnyValue`: arrays, then a string.
pub fn nested_value(depth: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".into())),
    };
    for _ in 1..depth {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    v
}

/// An encoded logs request of one record, under one resource and scope.
pub fn logs_with(record: LogRecord) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
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
    minutes
        .into_iter()
        .enumerate()
        .map(|(m, minute)| {
            let bad = (minute.error_share * per_minute as f64).round() as usize;
            let spans = (0..per_minute)
                .map(|i| {
                    let end = start + m as u64 * MIN + (i as u64 * MIN) / per_minute as u64;
                    Span {
                        status: (i < bad).then(|| Status {
                            code: 2,
                            ..Default::default()
                        }),
                        ..server_span(
                            [(m as u64).to_be_bytes(), (i as u64).to_be_bytes()].concat(),
                            ((m * per_minute + i) as u64 + 1).to_be_bytes().to_vec(),
                            "GET /cart",
                            end - 20_000_000,
                            end,
                        )
                    }
                })
                .collect();
            request(
                vec![
                    kv("service.name", service),
                    kv("service.version", minute.version),
                ],
                spans,
            )
        })
        .collect()
}

/// Sends `req` to slipstream's OTLP/HTTP receiver at `addr` as protobuf; panics unless it is
/// accepted.
pub async fn export(addr: std::net::SocketAddr, req: &ExportTraceServiceRequest) {
    let r = crate::raw::post_traces(addr, req.encode_to_vec()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
