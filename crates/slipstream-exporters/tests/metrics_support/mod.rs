//! What the SLI-series exporter tests (`prometheus_*`, `remote_write_*`, `otlp_metrics_*`)
//! share: a recording HTTP server, point and time helpers, and the exporters' self-metrics.
// Each test crate uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipstream_core::Registry;
use slipstream_core::export::{Point, PointValue};
use slipstream_test_support::eventually_async;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// Path and query.
    pub(crate) uri: Uri,
    /// Request headers.
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Bytes,
}

impl Served {
    /// A header's value, or `""`.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Every request so far, in arrival order.
pub(crate) type Log = Arc<Mutex<Vec<Served>>>;

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on a free local port; `respond(n, request)`
/// answers the `n`-th request (from 0). Every request is recorded in the returned log.
pub(crate) async fn serve<F>(respond: F) -> (SocketAddr, Log)
where
    F: Fn(usize, &Served) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let (respond, log2) = (Arc::new(respond), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (respond, log) = (respond.clone(), log2.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (respond, log) = (respond.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let served = Served {
                            uri: parts.uri,
                            headers: parts.headers,
                            body: body.collect().await?.to_bytes(),
                        };
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(served.clone());
                            log.len() - 1
                        };
                        Ok::<_, hyper::Error>(respond(n, &served))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

/// A response with `status`, these headers and an empty or given body.
pub(crate) fn respond(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body.into())).unwrap()
}

/// Waits until the log holds at least `n` requests (at most 10 s); returns them.
pub(crate) async fn wait_for_requests(log: &Log, n: usize) -> Vec<Served> {
    eventually_async(&format!("{n} requests"), Duration::from_secs(10), || {
        let log = log.lock().unwrap();
        std::future::ready(if log.len() >= n {
            Ok(log.clone())
        } else {
            Err(format!("{} requests", log.len()))
        })
    })
    .await
}

/// A point with these labels (sorted by the caller) and value, started at 1000 ns.
pub(crate) fn point(service: Option<&str>, labels: &[(&str, &str)], value: PointValue) -> Point {
    Point {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        service: service.map(str::to_owned),
        value,
        start_time: 1_000,
    }
}

/// Now, in Unix nanoseconds.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A self-metric of `exporter` (`slipstream_exporter_*`), summed over its other labels.
pub(crate) fn exporter_metric(registry: &Registry, name: &str, exporter: &str) -> f64 {
    let prefix = format!("{name}{{exporter=\"{exporter}\"");
    registry
        .render_prometheus()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}
