//! Self-telemetry: counters and gauges the components update and the admin server renders.
//!
//! Every metric slipstream emits about itself is declared once, as a [`MetricDesc`] static in
//! a `names` table of the crate that updates it (this crate's [`names`] for the receiver and
//! forwarding metrics), with each table's `ALL` list; the reference table in `docs/metrics.md`
//! is checked against those lists. Metrics render in the order they were first registered. Components update counters per request or per tick, never per span.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// A metric's name, type, help text and label names.
#[derive(Debug)]
pub struct MetricDesc {
    /// Full Prometheus name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Label names, in order.
    pub labels: &'static [&'static str],
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds `d` (may be negative).
    #[inline]
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonically increasing total of durations, rendered in seconds (a `_seconds_total`
/// counter); kept in whole nanoseconds.
#[derive(Debug, Default)]
pub struct SecondsCounter(AtomicU64);

impl SecondsCounter {
    /// Adds `d`.
    #[inline]
    pub fn add(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
    /// The total so far.
    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Clone)]
enum Value {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Seconds(Arc<SecondsCounter>),
}

#[derive(Debug)]
struct Entry {
    desc: &'static MetricDesc,
    label_values: Vec<String>,
    value: Value,
}

/// A closed set of values of a metric's last label (the reasons a request is refused, the
/// outcomes of a delivery), so that [`ByLabel`] can hold one counter per value.
pub trait LabelValue: Copy + 'static {
    /// How many values there are; [`LabelValue::index`] is below it.
    const COUNT: usize;
    /// The label value as rendered.
    fn as_str(self) -> &'static str;
    /// This value's slot, unique and below [`LabelValue::COUNT`] (for a fieldless enum,
    /// `self as usize`).
    fn index(self) -> usize;
}

/// The counters of one metric for every value of its last label, for hot paths: the labels
/// before the last are fixed at construction, and each counter is looked up in the registry
/// on its first use only; after that an update is an array index and an atomic add, with no
/// lock and no search. A counter appears in the registry when first used, as with
/// [`Registry::counter`].
pub struct ByLabel<V: LabelValue> {
    registry: Registry,
    desc: &'static MetricDesc,
    fixed: Vec<String>,
    slots: Box<[OnceLock<Arc<Counter>>]>,
    _values: std::marker::PhantomData<V>,
}

impl<V: LabelValue> std::fmt::Debug for ByLabel<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByLabel")
            .field("metric", &self.desc.name)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl<V: LabelValue> ByLabel<V> {
    /// The counters of `desc` whose labels but the last are `fixed`.
    pub fn new(registry: &Registry, desc: &'static MetricDesc, fixed: &[&str]) -> Self {
        assert_eq!(
            desc.labels.len(),
            fixed.len() + 1,
            "{}: the last label is the varying one",
            desc.name
        );
        ByLabel {
            registry: registry.clone(),
            desc,
            fixed: fixed.iter().map(|s| (*s).to_owned()).collect(),
            slots: (0..V::COUNT).map(|_| OnceLock::new()).collect(),
            _values: std::marker::PhantomData,
        }
    }

    /// The counter for `value`.
    #[inline]
    pub fn get(&self, value: V) -> &Counter {
        self.slots[value.index()].get_or_init(|| {
            let mut labels: Vec<&str> = self.fixed.iter().map(String::as_str).collect();
            labels.push(value.as_str());
            self.registry.counter(self.desc, &labels)
        })
    }

    /// Adds `n` to the counter for `value`.
    #[inline]
    pub fn add(&self, value: V, n: u64) {
        self.get(value).add(n);
    }

    /// Adds one to the counter for `value`.
    #[inline]
    pub fn inc(&self, value: V) {
        self.get(value).inc();
    }
}

/// The set of self-metrics of one running slipstream. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Registry {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn find_or_insert(
        &self,
        desc: &'static MetricDesc,
        labels: &[&str],
        make: impl FnOnce() -> Value,
    ) -> Value {
        assert_eq!(
            desc.labels.len(),
            labels.len(),
            "{}: wrong number of label values",
            desc.name
        );
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.iter().find(|e| {
            std::ptr::eq(e.desc, desc)
                && e.label_values
                    .iter()
                    .map(String::as_str)
                    .eq(labels.iter().copied())
        }) {
            return e.value.clone();
        }
        let value = make();
        let out = value.clone();
        entries.push(Entry {
            desc,
            label_values: labels.iter().map(|s| (*s).to_owned()).collect(),
            value,
        });
        out
    }

    /// The counter `desc` with these label values (created at zero on first use).
    pub fn counter(&self, desc: &'static MetricDesc, labels: &[&str]) -> Arc<Counter> {
        assert_eq!(
            desc.kind,
            MetricKind::Counter,
            "{} is not a counter",
            desc.name
        );
        match self.find_or_insert(desc, labels, || Value::Counter(Arc::default())) {
            Value::Counter(c) => c,
            _ => panic!("{} is a counter of seconds", desc.name),
        }
    }

    /// The counter of seconds `desc` (its name ends in `_seconds_total`) with these label
    /// values (created at zero on first use).
    pub fn seconds_counter(
        &self,
        desc: &'static MetricDesc,
        labels: &[&str],
    ) -> Arc<SecondsCounter> {
        assert!(
            desc.kind == MetricKind::Counter && desc.name.ends_with("_seconds_total"),
            "{} is not a counter of seconds",
            desc.name
        );
        match self.find_or_insert(desc, labels, || Value::Seconds(Arc::default())) {
            Value::Seconds(c) => c,
            _ => panic!("{} is a plain counter", desc.name),
        }
    }

    /// The gauge `desc` with these label values (created at zero on first use).
    pub fn gauge(&self, desc: &'static MetricDesc, labels: &[&str]) -> Arc<Gauge> {
        assert_eq!(desc.kind, MetricKind::Gauge, "{} is not a gauge", desc.name);
        match self.find_or_insert(desc, labels, || Value::Gauge(Arc::default())) {
            Value::Gauge(g) => g,
            _ => unreachable!("a gauge's description makes only gauges"),
        }
    }

    /// The current value of a counter or gauge, if it was ever created (a counter of seconds
    /// in nanoseconds).
    pub fn value(&self, name: &str, labels: &[&str]) -> Option<i128> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| {
                e.desc.name == name
                    && e.label_values
                        .iter()
                        .map(String::as_str)
                        .eq(labels.iter().copied())
            })
            .map(|e| match &e.value {
                Value::Counter(c) => i128::from(c.get()),
                Value::Gauge(g) => i128::from(g.get()),
                Value::Seconds(s) => s.get().as_nanos() as i128,
            })
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(entries.len() * 96);
        let mut seen: Vec<&'static MetricDesc> = Vec::new();
        for first in entries.iter() {
            let desc = first.desc;
            if seen.iter().any(|d| std::ptr::eq(*d, desc)) {
                continue;
            }
            seen.push(desc);
            let _ = writeln!(out, "# HELP {} {}", desc.name, desc.help);
            let _ = writeln!(out, "# TYPE {} {}", desc.name, desc.kind.as_str());
            for e in entries.iter().filter(|e| std::ptr::eq(e.desc, desc)) {
                out.push_str(desc.name);
                if !desc.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in desc.labels.iter().zip(&e.label_values).enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = match &e.value {
                    Value::Counter(c) => writeln!(out, " {}", c.get()),
                    Value::Gauge(g) => writeln!(out, " {}", g.get()),
                    Value::Seconds(s) => writeln!(out, " {}", seconds_text(s.get())),
                };
            }
        }
        out
    }
}

/// `d` in seconds, in decimal and exact (whole nanoseconds, no float rounding).
fn seconds_text(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        n => {
            let text = format!("{}.{n:09}", d.as_secs());
            text.trim_end_matches('0').to_owned()
        }
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The declarations of every self-metric.
pub mod names {
    use super::MetricDesc;

    /// Declares a self-metric: `metric!(IDENT, "name", Counter|Gauge, ["label", ...], "help");`
    #[macro_export]
    macro_rules! metric {
        ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $help:literal) => {
            #[doc = $help]
            pub static $id: MetricDesc =
                $crate::telemetry::MetricDesc {
                    name: $name,
                    kind: $crate::telemetry::MetricKind::$kind,
                    help: $help,
                    labels: &[$($l),*],
                };
        };
    }

    metric!(
        RECEIVED_ITEMS,
        "slipstream_receiver_accepted_items_total",
        Counter,
        ["signal", "transport"],
        "Items (spans, metric data points, log records) accepted by the receivers."
    );
    metric!(
        RECEIVED_REQUESTS,
        "slipstream_receiver_requests_total",
        Counter,
        ["signal", "transport", "outcome"],
        "Export requests answered by the receivers, by outcome (accepted, refused)."
    );
    metric!(
        REFUSED_REQUESTS,
        "slipstream_receiver_refused_requests_total",
        Counter,
        ["signal", "transport", "reason"],
        "Export requests refused by the receivers, by reason; the client keeps and may retry them."
    );
    metric!(
        RECEIVED_BYTES,
        "slipstream_receiver_bytes_total",
        Counter,
        ["signal", "transport"],
        "Request body bytes received, as they arrived on the wire."
    );
    metric!(
        TLS_HANDSHAKE_FAILURES,
        "slipstream_receiver_tls_handshake_failures_total",
        Counter,
        ["transport"],
        "TLS handshakes that failed or timed out on the receivers (plain text, untrusted or missing client certificate); only that connection is closed."
    );
    metric!(
        OPEN_CONNECTIONS,
        "slipstream_receiver_open_connections",
        Gauge,
        ["listener"],
        "Connections open on a listener (otlp/grpc, otlp/http, admin, prometheus)."
    );
    metric!(
        CONNECTIONS_CLOSED,
        "slipstream_receiver_connections_closed_total",
        Counter,
        ["listener", "reason"],
        "Connections the server closed itself, by reason: over_limit (past max_open, closed at accept), handshake_timeout, header_timeout, idle_timeout, body_timeout, keepalive_timeout."
    );
    metric!(
        ACCEPT_ERRORS,
        "slipstream_receiver_accept_errors_total",
        Counter,
        ["listener", "kind"],
        "Failed accepts on a listener, by kind: too_many_open_files (EMFILE, ENFILE), out_of_memory (ENOMEM, ENOBUFS), other; each backs the accept loop off (5 ms doubling to 1 s)."
    );
    metric!(
        AGGREGATES_REQUESTS,
        "slipstream_receiver_aggregates_requests_total",
        Counter,
        ["outcome"],
        "Partial-aggregate requests (two-tier mode) answered by the OTLP/HTTP receiver, by outcome (accepted, duplicate, refused)."
    );
    metric!(
        AGGREGATES_REFUSED,
        "slipstream_receiver_aggregates_refused_total",
        Counter,
        ["reason"],
        "Partial-aggregate requests refused, by reason (disabled, unauthenticated, unknown_sender, implausible, invalid, incompatible, ...; busy and memory_limit are retried by the sender, the others dropped)."
    );
    metric!(
        AGGREGATES_BYTES,
        "slipstream_receiver_aggregates_bytes_total",
        Counter,
        [],
        "Partial-aggregate request bytes received, as they arrived on the wire."
    );
    metric!(
        FORWARDED_ITEMS,
        "slipstream_forward_sent_requests_total",
        Counter,
        ["signal"],
        "Requests delivered downstream by the forward exporter."
    );
    metric!(
        FORWARDED_BYTES,
        "slipstream_forward_sent_bytes_total",
        Counter,
        ["signal"],
        "Request bytes delivered downstream by the forward exporter (before compression)."
    );
    metric!(
        FORWARD_RETRIES,
        "slipstream_forward_retries_total",
        Counter,
        ["signal", "reason"],
        "Export attempts downstream that failed and were retried, by reason."
    );
    metric!(
        DROPPED_REQUESTS,
        "slipstream_forward_dropped_requests_total",
        Counter,
        ["signal", "reason"],
        "Accepted requests that were never delivered downstream, by reason."
    );
    metric!(
        QUEUE_BYTES,
        "slipstream_forward_queue_bytes",
        Gauge,
        [],
        "Bytes of requests waiting in the forward queue."
    );
    metric!(
        QUEUE_REQUESTS,
        "slipstream_forward_queue_requests",
        Gauge,
        [],
        "Requests waiting in the forward queue."
    );
    metric!(
        QUEUE_CAPACITY_BYTES,
        "slipstream_forward_queue_capacity_bytes",
        Gauge,
        [],
        "Configured size limit of the forward queue."
    );
    metric!(
        FORWARD_ENDPOINTS,
        "slipstream_forward_endpoints",
        Gauge,
        [],
        "Downstream endpoints the forward stage routes to (1 with forward.endpoint; the list or the DNS answer with forward.routing)."
    );
    metric!(
        SPILLED_REQUESTS,
        "slipstream_forward_spilled_requests_total",
        Counter,
        ["signal", "reason"],
        "Requests written to the forward queue's disk spill, by reason: queue_full (the memory queue had no room), shutdown (left in memory at the drain deadline)."
    );
    metric!(
        SPILL_BYTES,
        "slipstream_forward_spill_bytes",
        Gauge,
        [],
        "Bytes of the forward spill's files on disk."
    );
    metric!(
        SPILL_REQUESTS,
        "slipstream_forward_spill_requests",
        Gauge,
        [],
        "Requests in the forward spill not yet delivered."
    );
    metric!(
        SPILL_RECOVERED,
        "slipstream_forward_spill_recovered_requests",
        Gauge,
        [],
        "Undelivered requests found in the forward spill at start (left by the previous run)."
    );
    metric!(
        SPILL_CAPACITY_BYTES,
        "slipstream_forward_spill_capacity_bytes",
        Gauge,
        [],
        "Configured size limit of the forward spill (0 when there is none)."
    );
    metric!(
        ADMIN_REFUSED,
        "slipstream_admin_refused_requests_total",
        Counter,
        ["reason"],
        "Admin API writes refused, by reason: cross_origin, unauthenticated, content_type, too_many_silences, invalid_silence."
    );

    /// Every self-metric, in the order they are rendered.
    pub static ALL: &[&MetricDesc] = &[
        &RECEIVED_ITEMS,
        &RECEIVED_REQUESTS,
        &REFUSED_REQUESTS,
        &RECEIVED_BYTES,
        &TLS_HANDSHAKE_FAILURES,
        &OPEN_CONNECTIONS,
        &CONNECTIONS_CLOSED,
        &ACCEPT_ERRORS,
        &AGGREGATES_REQUESTS,
        &AGGREGATES_REFUSED,
        &AGGREGATES_BYTES,
        &FORWARDED_ITEMS,
        &FORWARDED_BYTES,
        &FORWARD_RETRIES,
        &DROPPED_REQUESTS,
        &QUEUE_BYTES,
        &QUEUE_REQUESTS,
        &QUEUE_CAPACITY_BYTES,
        &FORWARD_ENDPOINTS,
        &SPILLED_REQUESTS,
        &SPILL_BYTES,
        &SPILL_REQUESTS,
        &SPILL_RECOVERED,
        &SPILL_CAPACITY_BYTES,
        &ADMIN_REFUSED,
    ];
}
