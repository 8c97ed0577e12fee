//! A downstream OTLP server (gRPC and HTTP on one port, plain or TLS) that records every
//! request it takes or refuses, and a port held for a downstream that is down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

use crate::{eventually_async, gunzip};

/// A port on 127.0.0.1 for a downstream that is down. It is held bound but not listening, so
/// connections to it are refused and nothing else can take it meanwhile (a port bound and let
/// go may be handed to another test's sink, which would then take the traffic of an outage).
/// [`DownPort::start_sink`] brings the downstream up on it.
#[derive(Debug)]
pub struct DownPort(crate::process::HeldPort);

impl DownPort {
    /// Holds a free port.
    pub fn hold() -> DownPort {
        DownPort(crate::process::HeldPort::hold())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.0.addr().port()
    }

    /// Lets the port go and starts a sink on it at once.
    pub async fn start_sink(self) -> Sink {
        Sink::start_on_addr(self.0.release()).await
    }
}

/// How the sink answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SinkMode {
    /// Accept everything.
    Accept = 0,
    /// gRPC UNAVAILABLE / HTTP 503: retry later.
    Unavailable = 1,
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request path.
    pub path: String,
    /// The message bytes (gRPC frame removed, decompressed).
    pub body: Bytes,
}

/// A downstream OTLP server (gRPC and HTTP on one port) that records every request.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    tls: bool,
}

impl Sink {
    /// Starts a sink on a free port.
    pub async fn start() -> Sink {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    /// Starts a sink on `addr` (which must be free).
    pub async fn start_on_addr(addr: SocketAddr) -> Sink {
        Self::start_on(TcpListener::bind(addr).await.unwrap()).await
    }

    /// A sink on a free port serving TLS with `config` (the end-to-end tests' `tls::server_config` makes one); its
    /// [`Sink::url`] is `https://`. Failed handshakes close the connection.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> Sink {
        Self::start_with(
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            Some(tokio_rustls::TlsAcceptor::from(config)),
        )
        .await
    }

    /// Starts a sink on `listener`.
    pub async fn start_on(listener: TcpListener) -> Sink {
        Self::start_with(listener, None).await
    }

    async fn start_with(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Sink {
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            mode: Arc::new(AtomicU8::new(SinkMode::Accept as u8)),
            delay_ms: Arc::default(),
            refused: Arc::default(),
            tls: tls.is_some(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, tls) = (s.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let builder = Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        sink
    }

    /// The base URL (`http://127.0.0.1:PORT`, `https://` for a TLS sink).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: SinkMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Makes every answer from now on wait `delay` after the request arrived (a slow
    /// downstream; the request is recorded before the wait, as a server that is slow to
    /// answer has already taken it).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many requests were answered UNAVAILABLE / 503 so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds on what was received, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        eventually_async(what, timeout, || {
            let got = self.received();
            let seen = if pred(&got) {
                Ok(got)
            } else {
                Err(format!("the sink has {} requests", got.len()))
            };
            std::future::ready(seen)
        })
        .await
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        let path = req.uri().path().to_owned();
        let grpc = req
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let gzip_http = req
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let raw = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let unavailable = self.mode.load(Ordering::SeqCst) == SinkMode::Unavailable as u8;
        if unavailable {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        let response = self.answer(path, grpc, gzip_http, raw, unavailable);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            // The slow downstream the test asked for: the wait is the behaviour.
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        response
    }

    /// Keeps a request that carries data; the forwarder's readiness probe sends empty export
    /// requests, answered like any other but not recorded.
    fn record(&self, path: String, body: Bytes) {
        if !body.is_empty() {
            self.received.lock().unwrap().push(Received { path, body });
        }
    }

    fn answer(
        &self,
        path: String,
        grpc: bool,
        gzip_http: bool,
        raw: Bytes,
        unavailable: bool,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        if grpc {
            if unavailable {
                return grpc_status(14, "sink unavailable");
            }
            let compressed = raw.first() == Some(&1);
            let body = raw.slice(5.min(raw.len())..);
            let body = if compressed { gunzip(&body) } else { body };
            self.record(path, body);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = vec![
                Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                Ok(Frame::trailers(trailers)),
            ];
            let body = futures_iter(frames);
            let mut r = Response::new(BoxBody::new(body));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            r
        } else {
            if unavailable {
                let mut r = Response::new(BoxBody::new(Full::new(Bytes::new())));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("0"));
                return r;
            }
            let body = if gzip_http { gunzip(&raw) } else { raw };
            self.record(path, body);
            let mut r = Response::new(BoxBody::new(Full::new(Bytes::new())));
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/x-protobuf"),
            );
            r
        }
    }
}

fn grpc_status(code: u8, message: &'static str) -> Response<BoxBody<Bytes, Infallible>> {
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::new())));
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    h.insert("grpc-message", HeaderValue::from_static(message));
    r
}

fn futures_iter(
    frames: Vec<Result<Frame<Bytes>, Infallible>>,
) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static {
    // A body of ready frames, yielded in order.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, Infallible>>);
    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
    }
    Frames(frames.into())
}

/// The spans in the trace requests of `received`, as (service.name, span name) pairs.
pub fn spans_in(received: &[Received]) -> Vec<(String, String)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;
    let mut out = Vec::new();
    for r in received.iter().filter(|r| r.path.contains("trace")) {
        let req = ExportTraceServiceRequest::decode(&r.body[..])
            .expect("the sink got a valid trace request");
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((service.clone(), s.name.clone()));
                }
            }
        }
    }
    out
}
