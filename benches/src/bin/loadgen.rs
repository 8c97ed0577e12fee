//! The load generator: realistic OTLP trace requests over gRPC or HTTP, open-loop at a rate or
//! closed-loop at the maximum, reporting what the server answered and the latency of the
//! Export calls.
//!
//! ```text
//! loadgen --endpoint 127.0.0.1:4317 --protocol grpc [--gzip] [--rate SPANS_PER_S]
//!         [--concurrency 8] [--duration 10] [--spans-per-request 512] [--services 20]
//!         [--routes 50] [--error-rate 0.01] [--latency-ms 20] [--pool 256] [--json]
//! ```
//!
//! Open loop (`--rate`): requests are scheduled at fixed times. When a worker is still waiting
//! for its previous answer at a request's scheduled time, that request's latency counts from
//! the scheduled time, so a slow server cannot hide its queueing (no coordinated omission);
//! when the worker was idle, it counts from the actual send, so the client's timer resolution
//! (tokio wakes up to 1 ms late) is not charged to the server.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use slipstream_benches::{Workload, quantile};

#[derive(Debug, Clone)]
struct Args {
    endpoint: String,
    grpc: bool,
    gzip: bool,
    rate: Option<f64>,
    concurrency: usize,
    duration: Duration,
    pool: usize,
    json: bool,
    workload: Workload,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --endpoint HOST:PORT [--protocol grpc|http] [--gzip] [--rate SPANS_PER_S] \
         [--concurrency N] [--duration SECS] [--spans-per-request N] [--services N] [--routes N] \
         [--error-rate F] [--latency-ms F] [--pool N] [--json]"
    );
    std::process::exit(64)
}

fn parse() -> Args {
    let mut a = Args {
        endpoint: "127.0.0.1:4317".into(),
        grpc: true,
        gzip: false,
        rate: None,
        concurrency: 8,
        duration: Duration::from_secs(10),
        pool: 256,
        json: false,
        workload: Workload::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| s.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--endpoint" => a.endpoint = val(),
            "--protocol" => a.grpc = val() == "grpc",
            "--gzip" => a.gzip = true,
            "--rate" => a.rate = Some(num(val())),
            "--concurrency" => a.concurrency = num(val()) as usize,
            "--duration" => a.duration = Duration::from_secs_f64(num(val())),
            "--spans-per-request" => a.workload.spans_per_request = num(val()) as usize,
            "--services" => a.workload.services = num(val()) as usize,
            "--routes" => a.workload.routes = num(val()) as usize,
            "--error-rate" => a.workload.error_rate = num(val()),
            "--latency-ms" => a.workload.latency_median_ms = num(val()),
            "--pool" => a.pool = num(val()) as usize,
            "--json" => a.json = true,
            _ => usage(),
        }
    }
    a
}

fn gzip(data: &[u8]) -> Bytes {
    use flate2::write::GzEncoder;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    Bytes::from(e.finish().expect("gzip"))
}

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    refused: u64,
    failed: u64,
    spans_ok: u64,
    latencies_us: Vec<u64>,
    statuses: std::collections::BTreeMap<String, u64>,
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    args: &Args,
    body: Bytes,
) -> Result<String, String> {
    let (uri, content_type) = if args.grpc {
        (
            format!(
                "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                args.endpoint
            ),
            "application/grpc",
        )
    } else {
        (
            format!("http://{}/v1/traces", args.endpoint),
            "application/x-protobuf",
        )
    };
    let body = if args.grpc {
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(u8::from(args.gzip));
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        Bytes::from(framed)
    } else {
        body
    };
    let mut req = http::Request::post(uri).header("content-type", content_type);
    if args.grpc {
        req = req.header("te", "trailers");
        if args.gzip {
            req = req.header("grpc-encoding", "gzip");
        }
    } else if args.gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = client
        .request(req.body(Full::new(body)).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if args.grpc {
        let code = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        Ok(format!("grpc {code}"))
    } else {
        Ok(format!("http {}", status.as_u16()))
    }
}

async fn worker(
    client: Client<HttpConnector, Full<Bytes>>,
    args: Arc<Args>,
    pool: Arc<Vec<Bytes>>,
    id: usize,
    start: Instant,
) -> Tally {
    let mut t = Tally::default();
    let interval = args.rate.map(|r| {
        let per_worker = r / args.workload.spans_per_request as f64 / args.concurrency as f64;
        Duration::from_secs_f64(1.0 / per_worker.max(1e-9))
    });
    let mut next = start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(id as f64 / args.concurrency as f64)
        });
    let mut n = id;
    while start.elapsed() < args.duration {
        let origin = match interval {
            Some(i) => {
                let scheduled = next;
                next += i;
                if Instant::now() < scheduled {
                    // Idle until the scheduled time: the timer wakes us up to a millisecond
                    // late (its resolution), which is the client's delay, not the server's;
                    // the latency counts from the actual send.
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    // Still busy with the previous request at the scheduled time: the server
                    // held us up, so the wait counts (no coordinated omission).
                    scheduled
                }
            }
            None => Instant::now(),
        };
        let body = pool[n % pool.len()].clone();
        n += args.concurrency;
        let r = send(&client, &args, body).await;
        t.latencies_us.push(origin.elapsed().as_micros() as u64);
        match r {
            Ok(s) => {
                if s == "grpc 0" || s == "http 200" {
                    t.ok += 1;
                    t.spans_ok += args.workload.spans_per_request as u64;
                } else {
                    t.refused += 1;
                }
                *t.statuses.entry(s).or_default() += 1;
            }
            Err(e) => {
                t.failed += 1;
                *t.statuses.entry(format!("error: {e}")).or_default() += 1;
            }
        }
    }
    t
}

fn main() {
    let args = Arc::new(parse());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let raw = args.workload.pool(args.pool, now, 0x5eed);
    let pool: Vec<Bytes> = if args.gzip {
        raw.iter().map(|b| gzip(b)).collect()
    } else {
        raw
    };
    let bytes_per_request = pool.iter().map(Bytes::len).sum::<usize>() / pool.len().max(1);
    let pool = Arc::new(pool);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tallies = rt.block_on(async {
        let mut builder = Client::builder(TokioExecutor::new());
        if args.grpc {
            builder
                .http2_only(true)
                .http2_initial_stream_window_size(8 << 20)
                .http2_initial_connection_window_size(16 << 20)
                .http2_max_frame_size(1 << 20);
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for id in 0..args.concurrency {
            // One connection per worker: a client built per worker holds its own pool.
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client = builder.build(connector);
            tasks.push(tokio::spawn(worker(
                client,
                args.clone(),
                pool.clone(),
                id,
                start,
            )));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("worker"));
        }
        (out, start.elapsed())
    });
    let (tallies, elapsed) = tallies;
    let mut lat: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let mut statuses = std::collections::BTreeMap::new();
    for t in &tallies {
        for (k, v) in &t.statuses {
            *statuses.entry(k.clone()).or_insert(0u64) += v;
        }
    }
    let secs = elapsed.as_secs_f64();
    let report = serde_json::json!({
        "protocol": if args.grpc { "grpc" } else { "http" },
        "gzip": args.gzip,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "target_spans_per_second": args.rate,
        "seconds": secs,
        "requests_ok": sum(|t| t.ok),
        "requests_refused": sum(|t| t.refused),
        "requests_failed": sum(|t| t.failed),
        "spans_ok": sum(|t| t.spans_ok),
        "spans_per_second": sum(|t| t.spans_ok) as f64 / secs,
        "bytes_per_request": bytes_per_request,
        "latency_us": {
            "p50": quantile(&lat, 0.5),
            "p90": quantile(&lat, 0.9),
            "p99": quantile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(0),
        },
        "answers": statuses,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    }
}
