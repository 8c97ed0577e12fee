//! The OTLP exporter that drains the forward queue: gRPC or HTTP/protobuf, with retries.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use slipstream_config::forward::{ForwardCompression, ForwardConfig, ForwardProtocol};
use slipstream_config::tls::ClientTlsConfig;
use slipstream_core::rpc::{RpcStatus, base64_decode, grpc_code_is_retryable};
use slipstream_core::telemetry::names;
use slipstream_core::{Registry, Signal};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::queue::{ForwardQueue, Item};
use crate::delivery::backoff;

/// How often the downstream's reachability is probed while it is not known to be up.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Starts the forward exporter.
#[derive(Debug)]
pub struct Forwarder;

/// The running forward exporter.
#[derive(Debug)]
pub struct ForwarderHandle {
    queue: Arc<ForwardQueue>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    probe: Option<JoinHandle<()>>,
    reachable: Arc<AtomicBool>,
    registry: Registry,
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests still undelivered when the deadline passed (counted as dropped, `shutdown`).
    pub undelivered: usize,
}

/// Why one export attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) retryable: bool,
    /// A delay the downstream asked for.
    pub(crate) delay: Option<Duration>,
    /// Label value of the retry/drop counter.
    pub(crate) reason: &'static str,
    pub(crate) detail: String,
}

impl From<Failure> for crate::delivery::SendError {
    /// For the delivery queue: retryable failures keep the delay the target asked for.
    fn from(f: Failure) -> Self {
        if f.retryable {
            crate::delivery::SendError::Retryable {
                reason: f.reason,
                retry_after: f.delay,
            }
        } else {
            crate::delivery::SendError::Permanent { reason: f.reason }
        }
    }
}

/// An OTLP endpoint and how to talk to it (gRPC or HTTP/protobuf, extra headers, gzip):
/// the forward exporter's and the OTLP metrics exporter's sending half.
#[derive(Debug)]
pub(crate) struct OtlpTarget {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    protocol: ForwardProtocol,
    headers: HeaderMap,
    gzip: bool,
    host: String,
    port: u16,
}

#[derive(Debug)]
struct Target {
    otlp: OtlpTarget,
    timeout: Duration,
    initial: Duration,
    max_interval: Duration,
    max_elapsed: Option<Duration>,
}

impl Forwarder {
    /// Starts forwarding to `cfg.endpoint`; returns the queue the receivers push into and the
    /// handle that drains it at shutdown. The caller checks `cfg.endpoint` is set.
    pub fn start(
        cfg: &ForwardConfig,
        registry: &Registry,
    ) -> Result<(Arc<ForwardQueue>, ForwarderHandle), String> {
        let endpoint = cfg.endpoint.clone().ok_or("forward.endpoint is not set")?;
        let otlp = OtlpTarget::new(
            "forward",
            &endpoint,
            cfg.protocol,
            &cfg.headers,
            cfg.compression == ForwardCompression::Gzip,
            cfg.timeout,
            cfg.tls.as_ref(),
        )?;
        let (host, port) = (otlp.host.clone(), otlp.port);
        let target = Arc::new(Target {
            otlp,
            timeout: cfg.timeout,
            initial: cfg.retry.initial_interval,
            max_interval: cfg.retry.max_interval,
            max_elapsed: cfg.retry.max_elapsed_time,
        });
        let (queue, rx) = ForwardQueue::new(
            cfg.queue.max_bytes.as_usize(),
            cfg.queue.retry_after,
            registry,
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let reachable = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(dispatch(
            rx,
            queue.clone(),
            target,
            cfg.concurrency,
            shutdown_rx,
            reachable.clone(),
            registry.clone(),
        ));
        let probe = tokio::spawn(probe_loop(host, port, reachable.clone()));
        Ok((
            queue.clone(),
            ForwarderHandle {
                queue,
                shutdown,
                task,
                probe: Some(probe),
                reachable,
                registry: registry.clone(),
            },
        ))
    }
}

/// A delivery queue sending each queued body as one OTLP export of `signal` to the endpoint of
/// `cfg` (the OTLP metrics and logs exporters; `section` names the config field in errors).
pub(crate) fn otlp_delivery(
    exporter: &'static str,
    section: &str,
    cfg: &slipstream_config::exporters::OtlpExportConfig,
    signal: Signal,
    registry: &Registry,
) -> Result<crate::delivery::Delivery<Bytes>, String> {
    let target = Arc::new(OtlpTarget::new(
        section,
        &cfg.endpoint,
        cfg.protocol,
        &cfg.headers,
        false,
        cfg.timeout,
        cfg.tls.as_ref(),
    )?);
    Ok(crate::delivery::Delivery::start(
        exporter,
        &cfg.delivery(),
        registry,
        move |body: &Bytes| {
            let (target, body) = (target.clone(), body.clone());
            async move {
                target
                    .send(signal, body)
                    .await
                    .map_err(crate::delivery::SendError::from)
            }
        },
    ))
}

// === impl OtlpTarget ===

impl OtlpTarget {
    /// A target for `endpoint` (`http://host:port` or `https://host:port`, the base URL for
    /// HTTP), verified as `tls` says when `https://`; `section` names the config section in
    /// errors (`forward`, `exporters.otlp_metrics`).
    pub(crate) fn new(
        section: &str,
        endpoint: &str,
        protocol: ForwardProtocol,
        headers: &BTreeMap<String, String>,
        gzip: bool,
        connect_timeout: Duration,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| format!("{section}.endpoint `{endpoint}`: {e}"))?;
        let default_port = match uri.scheme_str() {
            Some("http") => 80,
            Some("https") => 443,
            _ => {
                return Err(format!(
                    "{section}.endpoint `{endpoint}`: expected http://host:port or https://host:port"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{section}.endpoint `{endpoint}` has no host"))?
            .clone();
        let header_map = crate::delivery::header_map(section, headers)?;
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(90));
        if protocol == ForwardProtocol::Grpc {
            builder
                .http2_only(true)
                .http2_initial_stream_window_size(8 << 20)
                .http2_initial_connection_window_size(16 << 20)
                .http2_max_frame_size(1 << 20);
        }
        let connector = crate::delivery::https_connector(
            section,
            connect_timeout,
            tls,
            protocol == ForwardProtocol::Grpc,
        )?;
        Ok(OtlpTarget {
            client: builder.build(connector),
            base: endpoint.trim_end_matches('/').to_owned(),
            protocol,
            headers: header_map,
            gzip,
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(default_port),
        })
    }

    /// The body as sent: gzip-compressed when configured.
    pub(crate) fn encode_body(&self, body: &Bytes) -> Bytes {
        if self.gzip { gzip(body) } else { body.clone() }
    }

    /// One export of an (already encoded) body over gRPC or HTTP.
    pub(crate) async fn send(&self, signal: Signal, body: Bytes) -> Result<(), Failure> {
        match self.protocol {
            ForwardProtocol::Grpc => send_grpc(self, signal, body).await,
            ForwardProtocol::Http => send_http(self, signal, body).await,
        }
    }
}

impl ForwarderHandle {
    /// Whether the downstream answered recently (a TCP connect or an export got through).
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// A flag that follows [`ForwarderHandle::is_reachable`], for readiness checks.
    pub fn reachable_flag(&self) -> Arc<AtomicBool> {
        self.reachable.clone()
    }

    /// The queue the receivers push into.
    pub fn queue(&self) -> &Arc<ForwardQueue> {
        &self.queue
    }

    /// Stops taking requests and delivers what is queued, for at most `deadline`. Whatever is
    /// still undelivered then is counted as dropped with reason `shutdown`.
    pub async fn shutdown(mut self, deadline: Duration) -> DrainReport {
        self.queue.close();
        let _ = self.shutdown.send(true);
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(deadline, &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
            let _ = (&mut self.task).await;
        }
        let undelivered = self.queue.requests();
        for signal in Signal::ALL {
            let n = self.queue.requests_of(signal);
            if n > 0 {
                self.registry
                    .counter(&names::DROPPED_REQUESTS, &[signal.as_str(), "shutdown"])
                    .add(n as u64);
            }
        }
        if undelivered > 0 {
            tracing::warn!(
                undelivered,
                "shutdown deadline passed with requests still undelivered; dropped"
            );
        }
        DrainReport { undelivered }
    }
}

async fn probe_loop(host: String, port: u16, reachable: Arc<AtomicBool>) {
    loop {
        if !reachable.load(Ordering::Acquire) {
            let ok = tokio::time::timeout(
                PROBE_INTERVAL,
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            if ok {
                reachable.store(true, Ordering::Release);
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Item>,
    queue: Arc<ForwardQueue>,
    target: Arc<Target>,
    concurrency: usize,
    mut shutdown: watch::Receiver<bool>,
    reachable: Arc<AtomicBool>,
    registry: Registry,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut inflight = JoinSet::new();
    let mut closing = false;
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = shutdown.wait_for(|s| *s), if !closing => {
                closing = true;
                rx.close();
                drop(permit);
                continue;
            }
        };
        let Some(item) = item else { break };
        while inflight.try_join_next().is_some() {}
        let (queue, target, reachable, registry) = (
            queue.clone(),
            target.clone(),
            reachable.clone(),
            registry.clone(),
        );
        inflight.spawn(async move {
            let (signal, len) = (item.signal, item.body.len());
            deliver(&target, item, &reachable, &registry).await;
            queue.release(signal, len);
            drop(permit);
        });
    }
    while inflight.join_next().await.is_some() {}
}

/// Sends one request until it is delivered, rejected for good, or retries run out.
async fn deliver(target: &Target, item: Item, reachable: &AtomicBool, registry: &Registry) {
    let signal = item.signal.as_str();
    let body = target.otlp.encode_body(&item.body);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let result =
            match tokio::time::timeout(target.timeout, target.otlp.send(item.signal, body.clone()))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(Failure {
                    retryable: true,
                    delay: None,
                    reason: "timeout",
                    detail: format!("no answer within {:?}", target.timeout),
                }),
            };
        let failure = match result {
            Ok(()) => {
                reachable.store(true, Ordering::Release);
                registry.counter(&names::FORWARDED_ITEMS, &[signal]).inc();
                registry
                    .counter(&names::FORWARDED_BYTES, &[signal])
                    .add(item.body.len() as u64);
                return;
            }
            Err(f) => f,
        };
        if failure.reason == "unreachable" {
            reachable.store(false, Ordering::Release);
        }
        if !failure.retryable {
            registry
                .counter(&names::DROPPED_REQUESTS, &[signal, "rejected_downstream"])
                .inc();
            tracing::warn!(signal, detail = %failure.detail, "downstream rejected a request permanently; dropped");
            return;
        }
        let backoff = backoff(target.initial, target.max_interval, attempt);
        let delay = failure.delay.map_or(backoff, |d| d.max(backoff));
        if let Some(max) = target.max_elapsed
            && started.elapsed() + delay > max
        {
            registry
                .counter(&names::DROPPED_REQUESTS, &[signal, "retries_exhausted"])
                .inc();
            tracing::warn!(signal, detail = %failure.detail, "giving up on a request after {max:?} of retries; dropped");
            return;
        }
        registry
            .counter(&names::FORWARD_RETRIES, &[signal, failure.reason])
            .inc();
        tracing::debug!(signal, attempt, reason = failure.reason, detail = %failure.detail, ?delay, "export failed; retrying");
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(data).expect("writing to a Vec cannot fail");
    Bytes::from(enc.finish().expect("writing to a Vec cannot fail"))
}

fn unreachable(e: impl std::fmt::Display) -> Failure {
    Failure {
        retryable: true,
        delay: None,
        reason: "unreachable",
        detail: e.to_string(),
    }
}

/// A POST to `path` under the endpoint with `fixed` headers, the gzip marker under
/// `encoding_header` when compressing, and the configured extra headers.
fn build_request(
    target: &OtlpTarget,
    path: &str,
    fixed: &[(HeaderName, &'static str)],
    encoding_header: HeaderName,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut req = Request::post(format!("{}{path}", target.base))
        .body(Full::new(body))
        .map_err(|e| Failure {
            retryable: false,
            delay: None,
            reason: "invalid",
            detail: e.to_string(),
        })?;
    let h = req.headers_mut();
    for (name, value) in fixed {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
    if target.gzip {
        h.insert(encoding_header, HeaderValue::from_static("gzip"));
    }
    h.extend(target.headers.clone());
    Ok(req)
}

async fn send_grpc(target: &OtlpTarget, signal: Signal, body: Bytes) -> Result<(), Failure> {
    let mut framed = BytesMut::with_capacity(body.len() + 5);
    framed.put_u8(u8::from(target.gzip));
    framed.put_u32(body.len() as u32);
    framed.put_slice(&body);
    let req = build_request(
        target,
        signal.grpc_path(),
        &[
            (header::CONTENT_TYPE, "application/grpc"),
            (header::TE, "trailers"),
        ],
        HeaderName::from_static("grpc-encoding"),
        framed.freeze(),
    )?;
    let resp = target.client.request(req).await.map_err(unreachable)?;
    let http_status = resp.status();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map_err(unreachable)?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status_of = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name));
    let Some(code) = status_of("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        // No gRPC status at all: a proxy or a non-gRPC server answered.
        let retryable = matches!(http_status.as_u16(), 429 | 502 | 503 | 504);
        return Err(Failure {
            retryable,
            delay: None,
            reason: "http_status",
            detail: format!("HTTP {http_status} without grpc-status"),
        });
    };
    if code == 0 {
        return Ok(());
    }
    let message = status_of("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let delay = status_of("grpc-status-details-bin")
        .and_then(|v| v.to_str().ok())
        .and_then(base64_decode)
        .and_then(|b| RpcStatus::decode(&b[..]).ok())
        .and_then(|s| s.retry_delay());
    Err(Failure {
        retryable: grpc_code_is_retryable(code, delay.is_some()),
        delay,
        reason: "grpc_status",
        detail: format!("grpc-status {code}: {message}"),
    })
}

async fn send_http(target: &OtlpTarget, signal: Signal, body: Bytes) -> Result<(), Failure> {
    let req = build_request(
        target,
        signal.http_path(),
        &[(header::CONTENT_TYPE, "application/x-protobuf")],
        header::CONTENT_ENCODING,
        body,
    )?;
    let resp = target.client.request(req).await.map_err(unreachable)?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read the body so the connection can be reused.
    let _ = resp.into_body().collect().await;
    if status.is_success() {
        return Ok(());
    }
    Err(Failure {
        retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
        delay: retry_after,
        reason: "http_status",
        detail: format!("HTTP {status}"),
    })
}
