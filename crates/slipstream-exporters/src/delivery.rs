//! The bounded delivery queue every push exporter sends through, and its HTTP helper.
//!
//! [`Delivery::start`] spawns one worker task that takes items in order and hands each to the
//! exporter's send function until it succeeds:
//!
//! - [`Delivery::push`] never blocks and never awaits. The queue holds at most `queue_size`
//!   items; a push into a full queue drops the oldest item (`reason="queue_full"`), so a slow
//!   or dead target never holds up ingestion, the SLO engine or another exporter.
//! - A retryable [`SendError`] is retried with exponential backoff and ±20% jitter, from
//!   `retry.initial_interval` doubling up to `retry.max_interval`; a longer delay the server
//!   asked for (`Retry-After`) is honoured. When `retry.max_elapsed_time` is set and the next
//!   attempt would start past it, the item is dropped (`reason="retries_exhausted"`); unset, it
//!   is retried until the target takes it (new pushes keep queueing meanwhile, dropping the
//!   oldest).
//! - A permanent [`SendError`] drops the item at once (`reason="rejected"`).
//! - Every attempt is bounded by `timeout`; one that runs over counts as a `timeout` failure
//!   and is retried.
//! - [`Delivery::shutdown`] delivers what is queued within a deadline and counts the rest as
//!   dropped (`reason="shutdown"`).
//!
//! Counters (see [`crate::names`]): `slipstream_exporter_sent_total`,
//! `slipstream_exporter_failures_total` (every failed attempt, by reason),
//! `slipstream_exporter_dropped_total` (by reason) and the gauge
//! `slipstream_exporter_queue_length`, each labelled with the exporter's name.
//!
//! [`post`] is the HTTP POST every HTTP exporter uses; it classifies answers into success,
//! retryable and permanent failures ([`crate::failure::classify`], [`RetryPolicy::Http`]). It speaks HTTP/1.1 over plain `http://` or over TLS
//! (`https://`, rustls; trust roots and client certificate from the exporter's `tls`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use slipstream_config::exporters::DeliveryConfig;
use slipstream_config::tls::ClientTlsConfig;
use slipstream_core::Registry;
use slipstream_core::telemetry::{ByLabel, Counter, Gauge, LabelValue};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use crate::failure::SendError;
use crate::failure::{FailureReason, Retry, RetryPolicy, classify};
use crate::{Error, names};

/// Why a push exporter gave an item up: the `reason` of `slipstream_exporter_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full and this was its oldest item (`queue_full`).
    QueueFull,
    /// The target refused it for good (`rejected`).
    Rejected,
    /// `retry.max_elapsed_time` passed (`retries_exhausted`).
    RetriesExhausted,
    /// Still undelivered at the shutdown deadline, or pushed after shutdown (`shutdown`).
    Shutdown,
}

impl LabelValue for DropReason {
    const COUNT: usize = 4;

    fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Items waiting, and whether the worker holds one it has not delivered yet.
#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    in_flight: bool,
    closed: bool,
}

/// What the handles and the worker share.
#[derive(Debug)]
struct Shared<T> {
    exporter: &'static str,
    capacity: usize,
    state: Mutex<State<T>>,
    notify: Notify,
    sent: Arc<Counter>,
    failures: ByLabel<FailureReason>,
    dropped: ByLabel<DropReason>,
    /// Moved by differences, so that queues sharing an exporter name (one per Alertmanager)
    /// add up.
    length: Arc<Gauge>,
}

/// How the worker retries.
#[derive(Debug, Clone)]
struct Policy {
    timeout: Duration,
    initial: Duration,
    max_interval: Duration,
    max_elapsed: Option<Duration>,
}

/// A bounded queue drained by a worker task that delivers each item with retries. Dropping it
/// without [`Delivery::shutdown`] stops the worker and loses what is queued.
#[derive(Debug)]
pub struct Delivery<T> {
    shared: Arc<Shared<T>>,
    task: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle that pushes into a [`Delivery`]'s queue (for timers and other
/// tasks that feed the same queue).
#[derive(Debug)]
pub struct DeliveryQueue<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for DeliveryQueue<T> {
    fn clone(&self) -> Self {
        DeliveryQueue {
            shared: self.shared.clone(),
        }
    }
}

// === impl Delivery ===

impl<T: Send + Sync + 'static> Delivery<T> {
    /// Starts the worker of exporter `exporter` (the `exporter` label value) on the current
    /// tokio runtime. `send` is called once per attempt with the item; its future cannot borrow
    /// the item, so clone what it needs (a [`Bytes`] clone is a reference count).
    pub fn start<F, Fut>(
        exporter: &'static str,
        cfg: &DeliveryConfig,
        registry: &Registry,
        send: F,
    ) -> Self
    where
        F: Fn(&T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), SendError>> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            exporter,
            capacity: cfg.queue_size.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                in_flight: false,
                closed: false,
            }),
            notify: Notify::new(),
            sent: registry.counter(&names::SENT, &[exporter]),
            failures: ByLabel::new(registry, &names::FAILURES, &[exporter]),
            dropped: ByLabel::new(registry, &names::DROPPED, &[exporter]),
            length: registry.gauge(&names::QUEUE_LENGTH, &[exporter]),
        });
        let policy = Policy {
            timeout: cfg.timeout,
            initial: cfg.retry.initial_interval,
            max_interval: cfg.retry.max_interval.max(cfg.retry.initial_interval),
            max_elapsed: cfg.retry.max_elapsed_time,
        };
        let task = tokio::spawn(work(shared.clone(), policy, send));
        Delivery {
            shared,
            task: Some(task),
        }
    }
}

impl<T> Delivery<T> {
    /// Queues `item` without waiting; drops the oldest queued item when the queue is full.
    pub fn push(&self, item: T) {
        self.shared.push(item);
    }

    /// A handle other tasks can push through.
    pub fn queue(&self) -> DeliveryQueue<T> {
        DeliveryQueue {
            shared: self.shared.clone(),
        }
    }

    /// Items waiting (the one being sent not included).
    pub fn queued(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Stops taking items and delivers what is queued for at most `deadline`; whatever is
    /// still undelivered then (the item being retried included) is counted as dropped
    /// (`reason="shutdown"`). Returns that number.
    pub async fn shutdown(mut self, deadline: Duration) -> usize {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(deadline, &mut task).await.is_err()
        {
            task.abort();
            let _ = task.await;
        }
        let undelivered = {
            let mut st = self.shared.lock();
            let queued = st.items.len();
            let n = queued + usize::from(st.in_flight);
            st.items.clear();
            st.in_flight = false;
            self.shared.length.add(-(queued as i64));
            n
        };
        if undelivered > 0 {
            self.shared.drop_items(DropReason::Shutdown, undelivered);
            tracing::warn!(
                exporter = self.shared.exporter,
                undelivered,
                "shutdown deadline passed with items still undelivered; dropped"
            );
        }
        undelivered
    }
}

impl<T> Drop for Delivery<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl<T> DeliveryQueue<T> {
    /// Queues `item` without waiting; drops the oldest queued item when the queue is full.
    pub fn push(&self, item: T) {
        self.shared.push(item);
    }
}

// === impl Shared ===

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_items(&self, reason: DropReason, n: usize) {
        self.dropped.add(reason, n as u64);
    }

    fn push(&self, item: T) {
        let mut st = self.lock();
        if st.closed {
            drop(st);
            self.drop_items(DropReason::Shutdown, 1);
            return;
        }
        let mut dropped = false;
        if st.items.len() >= self.capacity {
            st.items.pop_front();
            dropped = true;
        }
        st.items.push_back(item);
        if !dropped {
            self.length.add(1);
        }
        drop(st);
        if dropped {
            self.drop_items(DropReason::QueueFull, 1);
            tracing::debug!(
                exporter = self.exporter,
                "export queue full; dropped the oldest item"
            );
        }
        self.notify.notify_one();
    }

    /// The next item, marked in flight; `None` once closed and empty.
    async fn next(&self) -> Option<T> {
        loop {
            {
                let mut st = self.lock();
                if let Some(item) = st.items.pop_front() {
                    st.in_flight = true;
                    self.length.add(-1);
                    return Some(item);
                }
                if st.closed {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody waits, so no wake-up is lost.
            self.notify.notified().await;
        }
    }
}

async fn work<T, F, Fut>(shared: Arc<Shared<T>>, policy: Policy, send: F)
where
    F: Fn(&T) -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    while let Some(item) = shared.next().await {
        deliver(&shared, &policy, &send, &item).await;
        shared.lock().in_flight = false;
    }
}

/// Sends one item until it is delivered, rejected, or retries run out.
async fn deliver<T, F, Fut>(shared: &Shared<T>, policy: &Policy, send: &F, item: &T)
where
    F: Fn(&T) -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let exporter = shared.exporter;
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let result = match tokio::time::timeout(policy.timeout, send(item)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::timeout(policy.timeout)),
        };
        let error = match result {
            Ok(()) => {
                shared.sent.inc();
                return;
            }
            Err(e) => e,
        };
        shared.failures.inc(error.reason);
        let reason = error.reason.as_str();
        let retry_after = match error.retry {
            Retry::Never => {
                shared.drop_items(DropReason::Rejected, 1);
                tracing::warn!(
                    exporter,
                    reason,
                    detail = %error.detail,
                    "the target rejected an item permanently; dropped"
                );
                return;
            }
            Retry::After(after) => after,
        };
        let pause = backoff(policy.initial, policy.max_interval, attempt);
        let delay = retry_after.map_or(pause, |d| d.max(pause));
        if let Some(max) = policy.max_elapsed
            && started.elapsed() + delay > max
        {
            shared.drop_items(DropReason::RetriesExhausted, 1);
            tracing::warn!(
                exporter,
                reason,
                "giving up on an item after {max:?} of retries; dropped"
            );
            return;
        }
        tracing::debug!(
            exporter,
            attempt,
            reason,
            ?delay,
            "delivery failed; retrying"
        );
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Exponential backoff with ±20% jitter: `initial` doubled `attempt` times, at most `max`.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let base = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    let jitter = rand::rng().random_range(0.8..1.2);
    base.mul_f64(jitter).min(max)
}

// === HTTP ===

/// The HTTP client push exporters share (`http://` or `https://`, HTTP/1.1, pooled
/// connections).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A pooled HTTP client whose connects give up after `connect_timeout`, verifying `https://`
/// servers as `tls` says (the built-in roots when `None`); `section` names the config section
/// in errors (`exporters.webhook`). Fails on a TLS file that cannot be used.
pub fn http_client(
    section: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<HttpClient, Error> {
    let connector = https_connector(section, connect_timeout, tls, false)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// A connector for `http://` and `https://` URLs: TCP with `connect_timeout`, then for
/// `https://` a rustls handshake offering `h2` (when `http2_only`) or `http/1.1` by ALPN.
pub(crate) fn https_connector(
    section: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
    http2_only: bool,
) -> Result<HttpsConnector<HttpConnector>, Error> {
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    tcp.enforce_http(false);
    let config = tls
        .cloned()
        .unwrap_or_default()
        .load(&format!("{section}.tls"))
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    Ok(if http2_only {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    })
}

/// What [`endpoint_queues`] posts: the exporter's name, its config section, the path under
/// each endpoint, the content type and the headers (the configured ones and any of its own).
#[derive(Debug, Clone)]
pub struct EndpointPosts<'a> {
    /// The `exporter` label value.
    pub exporter: &'static str,
    /// The config section, for errors (`exporters.alertmanager`).
    pub section: &'a str,
    /// The path appended to each endpoint (`/api/v2/alerts`).
    pub path: &'a str,
    /// `Content-Type` of every request.
    pub content_type: &'static str,
    /// Headers of every request.
    pub headers: HeaderMap,
}

/// One delivery queue per URL of `endpoints` (the `endpoints` field of `posts.section`), each
/// POSTing the body `body` makes of an item to that URL followed by `posts.path`, through one
/// shared HTTP client. For exporters with several targets: Alertmanager sends every item to
/// each, partial aggregates each item to one.
pub fn endpoint_queues<T, B>(
    posts: EndpointPosts<'_>,
    endpoints: &[String],
    cfg: &DeliveryConfig,
    registry: &Registry,
    body: B,
) -> Result<Vec<Delivery<T>>, Error>
where
    T: Send + Sync + 'static,
    B: Fn(&T) -> Bytes + Clone + Send + Sync + 'static,
{
    let client = http_client(posts.section, cfg.timeout, cfg.tls.as_ref())?;
    let mut queues = Vec::with_capacity(endpoints.len());
    for (i, endpoint) in endpoints.iter().enumerate() {
        let url = http_url(
            &format!("{}.endpoints[{i}]", posts.section),
            &format!("{}{}", endpoint.trim_end_matches('/'), posts.path),
        )?;
        let (client, headers, timeout, body) = (
            client.clone(),
            posts.headers.clone(),
            cfg.timeout,
            body.clone(),
        );
        let content_type = posts.content_type;
        queues.push(Delivery::start(
            posts.exporter,
            cfg,
            registry,
            move |item: &T| {
                let body = body(item);
                let (client, url, headers) = (client.clone(), url.clone(), headers.clone());
                async move { post(&client, &url, &headers, content_type, body, timeout).await }
            },
        ));
    }
    Ok(queues)
}

/// The configured extra headers as a header map; `section` names the config section in
/// errors (`exporters.webhook`).
pub fn header_map(section: &str, headers: &BTreeMap<String, String>) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let field = || format!("{section}.headers.{k}");
        let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|e| Error::field(field(), e))?;
        let value = HeaderValue::from_str(v).map_err(|e| Error::field(field(), e))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Parses an `http://` or `https://` URL; `field` names the config field in errors.
pub fn http_url(field: &str, url: &str) -> Result<Uri, Error> {
    let uri: Uri = url.parse().map_err(|e| Error::url(field, url, e))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(Error::url(
            field,
            url,
            "expected http://host:port/... or https://host:port/...",
        )),
    }
}

/// POSTs `body` to `url` with `headers` and `content_type`, waiting at most `timeout` for the
/// whole answer. Classification: 2xx is success; a connection error is retryable
/// (`unreachable`), so is running past `timeout` (`timeout`); statuses as
/// [`RetryPolicy::Http`] says (429 and every 5xx retryable, honouring a `Retry-After` given
/// in seconds; every other status, 4xx and 3xx, permanent), counted as `http_status`.
pub async fn post(
    client: &HttpClient,
    url: &Uri,
    headers: &HeaderMap,
    content_type: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(), SendError> {
    let invalid = |e: http::Error| SendError::permanent(FailureReason::Invalid, e.to_string());
    let mut req = Request::post(url.clone())
        .body(Full::new(body))
        .map_err(invalid)?;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(|e| invalid(e.into()))?,
    );
    h.extend(headers.clone());
    let exchange = async {
        let resp = client.request(req).await.map_err(SendError::unreachable)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read the body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        classify(RetryPolicy::Http, status, retry_after)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(SendError::timeout(timeout)),
    }
}

#[cfg(test)]
mod tests;
