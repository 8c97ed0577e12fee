//! Fuzzes the OTLP/JSON path: arbitrary bytes as a JSON trace request must give either an
//! error or protobuf bytes that the scanner reads without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipstream_core::{ScanSpec, Signal};
use slipstream_receiver::Pipeline;
use slipstream_receiver::scanner::scan_traces;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = Pipeline::json_to_protobuf(Signal::Traces, data) {
        let spec = ScanSpec {
            resource_keys: vec!["deployment.environment".into()],
            span_keys: vec!["http.route".into()],
            ..ScanSpec::default()
        };
        let mut out = Vec::new();
        scan_traces(&body, &spec, &mut out).expect("protobuf re-encoded from JSON scans");
    }
    let _ = Pipeline::json_to_protobuf(Signal::Metrics, data);
    let _ = Pipeline::json_to_protobuf(Signal::Logs, data);
});
