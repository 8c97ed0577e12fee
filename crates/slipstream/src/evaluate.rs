//! The evaluation step shared by `run` and `replay`: merge the aggregator's shards, feed what
//! changed to the SLO engine, evaluate SLOs when due.
//!
//! The aggregator publishes immutable snapshots in which unchanged series and slots are the
//! same `Arc`s as in the previous one. [`Evaluator::step`] walks the new snapshot next to the
//! previous one (both in series-id order), skips every series and slot that is pointer-equal,
//! and hands the engine only the difference of the slots that changed: new requests, and late
//! spans added to an older slot. So each request reaches the SLO engine exactly once, however
//! often the aggregator ticks, and a tick costs a pointer comparison per unchanged series.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use slipstream_aggregator::{
    Aggregator, SERVICE_LABEL, SeriesData, SeriesId, SlotData, Snapshot, SparseHistogram,
};
use slipstream_core::{Clock, UnixNanos};
use slipstream_slo::{AlertEvent, Sli, SloEngine, SloId, SloSnapshot};

/// What one evaluation step produced.
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
}

/// Everything one series counted since slipstream started seeing it: the values behind the
/// exported counters and latency histogram (the aggregator itself keeps only its retention).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesTotals {
    /// The series.
    pub id: SeriesId,
    /// Its labels (`service.name` first, then the dimensions), as the aggregator names them.
    pub labels: Vec<(String, String)>,
    /// Requests.
    pub total: u64,
    /// Bad requests.
    pub bad: u64,
    /// Latencies, nanoseconds.
    pub histogram: SparseHistogram,
    /// When the series was first seen (tick time).
    pub since: UnixNanos,
}

/// Feeds the SLO engine from the aggregator and evaluates on the engine's interval.
#[derive(Debug)]
pub struct Evaluator {
    aggregator: Arc<Aggregator>,
    engine: SloEngine,
    clock: Arc<dyn Clock>,
    previous: Arc<Snapshot>,
    next_evaluation: UnixNanos,
    totals: BTreeMap<SeriesId, Arc<SeriesTotals>>,
    slo_totals: BTreeMap<String, (u64, u64)>,
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
            slo_totals: BTreeMap::new(),
        }
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

    /// Merges the shards, feeds the engine what changed, and evaluates the SLOs when the
    /// evaluation interval has passed (or `force` is set).
    pub fn step(&mut self, force: bool) -> Step {
        let series = self.aggregator.tick();
        self.feed(&series);
        self.previous = series.clone();
        let now = self.clock.now_unix_nanos();
        let (slos, events) = if force || now >= self.next_evaluation {
            let interval = nanos(self.engine.evaluation_interval()).max(1);
            self.next_evaluation = (now / interval + 1) * interval;
            let events = self.engine.tick();
            (Some(self.engine.snapshot()), events)
        } else {
            (None, Vec::new())
        };
        Step {
            series,
            slos,
            events,
            totals: Arc::new(self.totals.values().cloned().collect()),
            slo_totals: Arc::new(self.slo_totals.clone()),
        }
    }

    fn feed(&mut self, new: &Snapshot) {
        let previous = self.previous.clone();
        let old = previous.series();
        let mut j = 0;
        for s in new.series() {
            while j < old.len() && old[j].id() < s.id() {
                j += 1;
            }
            let before = old
                .get(j)
                .filter(|o| o.id() == s.id() && o.labels() == s.labels());
            if before.is_some_and(|o| Arc::ptr_eq(o, s)) {
                continue;
            }
            self.feed_series(s, before.map(|o| &**o));
        }
        if self.totals.len() > new.series().len() {
            let live: std::collections::HashSet<SeriesId> =
                new.series().iter().map(|s| s.id()).collect();
            self.totals.retain(|id, _| live.contains(id));
        }
    }

    fn feed_series(&mut self, s: &SeriesData, before: Option<&SeriesData>) {
        let now = self.clock.now_unix_nanos();
        let fresh = before.is_none();
        let entry = self.totals.entry(s.id());
        let totals = match entry {
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if fresh {
                    e.insert(Arc::new(SeriesTotals::new(s, now)));
                }
                e.into_mut()
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Arc::new(SeriesTotals::new(s, now)))
            }
        };
        let totals = Arc::make_mut(totals);
        let service = s.labels().get(SERVICE_LABEL);
        if let Some(service) = service {
            self.engine.service_seen(service);
        }
        let labels: Vec<(&str, &str)> = s.labels().iter().collect();
        let ids: Vec<SloId> = match service {
            Some(service) => self.engine.matching(service, &labels).collect(),
            None => Vec::new(), // the global overflow series belongs to no service
        };
        let targets: Vec<(SloId, Sli, String)> = ids
            .iter()
            .filter_map(|&id| {
                let spec = self.engine.spec(id)?;
                Some((id, spec.sli, spec.name.clone()))
            })
            .collect();
        let old_slots = before.map(SeriesData::slots).unwrap_or(&[]);
        let mut k = 0;
        for slot in s.slots() {
            while k < old_slots.len() && old_slots[k].start_unix_nanos < slot.start_unix_nanos {
                k += 1;
            }
            let prev = old_slots
                .get(k)
                .filter(|o| o.start_unix_nanos == slot.start_unix_nanos)
                .map(|p| &**p);
            if prev.is_some_and(|p| std::ptr::eq(p, &**slot)) {
                continue;
            }
            totals.add(slot, prev);
            for (id, sli, name) in &targets {
                let (good, total) = delta(*sli, slot, prev);
                if total > 0 {
                    self.engine.observe(*id, slot.start_unix_nanos, good, total);
                    let t = match self.slo_totals.get_mut(name) {
                        Some(t) => t,
                        None => self.slo_totals.entry(name.clone()).or_default(),
                    };
                    t.0 += good;
                    t.1 += total;
                }
            }
        }
        let Some(service) = service else { return };
        for v in s.versions() {
            self.engine
                .observe_version(service, &v.version, v.first_seen_unix_nanos);
        }
        // The newest version is taken to be running as long as the series gets traffic.
        if let Some(v) = s.versions().last() {
            self.engine
                .observe_version(service, &v.version, s.last_seen_unix_nanos());
        }
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
        }
    }

    /// Adds what `slot` holds beyond `prev` (the same slot one snapshot earlier).
    fn add(&mut self, slot: &SlotData, prev: Option<&SlotData>) {
        let (total, bad) = prev.map_or((0, 0), |p| (p.total, p.bad));
        self.total += slot.total.saturating_sub(total);
        self.bad += slot.bad.saturating_sub(bad);
        let added: Vec<(u32, u64)> = match prev {
            None => slot.histogram.iter().collect(),
            Some(p) => {
                let mut old = p.histogram.iter().peekable();
                slot.histogram
                    .iter()
                    .filter_map(|(b, n)| {
                        while old.next_if(|&(ob, _)| ob < b).is_some() {}
                        let before = old.next_if(|&(ob, _)| ob == b).map_or(0, |(_, n)| n);
                        (n > before).then(|| (b, n - before))
                    })
                    .collect()
            }
        };
        if !added.is_empty() {
            self.histogram = self.histogram.merged_with(added);
        }
    }
}

/// Good and total requests added to `slot` since `prev` (the same slot in the previous
/// snapshot), for an SLI.
fn delta(sli: Sli, slot: &SlotData, prev: Option<&SlotData>) -> (u64, u64) {
    let good = |s: &SlotData| match sli {
        Sli::Availability => s.total - s.bad,
        Sli::Latency { threshold } => s.histogram.count_at_or_below(nanos(threshold)),
    };
    let (good_before, total_before) = prev.map_or((0, 0), |p| (good(p), p.total));
    (
        good(slot).saturating_sub(good_before),
        slot.total.saturating_sub(total_before),
    )
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
