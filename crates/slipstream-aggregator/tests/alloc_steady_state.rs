//! Recording allocates nothing once every series and slot has been seen: a counting global
//! allocator watches `record` after warm-up.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use slipstream_aggregator::Aggregator;
use slipstream_config::AggregatorConfig;
use slipstream_core::{
    AttrValue, Clock, MAX_DIMENSIONS, ManualClock, ObservationSink, Registry, SpanKind, SpanRecord,
    StatusCode,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged;
// the only addition is a counter, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SEC: u64 = 1_000_000_000;

/// A length-delimited protobuf field.
fn field(n: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128);
    [&[n << 3 | 2, body.len() as u8][..], body].concat()
}

/// A `KeyValue` attribute (field `n`) of a string value.
fn attribute(n: u8, key: &str, value: &str) -> Vec<u8> {
    field(
        n,
        &[
            field(1, key.as_bytes()),
            field(2, &field(1, value.as_bytes())),
        ]
        .concat(),
    )
}

#[test]
fn recording_allocates_nothing_in_steady_state() {
    let clock = ManualClock::new(1_700_000_000 * SEC);
    let cfg = AggregatorConfig {
        span_dimensions: vec!["http.route".into()],
        ..Default::default()
    };
    let agg = Aggregator::new(&cfg, Arc::new(clock.clone()), &Registry::new());
    // Slow requests of a latency threshold are counted by `aggregator.explain` too.
    agg.set_latency_thresholds([std::time::Duration::from_millis(10)]);
    let services: Vec<String> = (0..50).map(|i| format!("service-{i}")).collect();
    let routes: Vec<String> = (0..20).map(|i| format!("/api/v1/thing-{i}")).collect();
    // A request holding a resource (with a pod) and, per route, a span with its route, for
    // the candidate attributes of `aggregator.explain` (on by default).
    let mut request = attribute(1, "k8s.pod.name", "pod-7");
    let resource_at = [0, request.len() as u32];
    let mut span_at = Vec::new();
    for r in &routes {
        let span = attribute(9, "http.route", r);
        span_at.push([request.len() as u32, (request.len() + span.len()) as u32]);
        request.extend(span);
    }
    let request = &request;
    // Span ids: the good requests of even routes are among the one in 64 counted (chosen by
    // a multiplicative hash of the span id), the others not.
    let counted = (1u64..)
        .find(|x| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 64 == 0)
        .unwrap()
        .to_le_bytes();
    let trace_id = [7u8; 16];
    let span_ids: Vec<[u8; 8]> = (0..routes.len())
        .map(|ri| if ri % 2 == 0 { counted } else { [9; 8] })
        .collect();
    let requests = |now: u64| -> Vec<Vec<SpanRecord<'_>>> {
        let mut out = Vec::new();
        for (si, s) in services.iter().enumerate() {
            let mut req = Vec::new();
            for (ri, r) in routes.iter().enumerate() {
                let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                dims[0] = AttrValue::Str("prod");
                dims[1] = AttrValue::Str(r);
                let dur = 1_000 + ((si * 7919 + ri * 104_729) as u64 % 50_000_000);
                req.push(SpanRecord {
                    service_name: Some(s),
                    service_version: Some("1.4.2"),
                    name: "GET",
                    kind: if ri % 5 == 0 {
                        SpanKind::Client
                    } else {
                        SpanKind::Server
                    },
                    status: if ri % 7 == 0 {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    start_unix_nano: now - 2 * SEC - dur,
                    end_unix_nano: now - 2 * SEC,
                    http_status_code: Some(200),
                    dims,
                    trace_id: &trace_id,
                    span_id: &span_ids[ri],
                    request,
                    span_at: span_at[ri],
                    resource_at,
                    ..SpanRecord::default()
                });
            }
            out.push(req);
        }
        out
    };
    // Warm-up: every series seen, both of the shard's deltas grown, a slot boundary crossed.
    for round in 0..6 {
        let now = clock.now_unix_nanos();
        for r in requests(now) {
            // Ten spans per series and slot: past the inline buffer, into chunks.
            for _ in 0..10 {
                agg.record(&r);
            }
        }
        agg.tick();
        clock.advance(if round == 2 { 60 * SEC } else { SEC });
    }
    for _ in 0..4 {
        let reqs = requests(clock.now_unix_nanos());
        COUNTING.with(|c| c.set(true));
        for r in &reqs {
            for _ in 0..10 {
                agg.record(r);
            }
        }
        COUNTING.with(|c| c.set(false));
        agg.tick();
        clock.advance(SEC);
    }
    let snap = agg.snapshot();
    assert_eq!(
        snap.series().len(),
        50 * 16,
        "every server span's series is there"
    );
    assert!(snap.totals().observations > 0);
    // The explain counts saw the candidate values, with examples.
    let shares = snap.explained().shares("service-0", 0, u64::MAX);
    assert!(
        shares
            .iter()
            .any(|s| s.value == "/api/v1/thing-7" && s.example.is_some()),
        "{shares:?}"
    );
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
}
