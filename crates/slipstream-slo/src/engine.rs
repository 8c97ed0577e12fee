//! The SLO engine: specs, window stores, evaluation on a tick, the alert state machine,
//! silences, the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use slipstream_config::ConfigError;
use slipstream_config::slo::{
    CatalogEntry, DiscoveryConfig, Period, Severity, SilenceKind, SloConfig, TemplatesConfig,
};
use slipstream_core::telemetry::{Counter, Gauge};
use slipstream_core::{Clock, Registry, UnixNanos};

use crate::model::{
    AlertEvent, AlertState, AlertStatus, Silence, SilenceId, SloId, SloSnapshot, SloStatus,
    WindowStatus,
};
use crate::names;
use crate::persist::SavedSlo;
use crate::spec::{CURRENT_BURN_WINDOW, RowKind, SloSource, SloSpec};
use crate::window::{Counts, DAY, Stored, WindowStore};

mod persist;
mod transfer;

/// How far in the future (relative to the clock) a slot may start before its counts are
/// refused (`reason="future"`).
pub const MAX_FUTURE: Duration = Duration::from_secs(120);
/// How many recent events [`SloEngine::recent_events`] keeps.
pub const RECENT_EVENTS: usize = 1024;
/// How many `service.version` values are remembered per service (the least recently seen go).
pub const MAX_VERSIONS_PER_SERVICE: usize = 32;
/// How many services refused templated SLOs (over `slo.discovery.max_services`) are tracked
/// by name; beyond it they are only counted.
pub const MAX_OVER_LIMIT_TRACKED: usize = 1_000;
/// How many of the services over the limit the snapshot names (the first by name).
pub const OVER_LIMIT_LISTED: usize = 100;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The first instant of the UTC calendar month holding `t`.
pub fn month_start(t: UnixNanos) -> UnixNanos {
    let days = (t / DAY) as i64;
    // Civil-from-days (H. Hinnant), then days-from-civil for day 1 of that month.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let first = days - (d - 1);
    first.max(0) as u64 * DAY
}

#[derive(Debug, Clone, Default)]
struct RowState {
    condition: bool,
    firing: bool,
    since: UnixNanos,
    notified: bool,
    last_sent: UnixNanos,
    held_counted: bool,
    superseded_counted: bool,
    superseded: bool,
    /// What the row's firing events were last published with (see
    /// [`SloEngine::remember_sent`]); cleared when its resolved event is sent.
    sent: SentContext,
}

/// What a firing row's events were published with beyond the engine's own numbers: the
/// attribute values its bad requests share and its example requests, both found where events
/// are published (from the aggregator's counts and exemplars). Kept per row and saved with
/// it, so that a re-sent firing event carries them when the evaluation that re-sends it finds
/// none of its own: after a restart, the aggregator starts empty while the engine's windows
/// and alert rows come back.
#[derive(Debug, Clone, Default, PartialEq)]
struct SentContext {
    bad_requests_share: Vec<slipstream_core::explain::ValueShare>,
    exemplars: Vec<slipstream_core::Exemplar>,
}

#[derive(Debug)]
struct SloState {
    spec: SloSpec,
    windows: Vec<Duration>,
    store: WindowStore,
    rows: Vec<RowState>,
    /// When counts last came for it (clock time; 0 before any): traffic that keeps a
    /// discovered service from expiring.
    last_observed: UnixNanos,
}

/// When a service seen in traffic had its first and its latest traffic (clock time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    first: UnixNanos,
    last: UnixNanos,
}

/// Why a discovered service's templated SLOs were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No traffic for `expire_after`.
    Idle,
    /// Traffic lasting less than `expire_transient_after`, then none for as long.
    Transient,
}

impl DiscoveryRule {
    fn of(c: &DiscoveryConfig) -> DiscoveryRule {
        DiscoveryRule {
            max_services: c.max_services,
            idle: nanos(c.expire_after),
            transient: nanos(c.expire_transient_after),
        }
    }

    /// Whether a service seen from `first` to `last` has expired at `now`, and why.
    fn expired(&self, first: UnixNanos, last: UnixNanos, now: UnixNanos) -> Option<Expiry> {
        let quiet = now.saturating_sub(last);
        if quiet >= self.idle {
            Some(Expiry::Idle)
        } else if self.transient > 0
            && last.saturating_sub(first) < self.transient
            && quiet >= self.transient
        {
            Some(Expiry::Transient)
        } else {
            None
        }
    }

    /// How long a service refused over the limit stays listed without traffic.
    fn over_limit_kept(&self) -> u64 {
        if self.transient > 0 {
            self.transient.min(self.idle)
        } else {
            self.idle
        }
    }
}

/// `slo.discovery` in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct DiscoveryRule {
    max_services: usize,
    idle: u64,
    transient: u64,
}

#[derive(Debug, Clone, Copy)]
struct VersionSeen {
    first: UnixNanos,
    last: UnixNanos,
}

#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    too_old: u64,
    future: u64,
    unknown_slo: u64,
    invalid: u64,
}

#[derive(Debug)]
struct Metrics {
    /// [severity][state]: page/ticket x firing/resolved.
    events: [[Arc<Counter>; 2]; 2],
    suppressed_silence: Arc<Counter>,
    suppressed_maintenance: Arc<Counter>,
    suppressed_superseded: Arc<Counter>,
    dropped_too_old: Arc<Counter>,
    dropped_future: Arc<Counter>,
    dropped_unknown: Arc<Counter>,
    dropped_invalid: Arc<Counter>,
    evaluations: Arc<Counter>,
    objectives_explicit: Arc<Gauge>,
    objectives_template: Arc<Gauge>,
    firing_page: Arc<Gauge>,
    firing_ticket: Arc<Gauge>,
    uncataloged: Arc<Gauge>,
    discovered: Arc<Gauge>,
    over_limit: Arc<Gauge>,
    refused_over_limit: Arc<Counter>,
    expired_idle: Arc<Counter>,
    expired_transient: Arc<Counter>,
}

impl Metrics {
    fn new(r: &Registry) -> Metrics {
        let ev = |sev, st| r.counter(&names::EVENTS, &[sev, st]);
        Metrics {
            events: [
                [ev("page", "firing"), ev("page", "resolved")],
                [ev("ticket", "firing"), ev("ticket", "resolved")],
            ],
            suppressed_silence: r.counter(&names::SUPPRESSED_EVENTS, &["silence"]),
            suppressed_maintenance: r.counter(&names::SUPPRESSED_EVENTS, &["maintenance"]),
            suppressed_superseded: r.counter(&names::SUPPRESSED_EVENTS, &["superseded"]),
            dropped_too_old: r.counter(&names::DROPPED_OBSERVATIONS, &["too_old"]),
            dropped_future: r.counter(&names::DROPPED_OBSERVATIONS, &["future"]),
            dropped_unknown: r.counter(&names::DROPPED_OBSERVATIONS, &["unknown_slo"]),
            dropped_invalid: r.counter(&names::DROPPED_OBSERVATIONS, &["invalid"]),
            evaluations: r.counter(&names::EVALUATIONS, &[]),
            objectives_explicit: r.gauge(&names::OBJECTIVES, &["explicit"]),
            objectives_template: r.gauge(&names::OBJECTIVES, &["template"]),
            firing_page: r.gauge(&names::ALERTS_FIRING, &["page"]),
            firing_ticket: r.gauge(&names::ALERTS_FIRING, &["ticket"]),
            uncataloged: r.gauge(&names::SERVICES_UNCATALOGED, &[]),
            discovered: r.gauge(&names::SERVICES_DISCOVERED, &[]),
            over_limit: r.gauge(&names::SERVICES_OVER_LIMIT, &[]),
            refused_over_limit: r.counter(&names::SERVICES_REFUSED, &["over_limit"]),
            expired_idle: r.counter(&names::SERVICES_EXPIRED, &["idle"]),
            expired_transient: r.counter(&names::SERVICES_EXPIRED, &["transient"]),
        }
    }
}

/// The SLO engine. The application builds it from the `slo` section; the evaluation step
/// (`slipstream-step`) feeds it per-slot counts ([`observe`](Self::observe)), calls
/// [`tick`](Self::tick) every [`evaluation_interval`](Self::evaluation_interval) and
/// publishes the [`snapshot`](Self::snapshot) and the events `tick` returns.
#[derive(Debug)]
pub struct SloEngine {
    clock: Arc<dyn Clock>,
    evaluation_interval: Duration,
    repeat_interval: Option<Duration>,
    min_events: u64,
    catalog: BTreeMap<String, CatalogEntry>,
    templates: TemplatesConfig,
    discovery: DiscoveryRule,
    explicit_services: HashSet<String>,
    slos: Vec<SloState>,
    by_name: HashMap<String, SloId>,
    by_service: HashMap<String, Vec<SloId>>,
    /// Bumped whenever the SLOs change (see [`generation`](Self::generation)).
    generation: u64,
    /// Services seen in traffic that the engine tracks: those with an explicit objective,
    /// and at most `discovery.max_services` discovered ones.
    seen: BTreeMap<String, Seen>,
    /// How many of `seen` are discovered (no explicit objective): what the cap counts.
    discovered: usize,
    /// Discovered services refused for the cap (at most [`MAX_OVER_LIMIT_TRACKED`]), with
    /// their latest traffic.
    over_limit: BTreeMap<String, UnixNanos>,
    versions: HashMap<String, BTreeMap<String, VersionSeen>>,
    silences: Vec<(SilenceId, Silence)>,
    /// The silences that came from `slo.silences` (a reconfigure replaces them).
    config_silences: BTreeSet<SilenceId>,
    next_silence: u64,
    /// Restored data of templated SLOs whose service has not been seen yet, by SLO name.
    pending: BTreeMap<String, SavedSlo>,
    recent: VecDeque<AlertEvent>,
    snapshot: Arc<SloSnapshot>,
    dropped: Dropped,
    metrics: Metrics,
    /// Services handed off to other gateways: still evaluated, their events not sent (see
    /// [`hand_off`](Self::hand_off)).
    handed_off: HashSet<String>,
}

impl SloEngine {
    /// An engine for `config` (validated again here: every error comes back, with its path
    /// under `slo`), reading time from `clock` and registering its self-metrics on
    /// `registry`.
    pub fn new(
        config: &SloConfig,
        clock: Arc<dyn Clock>,
        registry: &Registry,
    ) -> Result<SloEngine, Vec<ConfigError>> {
        let errors = config.errors();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut engine = SloEngine {
            clock,
            evaluation_interval: config.evaluation_interval,
            repeat_interval: config.repeat_interval,
            min_events: config.min_events,
            catalog: config.catalog.clone(),
            templates: config.templates.clone(),
            discovery: DiscoveryRule::of(&config.discovery),
            explicit_services: config
                .objectives
                .iter()
                .map(|o| o.service.clone())
                .collect(),
            slos: Vec::new(),
            by_name: HashMap::new(),
            by_service: HashMap::new(),
            generation: 0,
            seen: BTreeMap::new(),
            discovered: 0,
            over_limit: BTreeMap::new(),
            versions: HashMap::new(),
            silences: Vec::new(),
            config_silences: BTreeSet::new(),
            next_silence: 0,
            pending: BTreeMap::new(),
            recent: VecDeque::new(),
            snapshot: Arc::new(SloSnapshot::default()),
            dropped: Dropped::default(),
            metrics: Metrics::new(registry),
            handed_off: HashSet::new(),
        };
        for o in &config.objectives {
            let spec =
                SloSpec::from_objective(o, config.catalog.get(&o.service), config.min_events);
            engine.insert(spec);
        }
        for s in &config.silences {
            let id = engine.add_silence(s.into());
            engine.config_silences.insert(id);
        }
        Ok(engine)
    }

    fn insert(&mut self, spec: SloSpec) -> SloId {
        self.generation += 1;
        let id = SloId(self.slos.len() as u32);
        match spec.source {
            SloSource::Explicit => self.metrics.objectives_explicit.add(1),
            SloSource::Template => self.metrics.objectives_template.add(1),
        }
        self.by_name.insert(spec.name.clone(), id);
        self.by_service
            .entry(spec.service.clone())
            .or_default()
            .push(id);
        self.slos.push(SloState {
            windows: spec.windows(),
            store: WindowStore::new(spec.longest_window()),
            rows: vec![RowState::default(); spec.policy.len()],
            last_observed: 0,
            spec,
        });
        id
    }

    /// How often [`tick`](Self::tick) should be called (`slo.evaluation_interval`).
    pub fn evaluation_interval(&self) -> Duration {
        self.evaluation_interval
    }

    /// The spec of `id`.
    pub fn spec(&self, id: SloId) -> Option<&SloSpec> {
        self.slos.get(id.0 as usize).map(|s| &s.spec)
    }

    /// The id of the SLO named `name`.
    pub fn id(&self, name: &str) -> Option<SloId> {
        self.by_name.get(name).copied()
    }

    /// Every SLO id with its spec, in id order.
    pub fn slos(&self) -> impl Iterator<Item = (SloId, &SloSpec)> {
        self.slos
            .iter()
            .enumerate()
            .map(|(i, s)| (SloId(i as u32), &s.spec))
    }

    /// A number that changes whenever the SLOs do: one is added (configured, or templated for
    /// a service first seen), or a reconfigure replaces them. What [`matching`](Self::matching)
    /// and [`spec`](Self::spec) answered stays true while it is unchanged, so a caller may
    /// keep their answers per series instead of asking again for every slot it feeds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SLOs a series of `service` with these dimension values counts towards: those of
    /// the service whose `match_labels` all equal a value in `labels`.
    pub fn matching<'a>(
        &'a self,
        service: &str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = SloId> + 'a {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |id| {
                self.slos[id.0 as usize]
                    .spec
                    .match_labels
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
    }

    /// Tells the engine `service` was seen in traffic (holding an ordinary series). The first
    /// time, a service without an explicit objective gets the templated SLOs while fewer than
    /// `slo.discovery.max_services` discovered services hold them (otherwise it is listed as
    /// over the limit and counted); their ids are returned (empty otherwise). Each time, it
    /// keeps the service from expiring. A service missing from the catalog is counted in
    /// `slipstream_slo_services_uncataloged`.
    pub fn service_seen(&mut self, service: &str) -> Vec<SloId> {
        self.see(service).into_iter().map(|(id, _)| id).collect()
    }

    /// Tells the engine a series of `service` got traffic: `ordinary` for an ordinary series,
    /// false for the service's overflow series. An ordinary series makes a service new to
    /// the engine seen (see [`service_seen`](Self::service_seen)); an overflow series only
    /// keeps a service already seen from expiring, so a service that holds no series of its
    /// own gets no templated SLOs. Returns whether the service is tracked (it has an explicit
    /// objective, or it is within `slo.discovery.max_services`): the SLI series of a service
    /// that is not are left out of the exported metrics.
    ///
    /// Called for every series with new traffic on every step: no allocation for a service
    /// already tracked or listed over the limit.
    pub fn service_traffic(&mut self, service: &str, ordinary: bool) -> bool {
        let now = self.clock.now_unix_nanos();
        if let Some(s) = self.seen.get_mut(service) {
            s.last = s.last.max(now);
            return true;
        }
        if ordinary {
            self.see_at(service, now, now);
            self.seen.contains_key(service)
        } else {
            false
        }
    }

    /// Whether `service` is tracked: it has an explicit objective and was seen, or it is a
    /// discovered service within `slo.discovery.max_services`.
    pub fn is_tracked(&self, service: &str) -> bool {
        self.seen.contains_key(service)
    }

    /// How many discovered services (no explicit objective) hold templated SLOs.
    pub fn discovered_services(&self) -> usize {
        self.discovered
    }

    /// Discovered services refused templated SLOs because `slo.discovery.max_services` was
    /// reached, by name (at most [`MAX_OVER_LIMIT_TRACKED`]).
    pub fn services_over_limit(&self) -> impl Iterator<Item = &str> {
        self.over_limit.keys().map(String::as_str)
    }

    /// [`service_seen`](Self::service_seen), also saying for each SLO created what became of
    /// data a restore kept aside for it.
    fn see(&mut self, service: &str) -> Vec<(SloId, Option<persist::Applied>)> {
        let now = self.clock.now_unix_nanos();
        self.see_at(service, now, now)
    }

    /// [`see`](Self::see) for a service whose traffic went from `first` to `last`.
    fn see_at(
        &mut self,
        service: &str,
        first: UnixNanos,
        last: UnixNanos,
    ) -> Vec<(SloId, Option<persist::Applied>)> {
        if let Some(s) = self.seen.get_mut(service) {
            s.last = s.last.max(last);
            return Vec::new();
        }
        let explicit = self.explicit_services.contains(service);
        if !explicit && self.discovered >= self.discovery.max_services {
            self.refuse(service, last);
            return Vec::new();
        }
        if self.over_limit.remove(service).is_some() {
            self.metrics.over_limit.add(-1);
        }
        self.seen.insert(service.to_owned(), Seen { first, last });
        if !explicit {
            self.discovered += 1;
            self.metrics.discovered.add(1);
        }
        if !self.catalog.contains_key(service) {
            self.metrics.uncataloged.add(1);
        }
        let mut out = Vec::new();
        for spec in self.template_specs(service) {
            if self.by_name.contains_key(&spec.name) {
                continue;
            }
            let id = self.insert(spec);
            let applied = self
                .pending
                .remove(&self.slos[id.0 as usize].spec.name)
                .map(|saved| self.apply_saved(id, &saved));
            out.push((id, applied));
        }
        out
    }

    /// Lists `service` as over the limit (seen at `at`), counting it when it is new there.
    fn refuse(&mut self, service: &str, at: UnixNanos) {
        if let Some(t) = self.over_limit.get_mut(service) {
            *t = (*t).max(at);
            return;
        }
        self.metrics.refused_over_limit.inc();
        if self.over_limit.len() < MAX_OVER_LIMIT_TRACKED {
            self.over_limit.insert(service.to_owned(), at);
            self.metrics.over_limit.add(1);
        }
    }

    /// Removes the discovered services that expired at `now` (no traffic for
    /// `expire_after`, or brief traffic and none for `expire_transient_after`) with their
    /// templated SLOs, saved data and versions, unless one of their alert rows fires; forgets
    /// services over the limit as quiet. Returns whether SLOs were removed.
    fn expire(&mut self, now: UnixNanos) -> bool {
        let rule = self.discovery;
        let kept = rule.over_limit_kept();
        let before = self.over_limit.len();
        self.over_limit
            .retain(|_, last| now.saturating_sub(*last) < kept);
        self.metrics
            .over_limit
            .add(self.over_limit.len() as i64 - before as i64);
        let gone: Vec<(String, Expiry)> = self
            .seen
            .iter()
            .filter(|(name, _)| !self.explicit_services.contains(*name))
            .filter_map(|(name, s)| {
                let last = self.last_observed(name).max(s.last);
                Some((name, rule.expired(s.first, last, now)?))
            })
            .filter(|(name, _)| !self.alerting(name))
            .map(|(name, why)| (name.clone(), why))
            .collect();
        if gone.is_empty() {
            return false;
        }
        let services: HashSet<&str> = gone.iter().map(|(n, _)| n.as_str()).collect();
        for (name, why) in &gone {
            self.seen.remove(name);
            self.versions.remove(name);
            self.discovered -= 1;
            self.metrics.discovered.add(-1);
            if !self.catalog.contains_key(name) {
                self.metrics.uncataloged.add(-1);
            }
            match why {
                Expiry::Idle => self.metrics.expired_idle.inc(),
                Expiry::Transient => self.metrics.expired_transient.inc(),
            }
        }
        self.pending
            .retain(|_, saved| !services.contains(saved.fingerprint.service()));
        let removed = self.remove_slos(|spec| {
            spec.source == SloSource::Template && services.contains(spec.service.as_str())
        });
        removed > 0
    }

    /// When counts last came for an SLO of `service` (0: never).
    fn last_observed(&self, service: &str) -> UnixNanos {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .map(|id| self.slos[id.0 as usize].last_observed)
            .max()
            .unwrap_or(0)
    }

    /// Whether an alert row of an SLO of `service` fires or was last notified as firing.
    fn alerting(&self, service: &str) -> bool {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .any(|id| {
                self.slos[id.0 as usize]
                    .rows
                    .iter()
                    .any(|r| r.firing || r.notified)
            })
    }

    /// Removes the SLOs whose spec `gone` selects; the others are numbered anew in their
    /// order (recent events follow them; those of removed SLOs are left out). Returns how
    /// many were removed.
    fn remove_slos(&mut self, gone: impl Fn(&SloSpec) -> bool) -> usize {
        let old = std::mem::take(&mut self.slos);
        let before = old.len();
        self.by_name.clear();
        self.by_service.clear();
        let mut template = 0i64;
        for slo in old {
            if gone(&slo.spec) {
                continue;
            }
            let id = SloId(self.slos.len() as u32);
            if slo.spec.source == SloSource::Template {
                template += 1;
            }
            self.by_name.insert(slo.spec.name.clone(), id);
            self.by_service
                .entry(slo.spec.service.clone())
                .or_default()
                .push(id);
            self.slos.push(slo);
        }
        self.metrics.objectives_template.set(template);
        self.generation += 1;
        let recent = std::mem::take(&mut self.recent);
        self.recent = recent
            .into_iter()
            .filter_map(|mut e| {
                e.slo_id = self.id(&e.slo)?;
                Some(e)
            })
            .collect();
        before - self.slos.len()
    }

    /// The templated specs for `service` under the current templates and catalog (none when
    /// the service has an explicit objective).
    fn template_specs(&self, service: &str) -> Vec<SloSpec> {
        if self.explicit_services.contains(service) {
            return Vec::new();
        }
        let catalog = self.catalog.get(service);
        [
            ("availability", &self.templates.availability),
            ("latency", &self.templates.latency),
        ]
        .into_iter()
        .filter_map(|(kind, t)| {
            let t = t.as_ref()?;
            Some(SloSpec::from_template(
                t,
                kind,
                service,
                catalog,
                self.min_events,
            ))
        })
        .collect()
    }

    /// Services seen in traffic (and tracked) that the catalog does not list, sorted.
    pub fn uncataloged_services(&self) -> Vec<&str> {
        self.seen
            .keys()
            .filter(|s| !self.catalog.contains_key(*s))
            .map(String::as_str)
            .collect()
    }

    /// Adds the counts of one event-time slot: `good` of `total` requests whose end time
    /// falls in the slot starting at `slot_start` (slots of at most one minute, aligned).
    /// Counts for the same slot may come several times; they add up.
    pub fn observe(&mut self, id: SloId, slot_start: UnixNanos, good: u64, total: u64) {
        let now = self.clock.now_unix_nanos();
        let Some(slo) = self.slos.get_mut(id.0 as usize) else {
            self.dropped.unknown_slo += 1;
            return;
        };
        if good > total {
            self.dropped.invalid += 1;
            return;
        }
        if slot_start > now.saturating_add(nanos(MAX_FUTURE)) {
            self.dropped.future += 1;
            return;
        }
        slo.last_observed = now;
        if slo.store.add(slot_start, total - good, total) == Stored::TooOld {
            self.dropped.too_old += 1;
        }
    }

    /// Records that `service` ran `version` (its `service.version`) at `seen_at`. The first
    /// call for a version marks when it first appeared; later calls extend when it was last
    /// seen.
    pub fn observe_version(&mut self, service: &str, version: &str, seen_at: UnixNanos) {
        self.observe_version_seen(service, version, seen_at, seen_at);
    }

    /// Records that `service` served requests with `version` from `first_seen` (when it
    /// first appeared) to `last_seen` (its latest request, which says whether it is the
    /// version running now: the one most recently seen); earlier first and later last times
    /// win over those already known.
    pub fn observe_version_seen(
        &mut self,
        service: &str,
        version: &str,
        first_seen: UnixNanos,
        last_seen: UnixNanos,
    ) {
        // Called for every series its traffic changes, on every step: no allocation when
        // both are known. Only services with SLOs keep versions (their events carry them).
        if !self.by_service.contains_key(service) {
            return;
        }
        let (first_seen, last_seen) = (first_seen.min(last_seen), last_seen.max(first_seen));
        let map = match self.versions.get_mut(service) {
            Some(map) => map,
            None => self.versions.entry(service.to_owned()).or_default(),
        };
        if let Some(v) = map.get_mut(version) {
            v.first = v.first.min(first_seen);
            v.last = v.last.max(last_seen);
            return;
        }
        if map.len() >= MAX_VERSIONS_PER_SERVICE
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, v)| v.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            version.to_owned(),
            VersionSeen {
                first: first_seen,
                last: last_seen,
            },
        );
    }

    /// Adds a silence (admin API); events it matches are suppressed from now on.
    pub fn add_silence(&mut self, silence: Silence) -> SilenceId {
        let id = SilenceId(self.next_silence);
        self.next_silence += 1;
        self.silences.push((id, silence));
        id
    }

    /// Removes a silence; false when there was none with that id.
    pub fn remove_silence(&mut self, id: SilenceId) -> bool {
        let before = self.silences.len();
        self.silences.retain(|(i, _)| *i != id);
        self.config_silences.remove(&id);
        self.silences.len() != before
    }

    /// The silences, expired ones excluded once a tick has passed their end.
    pub fn silences(&self) -> &[(SilenceId, Silence)] {
        &self.silences
    }

    /// The latest snapshot (as of the last tick).
    pub fn snapshot(&self) -> Arc<SloSnapshot> {
        self.snapshot.clone()
    }

    /// The most recent events sent (at most [`RECENT_EVENTS`]), oldest first.
    pub fn recent_events(&self) -> impl Iterator<Item = &AlertEvent> {
        self.recent.iter()
    }

    /// Bytes held for the windows of `id`.
    pub fn window_memory_bytes(&self, id: SloId) -> Option<usize> {
        self.slos.get(id.0 as usize).map(|s| s.store.memory_bytes())
    }

    /// The `service.version` values of `service` with requests since `since` (last seen at
    /// or after it), least recently seen first, and the version running now: the one seen
    /// most recently (of two seen as recently, the one that appeared later), with when it
    /// first appeared; `None` without versions in that time. What burn-rate events carry for
    /// their long window.
    pub fn versions_since(
        &self,
        service: &str,
        since: UnixNanos,
    ) -> (Vec<String>, Option<(String, UnixNanos)>) {
        let Some(map) = self.versions.get(service) else {
            return (Vec::new(), None);
        };
        let mut seen: Vec<(&String, &VersionSeen)> =
            map.iter().filter(|(_, v)| v.last >= since).collect();
        seen.sort_by(|(a, x), (b, y)| (x.last, x.first, a).cmp(&(y.last, y.first, b)));
        let running = seen.last().map(|(k, v)| ((*k).clone(), v.first));
        (seen.into_iter().map(|(k, _)| k.clone()).collect(), running)
    }

    /// Evaluates every SLO at the clock's time: window ratios and burn rates, budgets, alert
    /// states. Returns the events to send (also kept in
    /// [`recent_events`](Self::recent_events)) and publishes a new snapshot.
    pub fn tick(&mut self) -> Vec<AlertEvent> {
        let now = self.clock.now_unix_nanos();
        self.expire(now);
        self.silences
            .retain(|(_, s)| s.ends_at.is_none_or(|e| e > now));
        let mut events = Vec::new();
        let mut statuses = Vec::with_capacity(self.slos.len());
        let (mut firing_page, mut firing_ticket) = (0i64, 0i64);
        for i in 0..self.slos.len() {
            let (status, mut evs) = self.evaluate(i, now);
            if !self.handed_off.is_empty() && self.handed_off.contains(&self.slos[i].spec.service) {
                evs.clear();
            }
            firing_page += status
                .alerts
                .iter()
                .filter(|a| a.firing && a.row.severity == Severity::Page)
                .count() as i64;
            firing_ticket += status
                .alerts
                .iter()
                .filter(|a| a.firing && a.row.severity == Severity::Ticket)
                .count() as i64;
            statuses.push(status);
            events.extend(evs);
        }
        for e in &events {
            let s = usize::from(e.severity == Severity::Ticket);
            let st = usize::from(e.state == AlertState::Resolved);
            self.metrics.events[s][st].inc();
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(e.clone());
        }
        self.metrics.firing_page.set(firing_page);
        self.metrics.firing_ticket.set(firing_ticket);
        self.metrics.evaluations.inc();
        let d = std::mem::take(&mut self.dropped);
        self.metrics.dropped_too_old.add(d.too_old);
        self.metrics.dropped_future.add(d.future);
        self.metrics.dropped_unknown.add(d.unknown_slo);
        self.metrics.dropped_invalid.add(d.invalid);
        self.snapshot = Arc::new(SloSnapshot {
            at: now,
            slos: statuses,
            uncataloged_services: self
                .uncataloged_services()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            services_over_limit: self
                .over_limit
                .keys()
                .take(OVER_LIMIT_LISTED)
                .cloned()
                .collect(),
            services_over_limit_count: self.over_limit.len(),
        });
        events
    }

    /// Keeps, on the alert row of each firing event of `events` (the events of the last
    /// [`tick`](Self::tick), as published: with [`AlertEvent::bad_requests_share`] and
    /// [`AlertEvent::exemplars`] filled), what the event was sent with. The row's later firing
    /// events (repeats on `slo.repeat_interval`) start from it, and
    /// [`export_state`](Self::export_state) saves it with the row, so an alert re-sent after a
    /// restart names what it fired with until the publisher finds values and requests of its
    /// own again. A row's resolved event clears it. Events of rows not notified as firing (or
    /// of SLOs no longer there) change nothing.
    pub fn remember_sent(&mut self, events: &[AlertEvent]) {
        for e in events.iter().filter(|e| e.state == AlertState::Firing) {
            let Some(slo) = self.slos.get_mut(e.slo_id.0 as usize) else {
                continue;
            };
            if slo.spec.name != e.slo {
                continue;
            }
            let row = slo
                .spec
                .policy
                .iter()
                .zip(slo.rows.iter_mut())
                .find(|(row, st)| **row == e.row && st.notified);
            if let Some((_, st)) = row {
                st.sent = SentContext {
                    bad_requests_share: e.bad_requests_share.clone(),
                    exemplars: e.exemplars.clone(),
                };
            }
        }
    }

    fn evaluate(&mut self, i: usize, now: UnixNanos) -> (SloStatus, Vec<AlertEvent>) {
        let slo = &mut self.slos[i];
        slo.store.advance(now);
        let spec = &slo.spec;
        let budget = spec.error_budget();
        let burn = |c: Counts| c.error_ratio().map(|r| r / budget);
        let windows: Vec<WindowStatus> = slo
            .windows
            .iter()
            .map(|&w| {
                let counts = slo.store.query(now, nanos(w));
                WindowStatus {
                    window: w,
                    counts,
                    error_ratio: counts.error_ratio(),
                    burn_rate: burn(counts),
                }
            })
            .collect();
        let find = |w: Duration| {
            windows
                .iter()
                .find(|s| s.window == w)
                .map(|s| s.counts)
                .unwrap_or_else(|| slo.store.query(now, nanos(w)))
        };
        let period_counts = match spec.period {
            Period::Rolling(d) => slo.store.query(now, nanos(d)),
            Period::CalendarMonth => slo.store.query_since(now, month_start(now)),
        };
        let budget_remaining = (period_counts.total > 0.0)
            .then(|| 1.0 - period_counts.bad / (budget * period_counts.total));
        let current_burn_rate = burn(find(CURRENT_BURN_WINDOW));
        let time_to_exhaustion = match (budget_remaining, current_burn_rate) {
            (Some(r), _) if r <= 0.0 => Some(Duration::ZERO),
            (Some(r), Some(b)) if b > 0.0 => {
                Duration::try_from_secs_f64(r * spec.period.nominal().as_secs_f64() / b).ok()
            }
            _ => None,
        };

        // The condition state machine of every row, pages first. A burn-rate row fires when
        // both windows burn above the factor and resolves when the short one no longer
        // does; the other kinds fire and resolve with their condition.
        let mut page_firing = false;
        let mut rows_eval = Vec::with_capacity(spec.policy.len());
        for (row, st) in spec.policy.iter().zip(slo.rows.iter_mut()) {
            // A budget drop counts only what the period holds: in a calendar month, not the
            // bad requests of the month before.
            let long = match (row.kind, spec.period) {
                (RowKind::BudgetDrop { .. }, Period::CalendarMonth) => {
                    let from = now.saturating_sub(nanos(row.long)).max(month_start(now));
                    slo.store.query_since(now, from)
                }
                _ => find(row.long),
            };
            let short = find(row.short);
            let (lb, sb) = (burn(long), burn(short));
            st.condition = row.condition(
                long,
                short,
                budget,
                budget_remaining,
                period_counts.total,
                spec.min_events,
            );
            if !st.firing {
                if st.condition {
                    st.firing = true;
                    st.since = now;
                }
            } else if row.kind != RowKind::BurnRate {
                st.firing = st.condition;
            } else if !(short.total >= spec.min_events as f64 && sb.is_some_and(|b| b > row.factor))
            {
                st.firing = false;
            }
            if st.firing && row.severity == Severity::Page {
                page_firing = true;
            }
            rows_eval.push((lb, sb));
        }

        // Notifications: supersession, silences, repeats.
        let mut pending: Vec<(usize, AlertState, bool, bool)> = Vec::new();
        let mut suppressed: Vec<SilenceKind> = Vec::new();
        let mut superseded_count = 0u64;
        let spec_name = spec.name.clone();
        let spec_service = spec.service.clone();
        let silences: Vec<Option<SilenceKind>> = spec
            .policy
            .iter()
            .map(|r| {
                self.silences
                    .iter()
                    .find(|(_, s)| s.matches(&spec_name, &spec_service, r.severity, now))
                    .map(|(_, s)| s.kind)
            })
            .collect();
        let slo = &mut self.slos[i];
        for (k, (row, st)) in slo.spec.policy.iter().zip(slo.rows.iter_mut()).enumerate() {
            let superseded = st.firing && row.severity == Severity::Ticket && page_firing;
            st.superseded = superseded;
            let effective = st.firing && !superseded;
            // A ticket held back by a page is counted once; one already sent is resolved
            // (marked superseded) instead.
            if !superseded {
                st.superseded_counted = false;
            } else if !st.superseded_counted {
                if !st.notified {
                    superseded_count += 1;
                }
                st.superseded_counted = true;
            }
            if effective != st.notified {
                let state = if effective {
                    AlertState::Firing
                } else {
                    AlertState::Resolved
                };
                match silences[k] {
                    Some(kind) => {
                        if !st.held_counted {
                            suppressed.push(kind);
                            st.held_counted = true;
                        }
                    }
                    None => {
                        pending.push((k, state, false, superseded));
                        st.notified = effective;
                        st.last_sent = now;
                        st.held_counted = false;
                        if !effective {
                            st.sent = SentContext::default();
                        }
                    }
                }
            } else {
                st.held_counted = false;
                if let Some(rep) = self.repeat_interval
                    && effective
                    && silences[k].is_none()
                    && now.saturating_sub(st.last_sent) >= nanos(rep)
                {
                    pending.push((k, AlertState::Firing, true, false));
                    st.last_sent = now;
                }
            }
        }
        self.metrics.suppressed_superseded.add(superseded_count);
        for kind in suppressed {
            match kind {
                SilenceKind::Silence => self.metrics.suppressed_silence.inc(),
                SilenceKind::Maintenance => self.metrics.suppressed_maintenance.inc(),
            }
        }

        let slo = &self.slos[i];
        let spec = &slo.spec;
        let mut events = Vec::with_capacity(pending.len());
        for (k, state, repeat, superseded_by_page) in pending {
            let row = spec.policy[k];
            let (versions, newest_version) =
                self.versions_since(&spec.service, now.saturating_sub(nanos(row.long)));
            let mut labels = spec.labels.clone();
            labels.insert("slo".to_owned(), spec.name.clone());
            labels.insert("service".to_owned(), spec.service.clone());
            labels.insert("severity".to_owned(), row.severity.as_str().to_owned());
            for (k, v) in row.kind_labels() {
                labels.insert(k.to_owned(), v);
            }
            // A firing event starts from what the row was last sent with (nothing for a row
            // that starts firing); the publisher replaces what it finds anew.
            let sent = match state {
                AlertState::Firing => slo.rows[k].sent.clone(),
                AlertState::Resolved => SentContext::default(),
            };
            events.push(AlertEvent {
                slo_id: SloId(i as u32),
                slo: spec.name.clone(),
                service: spec.service.clone(),
                severity: row.severity,
                state,
                repeat,
                superseded_by_page,
                row,
                long_burn_rate: rows_eval[k].0,
                short_burn_rate: rows_eval[k].1,
                budget_remaining,
                versions,
                newest_version,
                at: now,
                firing_since: slo.rows[k].since,
                labels,
                annotations: spec.annotations.clone(),
                bad_requests_share: sent.bad_requests_share,
                exemplars: sent.exemplars,
            });
        }
        let status = SloStatus {
            id: SloId(i as u32),
            name: spec.name.clone(),
            service: spec.service.clone(),
            sli: spec.sli,
            source: spec.source,
            objective: spec.objective,
            period: spec.period,
            labels: spec.labels.clone(),
            windows,
            period_counts,
            budget_remaining,
            current_burn_rate,
            time_to_exhaustion,
            alerts: spec
                .policy
                .iter()
                .zip(&slo.rows)
                .map(|(row, st)| AlertStatus {
                    row: *row,
                    condition: st.condition,
                    firing: st.firing,
                    since: st.firing.then_some(st.since),
                    superseded: st.superseded,
                    notified: st.notified,
                    min_events: spec.min_events,
                })
                .collect(),
        };
        (status, events)
    }
}
