//! Listeners: accept loops on hyper with HTTP/1.1 and HTTP/2 (prior knowledge) on one port,
//! tuned for large OTLP requests, with graceful shutdown. With `tls` configured, each accepted
//! connection is a rustls handshake first (ALPN `h2` on gRPC, `h2` and `http/1.1` on HTTP); a
//! failed handshake closes that connection only and is counted.
//!
//! Every connection runs in its own task under its listener's limits (see `conn`): a cap on
//! open connections, and deadlines on the first bytes, the first request's headers, each
//! request body's rate and the time with no request in progress. When a deadline passes, the
//! connection is shut down gracefully (HTTP/2 GOAWAY) and dropped a moment later.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use slipstream_config::receiver::OtlpReceiverConfig;
use slipstream_config::tls::ServerTlsConfig;
use slipstream_core::Registry;
use slipstream_core::telemetry::{Counter, names};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::body::ResponseBody;
use crate::conn::{Admitted, CloseReason, ConnectionLimits, Connections, TimedBody, Watchdog};
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
/// How long a connection closed for a deadline gets to go away after its graceful shutdown
/// (HTTP/2 GOAWAY) before it is dropped.
const DEADLINE_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a request with a body may take in all on the admin and scrape servers (their
/// handlers read the body themselves, so its rate cannot be watched).
const PLAIN_BODY_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request handler for [`serve_http`].
pub type Handler = Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>
        + Send
        + Sync,
>;

/// An OTLP receiver's handler: its request bodies are read through [`TimedBody`].
type OtlpHandler = Arc<
    dyn Fn(
            Request<TimedBody<Incoming>>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>
        + Send
        + Sync,
>;

/// What a listener serves.
#[derive(Clone)]
enum Route {
    /// An OTLP receiver: each request body must keep up the minimum rate.
    Otlp(OtlpHandler),
    /// A [`Handler`] of the admin or scrape server: a request with a body must be answered
    /// within [`PLAIN_BODY_REQUEST_TIMEOUT`].
    Plain(Handler),
}

impl Route {
    async fn call(
        &self,
        req: Request<Incoming>,
        limits: &ConnectionLimits,
        watchdog: &Arc<Watchdog>,
    ) -> Response<ResponseBody> {
        match self {
            Route::Otlp(h) => {
                h(req.map(|b| TimedBody::new(b, limits, Some(watchdog.clone())))).await
            }
            Route::Plain(h) => {
                use http_body::Body as _;
                if req.body().is_end_stream() {
                    return h(req).await;
                }
                match tokio::time::timeout(PLAIN_BODY_REQUEST_TIMEOUT, h(req)).await {
                    Ok(r) => r,
                    Err(_) => {
                        watchdog.cut();
                        let mut r = Response::new(ResponseBody::full(
                            "the request took too long to arrive\n",
                        ));
                        *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
                        r
                    }
                }
            }
        }
    }
}

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
    limits: ConnectionLimits,
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
            limits: ConnectionLimits::from_config(&cfg.connections),
        })
    }

    /// Starts serving; the listeners stop accepting when `shutdown` turns true.
    pub fn serve(mut self, shutdown: watch::Receiver<bool>) -> RunningReceivers {
        let listeners = usize::from(self.grpc.is_some()) + usize::from(self.http.is_some());
        let nofile = crate::conn::open_file_limit();
        let fitted = crate::conn::fit_to_open_files(self.limits.max_open, listeners, nofile);
        if fitted < self.limits.max_open {
            tracing::warn!(
                max_open = self.limits.max_open,
                open_file_limit = nofile,
                using = fitted,
                "receivers.otlp.connections.max_open does not fit the open-file limit; each OTLP listener takes fewer connections (raise the limit, e.g. LimitNOFILE or ulimit -n, to take more)"
            );
            self.limits.max_open = fitted;
        }
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
            let h: OtlpHandler = Arc::new(move |req| {
                let p = p.clone();
                Box::pin(async move { grpc::handle(&p, max, req).await })
            });
            tasks.push(tokio::spawn(serve(
                l,
                Route::Otlp(h),
                shutdown.clone(),
                "otlp/grpc",
                self.grpc_tls,
                self.limits.clone(),
                self.pipeline.registry().clone(),
            )));
        }
        if let Some(l) = self.http {
            running.http_addr = l.local_addr().ok();
            let p = self.pipeline.clone();
            let max = self.max_body;
            let h: OtlpHandler = Arc::new(move |req| {
                let p = p.clone();
                Box::pin(async move { otlp_http::handle(&p, max, req).await })
            });
            tasks.push(tokio::spawn(serve(
                l,
                Route::Otlp(h),
                shutdown.clone(),
                "otlp/http",
                self.http_tls,
                self.limits.clone(),
                self.pipeline.registry().clone(),
            )));
        }
        running.tasks = tasks;
        running
    }
}

/// Accepts connections on `listener` and serves `handler` on each (HTTP/1.1 and HTTP/2) until
/// `shutdown` turns true; then lets open requests finish for a few seconds. Connections get
/// the admin limits ([`ConnectionLimits::admin`]); their metrics are not registered anywhere
/// (see [`serve_http_with`]).
pub async fn serve_http(
    listener: TcpListener,
    handler: Handler,
    shutdown: watch::Receiver<bool>,
    name: &'static str,
) {
    serve_http_with(
        listener,
        handler,
        shutdown,
        name,
        ConnectionLimits::admin(),
        Registry::new(),
    )
    .await;
}

/// [`serve_http`] with these connection `limits`, counting its connections in `registry`
/// (`listener` label `name`).
pub async fn serve_http_with(
    listener: TcpListener,
    handler: Handler,
    shutdown: watch::Receiver<bool>,
    name: &'static str,
    limits: ConnectionLimits,
    registry: Registry,
) {
    serve(
        listener,
        Route::Plain(handler),
        shutdown,
        name,
        None,
        limits,
        registry,
    )
    .await;
}

/// The HTTP/1.1 and HTTP/2 server settings of a listener with `limits`.
fn builder(limits: &ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // The first request's header deadline and the idle deadline are the watchdog's; hyper's
    // own header deadline (it starts when HTTP/1 waits for a request) only backs them up.
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(limits.header_timeout + limits.idle_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_concurrent_streams(1024)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    builder
}

/// [`serve_http_with`], for any [`Route`], over TLS when `tls` is set.
async fn serve(
    listener: TcpListener,
    route: Route,
    mut shutdown: watch::Receiver<bool>,
    name: &'static str,
    tls: Option<Tls>,
    limits: ConnectionLimits,
    registry: Registry,
) {
    let mut conns = Connections::new(name, limits, &registry);
    let builder = Arc::new(builder(conns.limits()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        let pause = conns.accept_failed(&e);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => continue,
                            () = stopped(&mut shutdown) => break,
                        }
                    }
                };
                // Past the cap, the connection is closed here, at once.
                let Some(admitted) = conns.admit() else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, tls.clone(), Conn {
                    peer,
                    admitted,
                    route: route.clone(),
                    builder: builder.clone(),
                    limits: conns.limits().clone(),
                    shutdown: shutdown.clone(),
                    name,
                }));
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    tracing::info!(
        listener = name,
        "stopped accepting; finishing open requests"
    );
    if tokio::time::timeout(CONNECTION_DRAIN + DEADLINE_CLOSE_GRACE, conns.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after {CONNECTION_DRAIN:?}; closing them"
        );
    }
}

/// One accepted connection's context: what it is served with, and under which limits.
struct Conn {
    peer: SocketAddr,
    admitted: Admitted,
    route: Route,
    builder: Arc<Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
    name: &'static str,
}

/// Serves one connection: its first bytes (or TLS handshake) within `handshake_timeout`, then
/// HTTP until it ends, a deadline passes or the listener shuts down.
async fn connection(stream: TcpStream, tls: Option<Tls>, mut c: Conn) {
    let name = c.name;
    let timeout = c.limits.handshake_timeout;
    let Some(tls) = tls else {
        let mut first = [0u8; 1];
        let got = tokio::select! {
            r = tokio::time::timeout(timeout, stream.peek(&mut first)) => r,
            () = stopped(&mut c.shutdown) => return,
        };
        match got {
            Ok(Ok(n)) if n > 0 => serve_connection(TokioIo::new(stream), c).await,
            // Closed, or reset, before sending anything.
            Ok(_) => {}
            Err(_) => c.admitted.closed(CloseReason::HandshakeTimeout),
        }
        return;
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(timeout, tls.acceptor().accept(stream)) => r,
        () = stopped(&mut c.shutdown) => return,
    };
    match handshake {
        Ok(Ok(s)) => serve_connection(TokioIo::new(s), c).await,
        Ok(Err(e)) => {
            tls.failures.inc();
            tracing::debug!(listener = name, peer = %c.peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            tls.failures.inc();
            c.admitted.closed(CloseReason::HandshakeTimeout);
            tracing::debug!(listener = name, peer = %c.peer, "TLS handshake timed out");
        }
    }
}

/// Serves HTTP on `io` until the connection ends, its watchdog says it must close, or the
/// listener shuts down; in the last two cases it is shut down gracefully and dropped after a
/// grace period.
async fn serve_connection<I>(io: I, mut c: Conn)
where
    I: Read + Write + Unpin + Send + 'static,
{
    let watchdog = Watchdog::new(&c.limits);
    let svc = {
        let (route, limits, watchdog) = (c.route.clone(), c.limits.clone(), watchdog.clone());
        service_fn(move |req| {
            let guard = watchdog.request_started();
            let (route, limits, watchdog) = (route.clone(), limits.clone(), watchdog.clone());
            async move {
                let response = route.call(req, &limits, &watchdog).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = c.builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let reason = tokio::select! {
        r = conn.as_mut() => {
            // A cut body ends an HTTP/1 connection by itself (hyper closes it after the
            // answer when the body was not read to its end).
            if watchdog.was_cut() {
                c.admitted.closed(CloseReason::BodyTimeout);
            } else if let Err(e) = r {
                match CloseReason::of_error(&*e) {
                    Some(reason) => c.admitted.closed(reason),
                    None => tracing::debug!(
                        listener = c.name,
                        peer = %c.peer,
                        error = %e,
                        "connection ended with an error"
                    ),
                }
            }
            return;
        }
        reason = watchdog.expired() => Some(reason),
        () = stopped(&mut c.shutdown) => None,
    };
    let grace = match reason {
        Some(r) => {
            c.admitted.closed(r);
            DEADLINE_CLOSE_GRACE
        }
        None => CONNECTION_DRAIN,
    };
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests;
