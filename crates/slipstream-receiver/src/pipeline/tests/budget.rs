//! The pipeline's checks and memory budget: ids a downstream refuses, span limits applied
//! during the scan, what a request reserves before it allocates, refused when it does not fit
//! and given back after.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use slipstream_core::{Backpressure, ForwardSink, Registry, ScanSpec, Signal};

use crate::body::{Encoding, decompress};
use crate::pipeline::{ExportError, InFlight, Limits, MemoryGate, Pipeline, Transport};
use crate::test_support::traces_of as traces;
use crate::test_support::{logs_with, nested_body};

// === a pipeline with a recording downstream ===

#[derive(Default)]
struct Forwarded(Mutex<Vec<(Signal, Bytes)>>);

impl ForwardSink for Forwarded {
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure> {
        self.0.lock().unwrap().push((signal, body));
        Ok(())
    }
}

fn gate(cap: usize) -> MemoryGate {
    MemoryGate {
        over: Arc::new(AtomicBool::new(false)),
        retry_after: Duration::from_secs(2),
        in_flight: Arc::new(InFlight::new(cap)),
    }
}

fn pipeline(max_spans: usize, gate: Option<MemoryGate>) -> (Pipeline, Arc<Forwarded>) {
    let forwarded = Arc::new(Forwarded::default());
    let limits = Limits {
        max_decompressed_size: 64 << 20,
        max_spans_per_request: max_spans,
        attributes: Default::default(),
    };
    let mut p = Pipeline::new(
        forwarded.clone(),
        Arc::new(()),
        ScanSpec::default(),
        limits,
        Registry::new(),
    );
    if let Some(g) = gate {
        p = p.with_memory_gate(g);
    }
    (p, forwarded)
}

fn span(trace_id: usize, span_id: usize, parent: usize) -> Span {
    Span {
        trace_id: vec![1; trace_id],
        span_id: vec![2; span_id],
        parent_span_id: vec![3; parent],
        name: "GET /".into(),
        kind: 2,
        ..Default::default()
    }
}

#[test]
fn spans_with_ids_a_downstream_refuses_are_refused_and_nothing_is_forwarded() {
    let (p, forwarded) = pipeline(0, None);
    for (t, s, parent, what) in [
        (15, 8, 0, "trace_id of 15 bytes"),
        (0, 8, 0, "trace_id of 0 bytes"),
        (16, 0, 0, "span_id of 0 bytes"),
        (16, 9, 0, "span_id of 9 bytes"),
        (16, 8, 4, "parent_span_id of 4 bytes"),
    ] {
        // The bad span after a good one: the whole request is refused.
        let err = p
            .export(
                Signal::Traces,
                Transport::Http,
                traces(vec![span(16, 8, 8), span(t, s, parent)]),
            )
            .unwrap_err();
        assert_eq!(err.reason(), "invalid_id");
        assert!(err.to_string().contains(what), "{err}");
    }
    assert!(forwarded.0.lock().unwrap().is_empty());
    p.export(
        Signal::Traces,
        Transport::Http,
        traces(vec![span(16, 8, 0), span(16, 8, 8)]),
    )
    .unwrap();
    assert_eq!(forwarded.0.lock().unwrap().len(), 1);
}

#[test]
fn json_ids_of_the_wrong_length_are_refused() {
    let (p, forwarded) = pipeline(0, None);
    let json = |trace_id: &str| {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{trace_id}","spanId":"0102030405060708","name":"x","kind":2}}]}}]}}]}}"#
        )
    };
    let good =
        Pipeline::json_to_protobuf(Signal::Traces, json(&"ab".repeat(16)).as_bytes()).unwrap();
    p.export(Signal::Traces, Transport::Http, good).unwrap();
    let short =
        Pipeline::json_to_protobuf(Signal::Traces, json(&"ab".repeat(15)).as_bytes()).unwrap();
    let err = p
        .export(Signal::Traces, Transport::Http, short)
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_id");
    assert_eq!(forwarded.0.lock().unwrap().len(), 1);
}

#[test]
fn millions_of_empty_spans_are_refused_at_the_first_one() {
    // 16 MiB of empty spans: 8 million, each two bytes.
    let mut scope = Vec::with_capacity(16 << 20);
    while scope.len() < 16 << 20 {
        scope.extend_from_slice(&[0x12, 0x00]);
    }
    let mut rs = Vec::new();
    prost::encoding::bytes::encode(2, &scope, &mut rs);
    let mut req = Vec::new();
    prost::encoding::bytes::encode(1, &rs, &mut req);
    let (p, _) = pipeline(0, None);
    let started = std::time::Instant::now();
    let err = p
        .export(Signal::Traces, Transport::Grpc, Bytes::from(req))
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_id");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn the_span_limit_applies_during_the_scan() {
    let many = traces((0..5000).map(|_| span(16, 8, 0)).collect());
    let (p, _) = pipeline(1000, None);
    let err = p
        .export(Signal::Traces, Transport::Grpc, many.clone())
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("more than 1000 spans"), "{err}");
    let (p, _) = pipeline(5000, None);
    p.export(Signal::Traces, Transport::Grpc, many).unwrap();
}

// === the memory budget ===

#[test]
fn span_records_are_reserved_before_they_are_allocated() {
    // 20,000 spans need about 20,000 records (several MiB); the budget is 1 MiB.
    let many = traces((0..20_000).map(|_| span(16, 8, 0)).collect());
    let g = gate(1 << 20);
    let (p, forwarded) = pipeline(0, Some(g.clone()));
    let err = p
        .export(Signal::Traces, Transport::Grpc, many.clone())
        .unwrap_err();
    // Alone it can never fit: not retryable.
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("memory.max_in_flight"), "{err}");
    assert_eq!(g.in_flight.held(), 0, "a refused request gives back all");
    assert!(forwarded.0.lock().unwrap().is_empty());

    // With room for it alone, but not beside another request: retryable.
    let g = gate(64 << 20);
    let (p, _) = pipeline(0, Some(g.clone()));
    let other = p.reserve();
    other.grow(60 << 20).unwrap();
    let err = p
        .export(Signal::Traces, Transport::Grpc, many.clone())
        .unwrap_err();
    assert_eq!(err, ExportError::MemoryLimit(Duration::from_secs(2)));
    drop(other);
    assert_eq!(g.in_flight.held(), 0);
    p.export(Signal::Traces, Transport::Grpc, many.clone())
        .unwrap();
    // The accepted body stays in the budget until the memory is read again.
    assert_eq!(g.in_flight.held(), many.len());
    g.in_flight.sampled();
    assert_eq!(g.in_flight.held(), 0);
}

#[tokio::test]
async fn a_decompression_bomb_is_stopped_at_the_budget() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![0u8; 16 << 20]).unwrap();
    let bomb = Bytes::from(gz.finish().unwrap());
    assert!(bomb.len() < 64 << 10);
    let (p, _) = pipeline(0, Some(gate(4 << 20)));
    let r = p.reserve();
    let err = decompress(Encoding::Gzip, bomb.clone(), 64 << 20, &r)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    assert!(r.bytes() <= 4 << 20, "reserved {}", r.bytes());
    drop(r);
    // Within the budget it decompresses in full (off the async worker past 1 MiB).
    let (p, _) = pipeline(0, Some(gate(64 << 20)));
    let r = p.reserve();
    let out = decompress(Encoding::Gzip, bomb, 64 << 20, &r)
        .await
        .unwrap();
    assert_eq!(out.len(), 16 << 20);
    assert!(
        r.bytes() >= 16 << 20 && r.bytes() <= 32 << 20,
        "{}",
        r.bytes()
    );
}

#[test]
fn json_is_reserved_before_it_is_decoded() {
    // 100,000 empty log records: a few hundred KiB of JSON, tens of MiB of prost tree.
    let json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#,
        "{},".repeat(100_000)
    );
    let g = gate(8 << 20);
    let (p, _) = pipeline(0, Some(g.clone()));
    let r = p.reserve();
    let err = crate::pipeline::json_to_protobuf_reserved(Signal::Logs, json.as_bytes(), Some(&r))
        .unwrap_err();
    assert!(matches!(err, ExportError::TooLarge(_)), "{err:?}");
    drop(r);
    assert_eq!(g.in_flight.held(), 0);
}

#[test]
fn metrics_and_logs_are_forwarded_as_they_arrived_with_their_counts() {
    let (p, forwarded) = pipeline(0, None);
    let logs = logs_with(LogRecord {
        body: Some(nested_body(60)),
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    });
    p.export(Signal::Logs, Transport::Grpc, Bytes::from(logs.clone()))
        .unwrap();
    let bad = logs_with(LogRecord {
        trace_id: vec![1; 15],
        ..Default::default()
    });
    let err = p
        .export(Signal::Logs, Transport::Grpc, Bytes::from(bad))
        .unwrap_err();
    assert_eq!(err.reason(), "invalid_id");
    let got = forwarded.0.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, logs);
}

#[test]
fn what_is_reserved_ahead_is_used_first_and_given_back_unused() {
    let g = gate(10 << 20);
    let (p, _) = pipeline(0, Some(g.clone()));
    let r = p.reserve();
    r.prepay(4 << 20).unwrap();
    assert_eq!(g.in_flight.held(), 4 << 20);
    // Growth within the prepaid part takes nothing more from the budget.
    r.grow(3 << 20).unwrap();
    assert_eq!(g.in_flight.held(), 4 << 20);
    // Past it, the rest comes from the budget.
    r.grow(2 << 20).unwrap();
    assert_eq!(g.in_flight.held(), 5 << 20);
    // Another request cannot take what this one holds.
    let other = p.reserve();
    assert_eq!(
        other.grow(6 << 20),
        Err(ExportError::MemoryLimit(Duration::from_secs(2)))
    );
    drop(r);
    assert_eq!(g.in_flight.held(), 0);
    other.grow(6 << 20).unwrap();
}
