//! Writes a recorded-traces file for `slipstream replay`: steady traffic of several services
//! over a span of event time, with an incident, as OTLP JSON lines or length-prefixed protobuf.
//!
//! `cargo run --release -p slipstream-benches --bin replay-input -- SPANS json|protobuf FILE`

use std::io::{BufWriter, Write};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;
use slipstream_test_support::otlp::{self, kv};

const SERVICES: usize = 20;
const PER_REQUEST: usize = 512;
/// Requests per service per minute of event time.
const PER_MINUTE: u64 = 1;
/// 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;
const MIN: u64 = 60_000_000_000;

fn request(n: u64) -> ExportTraceServiceRequest {
    let service = (n % SERVICES as u64) as usize;
    let slot = n / SERVICES as u64;
    let t0 = START + slot * MIN / PER_MINUTE;
    let minute = slot / PER_MINUTE;
    // service-3 fails 5% of its requests from minute 120 to 150.
    let failing = service == 3 && (120..150).contains(&minute);
    let spans = (0..PER_REQUEST)
        .map(|i| {
            let end = t0 + (i as u64 * MIN / PER_MINUTE) / PER_REQUEST as u64;
            let latency = 2_000_000 + (i as u64 * 7_919 % 400) * 1_000_000;
            Span {
                trace_id: [n.to_be_bytes(), (i as u64).to_be_bytes()].concat(),
                span_id: (n * PER_REQUEST as u64 + i as u64 + 1)
                    .to_be_bytes()
                    .to_vec(),
                name: format!("GET /api/v{}/items", i % 4),
                kind: 2,
                start_time_unix_nano: end - latency,
                end_time_unix_nano: end,
                attributes: vec![
                    kv("http.route", "/api/items"),
                    kv("http.request.method", "GET"),
                ],
                status: (failing && i % 20 == 0).then(|| Status {
                    code: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    otlp::request(
        vec![
            kv("service.name", &format!("service-{service}")),
            kv(
                "service.version",
                if minute < 115 { "1.0.0" } else { "1.1.0" },
            ),
            kv("deployment.environment", "production"),
        ],
        spans,
    )
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, spans, format, path] = &args[..] else {
        eprintln!("usage: replay-input SPANS json|protobuf FILE");
        std::process::exit(64);
    };
    let spans: u64 = spans.parse().expect("SPANS is a number");
    let json = match format.as_str() {
        "json" => true,
        "protobuf" => false,
        other => panic!("unknown format {other}: json or protobuf"),
    };
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for n in 0..spans.div_ceil(PER_REQUEST as u64) {
        let req = request(n);
        if json {
            serde_json::to_writer(&mut out, &req)?;
            out.write_all(b"\n")?;
        } else {
            let body = req.encode_to_vec();
            out.write_all(&(body.len() as u32).to_be_bytes())?;
            out.write_all(&body)?;
        }
    }
    out.flush()
}
