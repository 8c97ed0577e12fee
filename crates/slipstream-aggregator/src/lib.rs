//! Sharded streaming aggregation of spans into per-series SLIs.
//!
//! The receiver hands every accepted request's spans to [`Aggregator`] (an
//! [`ObservationSink`]) on the worker thread that received it. Each worker thread records
//! into its own shard (a thread-local registered with the aggregator on first use): a series
//! map keyed by `service.name` plus the configured dimensions, and per (series, event-time
//! slot) request and bad-request counts, a log-linear HDR latency histogram and the requests
//! above each configured latency threshold ([`Aggregator::set_latency_thresholds`]: latency
//! SLOs count exactly at their threshold). A span that carries an OpenTelemetry sampling
//! threshold counts as its adjusted count ([`SlotData::spans`]). The shard's
//! lock is taken once per request and is uncontended; nothing is shared per span, and in
//! steady state nothing is allocated.
//!
//! [`Aggregator::tick`], called once per `aggregator.tick_interval` by the evaluation step
//! (`slipstream-step`, whose merge hop it is), swaps each shard's pending counts out, merges
//! them into the window store (event-time slots retained for `retention`), applies the
//! cardinality limits (overflow series `otel.metric.overflow="true"`), expires idle series,
//! publishes an immutable [`Snapshot`] (readers get it with [`Aggregator::snapshot`]) and
//! updates the self-metrics declared in [`names`]. Windows (1m, 5m, 1h, any number of slots up
//! to the retention) are computed by merging slots: [`Snapshot::window`].
//!
//! In two-tier mode the aggregator also takes partial aggregates shipped by other
//! slipstreams (the [`AggregatesSink`] the receiver calls): [`Aggregator::merge`] checks a
//! request against this aggregator's slot width, histogram layout and dimensions, and queues
//! it; the next tick adds it to the window store as if its spans had been recorded here (same
//! series, cardinality limits, slots, late and future handling). The sender side reads what
//! changed between two snapshots ([`Snapshot::aggregates_since`], on the same walk as the SLO
//! engine's feed, [`Snapshot::changes_since`]) and [`Aggregator::aggregates_header`].
//!
//! Default series: `service.name` and the resource attribute `deployment.environment`;
//! `span_kinds` server and consumer count as requests; slots are 1 minute wide and kept for
//! 1 hour. `service.version` is tracked per series ([`SeriesData::versions`]), not a
//! dimension.
#![deny(unsafe_code)]

mod changes;
mod explain;
mod histogram;
mod key;
mod loom;
mod merge;
mod prefetch;
mod shard;
mod snapshot;
mod store;
mod threshold;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use slipstream_config::AggregatorConfig;
use slipstream_core::aggregates::{ExportAggregatesRequest, Header};
use slipstream_core::telemetry::{Counter, Gauge};
use slipstream_core::{
    AggregatesSink, Clock, MergeError, Merged, ObservationSink, Registry, ScanSpec, SpanRecord,
};

pub use changes::{SeriesChange, SlotChange};
pub use explain::{
    BadRequests, Explained, MAX_SLOW, MIN_BAD_SHARE, OUTCOME_ATTRIBUTES, SlotCounts,
};
pub use histogram::{
    Histogram, SparseHistogram, bucket_high, bucket_low, bucket_of, bucket_value, rank,
};
pub use key::{Labels, OVERFLOW_LABEL, SERVICE_LABEL, SPAN_KIND_LABEL, SPAN_NAME_LABEL};
pub use snapshot::{
    EXEMPLAR_SLOTS, ExemplarSlots, QUANTILES, SeriesData, SeriesId, SlotData, Snapshot, Totals,
    VersionSeen, WindowStats,
};
pub use threshold::{AboveCounts, MAX_LATENCY_THRESHOLDS, Thresholds};

use crate::loom::{Arc, lock};
use crate::merge::Pending;
use crate::shard::ShardConfig;
use crate::store::{ShardCell, Store, StoreConfig};

/// The declarations of the aggregator's self-metrics.
pub mod names {
    use slipstream_core::metric;
    use slipstream_core::telemetry::MetricDesc;

    metric!(
        SERIES_ACTIVE,
        "slipstream_aggregator_series_active",
        Gauge,
        [],
        "Series live in the window store, overflow series included."
    );
    metric!(
        SERIES_CREATED,
        "slipstream_aggregator_series_created_total",
        Counter,
        [],
        "Series created in the window store."
    );
    metric!(
        SERIES_EXPIRED,
        "slipstream_aggregator_series_expired_total",
        Counter,
        [],
        "Series expired after aggregator.series_idle_timeout without observations."
    );
    metric!(
        OBSERVATIONS,
        "slipstream_aggregator_observations_total",
        Counter,
        [],
        "Spans aggregated into a series (overflow series included)."
    );
    metric!(
        MERGED_OBSERVATIONS,
        "slipstream_aggregator_merged_observations_total",
        Counter,
        [],
        "Requests merged from partial aggregates of other slipstreams (two-tier mode); also counted in slipstream_aggregator_observations_total unless dropped late."
    );
    metric!(
        OVERFLOW_OBSERVATIONS,
        "slipstream_aggregator_overflow_observations_total",
        Counter,
        [],
        "Spans aggregated into an overflow series because a series limit was reached."
    );
    metric!(
        DROPPED_SPANS,
        "slipstream_aggregator_dropped_spans_total",
        Counter,
        ["reason"],
        "Spans not aggregated, by reason: late (ended before the retained slots), shard_full."
    );
    metric!(
        CLAMPED_SPANS,
        "slipstream_aggregator_clamped_spans_total",
        Counter,
        ["reason"],
        "Spans aggregated with a clamped value, by reason: future (end time), duration, adjusted_count (a sampled span's adjusted count above 2^20)."
    );
    metric!(
        FILTERED_SPANS,
        "slipstream_aggregator_filtered_spans_total",
        Counter,
        [],
        "Spans not counted as requests because of their kind (aggregator.span_kinds)."
    );
    metric!(
        MERGED_SLOTS_ESTIMATED,
        "slipstream_aggregator_merged_slots_estimated_total",
        Counter,
        [],
        "Slots of partial aggregates merged without exact counts for this aggregator's latency thresholds (an older sender, or one counting other thresholds); latency SLOs estimate them from the histogram."
    );
    metric!(
        EXPLAIN_UNCOUNTED,
        "slipstream_aggregator_explain_uncounted_total",
        Counter,
        [],
        "Requests left out of what the bad requests share (aggregator.explain) because their service was beyond aggregator.explain.max_services."
    );
    metric!(
        SHARDS,
        "slipstream_aggregator_shards",
        Gauge,
        [],
        "Worker shards feeding the aggregator."
    );
    metric!(
        TICKS,
        "slipstream_aggregator_ticks_total",
        Counter,
        [],
        "Merges of the shards into the window store."
    );

    /// Every aggregator self-metric, in the order they are rendered.
    pub static ALL: &[&MetricDesc] = &[
        &SERIES_ACTIVE,
        &SERIES_CREATED,
        &SERIES_EXPIRED,
        &OBSERVATIONS,
        &MERGED_OBSERVATIONS,
        &OVERFLOW_OBSERVATIONS,
        &DROPPED_SPANS,
        &CLAMPED_SPANS,
        &FILTERED_SPANS,
        &MERGED_SLOTS_ESTIMATED,
        &EXPLAIN_UNCOUNTED,
        &SHARDS,
        &TICKS,
    ];
}

#[derive(Debug)]
struct Metrics {
    series_active: StdArc<Gauge>,
    series_created: StdArc<Counter>,
    series_expired: StdArc<Counter>,
    observations: StdArc<Counter>,
    merged: StdArc<Counter>,
    overflow: StdArc<Counter>,
    dropped_late: StdArc<Counter>,
    dropped_shard_full: StdArc<Counter>,
    clamped_future: StdArc<Counter>,
    clamped_duration: StdArc<Counter>,
    clamped_adjusted_count: StdArc<Counter>,
    filtered: StdArc<Counter>,
    merged_slots_estimated: StdArc<Counter>,
    explain_uncounted: StdArc<Counter>,
    shards: StdArc<Gauge>,
    ticks: StdArc<Counter>,
}

impl Metrics {
    fn new(r: &Registry) -> Self {
        use names::*;
        Metrics {
            series_active: r.gauge(&SERIES_ACTIVE, &[]),
            series_created: r.counter(&SERIES_CREATED, &[]),
            series_expired: r.counter(&SERIES_EXPIRED, &[]),
            observations: r.counter(&OBSERVATIONS, &[]),
            merged: r.counter(&MERGED_OBSERVATIONS, &[]),
            overflow: r.counter(&OVERFLOW_OBSERVATIONS, &[]),
            dropped_late: r.counter(&DROPPED_SPANS, &["late"]),
            dropped_shard_full: r.counter(&DROPPED_SPANS, &["shard_full"]),
            clamped_future: r.counter(&CLAMPED_SPANS, &["future"]),
            clamped_duration: r.counter(&CLAMPED_SPANS, &["duration"]),
            clamped_adjusted_count: r.counter(&CLAMPED_SPANS, &["adjusted_count"]),
            filtered: r.counter(&FILTERED_SPANS, &[]),
            merged_slots_estimated: r.counter(&MERGED_SLOTS_ESTIMATED, &[]),
            explain_uncounted: r.counter(&EXPLAIN_UNCOUNTED, &[]),
            shards: r.gauge(&SHARDS, &[]),
            ticks: r.counter(&TICKS, &[]),
        }
    }

    /// Publishes the change from `old` to `new`.
    fn publish(&self, old: &Totals, new: &Totals) {
        self.series_created
            .add(new.series_created - old.series_created);
        self.series_expired
            .add(new.series_expired - old.series_expired);
        self.observations.add(new.observations - old.observations);
        self.merged
            .add(new.merged_observations - old.merged_observations);
        self.overflow
            .add(new.overflow_observations - old.overflow_observations);
        self.dropped_late.add(new.dropped_late - old.dropped_late);
        self.dropped_shard_full
            .add(new.dropped_shard_full - old.dropped_shard_full);
        self.clamped_future
            .add(new.clamped_future - old.clamped_future);
        self.clamped_duration
            .add(new.clamped_duration - old.clamped_duration);
        self.filtered.add(new.filtered - old.filtered);
        self.clamped_adjusted_count
            .add(new.clamped_adjusted_count - old.clamped_adjusted_count);
        self.merged_slots_estimated
            .add(new.merged_slots_estimated - old.merged_slots_estimated);
        self.ticks.add(new.ticks - old.ticks);
        self.explain_uncounted
            .add(new.explain_uncounted - old.explain_uncounted);
        self.series_active.set(new.series_active as i64);
        self.shards.set(new.shards as i64);
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard of each aggregator it recorded into: (aggregator id, shard).
    static LOCAL_SHARDS: RefCell<Vec<(u64, Arc<ShardCell>)>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
struct Inner {
    id: u64,
    cfg: StdArc<ShardConfig>,
    clock: StdArc<dyn Clock>,
    tick_interval: Duration,
    scan_spec: ScanSpec,
    /// Shards created since the last tick, to be linked into the store.
    registrations: StdMutex<Vec<Arc<ShardCell>>>,
    /// Partial aggregates checked and waiting for the next tick.
    merges: StdMutex<Pending>,
    /// Sender runs are forgotten after this long without a request.
    idle_ns: u64,
    store: StdMutex<Store>,
    snapshot: ArcSwap<Snapshot>,
    /// The latency thresholds counted exactly (installed into the shards on each tick).
    thresholds: ArcSwap<threshold::Thresholds>,
    metrics: Metrics,
}

// === impl Aggregator ===

/// The aggregator: an [`ObservationSink`] for the receivers and the source of [`Snapshot`]s
/// for the SLO engine, exporters and API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Aggregator {
    inner: StdArc<Inner>,
}

impl Aggregator {
    /// An aggregator for a validated configuration, reading time from `clock` and registering
    /// its self-metrics ([`names::ALL`]) on `registry`.
    pub fn new(cfg: &AggregatorConfig, clock: StdArc<dyn Clock>, registry: &Registry) -> Self {
        Self::with_exemplars(cfg, clock, registry, true)
    }

    /// [`Aggregator::new`], keeping a few example requests per series and slot
    /// ([`SeriesData::slot_exemplars`]) or not.
    pub fn with_exemplars(
        cfg: &AggregatorConfig,
        clock: StdArc<dyn Clock>,
        registry: &Registry,
        exemplars: bool,
    ) -> Self {
        let shard_cfg = StdArc::new(ShardConfig {
            exemplars,
            ..shard_config(cfg)
        });
        let store = Store::new(
            shard_cfg.clone(),
            StoreConfig {
                max_series: cfg.max_series.max(1),
                max_per_service: cfg.max_series_per_service.max(1),
                idle_ns: (cfg.series_idle_timeout.as_nanos() as u64).max(1),
            },
        );
        let snapshot = Snapshot {
            taken_at: clock.now_unix_nanos(),
            slot_ns: shard_cfg.slot_ns,
            retention_slots: shard_cfg.retention_slots,
            ..Snapshot::default()
        };
        Aggregator {
            inner: StdArc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                cfg: shard_cfg,
                clock,
                tick_interval: cfg.tick_interval,
                scan_spec: cfg.scan_spec(),
                registrations: StdMutex::new(Vec::new()),
                merges: StdMutex::new(Pending::default()),
                idle_ns: (cfg.series_idle_timeout.as_nanos() as u64).max(1),
                store: StdMutex::new(store),
                snapshot: ArcSwap::from_pointee(snapshot),
                thresholds: ArcSwap::from_pointee(threshold::Thresholds::default()),
                metrics: Metrics::new(registry),
            }),
        }
    }

    /// The attribute keys the span scanner must extract for this aggregator.
    pub fn scan_spec(&self) -> &ScanSpec {
        &self.inner.scan_spec
    }

    /// How often [`Aggregator::tick`] should be called.
    pub fn tick_interval(&self) -> Duration {
        self.inner.tick_interval
    }

    /// A shard of its own for a thread that records outside the thread-local path (benches,
    /// dedicated threads). Dropping it is fine: its last counts are merged on the next tick.
    pub fn shard(&self) -> ShardHandle {
        ShardHandle {
            cell: self.register(),
            inner: self.inner.clone(),
        }
    }

    /// Sets the latency thresholds every request is compared with as it is recorded, so that
    /// latency SLOs count good and bad exactly at their threshold ([`SlotData::above`]): the
    /// distinct thresholds of the configured latency SLOs (explicit and templated), at most
    /// [`MAX_LATENCY_THRESHOLDS`] (the lowest; beyond, the histogram estimates). Takes effect
    /// on the next tick; slots that held requests before it do not cover a threshold added
    /// here and fall back to the histogram estimate (see [`AboveCounts::above`]). Returns the
    /// number of thresholds counted.
    pub fn set_latency_thresholds(&self, thresholds: impl IntoIterator<Item = Duration>) -> usize {
        let set = threshold::Thresholds::new(
            thresholds
                .into_iter()
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        );
        let n = set.len();
        if **self.inner.thresholds.load() != set {
            self.inner.thresholds.store(StdArc::new(set));
        }
        n
    }

    /// The latency thresholds counted exactly now (nanoseconds, ascending).
    pub fn latency_thresholds(&self) -> StdArc<threshold::Thresholds> {
        self.inner.thresholds.load_full()
    }

    fn register(&self) -> Arc<ShardCell> {
        let cell = Arc::new(ShardCell::new(
            &self.inner.cfg,
            &self.inner.thresholds.load_full(),
        ));
        lock_std(&self.inner.registrations).push(cell.clone());
        cell
    }

    /// Merges every shard into the window store at the clock's current time, publishes the
    /// new snapshot and updates the self-metrics. Call it every [`Aggregator::tick_interval`]
    /// from one task; concurrent calls serialize.
    pub fn tick(&self) -> StdArc<Snapshot> {
        let now = self.inner.clock.now_unix_nanos();
        let mut store = lock_std(&self.inner.store);
        for cell in lock_std(&self.inner.registrations).drain(..) {
            store.register(cell);
        }
        let merges = lock_std(&self.inner.merges).take(now.saturating_sub(self.inner.idle_ns));
        let thresholds = self.inner.thresholds.load_full();
        let snap = StdArc::new(store.tick(now, &merges, &thresholds));
        let old = self.inner.snapshot.swap(snap.clone());
        self.inner.metrics.publish(&old.totals, &snap.totals);
        snap
    }

    /// The latest published snapshot.
    pub fn snapshot(&self) -> StdArc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// The header of partial aggregates built from this aggregator's snapshots: slot width,
    /// histogram layout and range, series labels. The sender's instance, run and sequence are
    /// left for the exporter to fill in.
    pub fn aggregates_header(&self) -> Header {
        merge::header(&self.inner.cfg)
    }

    /// Checks partial aggregates shipped by another slipstream against this aggregator and
    /// queues them for the next tick, which merges them into the window store as if their
    /// spans had been recorded here. A request the same sender run already had merged (same
    /// sequence) is answered [`Merged::Duplicate`] and not added again. Refused with
    /// [`MergeError::Busy`] while the queued merges hold `max_pending_per_shard` slots.
    pub fn merge(&self, request: ExportAggregatesRequest) -> Result<Merged, MergeError> {
        let checked = merge::check(&self.inner.cfg, request)?;
        let now = self.inner.clock.now_unix_nanos();
        lock_std(&self.inner.merges).offer(
            checked,
            now,
            self.inner.cfg.max_pending,
            self.inner.tick_interval,
        )
    }
}

impl AggregatesSink for Aggregator {
    fn merge(&self, request: ExportAggregatesRequest) -> Result<Merged, MergeError> {
        Aggregator::merge(self, request)
    }
}

impl ObservationSink for Aggregator {
    fn record(&self, spans: &[SpanRecord<'_>]) {
        if spans.is_empty() {
            return;
        }
        let now = self.inner.clock.now_unix_nanos();
        let id = self.inner.id;
        LOCAL_SHARDS.with(|local| {
            let mut local = local.borrow_mut();
            let i = match local.iter().position(|(a, _)| *a == id) {
                Some(i) => i,
                None => {
                    // Forget shards of aggregators that were dropped.
                    local.retain(|(_, c)| Arc::strong_count(c) > 1);
                    local.push((id, self.register()));
                    local.len() - 1
                }
            };
            lock(&local[i].1.shard).record(&self.inner.cfg, now, spans);
        });
    }
}

/// An explicitly owned shard of an [`Aggregator`] (see [`Aggregator::shard`]).
#[derive(Debug)]
pub struct ShardHandle {
    cell: Arc<ShardCell>,
    inner: StdArc<Inner>,
}

impl ShardHandle {
    /// Records the spans of one request at the clock's current time.
    pub fn record(&self, spans: &[SpanRecord<'_>]) {
        let now = self.inner.clock.now_unix_nanos();
        lock(&self.cell.shard).record(&self.inner.cfg, now, spans);
    }

    /// Number of series keys this shard holds.
    pub fn series(&self) -> usize {
        lock(&self.cell.shard).len()
    }
}

impl ObservationSink for ShardHandle {
    fn record(&self, spans: &[SpanRecord<'_>]) {
        ShardHandle::record(self, spans);
    }
}

fn lock_std<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_config(cfg: &AggregatorConfig) -> ShardConfig {
    let slot_ns = (cfg.slot_width.as_nanos() as u64).max(1);
    let max_value = (cfg.histogram_max_value.as_nanos() as u64).max(1);
    let kinds = cfg
        .kinds()
        .into_iter()
        .fold(0u8, |acc, k| acc | (1 << k as u8));
    ShardConfig {
        layout: key::KeyLayout::new(
            &cfg.resource_dimensions,
            &cfg.span_dimensions,
            cfg.span_name_dimension,
            cfg.span_kind_dimension,
        ),
        kinds,
        rules: cfg.outcome.rules(),
        slot_ns,
        retention_slots: (cfg.retention.as_nanos() as u64 / slot_ns).max(1),
        future_skew_ns: cfg.max_future_skew.as_nanos() as u64,
        max_value,
        nchunks: histogram::chunks_for(max_value),
        // Keys routed to an overflow series hold a shard entry too: leave them room.
        max_local: cfg.max_series.saturating_mul(2).saturating_add(1024),
        max_pending: cfg.max_pending_per_shard.max(1),
        max_versions: cfg.max_versions_per_series,
        exemplars: true,
        explain: explain::Spec::new(
            &cfg.explain,
            (cfg.retention.as_nanos() as u64 / slot_ns).max(1),
            slot_ns,
        ),
    }
}

#[cfg(all(loom, test))]
mod loom_model;

#[cfg(all(test, not(loom)))]
mod tests;
