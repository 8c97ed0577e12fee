//! Shared helpers for the benches and the load harness: realistic OTLP trace requests
//! ([`Workload`]), built with `slipstream-test-support`'s OTLP builders, and small statistics
//! helpers.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;
use slipstream_test_support::otlp::request;
pub use slipstream_test_support::otlp::{kv, kv_int};

/// What the generated traffic looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Distinct `service.name` values.
    pub services: usize,
    /// Distinct `http.route` values per service.
    pub routes: usize,
    /// Spans per request (one resource per request).
    pub spans_per_request: usize,
    /// Share of spans that fail (HTTP 503 and status ERROR).
    pub error_rate: f64,
    /// Median latency in milliseconds; latencies follow a log-normal-like spread around it.
    pub latency_median_ms: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            services: 20,
            routes: 50,
            spans_per_request: 512,
            error_rate: 0.01,
            latency_median_ms: 20.0,
        }
    }
}

/// A small deterministic generator (xorshift), so runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Workload {
    /// Request `n` of the workload, its spans ending at about `now` (Unix nanoseconds).
    pub fn request(&self, n: u64, now: u64, rng: &mut Rng) -> ExportTraceServiceRequest {
        let service = (n % self.services.max(1) as u64) as usize;
        let spans = (0..self.spans_per_request)
            .map(|i| {
                let route = (rng.next_u64() % self.routes.max(1) as u64) as usize;
                let bad = rng.unit() < self.error_rate;
                // exp(N(0, 0.6)) spread, by a sum of uniforms.
                let z: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
                let latency_ns = (self.latency_median_ms * 1e6 * (z * 1.04).exp()) as u64;
                let end = now - (i as u64 * 1_000);
                Span {
                    trace_id: [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat(),
                    span_id: rng.next_u64().to_be_bytes().to_vec(),
                    parent_span_id: rng.next_u64().to_be_bytes().to_vec(),
                    name: format!("GET /api/{route}"),
                    kind: 2,
                    start_time_unix_nano: end - latency_ns.max(1_000),
                    end_time_unix_nano: end,
                    attributes: vec![
                        kv("http.request.method", "GET"),
                        kv("http.route", &format!("/api/{route}")),
                        kv_int("http.response.status_code", if bad { 503 } else { 200 }),
                        kv("url.scheme", "https"),
                        kv("server.address", "api.internal.example"),
                    ],
                    status: bad.then(|| Status {
                        code: 2,
                        message: "upstream unavailable".into(),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        request(
            vec![
                kv("service.name", &format!("service-{service}")),
                kv("service.version", "1.4.2"),
                kv("deployment.environment", "production"),
                kv("k8s.namespace.name", "shop"),
                kv("telemetry.sdk.language", "rust"),
            ],
            spans,
        )
    }

    /// `count` encoded requests, ending at about `now`.
    pub fn pool(&self, count: usize, now: u64, seed: u64) -> Vec<Bytes> {
        let mut rng = Rng::new(seed);
        (0..count as u64)
            .map(|n| Bytes::from(self.request(n, now, &mut rng).encode_to_vec()))
            .collect()
    }
}

/// The `q` quantile (nearest rank) of sorted values.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The aggregator's worst-case workload, shared by the `record` criterion bench and the
/// `record_icount` example: requests of [`RecordWorkload::SPANS`] server spans, each of a
/// series drawn at random among `series` (`service.name` x `deployment.environment`, the
/// default dimensions), so that every span pays a full series lookup.
#[derive(Debug)]
pub struct RecordWorkload {
    /// Service names: `series / 100` of them.
    pub services: Vec<String>,
    /// 100 environments.
    pub envs: Vec<String>,
}

impl RecordWorkload {
    /// Spans per request.
    pub const SPANS: usize = 512;
    /// Distinct requests generated.
    pub const REQUESTS: usize = 64;

    /// The names of `series` series.
    pub fn new(series: usize) -> Self {
        let services = (series / 100).max(1);
        RecordWorkload {
            services: (0..services).map(|i| format!("service-{i:05}")).collect(),
            envs: (0..100).map(|i| format!("env-{i:03}")).collect(),
        }
    }

    /// [`RecordWorkload::REQUESTS`] requests whose spans ended a second before `now`. Each
    /// series has its own typical latency (50 us .. 25 ms) and spreads over three octaves
    /// above it, as an endpoint's p50..p99 does; 2% of the spans are errors.
    pub fn requests(&self, series: usize, now: u64) -> Vec<Vec<slipstream_core::SpanRecord<'_>>> {
        use slipstream_core::{AttrValue, MAX_DIMENSIONS, SpanKind, SpanRecord, StatusCode};
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        let services = self.services.len();
        (0..Self::REQUESTS)
            .map(|_| {
                (0..Self::SPANS)
                    .map(|_| {
                        let r = rng.next_u64();
                        let s = (r % series as u64) as usize;
                        let mut dims = [AttrValue::Absent; MAX_DIMENSIONS];
                        dims[0] = AttrValue::Str(&self.envs[s / services]);
                        let base = 50_000u64 << (s % 10);
                        let dur = (base << ((r >> 20) % 3)) + (r >> 40) % base;
                        SpanRecord {
                            service_name: Some(&self.services[s % services]),
                            service_version: Some("2.3.1"),
                            name: "GET /api/v1/items/{id}",
                            kind: SpanKind::Server,
                            status: if r.is_multiple_of(50) {
                                StatusCode::Error
                            } else {
                                StatusCode::Unset
                            },
                            start_unix_nano: now - 1_000_000_000 - dur,
                            end_unix_nano: now - 1_000_000_000,
                            http_status_code: Some(200),
                            dims,
                            ..SpanRecord::default()
                        }
                    })
                    .collect()
            })
            .collect()
    }
}
