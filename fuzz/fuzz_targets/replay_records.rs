//! Fuzzes the replay reader: arbitrary bytes as a length-prefixed protobuf file (records read
//! until the end or an error, each scanned) and as one OTLP JSON line (decoded by replay's
//! one-pass decoder and by the serde decoding it is checked against, each output scanned); no
//! panic, and memory bounded by the input whatever lengths it announces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipstream_core::{ScanSpec, Signal};
use slipstream_receiver::Pipeline;
use slipstream_receiver::records::{json, read_length_prefixed};
use slipstream_receiver::scanner::scan_traces;

fuzz_target!(|data: &[u8]| {
    let spec = ScanSpec::default();
    let mut r = data;
    while let Ok(Some(record)) = read_length_prefixed(&mut r) {
        let mut out = Vec::new();
        let _ = scan_traces(&record, &spec, &mut out);
    }
    let mut body = Vec::new();
    if json::to_protobuf(data, &mut body).is_ok() {
        let mut out = Vec::new();
        let _ = scan_traces(&body, &spec, &mut out);
    }
    if let Ok(body) = Pipeline::json_to_protobuf(Signal::Traces, data) {
        let mut out = Vec::new();
        let _ = scan_traces(&body, &spec, &mut out);
    }
});
