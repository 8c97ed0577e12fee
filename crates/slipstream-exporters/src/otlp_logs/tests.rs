use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use slipstream_config::exporters::OtlpExportConfig;
use slipstream_config::forward::ForwardProtocol;
use slipstream_core::Registry;
use slipstream_core::export::EventState;

use super::{OtlpLogsExporter, request};
use crate::events::fixture::{AT, Recorder, event, fast_retry};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

fn check_firing_page(r: &LogRecord) {
    assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (AT, AT));
    assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "WARN"));
    assert_eq!(
        r.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue(
            "firing: checkout: SLO checkout-availability burns its error budget 20.5x over 1h and 31.25x over 5m (threshold 14.4x)".to_owned()
        ))
    );
    let a = &r.attributes;
    assert_eq!(str_attr(a, "event.name"), "slipstream.burn_rate");
    assert_eq!(str_attr(a, "slo.name"), "checkout-availability");
    assert_eq!(str_attr(a, "slo.state"), "firing");
    assert_eq!(str_attr(a, "slo.severity"), "page");
    assert_eq!(str_attr(a, "slo.long_window"), "1h");
    assert_eq!(str_attr(a, "slo.short_window"), "5m");
    assert_eq!(
        attr(a, "slo.burn_rate_threshold"),
        Some(&Value::DoubleValue(14.4))
    );
    assert_eq!(attr(a, "slo.objective"), Some(&Value::DoubleValue(0.999)));
    assert_eq!(
        attr(a, "slo.long_burn_rate"),
        Some(&Value::DoubleValue(20.5))
    );
    assert_eq!(
        attr(a, "slo.short_burn_rate"),
        Some(&Value::DoubleValue(31.25))
    );
    assert_eq!(
        attr(a, "slo.budget_remaining"),
        Some(&Value::DoubleValue(0.75))
    );
    match attr(a, "slo.versions") {
        Some(Value::ArrayValue(arr)) => assert_eq!(
            arr.values,
            ["1.4.0", "1.5.0"]
                .map(|v| AnyValue {
                    value: Some(Value::StringValue(v.to_owned()))
                })
                .to_vec()
        ),
        other => panic!("slo.versions: {other:?}"),
    }
    assert_eq!(str_attr(a, "slo.newest_version"), "1.5.0");
    assert_eq!(
        attr(a, "slo.newest_version_since"),
        Some(&Value::IntValue((AT - 600_000_000_000) as i64))
    );
    assert_eq!(
        attr(a, "slo.firing_since"),
        Some(&Value::IntValue((AT - 120_000_000_000) as i64))
    );
    assert_eq!(attr(a, "slo.repeat"), Some(&Value::BoolValue(false)));
    assert_eq!(
        str_attr(a, "slo.incident_key"),
        crate::alertmanager::incident_key(&event(EventState::Firing))
    );
    assert_eq!(str_attr(a, "slo.label.owner"), "payments");
    assert_eq!(str_attr(a, "slo.label.alertname"), "SlipstreamBurnRate");
    assert_eq!(
        str_attr(a, "slo.annotation.runbook_url"),
        "http://runbooks.example/checkout"
    );
}

#[test]
fn one_resource_per_service_one_record_per_event() {
    let mut other = event(EventState::Resolved);
    other.service = "cart".to_owned();
    other.severity = "ticket".to_owned();
    let req = request(&[
        event(EventState::Firing),
        other,
        event(EventState::Resolved),
    ]);
    assert_eq!(req.resource_logs.len(), 2);
    let services: Vec<&str> = req
        .resource_logs
        .iter()
        .map(|rl| str_attr(&rl.resource.as_ref().unwrap().attributes, "service.name"))
        .collect();
    assert_eq!(services, ["cart", "checkout"]);
    let checkout = &req.resource_logs[1].scope_logs[0];
    assert_eq!(checkout.scope.as_ref().unwrap().name, "slipstream");
    assert_eq!(checkout.log_records.len(), 2);
    check_firing_page(&checkout.log_records[0]);
    let resolved = &checkout.log_records[1];
    assert_eq!(
        (resolved.severity_number, resolved.severity_text.as_str()),
        (9, "INFO")
    );
    assert_eq!(str_attr(&resolved.attributes, "slo.state"), "resolved");
    assert!(attr(&resolved.attributes, "slo.short_burn_rate").is_none());
    let cart = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(cart.severity_text, "INFO");
}

fn config(endpoint: String, protocol: ForwardProtocol) -> OtlpExportConfig {
    OtlpExportConfig {
        endpoint,
        protocol,
        retry: fast_retry(),
        ..OtlpExportConfig::default()
    }
}

#[tokio::test]
async fn over_grpc_one_framed_request_per_publish() {
    let server = Recorder::start([]).await;
    let registry = Registry::new();
    let logs =
        OtlpLogsExporter::start(&config(server.url(), ForwardProtocol::Grpc), &registry).unwrap();
    logs.publish(&[event(EventState::Firing), event(EventState::Resolved)]);
    let got = server.wait_for(1).await;
    let r = &got[0];
    assert_eq!(
        r.path,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    );
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
    assert_eq!(r.body[0], 0, "not compressed");
    let len = u32::from_be_bytes(r.body[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, r.body.len() - 5);
    let req = ExportLogsServiceRequest::decode(&r.body[5..]).unwrap();
    let records = &req.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    check_firing_page(&records[0]);
    assert_eq!(logs.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(
        registry.value("slipstream_exporter_sent_total", &["otlp_logs"]),
        Some(1)
    );
}

#[tokio::test]
async fn over_http_protobuf_with_retries() {
    let server = Recorder::start([503]).await;
    let registry = Registry::new();
    let logs = OtlpLogsExporter::start(
        &config(format!("{}/", server.url()), ForwardProtocol::Http),
        &registry,
    )
    .unwrap();
    logs.publish(&[event(EventState::Firing)]);
    let got = server.wait_for(2).await;
    let r = &got[1];
    assert_eq!(r.path, "/v1/logs");
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let req = ExportLogsServiceRequest::decode(&r.body[..]).unwrap();
    check_firing_page(&req.resource_logs[0].scope_logs[0].log_records[0]);
    assert_eq!(logs.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(
        registry.value(
            "slipstream_exporter_failures_total",
            &["otlp_logs", "http_status"]
        ),
        Some(1)
    );
}

#[test]
fn example_traces_name_the_record_span_and_an_attribute() {
    let e = crate::events::fixture::event_with_example_traces(EventState::Firing);
    let req = request(&[e]);
    let r = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(r.trace_id, vec![1; 16]);
    assert_eq!(r.span_id, vec![1; 8]);
    let Some(Value::ArrayValue(ids)) = attr(&r.attributes, "slo.example_trace_ids") else {
        panic!("slo.example_trace_ids is an array")
    };
    let ids: Vec<_> = ids.values.iter().map(|v| v.value.clone()).collect();
    assert_eq!(
        ids,
        [
            Some(Value::StringValue("01".repeat(16))),
            Some(Value::StringValue("02".repeat(16)))
        ]
    );
    assert!(str_attr(&r.attributes, "slo.annotation.example_traces").contains("tempo.example"));
    // Without example requests, no ids.
    let plain = request(&[event(EventState::Firing)]);
    let r = &plain.resource_logs[0].scope_logs[0].log_records[0];
    assert!(r.trace_id.is_empty() && r.span_id.is_empty());
    assert!(attr(&r.attributes, "slo.example_trace_ids").is_none());
}

#[test]
fn budget_rows_name_their_parameter_in_the_body_and_the_labels() {
    let mut e = event(EventState::Firing);
    e.short_window = e.long_window;
    e.labels
        .insert("budget_drop_percent".to_owned(), "10".to_owned());
    let req = request(&[e]);
    let r = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        r.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue(
            "firing: checkout: SLO checkout-availability spent at least 10% of its error budget \
             in 1h (20.5x over 1h)"
                .to_owned()
        ))
    );
    assert_eq!(
        str_attr(&r.attributes, "slo.label.budget_drop_percent"),
        "10"
    );
}
