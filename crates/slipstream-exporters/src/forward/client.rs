//! The OTLP exporter that drains the forward queue: gRPC or HTTP/protobuf, with retries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use slipstream_config::forward::{ForwardCompression, ForwardConfig, ForwardProtocol};
use slipstream_config::tls::ClientTlsConfig;
use slipstream_core::rpc::{RpcStatus, base64_decode};
use slipstream_core::telemetry::LabelValue as _;
use slipstream_core::{Registry, Signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::counters::{ForwardCounters, ForwardDrop, SpillReason};
use super::queue::{ForwardQueue, Item};
use super::spill::Spill;
use crate::Error;
use crate::delivery::backoff;
use crate::failure::{FailureReason, Retry, RetryPolicy, SendError, classify, grpc_status};

/// How often the downstream's reachability is probed while it is not known to be up.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Starts the forward exporter.
#[derive(Debug)]
pub struct Forwarder;

/// The running forward exporter.
#[derive(Debug)]
pub struct ForwarderHandle {
    queue: Arc<ForwardQueue>,
    spill: Option<Arc<Spill>>,
    phase: watch::Sender<Phase>,
    task: JoinHandle<DrainReport>,
    probe: Option<JoinHandle<()>>,
    reachable: Arc<AtomicBool>,
}

/// Where the forwarder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutting down: deliver what is in memory, read nothing more from the spill.
    Draining,
    /// The drain deadline passed: stop sending; what is left in memory goes to the spill, or
    /// is dropped without one.
    Abandon,
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Requests undelivered when the deadline passed and lost (counted as dropped,
    /// `reason="shutdown"`).
    pub undelivered: usize,
    /// Requests undelivered when the deadline passed and written to the disk spill, to be
    /// delivered by the next run.
    pub spilled: usize,
}

/// An OTLP endpoint and how to talk to it (gRPC or HTTP/protobuf, extra headers, compression):
/// the forward exporter's and the OTLP metrics exporter's sending half.
#[derive(Debug)]
pub(crate) struct OtlpTarget {
    client: Client<HttpsConnector<HttpConnector>, Chunks>,
    base: String,
    protocol: ForwardProtocol,
    headers: HeaderMap,
    compression: ForwardCompression,
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
    ) -> Result<(Arc<ForwardQueue>, ForwarderHandle), Error> {
        let endpoint = cfg.endpoint.clone().ok_or(Error::Unset {
            field: "forward.endpoint",
        })?;
        let otlp = OtlpTarget::new(
            "forward",
            &endpoint,
            cfg.protocol,
            &cfg.headers,
            cfg.compression,
            cfg.timeout,
            cfg.tls.as_ref(),
        )?;
        let target = Arc::new(Target {
            otlp,
            timeout: cfg.timeout,
            initial: cfg.retry.initial_interval,
            max_interval: cfg.retry.max_interval,
            max_elapsed: cfg.retry.max_elapsed_time,
        });
        let spill = cfg.queue.spill.as_ref().and_then(|sc| {
            match Spill::open(&sc.dir, sc.max_bytes.0, registry) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(
                        dir = %sc.dir.display(),
                        "forward.queue.spill: cannot use the spill directory ({e}); \
                         running with the queue in memory only"
                    );
                    None
                }
            }
        });
        let (queue, rx) = ForwardQueue::new(
            cfg.queue.max_bytes.as_usize(),
            cfg.queue.retry_after,
            spill.clone(),
            registry,
        );
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let reachable = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(
            Dispatcher {
                queue: queue.clone(),
                spill: spill.clone(),
                target: target.clone(),
                phase: phase_rx,
                reachable: reachable.clone(),
                counters: Arc::new(ForwardCounters::new(registry)),
                max_batch: usize::try_from(cfg.max_batch_bytes.0).unwrap_or(usize::MAX),
            }
            .run(rx, cfg.concurrency),
        );
        let probe = tokio::spawn(probe_loop(target.clone(), reachable.clone()));
        Ok((
            queue.clone(),
            ForwarderHandle {
                queue,
                spill,
                phase,
                task,
                probe: Some(probe),
                reachable,
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
) -> Result<crate::delivery::Delivery<Bytes>, Error> {
    let target = Arc::new(OtlpTarget::new(
        section,
        &cfg.endpoint,
        cfg.protocol,
        &cfg.headers,
        ForwardCompression::None,
        cfg.timeout,
        cfg.tls.as_ref(),
    )?);
    Ok(crate::delivery::Delivery::start(
        exporter,
        &cfg.delivery(),
        registry,
        move |body: &Bytes| {
            let (target, body) = (target.clone(), body.clone());
            async move { target.send(signal, body).await }
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
        compression: ForwardCompression,
        connect_timeout: Duration,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, Error> {
        let field = format!("{section}.endpoint");
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| Error::url(&field, endpoint, e))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(Error::url(
                field,
                endpoint,
                "expected http://host:port or https://host:port",
            ));
        }
        if uri.authority().is_none() {
            return Err(Error::NoHost {
                field,
                url: endpoint.to_owned(),
            });
        }
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
            compression,
        })
    }

    /// The body as sent: compressed when configured (once, before the first attempt).
    pub(crate) fn encode_body(&self, body: &Bytes) -> Bytes {
        match self.compression {
            ForwardCompression::None => body.clone(),
            ForwardCompression::Gzip => gzip(body),
            ForwardCompression::Zstd => zstd(body),
        }
    }

    /// [`OtlpTarget::encode_body`] of a queued request: its gzip member as it arrived when the
    /// export is gzip and the receiver kept one.
    fn encode_item(&self, item: &Item) -> Bytes {
        match (&item.gzip, self.compression) {
            (Some(gzip), ForwardCompression::Gzip) => gzip.clone(),
            _ => self.encode_body(&item.body),
        }
    }

    /// The body of one export of `batch` (requests of one signal), in parts sent one after the
    /// other: uncompressed, the requests' own buffers, not copied; compressed, their bodies
    /// joined and compressed once (a request alone as [`OtlpTarget::encode_item`] does).
    fn encode_batch(&self, batch: &[Item]) -> Vec<Bytes> {
        match (batch, self.compression) {
            ([item], _) => vec![self.encode_item(item)],
            (_, ForwardCompression::None) => batch.iter().map(|i| i.body.clone()).collect(),
            _ => {
                let mut joined = Vec::with_capacity(batch.iter().map(|i| i.body.len()).sum());
                for item in batch {
                    joined.extend_from_slice(&item.body);
                }
                vec![self.encode_body(&Bytes::from(joined))]
            }
        }
    }

    /// Whether the export of `batch` is compressed here (not sent as it is queued).
    fn compresses(&self, batch: &[Item]) -> bool {
        match (batch, self.compression) {
            (_, ForwardCompression::None) => false,
            ([item], ForwardCompression::Gzip) => item.gzip.is_none(),
            _ => true,
        }
    }

    /// The `Content-Encoding` / `grpc-encoding` value, `None` when sent as is.
    fn encoding(&self) -> Option<&'static str> {
        match self.compression {
            ForwardCompression::None => None,
            ForwardCompression::Gzip => Some("gzip"),
            ForwardCompression::Zstd => Some("zstd"),
        }
    }

    /// One export of an (already encoded) body over gRPC or HTTP.
    pub(crate) async fn send(&self, signal: Signal, body: Bytes) -> Result<(), SendError> {
        self.send_parts(signal, vec![body]).await
    }

    /// [`OtlpTarget::send`] of a body in parts, sent one after the other.
    async fn send_parts(&self, signal: Signal, parts: Vec<Bytes>) -> Result<(), SendError> {
        match self.protocol {
            ForwardProtocol::Grpc => send_grpc(self, signal, parts).await,
            ForwardProtocol::Http => send_http(self, signal, parts).await,
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

    /// Stops taking requests and delivers what is queued in memory, for at most `deadline`.
    /// What is still undelivered then is written to the disk spill when there is one (the next
    /// run delivers it), or counted as dropped with reason `shutdown`.
    pub async fn shutdown(self, deadline: Duration) -> DrainReport {
        self.shutdown_or(deadline, std::future::pending()).await
    }

    /// [`ForwarderHandle::shutdown`], with the deadline cut short when `cut` completes.
    pub async fn shutdown_or(
        mut self,
        deadline: Duration,
        cut: impl Future<Output = ()>,
    ) -> DrainReport {
        self.queue.close();
        let _ = self.phase.send(Phase::Draining);
        if let Some(p) = self.probe.take() {
            p.abort();
        }
        let drained = tokio::select! {
            r = tokio::time::timeout(deadline, &mut self.task) => r.ok(),
            () = cut => None,
        };
        let report = match drained {
            Some(r) => r,
            None => {
                let _ = self.phase.send(Phase::Abandon);
                (&mut self.task).await
            }
        }
        .unwrap_or_default();
        if let Some(spill) = &self.spill {
            spill.persist();
        }
        if report.undelivered > 0 {
            tracing::warn!(
                undelivered = report.undelivered,
                "shutdown deadline passed with requests still undelivered; dropped"
            );
        }
        if report.spilled > 0 {
            tracing::info!(
                spilled = report.spilled,
                "shutdown deadline passed; undelivered requests written to the forward spill"
            );
        }
        report
    }
}

/// While the downstream is not known to be up, sends it an empty export request (valid OTLP,
/// no data) every [`PROBE_INTERVAL`]: it goes through the same connection, TLS handshake and
/// headers as real exports, so a downstream that accepts TCP but not our certificate or token
/// is not taken for reachable.
async fn probe_loop(target: Arc<Target>, reachable: Arc<AtomicBool>) {
    loop {
        if !reachable.load(Ordering::Acquire) {
            let ok = tokio::time::timeout(
                PROBE_INTERVAL.min(target.timeout),
                target
                    .otlp
                    .send(Signal::Traces, target.otlp.encode_body(&Bytes::new())),
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

/// Takes requests from the memory queue and the spill and delivers them, `concurrency` at a
/// time.
struct Dispatcher {
    queue: Arc<ForwardQueue>,
    spill: Option<Arc<Spill>>,
    target: Arc<Target>,
    phase: watch::Receiver<Phase>,
    reachable: Arc<AtomicBool>,
    counters: Arc<ForwardCounters>,
    /// `forward.max_batch_bytes`: 0 sends each request alone.
    max_batch: usize,
}

/// One delivery in flight.
type Delivery = std::pin::Pin<Box<dyn Future<Output = Delivered> + Send>>;

/// A delivery on a task of its own, stopped when the dispatcher drops it (as the deliveries it
/// polls itself are).
struct AbortOnDrop(JoinHandle<Delivered>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How one delivery ended.
enum Delivered {
    /// Delivered, or dropped for good (counted).
    Done,
    /// Stopped by [`Phase::Abandon`] before it was delivered.
    Abandoned(Vec<Item>),
}

impl Dispatcher {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Item>,
        concurrency: usize,
    ) -> DrainReport {
        // Deliveries in flight, polled by this task: a request that needs no compressing costs
        // no task of its own (no spawn, no wakeup of another task when it is answered).
        let mut inflight: FuturesUnordered<Delivery> = FuturesUnordered::new();
        let mut report = DrainReport::default();
        // Memory and spill take turns, so neither starves the other.
        let mut spill_turn = false;
        // A request taken from memory that could not join the last batch: sent next.
        let mut held: Option<Item> = None;
        loop {
            let phase = *self.phase.borrow_and_update();
            if phase == Phase::Abandon {
                break;
            }
            if phase == Phase::Draining {
                rx.close();
            }
            if inflight.len() >= concurrency {
                tokio::select! {
                    Some(done) = inflight.next() => self.settle(done, &mut report),
                    _ = self.phase.changed() => {}
                }
                continue;
            }
            let spill = self
                .spill
                .as_ref()
                .filter(|s| phase == Phase::Running && s.has_unread());
            let from_spill = |s: &Arc<Spill>| {
                s.next().map(|r| Item {
                    signal: r.signal,
                    body: r.body,
                    gzip: None,
                    spilled: Some(r.at),
                })
            };
            let item = match (spill, spill_turn) {
                (Some(s), true) => from_spill(s),
                _ => match held.take().map_or_else(|| rx.try_recv(), Ok) {
                    Ok(item) => Some(item),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => match spill {
                        Some(s) => from_spill(s),
                        None => {
                            let watch_spill =
                                self.spill.clone().filter(|_| phase == Phase::Running);
                            tokio::select! {
                                item = rx.recv() => match item {
                                    Some(item) => Some(item),
                                    None => break,
                                },
                                Some(done) = inflight.next(), if !inflight.is_empty() => {
                                    self.settle(done, &mut report);
                                    None
                                }
                                _ = async { watch_spill.as_ref().expect("guarded").appended().await }, if watch_spill.is_some() => None,
                                _ = self.phase.changed() => None,
                            }
                        }
                    },
                },
            };
            spill_turn = !spill_turn;
            let Some(item) = item else { continue };
            let batch = self.batch(item, &mut rx, &mut held);
            let compresses = self.target.otlp.compresses(&batch);
            let (target, reachable, counters, queue, spill, mut phase) = (
                self.target.clone(),
                self.reachable.clone(),
                self.counters.clone(),
                self.queue.clone(),
                self.spill.clone(),
                self.phase.clone(),
            );
            let delivery = async move {
                let abandoned = tokio::select! {
                    () = deliver(&target, &batch, &reachable, &counters) => false,
                    _ = phase.wait_for(|p| *p == Phase::Abandon) => true,
                };
                if abandoned {
                    return Delivered::Abandoned(batch);
                }
                for item in &batch {
                    match (item.spilled, &spill) {
                        (Some(at), Some(spill)) => spill.ack(at),
                        _ => queue.release(item.signal, item.held()),
                    }
                }
                Delivered::Done
            };
            if compresses {
                // Compressing is CPU work: on a task of its own, it runs beside the others.
                let mut task = AbortOnDrop(tokio::spawn(delivery));
                inflight.push(Box::pin(async move {
                    (&mut task.0).await.unwrap_or_else(|e| {
                        tracing::error!("a forward delivery task failed: {e}");
                        Delivered::Done
                    })
                }));
            } else {
                inflight.push(Box::pin(delivery));
            }
        }
        // Memory is drained or the deadline passed: finish what is in flight (deliveries stop
        // at the deadline and hand their request back).
        while let Some(done) = inflight.next().await {
            self.settle(done, &mut report);
        }
        rx.close();
        if let Some(item) = held.take() {
            self.abandon(item, &mut report);
        }
        while let Ok(item) = rx.try_recv() {
            self.abandon(item, &mut report);
        }
        report
    }

    /// `first` and the requests already waiting in memory behind it that can go in the same
    /// export: of the same signal, up to `forward.max_batch_bytes` together. Export requests are a
    /// repeated field at the top level, so their bodies joined are one request holding them
    /// all. A batch never waits for more requests: under light load each goes alone. A request
    /// from the spill, or one sent as the gzip member it arrived as, goes alone; a request
    /// that cannot join is kept in `held`, to go next.
    fn batch(
        &self,
        first: Item,
        rx: &mut mpsc::UnboundedReceiver<Item>,
        held: &mut Option<Item>,
    ) -> Vec<Item> {
        let alone = |item: &Item| {
            item.spilled.is_some()
                || (item.gzip.is_some() && self.target.otlp.compression == ForwardCompression::Gzip)
        };
        if self.max_batch == 0 || alone(&first) || held.is_some() {
            return vec![first];
        }
        let (signal, mut bytes) = (first.signal, first.body.len());
        let mut batch = vec![first];
        while bytes < self.max_batch {
            let Ok(next) = rx.try_recv() else { break };
            if next.signal != signal || alone(&next) || bytes + next.body.len() > self.max_batch {
                *held = Some(next);
                break;
            }
            bytes += next.body.len();
            batch.push(next);
        }
        batch
    }

    /// Accounts for one finished delivery.
    fn settle(&self, done: Delivered, report: &mut DrainReport) {
        if let Delivered::Abandoned(batch) = done {
            for item in batch {
                self.abandon(item, report);
            }
        }
    }

    /// A request the drain deadline caught undelivered: one from the spill stays there
    /// (unacknowledged, so the next run sends it); one from memory is written to the spill or,
    /// without one, dropped.
    fn abandon(&self, item: Item, report: &mut DrainReport) {
        if item.spilled.is_some() {
            return;
        }
        let len = item.held();
        let spilled = self.spill.as_ref().is_some_and(|s| {
            match s.append(item.signal, &item.body, SpillReason::Shutdown) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("forward spill: cannot keep a request at shutdown: {e:?}");
                    false
                }
            }
        });
        if spilled {
            report.spilled += 1;
        } else {
            report.undelivered += 1;
            self.counters.dropped(item.signal, ForwardDrop::Shutdown);
        }
        self.queue.release(item.signal, len);
    }
}

/// Sends one export (a batch of requests joined) until it is delivered, rejected for good, or
/// retries run out. Each request of the batch is counted as it would be alone.
async fn deliver(
    target: &Target,
    batch: &[Item],
    reachable: &AtomicBool,
    counters: &ForwardCounters,
) {
    let signal = batch[0].signal;
    let body = target.otlp.encode_batch(batch);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let result = match tokio::time::timeout(
            target.timeout,
            target.otlp.send_parts(signal, body.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(SendError::timeout(target.timeout)),
        };
        let failure = match result {
            Ok(()) => {
                reachable.store(true, Ordering::Release);
                for item in batch {
                    counters.delivered(item.signal, item.body.len());
                }
                return;
            }
            Err(f) => f,
        };
        if failure.reason == FailureReason::Unreachable {
            reachable.store(false, Ordering::Release);
        }
        let (requests, signal_name) = (batch.len(), signal.as_str());
        let Retry::After(asked) = failure.retry else {
            for item in batch {
                counters.dropped(item.signal, ForwardDrop::RejectedDownstream);
            }
            tracing::warn!(signal = signal_name, requests, detail = %failure.detail, "downstream rejected an export permanently; its requests dropped");
            return;
        };
        let backoff = backoff(target.initial, target.max_interval, attempt);
        let delay = asked.map_or(backoff, |d| d.max(backoff));
        if let Some(max) = target.max_elapsed
            && started.elapsed() + delay > max
        {
            for item in batch {
                counters.dropped(item.signal, ForwardDrop::RetriesExhausted);
            }
            tracing::warn!(signal = signal_name, requests, detail = %failure.detail, "giving up on an export after {max:?} of retries; its requests dropped");
            return;
        }
        for item in batch {
            counters.retried(item.signal, failure.reason);
        }
        tracing::debug!(signal = signal_name, requests, attempt, reason = failure.reason.as_str(), detail = %failure.detail, ?delay, "export failed; retrying");
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

/// The zstd level of forwarded requests.
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// This thread's deflate state, reset for each request: a new one would allocate and clear
    /// its window and hash tables every time.
    static DEFLATE: RefCell<Option<flate2::Compress>> = const { RefCell::new(None) };
    /// This thread's zstd context, for the same reason.
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// The gzip member header: deflate, no name or time, "fastest" (RFC 1952).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// gzip at level 1: on OTLP protobuf, level 6 makes it 14% smaller for five times the CPU
/// (`docs/benchmarks.md`, "Compression").
fn gzip(data: &[u8]) -> Bytes {
    DEFLATE.with_borrow_mut(|state| {
        let deflate =
            state.get_or_insert_with(|| flate2::Compress::new(flate2::Compression::fast(), false));
        deflate.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            let read = deflate.total_in() as usize;
            let status = deflate
                .compress_vec(&data[read..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflate of a whole buffer cannot fail");
            if status == flate2::Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(4096));
        }
        let mut crc = flate2::Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        Bytes::from(out)
    })
}

/// zstd at [`ZSTD_LEVEL`] (`docs/benchmarks.md`, "Compression").
fn zstd(data: &[u8]) -> Bytes {
    ZSTD.with_borrow_mut(|state| {
        let zstd = match state {
            Some(z) => z,
            None => {
                state.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a valid zstd level"))
            }
        };
        Bytes::from(
            zstd.compress(data)
                .expect("compressing into a Vec cannot fail"),
        )
    })
}

/// A POST to `path` under the endpoint with `fixed` headers, the compression's name under
/// `encoding_header` when compressing, and the configured extra headers.
fn build_request(
    target: &OtlpTarget,
    path: &str,
    fixed: &[(HeaderName, &'static str)],
    encoding_header: HeaderName,
    body: Chunks,
) -> Result<Request<Chunks>, SendError> {
    let mut req = Request::post(format!("{}{path}", target.base))
        .body(body)
        .map_err(|e| SendError::permanent(FailureReason::Invalid, e.to_string()))?;
    let h = req.headers_mut();
    for (name, value) in fixed {
        h.insert(name.clone(), HeaderValue::from_static(value));
    }
    if let Some(encoding) = target.encoding() {
        h.insert(encoding_header, HeaderValue::from_static(encoding));
    }
    h.extend(target.headers.clone());
    Ok(req)
}

async fn send_grpc(
    target: &OtlpTarget,
    signal: Signal,
    parts: Vec<Bytes>,
) -> Result<(), SendError> {
    let mut prefix = BytesMut::with_capacity(5);
    prefix.put_u8(u8::from(target.encoding().is_some()));
    prefix.put_u32(parts.iter().map(Bytes::len).sum::<usize>() as u32);
    let mut chunks = Vec::with_capacity(parts.len() + 1);
    chunks.push(prefix.freeze());
    chunks.extend(parts);
    let req = build_request(
        target,
        signal.grpc_path(),
        &[
            (header::CONTENT_TYPE, "application/grpc"),
            (header::TE, "trailers"),
        ],
        HeaderName::from_static("grpc-encoding"),
        Chunks::new(chunks),
    )?;
    let resp = target
        .client
        .request(req)
        .await
        .map_err(SendError::unreachable)?;
    let http_status = resp.status();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map_err(SendError::unreachable)?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status_of = |name: &str| trailers.get(name).or_else(|| parts.headers.get(name));
    let Some(code) = status_of("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        // No gRPC status at all: a proxy or a non-gRPC server answered (a success status
        // without one is a failure too).
        let mut failure = classify(RetryPolicy::Otlp, http_status, None)
            .err()
            .unwrap_or_else(|| SendError::permanent(FailureReason::HttpStatus, String::new()));
        failure.detail = format!("HTTP {http_status} without grpc-status");
        return Err(failure);
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
    grpc_status(code, &message, delay)
}

async fn send_http(
    target: &OtlpTarget,
    signal: Signal,
    parts: Vec<Bytes>,
) -> Result<(), SendError> {
    let req = build_request(
        target,
        signal.http_path(),
        &[(header::CONTENT_TYPE, "application/x-protobuf")],
        header::CONTENT_ENCODING,
        Chunks::new(parts),
    )?;
    let resp = target
        .client
        .request(req)
        .await
        .map_err(SendError::unreachable)?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read the body so the connection can be reused.
    let _ = resp.into_body().collect().await;
    classify(RetryPolicy::Otlp, status, retry_after)
}

/// A request body of chunks sent one after the other (the gRPC prefix, then the message or
/// the requests of a batch), so that each is sent from the buffer it is queued in, not copied
/// to join them.
#[derive(Debug)]
pub(crate) struct Chunks {
    chunks: Vec<Bytes>,
    next: usize,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>) -> Self {
        Chunks { chunks, next: 0 }
    }

    fn left(&self) -> &[Bytes] {
        &self.chunks[self.next.min(self.chunks.len())..]
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        while self.next < self.chunks.len() {
            let i = self.next;
            self.next += 1;
            let chunk = std::mem::take(&mut self.chunks[i]);
            if !chunk.is_empty() {
                return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.left().iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left().iter().map(|c| c.len() as u64).sum())
    }
}
