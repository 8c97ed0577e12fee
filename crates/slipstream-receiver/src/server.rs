//! Listeners: accept loops on hyper with HTTP/1.1 and HTTP/2 (prior knowledge) on one port,
//! tuned for large OTLP requests, with graceful shutdown. With `tls` configured, each accepted
//! connection is a rustls handshake first (ALPN `h2` on gRPC, `h2` and `http/1.1` on HTTP); a
//! failed handshake closes that connection only and is counted.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use slipstream_config::receiver::OtlpReceiverConfig;
use slipstream_config::tls::ServerTlsConfig;
use slipstream_core::telemetry::{Counter, names};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::body::ResponseBody;
use crate::pipeline::Pipeline;
use crate::{grpc, http as otlp_http};

/// HTTP/2 stream window: large requests flow without waiting for window updates.
const H2_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 connection window.
const H2_CONNECTION_WINDOW: u32 = 16 << 20;
/// HTTP/2 largest frame.
const H2_MAX_FRAME: u32 = 1 << 20;
/// How long open connections get to finish their requests at shutdown.
const CONNECTION_DRAIN: Duration = Duration::from_secs(5);
/// How long a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request handler for [`serve_http`].
pub type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>
        + Send
        + Sync,
>;

/// The bound OTLP receivers, ready to serve.
#[derive(Debug)]
pub struct Receivers {
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
    grpc_tls: Option<Tls>,
    http_tls: Option<Tls>,
    pipeline: Arc<Pipeline>,
    max_recv: usize,
    max_body: usize,
}

const GRPC_ALPN: &[&[u8]] = &[b"h2"];
const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The running receivers.
#[derive(Debug)]
pub struct RunningReceivers {
    /// Where OTLP/gRPC listens, when enabled.
    pub grpc_addr: Option<SocketAddr>,
    /// Where OTLP/HTTP listens, when enabled.
    pub http_addr: Option<SocketAddr>,
    grpc_tls: Option<Tls>,
    http_tls: Option<Tls>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningReceivers {
    /// Reads the TLS certificates, keys and client CAs again from the files `cfg` names (the
    /// same paths as at start, or new ones) and uses them for new connections; open
    /// connections keep theirs. All or nothing: when any file cannot be used, nothing changes
    /// and every error is returned. Returns how many listeners were reloaded. Turning TLS on
    /// or off needs a restart.
    pub fn reload_tls(&self, cfg: &OtlpReceiverConfig) -> Result<usize, Vec<String>> {
        let pairs = [
            (
                &self.grpc_tls,
                cfg.grpc.as_ref().and_then(|g| g.tls.as_ref()),
            ),
            (
                &self.http_tls,
                cfg.http.as_ref().and_then(|h| h.tls.as_ref()),
            ),
        ];
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        for (running, wanted) in pairs {
            match (running, wanted) {
                (Some(tls), Some(c)) => match Tls::read(c, tls.field, tls.alpn) {
                    Ok(config) => loaded.push((tls, config)),
                    Err(e) => errors.push(e),
                },
                (None, None) => {}
                (Some(tls), None) => errors.push(format!(
                    "{}: turning TLS off takes effect at the next restart",
                    tls.field
                )),
                (None, Some(_)) => {
                    errors.push("turning TLS on takes effect at the next restart".to_owned())
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (tls, config) in &loaded {
            *tls.config.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
        }
        Ok(loaded.len())
    }

    /// Waits until every listener has stopped (after the shutdown signal) and its connections
    /// have finished or been cut after a short grace period.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// A listener's TLS: the server config (replaced when certificates are reloaded; each new
/// connection takes the current one) and the handshake-failure counter.
#[derive(Clone)]
struct Tls {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    alpn: &'static [&'static [u8]],
    field: &'static str,
    failures: Arc<Counter>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `cfg`'s files (an error names `field` and the file) and offers `alpn`.
    fn load(
        cfg: &ServerTlsConfig,
        field: &'static str,
        alpn: &'static [&'static [u8]],
        failures: Arc<Counter>,
    ) -> std::io::Result<Tls> {
        let config = Self::read(cfg, field, alpn)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Tls {
            config: Arc::new(RwLock::new(config)),
            alpn,
            field,
            failures,
        })
    }

    fn read(
        cfg: &ServerTlsConfig,
        field: &str,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut config = cfg.load(field).map_err(|e| e.to_string())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Receivers {
    /// Binds the configured listeners; an address in use, or a TLS certificate or key that
    /// cannot be read, is an error here, before anything runs.
    pub async fn bind(
        cfg: &OtlpReceiverConfig,
        pipeline: Arc<Pipeline>,
    ) -> std::io::Result<Receivers> {
        let registry = pipeline.registry();
        let grpc_tls = match cfg.grpc.as_ref().and_then(|g| g.tls.as_ref()) {
            Some(t) => Some(Tls::load(
                t,
                "receivers.otlp.grpc.tls",
                GRPC_ALPN,
                registry.counter(&names::TLS_HANDSHAKE_FAILURES, &["grpc"]),
            )?),
            None => None,
        };
        let http_tls = match cfg.http.as_ref().and_then(|h| h.tls.as_ref()) {
            Some(t) => Some(Tls::load(
                t,
                "receivers.otlp.http.tls",
                HTTP_ALPN,
                registry.counter(&names::TLS_HANDSHAKE_FAILURES, &["http"]),
            )?),
            None => None,
        };
        let bind = |addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        };
        let grpc = match &cfg.grpc {
            Some(g) => Some(bind(g.endpoint.clone()).await?),
            None => None,
        };
        let http = match &cfg.http {
            Some(h) => Some(bind(h.endpoint.clone()).await?),
            None => None,
        };
        Ok(Receivers {
            grpc,
            http,
            grpc_tls,
            http_tls,
            pipeline,
            max_recv: cfg
                .grpc
                .as_ref()
                .map_or(0, |g| g.max_recv_msg_size.as_usize()),
            max_body: cfg
                .http
                .as_ref()
                .map_or(0, |h| h.max_request_body_size.as_usize()),
        })
    }

    /// Starts serving; the listeners stop accepting when `shutdown` turns true.
    pub fn serve(self, shutdown: watch::Receiver<bool>) -> RunningReceivers {
        let mut tasks = Vec::new();
        let mut running = RunningReceivers {
            grpc_addr: None,
            http_addr: None,
            grpc_tls: self.grpc_tls.clone(),
            http_tls: self.http_tls.clone(),
            tasks: Vec::new(),
        };
        if let Some(l) = self.grpc {
            running.grpc_addr = l.local_addr().ok();
            let p = self.pipeline.clone();
            let max = self.max_recv;
            let h: Handler = Arc::new(move |req| {
                let p = p.clone();
                Box::pin(async move { grpc::handle(&p, max, req).await })
            });
            tasks.push(tokio::spawn(serve(
                l,
                h,
                shutdown.clone(),
                "otlp/grpc",
                self.grpc_tls,
            )));
        }
        if let Some(l) = self.http {
            running.http_addr = l.local_addr().ok();
            let p = self.pipeline.clone();
            let max = self.max_body;
            let h: Handler = Arc::new(move |req| {
                let p = p.clone();
                Box::pin(async move { otlp_http::handle(&p, max, req).await })
            });
            tasks.push(tokio::spawn(serve(
                l,
                h,
                shutdown.clone(),
                "otlp/http",
                self.http_tls,
            )));
        }
        running.tasks = tasks;
        running
    }
}

/// Accepts connections on `listener` and serves `handler` on each (HTTP/1.1 and HTTP/2) until
/// `shutdown` turns true; then lets open requests finish for a few seconds.
pub async fn serve_http(
    listener: TcpListener,
    handler: Handler,
    shutdown: watch::Receiver<bool>,
    name: &'static str,
) {
    serve(listener, handler, shutdown, name, None).await;
}

/// [`serve_http`], over TLS when `tls` is set.
async fn serve(
    listener: TcpListener,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    tls: Option<Tls>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_concurrent_streams(1024);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let h = handler.clone();
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let Some(tls) = &tls else {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(listener = name, error = %e, "connection ended with an error");
                        }
                    });
                    continue;
                };
                let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        TLS_HANDSHAKE_TIMEOUT,
                        tls.acceptor().accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tls.failures.inc();
                            tracing::debug!(listener = name, peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tls.failures.inc();
                            tracing::debug!(listener = name, peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(listener = name, error = %e, "connection ended with an error");
                    }
                });
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(
        listener = name,
        "stopped accepting; finishing open requests"
    );
    if tokio::time::timeout(CONNECTION_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after {CONNECTION_DRAIN:?}; closing them"
        );
    }
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
