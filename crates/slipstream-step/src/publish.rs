//! Hop 9 of the life of a span (see [the crate docs](crate)), the last of a step: publish.
//!
//! [`Live`] holds the [`Evaluator`] behind a lock and runs whole steps ([`Live::step`]): the
//! evaluator's merge, feed and evaluate, then the publishing of their results, which readers
//! then see ([`Published`]), the SLO history kept for the status page, and the hand-off of
//! burn-rate events to the [`EventSink`]s and of a sidecar's partial aggregates to the
//! [`AggregatesSink`]. The step thread, the admin API and the metrics exporters share one
//! [`Live`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use slipstream_aggregator::Snapshot;
use slipstream_config::exporters::MetricNaming;
use slipstream_config::slo::CatalogEntry;
use slipstream_core::export::{BurnRateEvent, MetricsSnapshot};
use slipstream_core::telemetry::{Counter, SecondsCounter};
use slipstream_core::{Clock, Registry, UnixNanos};
use slipstream_slo::{AlertEvent, AlertState, Silence, SilenceId, SloSnapshot};

use crate::evaluate::{Evaluator, SeriesTotals, Step};
use crate::series;

/// The self-metrics of the steps, declared once. Their names say "evaluation step" (kept for
/// the dashboards that read them): it is the same step.
pub mod names {
    use slipstream_core::metric;
    use slipstream_core::telemetry::MetricDesc;

    metric!(
        STEPS,
        "slipstream_evaluation_steps_total",
        Counter,
        [],
        "Evaluation steps run (merging the shards, feeding and evaluating the SLOs, publishing), one per tick."
    );
    metric!(
        STEP_SECONDS,
        "slipstream_evaluation_step_seconds_total",
        Counter,
        [],
        "Wall time spent in evaluation steps; over the steps, the mean step, which must stay well under the tick interval."
    );

    /// Every metric of this module.
    pub const ALL: &[&MetricDesc] = &[&STEPS, &STEP_SECONDS];
}

/// Where the burn-rate events of each step go (a step has events only when it evaluated).
pub trait EventSink: Send + Sync {
    /// Hands the events of one step over; must not block.
    fn publish(&self, events: &[BurnRateEvent]);
}

/// Where each step's partial aggregates go (two-tier mode, sidecar side).
pub trait AggregatesSink: Send + Sync {
    /// Takes the series one step gained; must not block.
    fn add(&self, series: Vec<slipstream_core::aggregates::Series>);
}

/// The latest results, as readers see them.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The aggregator snapshot of the last step.
    pub series: Arc<Snapshot>,
    /// Cumulative counts per series.
    pub totals: Arc<Vec<Arc<SeriesTotals>>>,
    /// The SLO snapshot of the last evaluation.
    pub slos: Arc<SloSnapshot>,
    /// Cumulative good and total requests per SLO.
    pub slo_totals: Arc<BTreeMap<String, (u64, u64)>>,
}

/// One SLO at one evaluation, as kept for the status page's charts (its values to single
/// precision, about seven significant digits).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    /// Evaluation time.
    pub at: UnixNanos,
    /// `(window, error ratio, burn rate)` of every evaluated window.
    pub windows: Vec<(std::time::Duration, Option<f64>, Option<f64>)>,
    /// Budget remaining over the period.
    pub budget_remaining: Option<f64>,
}

/// Points kept per SLO: a day at one a minute.
pub const HISTORY_POINTS: usize = 1440;
/// Least event time between two kept points.
pub const HISTORY_STEP: u64 = 60_000_000_000;

/// One SLO's kept evaluations in one flat ring of `f32`s, without an allocation per point:
/// 40 bytes a point with the default seven windows, so a day of points of the 4,000
/// templated SLOs of `slo.discovery.max_services: 2000` takes 230 MB (at most 330 MB with
/// the rings' spare capacity). Points kept as [`HistoryPoint`]s, a vector each, took ten
/// times that: see docs/benchmarks.md, "Experiment log", "2026-12-06: the SLO history in a
/// flat ring".
#[derive(Debug, Default)]
struct History {
    /// The windows of every point (the SLO's evaluated windows; a change starts afresh).
    windows: Vec<std::time::Duration>,
    /// `1 - objective`: a window's error ratio is its burn rate times this (a change starts
    /// afresh).
    error_budget: f64,
    at: std::collections::VecDeque<UnixNanos>,
    /// Per point: budget remaining, then the burn rate of each window (NaN for none).
    values: std::collections::VecDeque<f32>,
}

impl History {
    fn stride(&self) -> usize {
        1 + self.windows.len()
    }

    /// Adds the evaluation of `s` at `at`, at most one per [`HISTORY_STEP`], the oldest going
    /// past [`HISTORY_POINTS`].
    fn record(&mut self, s: &slipstream_slo::SloStatus, at: UnixNanos) {
        let error_budget = 1.0 - s.objective;
        let same = self.error_budget == error_budget
            && self.windows.len() == s.windows.len()
            && self
                .windows
                .iter()
                .zip(&s.windows)
                .all(|(a, b)| *a == b.window);
        if !same {
            *self = History {
                windows: s.windows.iter().map(|w| w.window).collect(),
                error_budget,
                ..History::default()
            };
        }
        if self
            .at
            .back()
            .is_some_and(|t| at < t.saturating_add(HISTORY_STEP))
        {
            return;
        }
        if self.at.len() == HISTORY_POINTS {
            self.at.pop_front();
            let stride = self.stride();
            self.values.drain(..stride);
        }
        let narrow = |v: Option<f64>| v.map_or(f32::NAN, |v| v as f32);
        self.at.push_back(at);
        self.values.push_back(narrow(s.budget_remaining));
        for w in &s.windows {
            self.values.push_back(narrow(w.burn_rate));
        }
    }

    fn points(&self) -> Vec<HistoryPoint> {
        let widen = |v: f32| (!v.is_nan()).then_some(f64::from(v));
        let stride = self.stride();
        self.at
            .iter()
            .enumerate()
            .map(|(i, &at)| {
                let v = |k: usize| widen(self.values[i * stride + k]);
                HistoryPoint {
                    at,
                    windows: self
                        .windows
                        .iter()
                        .enumerate()
                        .map(|(j, &w)| {
                            let burn = v(1 + j);
                            (w, burn.map(|b| b * self.error_budget), burn)
                        })
                        .collect(),
                    budget_remaining: v(0),
                }
            })
            .collect()
    }
}

/// The step and its published results, shared by the step thread, the admin API and the
/// exporters.
pub struct Live {
    evaluator: Mutex<Evaluator>,
    published: RwLock<Arc<Published>>,
    catalog: RwLock<BTreeMap<String, CatalogEntry>>,
    started: UnixNanos,
    sinks: Vec<Arc<dyn EventSink>>,
    aggregates: Option<Arc<dyn AggregatesSink>>,
    history: Mutex<std::collections::HashMap<String, History>>,
    metrics: Option<(Arc<Counter>, Arc<SecondsCounter>)>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("started", &self.started)
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Live {
    /// Steps over `evaluator`; `catalog` gives the owner and tier labels of series.
    pub fn new(
        evaluator: Evaluator,
        catalog: BTreeMap<String, CatalogEntry>,
        clock: &dyn Clock,
        sinks: Vec<Arc<dyn EventSink>>,
    ) -> Self {
        Live {
            evaluator: Mutex::new(evaluator),
            published: RwLock::new(Arc::new(Published::default())),
            catalog: RwLock::new(catalog),
            started: clock.now_unix_nanos(),
            sinks,
            aggregates: None,
            history: Mutex::new(std::collections::HashMap::new()),
            metrics: None,
        }
    }

    /// Counts the steps and their time in `registry` ([`names`]).
    pub fn with_metrics(mut self, registry: &Registry) -> Self {
        self.metrics = Some((
            registry.counter(&names::STEPS, &[]),
            registry.seconds_counter(&names::STEP_SECONDS, &[]),
        ));
        self
    }

    /// Ships what the aggregator gains at each step to gateways through `exporter` (two-tier
    /// mode, sidecar side).
    pub fn with_aggregates(mut self, exporter: Arc<dyn AggregatesSink>) -> Self {
        lock(&self.evaluator).ship_aggregates(true);
        self.aggregates = Some(exporter);
        self
    }

    /// Runs one step: the merge, feed and evaluate of [`Evaluator::step`], then publishes its
    /// results, hands its events to the sinks and its partial aggregates to the aggregates
    /// sink (so the returned step's are empty). Blocking CPU work: call it off the I/O threads.
    pub fn step(&self, force: bool) -> Step {
        let started = Instant::now();
        // The evaluator stays locked until the step is published: when two steps overlap (the
        // tick's and a forced one), they publish in the order they ran, so readers never see an
        // older step's results replace a newer one's, and sinks get events in order.
        let mut ev = lock(&self.evaluator);
        let mut step = ev.step(force);
        if let Some(a) = &self.aggregates {
            a.add(std::mem::take(&mut step.aggregates));
        }
        let events: Vec<BurnRateEvent> = step
            .events
            .iter()
            .map(|e| {
                let objective = ev.engine().spec(e.slo_id).map_or(0.0, |s| s.objective);
                series::burn_rate_event_linked(e, objective, ev.trace_url())
            })
            .collect();
        {
            let mut p = self
                .published
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slos = step.slos.clone().unwrap_or_else(|| p.slos.clone());
            *p = Arc::new(Published {
                series: step.series.clone(),
                totals: step.totals.clone(),
                slos,
                slo_totals: step.slo_totals.clone(),
            });
        }
        if let Some(slos) = &step.slos {
            self.record_history(slos);
        }
        for e in &step.events {
            log_event(e);
        }
        if !events.is_empty() {
            for s in &self.sinks {
                s.publish(&events);
            }
        }
        drop(ev);
        if let Some((steps, seconds)) = &self.metrics {
            steps.inc();
            seconds.add(started.elapsed());
        }
        step
    }

    fn record_history(&self, slos: &SloSnapshot) {
        let mut h = lock(&self.history);
        // The SLOs of this evaluation take their history along; the others' goes.
        let mut old = std::mem::take(&mut *h);
        h.reserve(slos.slos.len());
        for s in &slos.slos {
            let mut history = old.remove(&s.name).unwrap_or_default();
            history.record(s, slos.at);
            h.insert(s.name.clone(), history);
        }
    }

    /// The kept evaluations of the SLO named `name`, oldest first (at most one a minute, the
    /// last day).
    pub fn history(&self, name: &str) -> Vec<HistoryPoint> {
        lock(&self.history)
            .get(name)
            .map(History::points)
            .unwrap_or_default()
    }

    /// The latest results.
    pub fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The SLI series as of the last step, named per `naming`.
    pub fn metrics(&self, naming: MetricNaming) -> MetricsSnapshot {
        let p = self.published();
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        series::build(
            series::Inputs {
                series: &p.series,
                totals: &p.totals,
                slos: &p.slos,
                slo_totals: &p.slo_totals,
                catalog: &catalog,
                started: self.started,
            },
            naming,
        )
    }

    /// Runs `f` on the evaluator (silences, recent events).
    pub fn with_evaluator<R>(&self, f: impl FnOnce(&mut Evaluator) -> R) -> R {
        f(&mut lock(&self.evaluator))
    }

    /// Applies a new `slo` section (hot reload): SLOs that did not change keep their windows
    /// and alert states. On errors nothing changes.
    pub fn reconfigure(
        &self,
        cfg: &slipstream_config::SloConfig,
    ) -> Result<slipstream_slo::ReconfigureReport, Vec<slipstream_config::ConfigError>> {
        let report = self.with_evaluator(|e| e.engine_mut().reconfigure(cfg))?;
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = cfg.catalog.clone();
        Ok(report)
    }

    /// Adds a silence; returns its id.
    pub fn add_silence(&self, s: Silence) -> SilenceId {
        self.with_evaluator(|e| e.engine_mut().add_silence(s))
    }

    /// Removes a silence; false when unknown.
    pub fn remove_silence(&self, id: SilenceId) -> bool {
        self.with_evaluator(|e| e.engine_mut().remove_silence(id))
    }

    /// The silences in force.
    pub fn silences(&self) -> Vec<(SilenceId, Silence)> {
        self.with_evaluator(|e| e.engine().silences().to_vec())
    }

    /// The most recent events, oldest first.
    pub fn recent_events(&self) -> Vec<AlertEvent> {
        self.with_evaluator(|e| e.engine().recent_events().cloned().collect())
    }
}

#[cfg(test)]
mod tests;

fn log_event(e: &AlertEvent) {
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
    match e.state {
        AlertState::Firing => tracing::warn!(
            slo = %e.slo,
            service = %e.service,
            severity = e.severity.as_str(),
            long_burn_rate = %rate(e.long_burn_rate),
            short_burn_rate = %rate(e.short_burn_rate),
            "burn-rate alert firing"
        ),
        AlertState::Resolved => tracing::info!(
            slo = %e.slo,
            service = %e.service,
            severity = e.severity.as_str(),
            "burn-rate alert resolved"
        ),
    }
}
