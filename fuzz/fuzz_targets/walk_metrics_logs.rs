//! Fuzzes the wire walk that validates and counts forwarded metrics and logs, differentially
//! against prost: the walk must never panic, and where both it and a full prost decode accept
//! the bytes, it must count the same data points and log records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use slipstream_receiver::scanner::{walk_logs, walk_metrics};

fn points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

fn records(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let walked = walk_metrics(data);
    if let (Ok(n), Ok(req)) = (&walked, ExportMetricsServiceRequest::decode(data)) {
        assert_eq!(*n, points(&req), "data points counted differ from prost's");
    }
    let walked = walk_logs(data);
    if let (Ok(n), Ok(req)) = (&walked, ExportLogsServiceRequest::decode(data)) {
        assert_eq!(*n, records(&req), "log records counted differ from prost's");
    }
});
