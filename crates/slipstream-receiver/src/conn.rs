//! Connection limits: what one connection may hold, and for how long.
//!
//! Every listener (the two OTLP receivers, the admin and scrape servers) keeps a
//! [`Connections`]: a semaphore of `max_open` permits, one held by each connection's task, and
//! its self-metrics. Past the cap a new connection is accepted and closed at once, which frees
//! its descriptor straight away (leaving it in the kernel's backlog would hold one there, and
//! let the backlog fill with connections that are never served). Failed accepts (EMFILE and
//! the like) back the accept loop off, doubling from 5 ms to 1 s, and are logged at most once
//! every 10 s with the number left unsaid. The OTLP listeners' caps are fitted at start below
//! the process's open-file limit ([`fit_to_open_files`]), so that a flood meets the cap before
//! the process runs out of descriptors for everything else.
//!
//! Each admitted connection then has, in turn: `handshake_timeout` to send its first bytes (or
//! finish its TLS handshake); `header_timeout` to complete its first request's headers (HTTP/2:
//! the preface, settings and first HEADERS); while a request is in progress its body must keep
//! up a minimum rate ([`TimedBody`]); with no request in progress it is closed after
//! `idle_timeout`. A [`Watchdog`] follows the requests of one connection (started and finished,
//! as the service sees them, so the same rule covers HTTP/1 and HTTP/2) and says when and why
//! it must close. HTTP/2 keep-alive pings are hyper's.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use slipstream_config::receiver::ConnectionsConfig;
use slipstream_core::telemetry::{Counter, Gauge, Registry, names};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The admin and scrape servers' cap on open connections: small, so that a flood on them
/// cannot take the descriptors the receivers need, and large enough for every prober.
pub const ADMIN_MAX_OPEN: usize = 64;
/// First pause of the accept loop after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause of the accept loop after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Shortest interval between two log lines about failed accepts (or refused connections) on
/// one listener.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits of one listener's connections; see `receivers.otlp.connections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_open: usize,
    /// Time to send the first bytes, or finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time, after the first bytes, to complete the first request's headers.
    pub header_timeout: Duration,
    /// Time a connection with no request in progress stays open.
    pub idle_timeout: Duration,
    /// Time a request body may take before it must keep up `min_body_rate`.
    pub body_timeout: Duration,
    /// Slowest average rate of a body, in bytes per second (0: none).
    pub min_body_rate: u64,
    /// Interval of HTTP/2 keep-alive pings.
    pub keepalive_interval: Duration,
    /// Time a keep-alive ping has to be answered.
    pub keepalive_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `cfg` configures.
    pub fn from_config(cfg: &ConnectionsConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_open: cfg.max_open,
            handshake_timeout: cfg.handshake_timeout,
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            body_timeout: cfg.body_timeout,
            min_body_rate: cfg.min_body_rate.bytes(),
            keepalive_interval: cfg.keepalive_interval,
            keepalive_timeout: cfg.keepalive_timeout,
        }
    }

    /// The admin and scrape servers' limits: the default deadlines, and a cap of
    /// [`ADMIN_MAX_OPEN`].
    pub fn admin() -> ConnectionLimits {
        ConnectionLimits {
            max_open: ADMIN_MAX_OPEN,
            ..ConnectionLimits::from_config(&ConnectionsConfig::default())
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::from_config(&ConnectionsConfig::default())
    }
}

// === Open-file limit ===

/// Descriptors left to everything but the OTLP listeners' connections: the admin and scrape
/// servers (64 each), forward connections, state and spill files, the log.
const RESERVED_FILES: u64 = 256;
/// The smallest per-listener cap the open-file limit can bring `max_open` down to.
const MIN_FITTED_OPEN: usize = 16;

/// The soft limit on open files of this process (`/proc/self/limits`); `None` where it cannot
/// be read or is unlimited.
pub(crate) fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `max_open` for each of `listeners` OTLP listeners, brought down so that together they
/// stay [`RESERVED_FILES`] below the open-file limit `nofile`: a flood then meets the cap
/// (connections closed at once, counted) before the process runs out of descriptors, which
/// would fail the admin server's accepts, forward connections and state files too.
pub(crate) fn fit_to_open_files(max_open: usize, listeners: usize, nofile: Option<u64>) -> usize {
    let (Some(nofile), Ok(n)) = (nofile, u64::try_from(listeners.max(1))) else {
        return max_open;
    };
    let share = nofile.saturating_sub(RESERVED_FILES) / n;
    let share = usize::try_from(share).unwrap_or(usize::MAX);
    max_open.min(share.max(MIN_FITTED_OPEN))
}

// === Reasons ===

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The listener had `max_open` connections already.
    OverLimit,
    /// No first bytes, or no TLS handshake, within `handshake_timeout`.
    HandshakeTimeout,
    /// The first request's headers were not complete within `header_timeout` (or, on HTTP/1,
    /// a later request's within hyper's header deadline).
    HeaderTimeout,
    /// No request in progress for `idle_timeout`.
    IdleTimeout,
    /// A request body fell below the minimum rate.
    BodyTimeout,
    /// An HTTP/2 keep-alive ping went unanswered.
    KeepaliveTimeout,
}

impl CloseReason {
    const ALL: [CloseReason; 6] = [
        CloseReason::OverLimit,
        CloseReason::HandshakeTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::BodyTimeout,
        CloseReason::KeepaliveTimeout,
    ];

    /// The `reason` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::OverLimit => "over_limit",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::KeepaliveTimeout => "keepalive_timeout",
        }
    }

    /// The deadline behind a connection's error from hyper, if it was one: HTTP/1's header
    /// timeout or an unanswered HTTP/2 keep-alive ping.
    pub(crate) fn of_error(e: &(dyn StdError + 'static)) -> Option<CloseReason> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(h) = e.downcast_ref::<hyper::Error>()
                && h.is_timeout()
            {
                return Some(CloseReason::HeaderTimeout);
            }
            // hyper's keep-alive error type is private; its message is what identifies it.
            if e.to_string() == "keep-alive timed out" {
                return Some(CloseReason::KeepaliveTimeout);
            }
            next = e.source();
        }
        None
    }
}

/// The kind of a failed accept (the `kind` label).
fn accept_error_kind(e: &std::io::Error) -> usize {
    // EMFILE 24, ENFILE 23; ENOMEM 12, ENOBUFS 105 (Linux numbers).
    match e.raw_os_error() {
        Some(23 | 24) => 0,
        Some(12 | 105) => 1,
        _ => 2,
    }
}

const ACCEPT_ERROR_KINDS: [&str; 3] = ["too_many_open_files", "out_of_memory", "other"];

// === impl Connections ===

/// One listener's open connections: the cap, the accept loop's back-off, and the metrics.
#[derive(Debug)]
pub(crate) struct Connections {
    name: &'static str,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    accept_errors: [Arc<Counter>; 3],
    backoff: Duration,
    accept_log: LogEvery,
    refuse_log: LogEvery,
}

/// What every connection of a listener updates.
#[derive(Debug)]
struct Shared {
    open: Arc<Gauge>,
    closed: [Arc<Counter>; CloseReason::ALL.len()],
}

impl Shared {
    fn count(&self, reason: CloseReason) {
        let i = CloseReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.closed[i].inc();
    }
}

impl Connections {
    /// The connections of listener `name` (the `listener` label), counted in `registry`.
    pub(crate) fn new(
        name: &'static str,
        limits: ConnectionLimits,
        registry: &Registry,
    ) -> Connections {
        let max_open = limits.max_open.clamp(1, Semaphore::MAX_PERMITS);
        Connections {
            name,
            permits: Arc::new(Semaphore::new(max_open)),
            limits: ConnectionLimits { max_open, ..limits },
            shared: Arc::new(Shared {
                open: registry.gauge(&names::OPEN_CONNECTIONS, &[name]),
                closed: CloseReason::ALL
                    .map(|r| registry.counter(&names::CONNECTIONS_CLOSED, &[name, r.as_str()])),
            }),
            accept_errors: ACCEPT_ERROR_KINDS
                .map(|k| registry.counter(&names::ACCEPT_ERRORS, &[name, k])),
            backoff: ACCEPT_BACKOFF_MIN,
            accept_log: LogEvery::default(),
            refuse_log: LogEvery::default(),
        }
    }

    /// The limits every connection gets.
    pub(crate) fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// A connection was accepted: the back-off starts over, and the connection gets a permit,
    /// or `None` (count it as refused, and the caller drops it) when `max_open` are open.
    pub(crate) fn admit(&mut self) -> Option<Admitted> {
        self.backoff = ACCEPT_BACKOFF_MIN;
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.shared.open.add(1);
                Some(Admitted {
                    _permit: permit,
                    shared: self.shared.clone(),
                })
            }
            Err(_) => {
                self.shared.count(CloseReason::OverLimit);
                if let Some(more) = self.refuse_log.due() {
                    tracing::warn!(
                        listener = self.name,
                        max_open = self.limits.max_open,
                        refused_since_last_report = more,
                        "connection limit reached; closing new connections at once"
                    );
                }
                None
            }
        }
    }

    /// An accept failed: counts it, logs it when the last report is old enough, and returns
    /// how long the accept loop pauses.
    pub(crate) fn accept_failed(&mut self, e: &std::io::Error) -> Duration {
        self.accept_errors[accept_error_kind(e)].inc();
        if let Some(more) = self.accept_log.due() {
            tracing::warn!(
                listener = self.name,
                error = %e,
                failed_since_last_report = more,
                "accept failed; backing off"
            );
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    /// Waits until every connection has ended (all permits are back).
    pub(crate) async fn all_closed(&self) {
        let n = u32::try_from(self.limits.max_open).unwrap_or(u32::MAX);
        let _ = self.permits.acquire_many(n).await;
    }
}

/// Logs at most once per [`LOG_INTERVAL`], and counts what it did not log.
#[derive(Debug, Default)]
struct LogEvery {
    last: Option<Instant>,
    unsaid: u64,
}

impl LogEvery {
    /// `Some(number of events not logged since the last line)` when a line is due now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_INTERVAL => {
                self.unsaid += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unsaid))
            }
        }
    }
}

/// An admitted connection: holds its listener's permit, and counts its close.
#[derive(Debug)]
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Admitted {
    /// Counts the connection as closed by the server for `reason`.
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.shared.count(reason);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.open.add(-1);
    }
}

// === impl Watchdog ===

/// One connection's requests, as the service sees them: how many are in progress, when the
/// last one finished, and whether one of its bodies was cut. [`Watchdog::expired`] resolves
/// when the connection must close.
#[derive(Debug)]
pub(crate) struct Watchdog {
    start: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
    in_flight: AtomicUsize,
    /// Nanoseconds from `start` to the end of the last request, plus one; 0 before any.
    last_done: AtomicU64,
    cut: AtomicBool,
    cut_notify: Notify,
}

impl Watchdog {
    /// A watchdog for a connection whose first bytes arrived now.
    pub(crate) fn new(limits: &ConnectionLimits) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            start: Instant::now(),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            cut: AtomicBool::new(false),
            cut_notify: Notify::new(),
        })
    }

    /// A request's headers arrived; the guard marks its end when dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// A body of this connection was cut for its rate; the connection closes.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.cut_notify.notify_one();
    }

    /// Whether a body of this connection was cut.
    pub(crate) fn was_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// When the connection must close if nothing changes, and why; `None` while a request is
    /// in progress.
    fn deadline(&self) -> Option<(Instant, CloseReason)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.last_done.load(Ordering::Acquire) {
            0 => Some((self.start + self.header_timeout, CloseReason::HeaderTimeout)),
            n => Some((
                self.start + Duration::from_nanos(n - 1) + self.idle_timeout,
                CloseReason::IdleTimeout,
            )),
        }
    }

    /// Resolves when the connection must close, with the reason: no first request within
    /// `header_timeout`, no request in progress for `idle_timeout`, or a body cut.
    pub(crate) async fn expired(&self) -> CloseReason {
        loop {
            if self.cut.load(Ordering::Acquire) {
                return CloseReason::BodyTimeout;
            }
            let now = Instant::now();
            // While a request is in progress, look again after an idle period.
            let (at, reason) = self
                .deadline()
                .map_or((now + self.idle_timeout, None), |(at, r)| (at, Some(r)));
            if let Some(reason) = reason
                && at <= now
            {
                return reason;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.cut_notify.notified() => {}
            }
        }
    }
}

/// Marks the end of a request when dropped (the handler finished or was cancelled).
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Watchdog>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let w = &self.0;
        let since = Instant::now().saturating_duration_since(w.start);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1);
        w.last_done.store(nanos + 1, Ordering::Release);
        w.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl TimedBody ===

/// A request body arrived slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived too slowly ({received} bytes in {elapsed:?}; after {grace:?} at least {rate} bytes per second are expected)"
)]
pub(crate) struct BodyTooSlow {
    received: u64,
    elapsed: Duration,
    grace: Duration,
    rate: u64,
}

/// A request body with a deadline that moves with what arrived: `body_timeout` plus the
/// bytes so far at `min_body_rate`. Past it, the body ends with [`BodyTooSlow`] and the
/// connection's [`Watchdog`] is told to close it. The timer is only armed when the body is
/// waiting for data.
#[derive(Debug)]
pub(crate) struct TimedBody<B> {
    inner: B,
    start: Instant,
    grace: Duration,
    rate: u64,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    watchdog: Option<Arc<Watchdog>>,
}

impl<B> TimedBody<B> {
    /// `inner`, to be read within `limits`; a cut is reported to `watchdog`.
    pub(crate) fn new(
        inner: B,
        limits: &ConnectionLimits,
        watchdog: Option<Arc<Watchdog>>,
    ) -> TimedBody<B> {
        TimedBody {
            inner,
            start: Instant::now(),
            grace: limits.body_timeout,
            rate: limits.min_body_rate,
            received: 0,
            timer: None,
            watchdog,
        }
    }

    fn deadline(&self) -> Instant {
        let allowed = match self.rate {
            0 => Duration::ZERO,
            r => Duration::from_secs_f64(self.received as f64 / r as f64),
        };
        self.start + self.grace + allowed
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = this.deadline();
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(w) = &this.watchdog {
                    w.cut();
                }
                Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    received: this.received,
                    elapsed: Instant::now().saturating_duration_since(this.start),
                    grace: this.grace,
                    rate: this.rate,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
