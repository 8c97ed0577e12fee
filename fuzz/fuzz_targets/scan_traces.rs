//! Fuzzes the span scanner with arbitrary bytes, differentially against prost: the scanner
//! must never panic, and whatever a full prost decode accepts it must accept too, with the
//! same spans in the same order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slipstream_core::{ScanSpec, SpanKind, StatusCode};
use slipstream_receiver::scanner::scan_traces;

fuzz_target!(|data: &[u8]| {
    let spec = ScanSpec {
        resource_keys: vec!["deployment.environment".into()],
        span_keys: vec!["http.route".into(), "http.request.method".into()],
        ..ScanSpec::default()
    };
    let mut out = Vec::new();
    let scanned = scan_traces(data, &spec, &mut out);
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        if let Err(e) = scanned {
            panic!("prost accepts the request, the scanner refuses it: {e}");
        }
        let spans: Vec<_> = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect();
        assert_eq!(out.len(), spans.len());
        for (rec, span) in out.iter().zip(spans) {
            assert_eq!(rec.name, span.name);
            assert_eq!(rec.kind, SpanKind::from_i32(span.kind));
            let code = span.status.as_ref().map_or(0, |s| s.code);
            assert_eq!(rec.status, StatusCode::from_i32(code));
            assert_eq!(rec.start_unix_nano, span.start_time_unix_nano);
            assert_eq!(rec.end_unix_nano, span.end_time_unix_nano);
        }
    }
});
