//! Hops 6 to 8 of the life of a span (see [the crate docs](crate)), the first three of a
//! step, shared by `slipstream run` and `slipstream replay`: merge the aggregator's shards,
//! feed what changed to the SLO engine, evaluate the SLOs when the evaluation interval has
//! passed. [`Evaluator::step`] runs them; [`crate::publish`] runs the fourth.
//!
//! The aggregator publishes immutable snapshots in which unchanged series and slots are the
//! same `Arc`s as in the previous one. The feed walks the new snapshot next to the previous
//! one ([`Snapshot::changes_since`]: pointer-equal series and slots are skipped) and hands the
//! engine only the difference of the slots that changed: new requests, and late spans added
//! to an older slot. So each request reaches the SLO engine exactly once, however often steps
//! run, and the feed costs a pointer comparison per unchanged series.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use slipstream_aggregator::{
    Aggregator, SERVICE_LABEL, SeriesChange, SeriesData, SeriesId, SlotChange, SlotData, Snapshot,
    SparseHistogram,
};
use slipstream_core::aggregates::{self, Overflow};
use slipstream_core::{Clock, UnixNanos};
use slipstream_slo::{AlertEvent, Sli, SloEngine, SloId, SloSnapshot};

/// What one step produced.
#[derive(Debug, Clone)]
pub struct Step {
    /// The aggregator snapshot the step read.
    pub series: Arc<Snapshot>,
    /// The SLO snapshot, when the SLOs were evaluated in this step.
    pub slos: Option<Arc<SloSnapshot>>,
    /// Alert events of this step (empty unless evaluated).
    pub events: Vec<AlertEvent>,
    /// Cumulative counts per live series, in series-id order.
    pub totals: Arc<Vec<Arc<SeriesTotals>>>,
    /// Cumulative good and total requests per SLO (by name), since start.
    pub slo_totals: Arc<BTreeMap<String, (u64, u64)>>,
    /// What the aggregator gained in this step, as partial aggregates for a gateway (empty
    /// unless [`Evaluator::ship_aggregates`] asked for them; `Live::step` hands them on to the
    /// aggregates exporter).
    pub aggregates: Vec<aggregates::Series>,
}

/// Everything one series counted since slipstream started seeing it: the values behind the
/// exported counters and latency histogram (the aggregator itself keeps only its retention).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTotals {
    /// The series.
    pub id: SeriesId,
    /// Its labels (`service.name` first, then the dimensions), as the aggregator names them.
    /// Shared: a series' totals are copied on every step that changes them.
    pub labels: Arc<[(String, String)]>,
    /// Requests.
    pub total: u64,
    /// Bad requests.
    pub bad: u64,
    /// Latencies, nanoseconds.
    pub histogram: SparseHistogram,
    /// When the series was first seen (the clock at the step that first saw it).
    pub since: UnixNanos,
    /// Its service is refused SLOs (over `slo.discovery.max_services`): the series is left
    /// out of the exported SLI series.
    pub over_limit: bool,
}

/// The merge, feed and evaluate hops of a step: feeds the SLO engine from the aggregator and
/// evaluates on the engine's evaluation interval.
#[derive(Debug)]
pub struct Evaluator {
    aggregator: Arc<Aggregator>,
    engine: SloEngine,
    clock: Arc<dyn Clock>,
    previous: Arc<Snapshot>,
    next_evaluation: UnixNanos,
    totals: BTreeMap<SeriesId, Tracked>,
    routes: Routes,
    slo_totals: BTreeMap<String, (u64, u64)>,
    /// The engine's generation `slo_totals` was last pruned for.
    totals_generation: u64,
    ship_aggregates: bool,
    /// The trace URL template exemplars link to in event annotations (`None`: ids only).
    trace_url: Option<String>,
}

impl Evaluator {
    /// An evaluator over `aggregator` and `engine`, reading time from `clock` (the same
    /// clock both were built with).
    pub fn new(aggregator: Arc<Aggregator>, engine: SloEngine, clock: Arc<dyn Clock>) -> Self {
        Evaluator {
            aggregator,
            engine,
            clock,
            previous: Arc::new(Snapshot::default()),
            next_evaluation: 0,
            totals: BTreeMap::new(),
            routes: Routes::default(),
            slo_totals: BTreeMap::new(),
            totals_generation: 0,
            ship_aggregates: false,
            trace_url: None,
        }
    }

    /// Links the example requests of event annotations to their traces through `template`
    /// (`{trace_id}` and `{span_id}` replaced by the ids); `None`: the annotation names ids.
    pub fn set_trace_url(&mut self, template: Option<String>) {
        self.trace_url = template;
    }

    /// Makes every step also return what the aggregator gained as partial aggregates
    /// ([`Step::aggregates`]), for a sidecar that ships them to a gateway.
    pub fn ship_aggregates(&mut self, on: bool) {
        self.ship_aggregates = on;
    }

    /// The SLO engine (for silences and the status API).
    pub fn engine(&self) -> &SloEngine {
        &self.engine
    }

    /// The SLO engine, mutably.
    pub fn engine_mut(&mut self) -> &mut SloEngine {
        &mut self.engine
    }

    /// How often SLOs are evaluated.
    pub fn evaluation_interval(&self) -> Duration {
        self.engine.evaluation_interval()
    }

    /// Runs the first three hops of a step: merges the shards, feeds the engine what changed,
    /// and evaluates the SLOs when the evaluation interval has passed (or `force` is set).
    pub fn step(&mut self, force: bool) -> Step {
        let series = self.aggregator.tick();
        self.feed(&series);
        let aggregates = if self.ship_aggregates {
            series.aggregates_since(&self.previous)
        } else {
            Vec::new()
        };
        self.previous = series.clone();
        let now = self.clock.now_unix_nanos();
        let (slos, events) = if force || now >= self.next_evaluation {
            let interval = nanos(self.engine.evaluation_interval()).max(1);
            self.next_evaluation = (now / interval + 1) * interval;
            let mut events = self.engine.tick();
            explain(
                &series,
                &self.engine,
                self.trace_url.as_deref(),
                &mut events,
            );
            self.attach_exemplars(&series, &mut events);
            // A re-sent alert names what it fired with while nothing new is found (after a
            // restart, before the aggregator holds the incident's requests again).
            self.engine.remember_sent(&events);
            (Some(self.engine.snapshot()), events)
        } else {
            (None, Vec::new())
        };
        if self.totals_generation != self.engine.generation() {
            // SLOs removed (expired, or reconfigured away) take their cumulative totals along.
            self.totals_generation = self.engine.generation();
            let engine = &self.engine;
            self.slo_totals.retain(|name, _| engine.id(name).is_some());
        }
        Step {
            series,
            slos,
            events,
            totals: Arc::new(self.totals.values().map(|t| t.totals.clone()).collect()),
            slo_totals: Arc::new(self.slo_totals.clone()),
            aggregates,
        }
    }

    fn feed(&mut self, new: &Snapshot) {
        let previous = self.previous.clone();
        let now = self.clock.now_unix_nanos();
        for change in new.changes_since(&previous) {
            self.feed_series(change, now);
        }
        if self.totals.len() > new.series().len() {
            let live: std::collections::HashSet<SeriesId> =
                new.series().iter().map(|s| s.id()).collect();
            self.totals.retain(|id, _| live.contains(id));
        }
    }

    fn feed_series(&mut self, change: SeriesChange<'_>, now: UnixNanos) {
        let s = change.series;
        let fresh = change.before.is_none();
        let tracked = match self.totals.entry(s.id()) {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if fresh {
                    e.insert(Tracked::new(s, now));
                }
                e.into_mut()
            }
            std::collections::btree_map::Entry::Vacant(e) => e.insert(Tracked::new(s, now)),
        };
        let service = s.labels().get(SERVICE_LABEL);
        // Traffic keeps a service from expiring; an ordinary series of a service new to the
        // engine may create templated SLOs (an overflow series never does).
        if let Some(service) = service {
            let ordinary = s.overflow() == Overflow::None;
            let over_limit = !self.engine.service_traffic(service, ordinary);
            if tracked.totals.over_limit != over_limit {
                Arc::make_mut(&mut tracked.totals).over_limit = over_limit;
            }
        }
        // What this series counts towards is worked out once, and again only when the SLOs
        // change (a service seen for the first time may create templated ones).
        let rerouted = tracked
            .route
            .as_ref()
            .is_none_or(|(generation, _)| *generation != self.engine.generation());
        if rerouted {
            let targets = self.routes.route(&self.engine, s);
            tracked.route = Some((self.engine.generation(), targets));
        }
        let targets = tracked.route.as_ref().map_or(&[][..], |(_, t)| &t[..]);
        let totals = Arc::make_mut(&mut tracked.totals);
        for c in change.slots() {
            let (slot, prev) = (c.slot, c.before);
            totals.add(c);
            for t in targets {
                let (good, total) = delta(t.sli, slot, prev);
                if total > 0 {
                    self.engine
                        .observe(t.id, slot.start_unix_nanos, good, total);
                    let sum = match self.slo_totals.get_mut(&*t.name) {
                        Some(sum) => sum,
                        None => self.slo_totals.entry(t.name.to_string()).or_default(),
                    };
                    sum.0 += good;
                    sum.1 += total;
                }
            }
        }
        let Some(service) = service else { return };
        // Versions already handed over are handed over again only when the list changed
        // (the snapshots share it otherwise: it changes at each step whose merge brought the
        // series requests, as the versions serving it are seen again) or the SLOs did. Each
        // comes with when it last served a request: the engine names the one seen most
        // recently as running.
        let versions_changed = change
            .before
            .is_none_or(|b| !std::ptr::eq(b.versions(), s.versions()));
        if rerouted || versions_changed {
            for v in s.versions() {
                self.engine.observe_version_seen(
                    service,
                    &v.version,
                    v.first_seen_unix_nanos,
                    v.last_seen_unix_nanos,
                );
            }
        }
    }
}

/// A series the evaluator has seen: its cumulative totals and the SLOs it counts towards.
#[derive(Debug)]
struct Tracked {
    totals: Arc<SeriesTotals>,
    /// The SLOs it counts towards, with the engine's [`SloEngine::generation`] they were
    /// worked out for; `None` until its first step.
    route: Option<(u64, Arc<[Target]>)>,
}

impl Tracked {
    fn new(s: &SeriesData, now: UnixNanos) -> Self {
        Tracked {
            totals: Arc::new(SeriesTotals::new(s, now)),
            route: None,
        }
    }
}

/// An SLO a series counts towards.
#[derive(Debug)]
struct Target {
    id: SloId,
    sli: Sli,
    name: Arc<str>,
}

/// The SLOs series count towards, each distinct list kept once however many series share it
/// (most series of a service share one), for one generation of the engine's SLOs.
#[derive(Debug, Default)]
struct Routes {
    generation: u64,
    lists: std::collections::HashMap<Vec<SloId>, Arc<[Target]>>,
}

impl Routes {
    /// The SLOs series `s` counts towards (none for the global overflow series, which
    /// belongs to no service).
    fn route(&mut self, engine: &SloEngine, s: &SeriesData) -> Arc<[Target]> {
        if self.generation != engine.generation() {
            self.generation = engine.generation();
            self.lists.clear();
        }
        let Some(service) = s.labels().get(SERVICE_LABEL) else {
            return Arc::new([]);
        };
        let labels: Vec<(&str, &str)> = s.labels().iter().collect();
        let ids: Vec<SloId> = engine.matching(service, &labels).collect();
        if let Some(list) = self.lists.get(&ids) {
            return list.clone();
        }
        let list: Arc<[Target]> = ids
            .iter()
            .filter_map(|&id| {
                let spec = engine.spec(id)?;
                Some(Target {
                    id,
                    sli: spec.sli,
                    name: Arc::from(spec.name.as_str()),
                })
            })
            .collect();
        self.lists.insert(ids, list.clone());
        list
    }
}

impl SeriesTotals {
    fn new(s: &SeriesData, now: UnixNanos) -> Self {
        SeriesTotals {
            id: s.id(),
            labels: s
                .labels()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            total: 0,
            bad: 0,
            histogram: SparseHistogram::new(),
            since: now,
            over_limit: false,
        }
    }

    /// Adds what a slot gained since the previous snapshot.
    fn add(&mut self, c: SlotChange<'_>) {
        let (total, bad) = c.gained();
        self.total += total;
        self.bad += bad;
        let added = c.slot.gained_since(c.before);
        if !added.is_empty() {
            self.histogram = self.histogram.merged_with(added);
        }
    }
}

/// Good and total requests added to `slot` since `prev` (the same slot in the previous
/// snapshot), for an SLI.
///
/// A latency SLI counts exactly at its threshold where the slot compared every request with
/// it ([`SlotData::good_within`]); a slot that did not (it held requests before a reload added
/// the threshold, or came from a sender that does not count it) is estimated from the
/// histogram, and so is the same slot's earlier state, so that the two are differences of one
/// measure. A slot only ever loses thresholds it covers, never gains one, so an exact slot's
/// earlier state is exact too.
fn delta(sli: Sli, slot: &SlotData, prev: Option<&SlotData>) -> (u64, u64) {
    let exact = match sli {
        Sli::Availability => true,
        Sli::Latency { threshold } => slot.good_within(nanos(threshold)).1,
    };
    let good = |s: &SlotData| match sli {
        Sli::Availability => s.total - s.bad,
        Sli::Latency { threshold } if exact => s.good_within(nanos(threshold)).0,
        Sli::Latency { threshold } => s.histogram.count_at_or_below(nanos(threshold)),
    };
    let (good_before, total_before) = prev.map_or((0, 0), |p| (good(p), p.total));
    (
        good(slot).saturating_sub(good_before),
        slot.total.saturating_sub(total_before),
    )
}

/// Names, in each firing event, the attribute values its bad requests in the row's short
/// window share ([`AlertEvent::bad_requests_share`], and the annotation
/// `bad_requests_share`), from the aggregator's counts of the event's service: of an
/// availability SLO, the requests that failed; of a latency SLO, those slower than its
/// threshold. Where the
/// counts name none, an event keeps those its row was last sent with (the engine fills them
/// in a re-sent event). Each value's example request is linked through `trace_url`
/// (`exemplars.trace_url`) where it is set.
fn explain(
    series: &Snapshot,
    engine: &SloEngine,
    trace_url: Option<&str>,
    events: &mut [AlertEvent],
) {
    use slipstream_core::explain::{SHARES_ANNOTATION, render_shares};
    let explained = series.explained();
    for e in events
        .iter_mut()
        .filter(|e| e.state == slipstream_slo::AlertState::Firing)
    {
        let bad = match engine.spec(e.slo_id).map(|s| s.sli) {
            Some(Sli::Availability) => slipstream_aggregator::BadRequests::Errors,
            Some(Sli::Latency { threshold }) => {
                slipstream_aggregator::BadRequests::SlowerThan(nanos(threshold))
            }
            None => continue,
        };
        if !explained.attributes().is_empty() {
            let from = e.at.saturating_sub(nanos(e.row.short));
            let to = e.at.saturating_add(1);
            let mut found = explained.shares_of(&e.service, bad, from, to, explained.top());
            if let Some(t) = trace_url {
                found.iter_mut().for_each(|s| s.link(t));
            }
            if !found.is_empty() {
                e.bad_requests_share = found;
            }
        }
        if !e.bad_requests_share.is_empty() {
            e.annotations.insert(
                SHARES_ANNOTATION.to_owned(),
                render_shares(&e.bad_requests_share),
            );
        }
    }
}

/// The annotation that lists an event's example requests, one per line: a link to the trace
/// where a trace URL template is set, else the trace id; then the latency.
pub const EXEMPLARS_ANNOTATION: &str = "example_traces";

impl Evaluator {
    /// Gives each event the example bad requests of its SLO's series in the row's short window
    /// (for a latency SLO, those above its threshold), most recent first
    /// ([`AlertEvent::exemplars`]), and the annotation [`EXEMPLARS_ANNOTATION`]. Where the
    /// series keep none, an event keeps those its row was last sent with (the engine fills
    /// them in a re-sent firing event).
    fn attach_exemplars(&self, series: &Snapshot, events: &mut [AlertEvent]) {
        for e in events.iter_mut() {
            let sli = self.engine.spec(e.slo_id).map(|s| s.sli);
            let from = e.at.saturating_sub(nanos(e.row.short));
            let mut found = self.slo_exemplars(series, e.slo_id, from);
            found.retain(|x| match sli {
                Some(Sli::Latency { threshold }) => x.duration_nanos > nanos(threshold),
                _ => x.bad,
            });
            found.sort_by_key(|x| std::cmp::Reverse(x.end_unix_nanos));
            found.truncate(slipstream_slo::MAX_EVENT_EXEMPLARS);
            if !found.is_empty() {
                e.exemplars = found;
            }
            if !e.exemplars.is_empty() {
                let lines: Vec<String> = e
                    .exemplars
                    .iter()
                    .map(|x| {
                        let at = match &self.trace_url {
                            Some(t) => x.link(t),
                            None => x.trace_id_hex(),
                        };
                        format!("{at} ({:.3}s)", x.duration_nanos as f64 / 1e9)
                    })
                    .collect();
                e.annotations
                    .insert(EXEMPLARS_ANNOTATION.to_owned(), lines.join("\n"));
            }
        }
    }

    /// Every exemplar the aggregator keeps for the series SLO `slo` counts, in slots that end
    /// after `from`, each request once (in no particular order).
    pub fn slo_exemplars(
        &self,
        series: &Snapshot,
        slo: SloId,
        from: UnixNanos,
    ) -> Vec<slipstream_core::Exemplar> {
        let slot_ns = series.slot_width().as_nanos() as u64;
        let mut found: Vec<slipstream_core::Exemplar> = Vec::new();
        for (id, tracked) in &self.totals {
            let counts = tracked
                .route
                .as_ref()
                .is_some_and(|(_, targets)| targets.iter().any(|t| t.id == slo));
            let Some(s) = counts
                .then(|| series.series().binary_search_by_key(id, |s| s.id()).ok())
                .flatten()
                .map(|i| &series.series()[i])
            else {
                continue;
            };
            for (_, set) in s
                .exemplar_slots()
                .into_iter()
                .filter(|(start, _)| start.saturating_add(slot_ns) > from)
            {
                found.extend(set.iter());
            }
        }
        found.sort_unstable_by_key(|x| (x.trace_id, x.span_id));
        found.dedup();
        found
    }

    /// The trace URL template exemplars link to ([`Evaluator::set_trace_url`]).
    pub fn trace_url(&self) -> Option<&str> {
        self.trace_url.as_deref()
    }
}

/// The latency thresholds of the `slo` section: those of the explicit latency objectives and
/// of the latency template, distinct and ascending. What the aggregator must count exactly
/// ([`Aggregator::set_latency_thresholds`]) for every latency SLO, templated ones included
/// (they are created only when their service sends traffic, after its first requests were
/// recorded).
pub fn latency_thresholds(cfg: &slipstream_config::SloConfig) -> Vec<Duration> {
    let mut out: Vec<Duration> = cfg
        .objectives
        .iter()
        .filter_map(|o| match o.sli {
            slipstream_config::slo::SliConfig::Latency { threshold } => Some(threshold),
            slipstream_config::slo::SliConfig::Availability => None,
        })
        .chain(cfg.templates.latency.as_ref().and_then(|t| t.threshold))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
