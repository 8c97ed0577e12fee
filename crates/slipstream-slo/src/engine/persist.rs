//! The engine's state across restarts ([`SloEngine::export_state`],
//! [`SloEngine::restore_state`]) and configuration reloads ([`SloEngine::reconfigure`]).

use std::collections::{HashMap, HashSet, VecDeque};

use slipstream_config::ConfigError;
use slipstream_config::slo::SloConfig;

use super::{DiscoveryRule, RECENT_EVENTS, RowState, SentContext, SloEngine, SloState};
use crate::model::{Silence, SilenceId, SloId};
use crate::persist::{
    DropReason, DroppedSlo, ENGINE_STATE_FORMAT, EngineState, Fingerprint, ReconfigureReport,
    RestoreReport, SavedEvent, SavedExemplar, SavedKind, SavedRow, SavedSeen, SavedShare,
    SavedSilence, SavedSlo, SavedVersion,
};
use crate::spec::{PolicyRow, SloSource, SloSpec};

/// What became of saved data offered to an SLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Applied {
    /// `None`: applied; otherwise why it was dropped.
    pub(super) dropped: Option<DropReason>,
    /// A row receivers were last told fires lost its state (the data dropped, or the row gone
    /// from the policy).
    pub(super) firing_dropped: bool,
}

fn save_row(row: &PolicyRow, st: &RowState) -> SavedRow {
    SavedRow {
        severity: row.severity,
        long: row.long,
        short: row.short,
        kind: SavedKind::of(row.kind),
        condition: st.condition,
        firing: st.firing,
        since: st.since,
        notified: st.notified,
        last_sent: st.last_sent,
        held_counted: st.held_counted,
        superseded_counted: st.superseded_counted,
        superseded: st.superseded,
        bad_requests_share: st
            .sent
            .bad_requests_share
            .iter()
            .map(SavedShare::new)
            .collect(),
        exemplars: st.sent.exemplars.iter().map(SavedExemplar::new).collect(),
    }
}

fn load_row(s: &SavedRow) -> RowState {
    RowState {
        condition: s.condition,
        firing: s.firing,
        since: s.since,
        notified: s.notified,
        last_sent: s.last_sent,
        held_counted: s.held_counted,
        superseded_counted: s.superseded_counted,
        superseded: s.superseded,
        sent: SentContext {
            bad_requests_share: s.bad_requests_share.iter().map(SavedShare::share).collect(),
            exemplars: s
                .exemplars
                .iter()
                .filter_map(SavedExemplar::exemplar)
                .collect(),
        },
    }
}

/// The row states for `policy` from saved rows matched by severity, windows and kind (each saved
/// row used once, in order); rows without a match start clear. Also whether a saved row that
/// receivers were told fires found no match.
fn match_rows(policy: &[PolicyRow], saved: &[SavedRow]) -> (Vec<RowState>, bool) {
    let mut used = vec![false; saved.len()];
    let rows = policy
        .iter()
        .map(|row| {
            let found = saved
                .iter()
                .enumerate()
                .find(|(i, s)| !used[*i] && s.matches(row));
            match found {
                Some((i, s)) => {
                    used[i] = true;
                    load_row(s)
                }
                None => RowState::default(),
            }
        })
        .collect();
    let lost = saved.iter().zip(&used).any(|(s, u)| !u && s.notified);
    (rows, lost)
}

pub(super) fn saved_slo(s: &SloState) -> SavedSlo {
    SavedSlo {
        name: s.spec.name.clone(),
        template: s.spec.source == SloSource::Template,
        fingerprint: Fingerprint::of(&s.spec),
        rings: s.store.export(),
        rows: s
            .spec
            .policy
            .iter()
            .zip(&s.rows)
            .map(|(row, st)| save_row(row, st))
            .collect(),
    }
}

fn notified(saved: &SavedSlo) -> bool {
    saved.rows.iter().any(|r| r.notified)
}

pub(super) fn record(report: &mut RestoreReport, name: String, applied: Applied) {
    if applied.firing_dropped {
        report.firing_dropped.push(name.clone());
    }
    match applied.dropped {
        None => report.restored.push(name),
        Some(reason) => report.dropped.push(DroppedSlo { name, reason }),
    }
}

// === impl SloEngine: state ===

impl SloEngine {
    /// The engine's state, to persist (see [`EngineState`]): every SLO's fingerprint, window
    /// rings and alert rows (and the data a restore keeps aside for templated SLOs of services
    /// not seen yet), the silences, the `service.version`s, the services seen and the recent
    /// events, stamped with the clock's time.
    pub fn export_state(&self) -> EngineState {
        EngineState {
            format_version: ENGINE_STATE_FORMAT,
            saved_at: self.clock.now_unix_nanos(),
            slos: self
                .slos
                .iter()
                .map(saved_slo)
                .chain(self.pending.values().cloned())
                .collect(),
            silences: self
                .silences
                .iter()
                .map(|(id, s)| SavedSilence::new(*id, s, self.config_silences.contains(id)))
                .collect(),
            next_silence: self.next_silence,
            seen: self.seen.keys().cloned().collect(),
            seen_times: self
                .seen
                .iter()
                .map(|(name, s)| {
                    let saved = SavedSeen {
                        first: s.first,
                        last: s.last.max(self.last_observed(name)),
                    };
                    (name.clone(), saved)
                })
                .collect(),
            versions: self
                .versions
                .iter()
                .map(|(service, map)| {
                    let map = map
                        .iter()
                        .map(|(v, s)| {
                            let saved = SavedVersion {
                                first: s.first,
                                last: s.last,
                            };
                            (v.clone(), saved)
                        })
                        .collect();
                    (service.clone(), map)
                })
                .collect(),
            recent_events: self.recent.iter().map(SavedEvent::new).collect(),
        }
    }

    /// Restores a state exported by [`export_state`](Self::export_state), normally into an
    /// engine just built from the configuration (before any traffic and any tick).
    ///
    /// - An SLO's windows and alert rows are restored only into an SLO of the same name
    ///   whose fingerprint (service, `match_labels`, SLI kind and threshold, objective,
    ///   period) is equal; labels, annotations, policy and `min_events` are the current
    ///   configuration's. Alert rows are matched by severity and windows: a row that fired
    ///   goes on firing without a new firing event and sends its resolved event when it
    ///   resolves; rows new to the policy start clear. Slots older than the rings hold fall
    ///   out at the next tick.
    /// - The services seen are seen again, in the order their templated SLOs were created, so
    ///   the templated SLOs exist at once with their data (and, with an unchanged
    ///   configuration, with the ids they had). Saved templated SLOs of services not seen are
    ///   kept aside and applied when [`service_seen`](Self::service_seen) creates them.
    /// - Other saved SLOs are dropped (reported with the reason); their SLOs start afresh.
    ///   No resolved event is sent for a dropped SLO that was firing.
    /// - Silences added through the API come back with their ids; those of the configuration
    ///   are the current configuration's (keeping their saved ids when unchanged). New ids
    ///   continue after the highest ever given.
    /// - `service.version` sightings are merged; recent events come back, their SLO found by
    ///   name (events of SLOs that no longer exist are left out).
    ///
    /// A state of another [`format_version`](EngineState::format_version) restores nothing
    /// (`incompatible_format` is set).
    pub fn restore_state(&mut self, state: EngineState) -> RestoreReport {
        let mut report = report_for(&state);
        if report.incompatible_format.is_some() {
            return report;
        }
        let EngineState {
            slos,
            silences,
            next_silence,
            seen,
            seen_times,
            versions,
            recent_events,
            saved_at,
            ..
        } = state;
        let now = self.clock.now_unix_nanos();
        let times = |service: &str| {
            seen_times
                .get(service)
                .map_or((saved_at, saved_at), |t| (t.first, t.last))
        };
        // Discovered services that expired while slipstream was down are not seen again.
        let expired: HashSet<&str> = seen
            .iter()
            .map(String::as_str)
            .filter(|s| !self.explicit_services.contains(*s))
            .filter(|s| {
                let (first, last) = times(s);
                self.discovery.expired(first, last, now).is_some()
            })
            .collect();

        // Services seen: those with templated SLOs first, in SLO order, then the rest.
        let seen_set: HashSet<&str> = seen.iter().map(String::as_str).collect();
        let mut order: Vec<String> = Vec::new();
        let mut ordered: HashSet<String> = HashSet::new();
        let template_services = slos
            .iter()
            .filter(|s| s.template)
            .map(|s| s.fingerprint.service())
            .filter(|s| seen_set.contains(s));
        for service in template_services.chain(seen.iter().map(String::as_str)) {
            if ordered.insert(service.to_owned()) {
                order.push(service.to_owned());
            }
        }

        // SLOs that exist now take their data; the rest wait for the services to be seen.
        for saved in slos {
            match self.id(&saved.name) {
                Some(id) => {
                    let applied = self.apply_saved(id, &saved);
                    record(&mut report, saved.name, applied);
                }
                None => {
                    self.pending.insert(saved.name.clone(), saved);
                }
            }
        }
        for service in &order {
            if expired.contains(service.as_str()) {
                continue;
            }
            let (first, last) = times(service);
            for (id, applied) in self.see_at(service, first, last) {
                if let Some(applied) = applied {
                    let name = self.slos[id.0 as usize].spec.name.clone();
                    record(&mut report, name, applied);
                }
            }
        }
        report.services_seen = seen.len();
        // Data kept aside waits for its service within the cap (two templates a service).
        let leftover: Vec<String> = self.pending.keys().cloned().collect();
        let room = self.discovery.max_services.saturating_mul(2);
        for name in leftover {
            let why = self.pending.get(&name).and_then(|s| {
                let service = s.fingerprint.service();
                if !s.template
                    || self.seen.contains_key(service)
                    || self.explicit_services.contains(service)
                {
                    Some(DropReason::NotConfigured)
                } else if expired.contains(service) {
                    Some(DropReason::Expired)
                } else if seen_set.contains(service)
                    || self.over_limit.contains_key(service)
                    || report.deferred.len() >= room
                {
                    Some(DropReason::OverLimit)
                } else {
                    None
                }
            });
            match why {
                None => report.deferred.push(name),
                Some(reason) => {
                    if let Some(saved) = self.pending.remove(&name) {
                        let applied = Applied {
                            dropped: Some(reason),
                            firing_dropped: notified(&saved),
                        };
                        record(&mut report, name, applied);
                    }
                }
            }
        }

        // Silences: the API's with their ids, the configuration's as they are now.
        let max_saved = silences.iter().map(|s| s.id + 1).max().unwrap_or(0);
        self.next_silence = self.next_silence.max(next_silence).max(max_saved);
        let saved_config: Vec<(SilenceId, Silence)> = silences
            .iter()
            .filter(|s| s.from_config)
            .map(|s| (SilenceId(s.id), s.silence()))
            .collect();
        let (current_config, current_api): (Vec<_>, Vec<_>) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|(id, _)| self.config_silences.contains(id));
        self.config_silences.clear();
        for s in silences.iter().filter(|s| !s.from_config) {
            self.silences.push((SilenceId(s.id), s.silence()));
            report.silences += 1;
        }
        for (_, s) in current_api {
            self.add_silence(s);
        }
        self.set_config_silences(
            current_config.into_iter().map(|(_, s)| s).collect(),
            &saved_config,
        );

        for (service, map) in &versions {
            for (version, seen) in map {
                self.observe_version_seen(service, version, seen.first, seen.last);
            }
        }

        let mut recent: VecDeque<_> = recent_events
            .iter()
            .filter_map(|e| self.id(e.slo()).map(|id| e.event(id)))
            .collect();
        report.recent_events = recent.len();
        recent.extend(self.recent.drain(..));
        while recent.len() > RECENT_EVENTS {
            recent.pop_front();
        }
        self.recent = recent;
        report
    }

    /// Applies a new `slo` section in place. It is validated first; on errors they all come
    /// back and the engine is left as it was.
    ///
    /// - SLOs whose name and fingerprint (see [`restore_state`](Self::restore_state)) are
    ///   unchanged keep their windows and alert rows; their spec (labels, annotations,
    ///   policy, `min_events`) is the new one. Alert rows are matched by severity and
    ///   windows: a matched row keeps its state, a new row starts clear.
    /// - SLOs whose fingerprint changed start afresh; new SLOs are added; SLOs no longer
    ///   configured are removed. No resolved event is invented for a firing row whose state
    ///   goes away (an SLO removed or reset, a row gone from the policy): receivers that
    ///   expire alerts not re-sent (Alertmanager's `resolve_timeout`) resolve it;
    ///   `firing_dropped` names them.
    /// - The templates, catalog, `min_events`, `evaluation_interval` and `repeat_interval`
    ///   are replaced; templated SLOs of the services already seen are derived again from the
    ///   new templates (keeping their data when their fingerprint is unchanged).
    /// - The silences of the configuration are replaced (an unchanged one keeps its id);
    ///   silences added through the API are kept.
    ///
    /// SLO ids are given anew, in the order explicit objectives (configuration order), then
    /// templated SLOs (services in the order their templated SLOs were created, then the
    /// other services seen, by name): an id taken before a reconfigure may name another SLO
    /// after it, so look ids up again ([`matching`](Self::matching), [`id`](Self::id)).
    /// With an unchanged configuration every id stays the same. Recent events are renumbered
    /// likewise (those of removed SLOs are left out). The snapshot describes the previous
    /// configuration until the next [`tick`](Self::tick).
    pub fn reconfigure(
        &mut self,
        config: &SloConfig,
    ) -> Result<ReconfigureReport, Vec<ConfigError>> {
        let errors = config.errors();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut report = ReconfigureReport::default();
        self.evaluation_interval = config.evaluation_interval;
        self.repeat_interval = config.repeat_interval;
        self.min_events = config.min_events;
        self.catalog = config.catalog.clone();
        self.templates = config.templates.clone();
        self.discovery = DiscoveryRule::of(&config.discovery);
        self.explicit_services = config
            .objectives
            .iter()
            .map(|o| o.service.clone())
            .collect();

        // The new specs: explicit objectives, then the templated SLOs of the services seen.
        let mut specs: Vec<SloSpec> = config
            .objectives
            .iter()
            .map(|o| SloSpec::from_objective(o, self.catalog.get(&o.service), self.min_events))
            .collect();
        let mut names: HashSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        let mut order: Vec<String> = Vec::new();
        let mut ordered: HashSet<&str> = HashSet::new();
        let template_services = self
            .slos
            .iter()
            .filter(|s| s.spec.source == SloSource::Template)
            .map(|s| s.spec.service.as_str());
        for service in template_services.chain(self.seen.keys().map(String::as_str)) {
            if ordered.insert(service) {
                order.push(service.to_owned());
            }
        }
        // A lower cap keeps the discovered services that came first; the rest are over it.
        let mut discovered = 0;
        let mut demoted = Vec::new();
        for service in &order {
            if self.explicit_services.contains(service) {
                continue;
            }
            if discovered < self.discovery.max_services {
                discovered += 1;
            } else {
                demoted.push(service.clone());
            }
        }
        for service in &demoted {
            if let Some(seen) = self.seen.remove(service) {
                self.versions.remove(service);
                self.refuse(service, seen.last);
            }
        }
        order.retain(|s| self.seen.contains_key(s));
        self.discovered = discovered;
        self.metrics.discovered.set(discovered as i64);
        for service in &order {
            for spec in self.template_specs(service) {
                if names.insert(spec.name.clone()) {
                    specs.push(spec);
                }
            }
        }

        // Carry the data of unchanged SLOs over.
        let old = std::mem::take(&mut self.slos);
        let old_order: Vec<String> = old.iter().map(|s| s.spec.name.clone()).collect();
        let mut old: HashMap<String, SavedSlo> = old
            .iter()
            .map(|s| (s.spec.name.clone(), saved_slo(s)))
            .collect();
        self.by_name.clear();
        self.by_service.clear();
        self.generation += 1;
        self.metrics.objectives_explicit.set(0);
        self.metrics.objectives_template.set(0);
        for spec in specs {
            let name = spec.name.clone();
            let template = spec.source == SloSource::Template;
            let id = self.insert(spec);
            match old.remove(&name) {
                Some(saved) => {
                    let applied = self.apply_saved(id, &saved);
                    if applied.firing_dropped {
                        report.firing_dropped.push(name.clone());
                    }
                    match applied.dropped {
                        None => report.kept.push(name),
                        Some(reason) => report.reset.push(DroppedSlo { name, reason }),
                    }
                }
                None => {
                    if template && let Some(saved) = self.pending.remove(&name) {
                        self.apply_saved(id, &saved);
                    }
                    report.added.push(name);
                }
            }
        }
        for name in old_order {
            if let Some(saved) = old.remove(&name) {
                if notified(&saved) {
                    report.firing_dropped.push(name.clone());
                }
                report.removed.push(name);
            }
        }
        self.metrics
            .uncataloged
            .set(self.uncataloged_services().len() as i64);

        let (previous, api): (Vec<_>, Vec<_>) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|(id, _)| self.config_silences.contains(id));
        self.config_silences.clear();
        self.silences = api;
        self.set_config_silences(
            config.silences.iter().map(Silence::from).collect(),
            &previous,
        );

        let recent = std::mem::take(&mut self.recent);
        self.recent = recent
            .into_iter()
            .filter_map(|mut e| {
                e.slo_id = self.id(&e.slo)?;
                Some(e)
            })
            .collect();
        Ok(report)
    }

    /// Puts saved data into SLO `id` when the fingerprints agree.
    pub(super) fn apply_saved(&mut self, id: SloId, saved: &SavedSlo) -> Applied {
        let slo = &mut self.slos[id.0 as usize];
        let diff = saved.fingerprint.diff(&Fingerprint::of(&slo.spec));
        if !diff.is_empty() {
            return Applied {
                dropped: Some(DropReason::Changed(diff)),
                firing_dropped: notified(saved),
            };
        }
        slo.store.import(&saved.rings);
        let (rows, lost) = match_rows(&slo.spec.policy, &saved.rows);
        slo.rows = rows;
        Applied {
            dropped: None,
            firing_dropped: lost,
        }
    }

    /// Adds `silences` as the configuration's, each taking the id of an equal one in
    /// `previous` (each used once) or a new id; keeps the list in id order.
    fn set_config_silences(&mut self, silences: Vec<Silence>, previous: &[(SilenceId, Silence)]) {
        let mut used = vec![false; previous.len()];
        for s in silences {
            let reuse = previous
                .iter()
                .enumerate()
                .find(|(i, (_, p))| !used[*i] && *p == s);
            let id = match reuse {
                Some((i, (id, _))) => {
                    used[i] = true;
                    self.silences.push((*id, s));
                    *id
                }
                None => self.add_silence(s),
            };
            self.config_silences.insert(id);
        }
        self.silences.sort_by_key(|(id, _)| *id);
    }
}

/// The report of restoring or importing `state`, started with its save time, with
/// `incompatible_format` set when `state` is of another format and nothing may be taken.
pub(super) fn report_for(state: &EngineState) -> RestoreReport {
    RestoreReport {
        saved_at: state.saved_at,
        incompatible_format: (state.format_version != ENGINE_STATE_FORMAT)
            .then_some(state.format_version),
        ..RestoreReport::default()
    }
}
