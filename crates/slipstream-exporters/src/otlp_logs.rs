//! Burn-rate events sent as OTLP log records.
//!
//! The events of one [`OtlpLogsExporter::publish`] call travel in one
//! `ExportLogsServiceRequest`, over OTLP/gRPC (`LogsService/Export`) or OTLP/HTTP with a
//! protobuf body (`{endpoint}/v1/logs`), sent by the same code as the forward exporter's and
//! queued in a [`crate::delivery`] queue. Layout ([`request`]):
//!
//! - one `ResourceLogs` per service, with the resource attribute `service.name`;
//! - one `ScopeLogs` with scope `slipstream` (version: slipstream's);
//! - one `LogRecord` per event: `time_unix_nano` and `observed_time_unix_nano` are the event's
//!   time (`at`); severity `WARN` (13) for a firing `page` event and `INFO` (9) for everything
//!   else (firing tickets, resolved events); the body is a one-line summary string
//!   (`firing: checkout: SLO checkout-availability burns its error budget 20.5x over 1h and
//!   31.25x over 5m (threshold 14.4x)`);
//! - attributes: `event.name` = `slipstream.burn_rate`, then `slo.name`, `slo.state`
//!   (`firing`, `resolved`), `slo.severity`, `slo.long_window` and `slo.short_window`
//!   (strings like `1h`), `slo.burn_rate_threshold`, `slo.objective`, `slo.long_burn_rate`,
//!   `slo.short_burn_rate`, `slo.budget_remaining` (doubles; a rate without traffic is left
//!   out), `slo.versions` (array of strings), `slo.newest_version` (string),
//!   `slo.newest_version_since` and `slo.firing_since` (Unix nanoseconds, ints), `slo.repeat`
//!   (bool), `slo.incident_key` ([`crate::alertmanager::incident_key`], the same on every
//!   replica that fires the alert), then every label as `slo.label.<name>` and every annotation as
//!   `slo.annotation.<name>` (strings), and `slo.example_trace_ids` (array of strings) when
//!   the event has example requests; the record's `trace_id` and `span_id` are then the most
//!   recent one's, so a backend links the event to that trace.

use std::collections::BTreeMap;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use slipstream_config::exporters::OtlpExportConfig;
use slipstream_core::export::{EventState, format_duration};
use slipstream_core::{BurnRateEvent, Registry, Signal};

use crate::Error;
use crate::alertmanager::summary;
use crate::delivery::Delivery;
use crate::forward::otlp_delivery;

/// The `exporter` label value of the OTLP logs delivery metrics.
pub const EXPORTER: &str = "otlp_logs";
/// The instrumentation scope of the records.
pub const SCOPE: &str = "slipstream";
/// The `event.name` attribute of every record.
pub const EVENT_NAME: &str = "slipstream.burn_rate";

/// The running OTLP logs exporter.
#[derive(Debug)]
pub struct OtlpLogsExporter {
    delivery: Delivery<Bytes>,
}

impl OtlpLogsExporter {
    /// Starts the delivery worker for `cfg.endpoint` on the current tokio runtime. Fails on an
    /// endpoint that is not `http://host:port` or a header that is not valid HTTP.
    pub fn start(cfg: &OtlpExportConfig, registry: &Registry) -> Result<Self, Error> {
        let delivery = otlp_delivery(EXPORTER, "exporters.otlp_logs", cfg, Signal::Logs, registry)?;
        Ok(OtlpLogsExporter { delivery })
    }

    /// Queues one request holding `events`; never waits.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        if events.is_empty() {
            return;
        }
        self.delivery
            .push(Bytes::from(request(events).encode_to_vec()));
    }

    /// Delivers what is queued within `deadline`; returns how many requests were dropped.
    pub async fn shutdown(self, deadline: std::time::Duration) -> usize {
        self.delivery.shutdown(deadline).await
    }
}

crate::lifecycle::exporter!(OtlpLogsExporter, EXPORTER);

impl crate::lifecycle::EventExporter for OtlpLogsExporter {
    fn publish(&self, events: &[BurnRateEvent]) {
        OtlpLogsExporter::publish(self, events);
    }
}

/// The request carrying `events` (see the module docs for the layout).
pub fn request(events: &[BurnRateEvent]) -> ExportLogsServiceRequest {
    let mut by_service: BTreeMap<&str, Vec<LogRecord>> = BTreeMap::new();
    for event in events {
        by_service
            .entry(event.service.as_str())
            .or_default()
            .push(record(event));
    }
    ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![string("service.name", service)],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn record(event: &BurnRateEvent) -> LogRecord {
    let (state, severity) = match event.state {
        EventState::Firing if event.severity == "page" => ("firing", SeverityNumber::Warn),
        EventState::Firing => ("firing", SeverityNumber::Info),
        EventState::Resolved => ("resolved", SeverityNumber::Info),
    };
    let mut attributes = vec![
        string("event.name", EVENT_NAME),
        string("slo.name", &event.slo),
        string("slo.state", state),
        string("slo.severity", &event.severity),
        string("slo.long_window", &format_duration(event.long_window)),
        string("slo.short_window", &format_duration(event.short_window)),
        double("slo.burn_rate_threshold", event.factor),
        double("slo.objective", event.objective),
    ];
    for (key, v) in [
        ("slo.long_burn_rate", event.long_burn_rate),
        ("slo.short_burn_rate", event.short_burn_rate),
        ("slo.budget_remaining", event.budget_remaining),
    ] {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            attributes.push(double(key, v));
        }
    }
    attributes.push(strings("slo.versions", &event.versions));
    if let Some(v) = &event.newest_version {
        attributes.push(string("slo.newest_version", v));
    }
    if let Some(t) = event.newest_version_since {
        attributes.push(int("slo.newest_version_since", t));
    }
    attributes.push(int("slo.firing_since", event.firing_since));
    attributes.push(attribute(
        "slo.repeat",
        any_value::Value::BoolValue(event.repeat),
    ));
    attributes.push(string(
        "slo.incident_key",
        &crate::alertmanager::incident_key(event),
    ));
    for (k, v) in &event.labels {
        attributes.push(string(&format!("slo.label.{k}"), v));
    }
    for (k, v) in &event.annotations {
        attributes.push(string(&format!("slo.annotation.{k}"), v));
    }
    if !event.example_traces.is_empty() {
        let ids: Vec<String> = event
            .example_traces
            .iter()
            .map(|t| t.trace_id.clone())
            .collect();
        attributes.push(strings("slo.example_trace_ids", &ids));
    }
    // The record names the most recent example request's span: backends link it to the trace.
    let first = event.example_traces.first();
    LogRecord {
        trace_id: first.map_or_else(Vec::new, |t| unhex(&t.trace_id)),
        span_id: first.map_or_else(Vec::new, |t| unhex(&t.span_id)),
        time_unix_nano: event.at,
        observed_time_unix_nano: event.at,
        severity_number: severity as i32,
        severity_text: severity
            .as_str_name()
            .trim_start_matches("SEVERITY_NUMBER_")
            .to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "{state}: {}",
                summary(event)
            ))),
        }),
        attributes,
        ..Default::default()
    }
}

/// An attribute whose value is an array of strings.
fn strings(key: &str, values: &[String]) -> KeyValue {
    attribute(
        key,
        any_value::Value::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue(v.clone())),
                })
                .collect(),
        }),
    )
}

/// Bytes of a string of hex digits (as example traces name their ids); empty if it is not one.
fn unhex(s: &str) -> Vec<u8> {
    if !s.len().is_multiple_of(2) {
        return Vec::new();
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(key: &str, v: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(v.to_owned()))
}

fn double(key: &str, v: f64) -> KeyValue {
    attribute(key, any_value::Value::DoubleValue(v))
}

fn int(key: &str, v: u64) -> KeyValue {
    attribute(
        key,
        any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX)),
    )
}

#[cfg(test)]
mod tests;
