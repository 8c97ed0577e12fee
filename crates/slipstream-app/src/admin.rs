//! The admin server: `/healthz`, `/readyz`, `/metrics` (self-telemetry), the JSON API
//! under `/api/v1/` (see [`crate::api`]) and the status page at `/` (see [`crate::ui`]).
//!
//! Only the API's writes are guarded ([`crate::api::Access`]: same origin, JSON, and the
//! bearer token of `admin.auth` when set); `/healthz` and `/readyz` (probes), `/metrics`
//! (scrapes), the status page and the API's reads answer anyone who can reach the port, so
//! a deployment that exposes it keeps others off with a NetworkPolicy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use http::{HeaderValue, Method, Response, StatusCode, header};
use slipstream_core::Registry;
use slipstream_receiver::{ConnectionLimits, Handler, ResponseBody, serve_http, serve_http_with};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::Access;
use slipstream_step::publish::Live;

/// What `/readyz` checks.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The OTLP listeners are bound and serving.
    pub listening: Arc<AtomicBool>,
    /// The forward stage, ready while some downstream endpoint was reached; `None` when
    /// forwarding is off.
    pub downstream: Option<Arc<slipstream_exporters::ForwardRouter>>,
    /// True while the memory monitor finds the process over `memory.limit` and the receivers
    /// refuse every new request; `None` without a limit. Not ready then, so a Service sends
    /// the traffic to the replicas that take it.
    pub memory_over: Option<Arc<AtomicBool>>,
}

impl Readiness {
    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.listening.load(Ordering::Acquire) {
            return Err("receivers are not listening yet");
        }
        if let Some(d) = &self.downstream
            && !d.is_reachable()
        {
            return Err("the forward downstream is not reachable");
        }
        if let Some(over) = &self.memory_over
            && over.load(Ordering::Relaxed)
        {
            return Err("over the memory limit: new requests are refused");
        }
        Ok(())
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Binds the admin listener and serves it until `shutdown`.
pub async fn start(
    endpoint: &str,
    registry: Registry,
    readiness: Readiness,
    live: Arc<Live>,
    access: Arc<Access>,
    peers: Option<Arc<crate::peers::Peers>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(endpoint)
        .await
        .with_context(|| format!("cannot listen on {endpoint} (admin)"))?;
    let addr = listener.local_addr()?;
    let connections = registry.clone();
    let handler: Handler = Arc::new(move |req| {
        let (registry, readiness, live, access, peers) = (
            registry.clone(),
            readiness.clone(),
            live.clone(),
            access.clone(),
            peers.clone(),
        );
        Box::pin(async move {
            const PLAIN: &str = "text/plain; charset=utf-8";
            // A peer gateway asking for a service's state (blocking: it merges and exports).
            if let Some(p) = peers
                && req.uri().path().starts_with(crate::peers::STATE_PATH)
            {
                let (method, path) = (req.method().clone(), req.uri().path().to_owned());
                let headers = req.headers().clone();
                let served =
                    tokio::task::spawn_blocking(move || p.handle(&method, &path, &headers)).await;
                if let Ok(Some(r)) = served {
                    return r;
                }
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "state export failed\n".into(),
                    PLAIN,
                );
            }
            if (req.method() == Method::GET || req.method() == Method::HEAD)
                && let Some(r) = crate::ui::handle(req.uri().path())
            {
                return r;
            }
            if req.uri().path().starts_with("/api/") {
                if let Some(r) = crate::api::handle(&live, &access, req).await {
                    return r;
                }
                return text(StatusCode::NOT_FOUND, "not found\n".into(), PLAIN);
            }
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into(), PLAIN);
            }
            match req.uri().path() {
                "/healthz" => text(StatusCode::OK, "ok\n".into(), PLAIN),
                "/readyz" => match readiness.check() {
                    Ok(()) => text(StatusCode::OK, "ready\n".into(), PLAIN),
                    Err(why) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                        PLAIN,
                    ),
                },
                "/metrics" => text(
                    StatusCode::OK,
                    registry.render_prometheus(),
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                _ => text(
                    StatusCode::NOT_FOUND,
                    "not found: try /healthz, /readyz, /metrics or /api/v1/slos\n".into(),
                    PLAIN,
                ),
            }
        })
    });
    Ok((
        addr,
        tokio::spawn(serve_http_with(
            listener,
            handler,
            shutdown,
            "admin",
            ConnectionLimits::admin(),
            connections,
        )),
    ))
}

/// Binds the SLI-series scrape endpoint (`exporters.prometheus.endpoint`) and serves
/// `/metrics` from `live` until `shutdown`: text format 0.0.4, or OpenMetrics, or (with
/// `native_histograms`) the protobuf format with native histograms, as the scraper's `Accept`
/// header asks; histograms with the classic buckets of `cfg.histogram`.
pub async fn start_prometheus(
    endpoint: &str,
    cfg: &slipstream_config::exporters::PrometheusConfig,
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    use slipstream_exporters::prometheus;
    let listener = TcpListener::bind(endpoint)
        .await
        .with_context(|| format!("cannot listen on {endpoint} (exporters.prometheus)"))?;
    let addr = listener.local_addr()?;
    let (naming, native) = (cfg.naming, cfg.native_histograms);
    let histograms = Arc::new(prometheus::Histograms::new(&cfg.histogram));
    let handler: Handler = Arc::new(move |req| {
        let (live, histograms) = (live.clone(), histograms.clone());
        Box::pin(async move {
            const PLAIN: &str = "text/plain; charset=utf-8";
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into(), PLAIN);
            }
            if req.uri().path() != "/metrics" {
                return text(
                    StatusCode::NOT_FOUND,
                    "not found: try /metrics\n".into(),
                    PLAIN,
                );
            }
            let format = prometheus::negotiate(
                req.headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
                native,
            );
            let body = tokio::task::spawn_blocking(move || {
                prometheus::render(&live.metrics(naming), format, &histograms)
            })
            .await
            .unwrap_or_default();
            let mut r = Response::new(ResponseBody::full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        })
    });
    Ok((
        addr,
        tokio::spawn(serve_http(listener, handler, shutdown, "prometheus")),
    ))
}

#[cfg(test)]
mod tests;
