//! One service's state handed from engine to engine ([`SloEngine::export_service`],
//! [`SloEngine::import_service`]): how a gateway that newly owns a service (a scale-up, or a
//! replacement without its state file) takes the windows, budgets and alert states a peer
//! computed for it before it evaluates the service itself.
//!
//! The state travels in the persisted format ([`EngineState`]), holding the service's SLOs
//! only: their fingerprints, window rings and alert rows, when the service was first and last
//! seen, and its `service.version`s. Silences and recent events stay with each engine.

use std::collections::BTreeMap;

use slipstream_core::UnixNanos;

use super::persist::{Applied, record, report_for, saved_slo};
use super::{RowState, SloEngine};
use crate::model::SloId;
use crate::persist::{
    DropReason, ENGINE_STATE_FORMAT, EngineState, RestoreReport, SavedSeen, SavedVersion,
};
use crate::spec::SloSource;
use crate::window::WindowStore;

// === impl SloEngine: one service's state ===

impl SloEngine {
    /// The state of `service` alone, in the persisted format: its SLOs (explicit and
    /// templated, and templated data a restore keeps aside for it), when it was first and
    /// last seen, its versions. `None` when the engine holds nothing of it (never seen, or
    /// expired).
    pub fn export_service(&self, service: &str) -> Option<EngineState> {
        let seen = self.seen.get(service);
        let slos: Vec<_> = self
            .by_service
            .get(service)
            .into_iter()
            .flatten()
            .map(|id| saved_slo(&self.slos[id.0 as usize]))
            .chain(
                self.pending
                    .values()
                    .filter(|s| s.fingerprint.service() == service)
                    .cloned(),
            )
            .collect();
        if seen.is_none() && slos.is_empty() {
            return None;
        }
        let mut seen_times = BTreeMap::new();
        if let Some(s) = seen {
            let saved = SavedSeen {
                first: s.first,
                last: s.last.max(self.last_observed(service)),
            };
            seen_times.insert(service.to_owned(), saved);
        }
        let versions = self
            .versions
            .get(service)
            .map(|map| {
                map.iter()
                    .map(|(v, s)| {
                        let saved = SavedVersion {
                            first: s.first,
                            last: s.last,
                        };
                        (v.clone(), saved)
                    })
                    .collect()
            })
            .into_iter()
            .map(|map| (service.to_owned(), map))
            .collect();
        Some(EngineState {
            format_version: ENGINE_STATE_FORMAT,
            saved_at: self.clock.now_unix_nanos(),
            slos,
            silences: Vec::new(),
            next_silence: 0,
            seen: seen.map(|_| service.to_owned()).into_iter().collect(),
            seen_times,
            versions,
            recent_events: Vec::new(),
        })
    }

    /// When `service` last had traffic (clock time), as far as this engine knows: `None` when
    /// it holds nothing of it. A gateway whose data of a service is older than its
    /// aggregator's retention takes the service from a peer again ([`forget_service`](Self::forget_service), then
    /// [`import_service`](Self::import_service)).
    pub fn last_traffic(&self, service: &str) -> Option<UnixNanos> {
        let seen = self.seen.get(service)?;
        Some(seen.last.max(self.last_observed(service)))
    }

    /// Hands `service` off to the gateways that now rank it: its SLOs are still evaluated
    /// (the state stays, for a peer that asks for it and for a later return) but no event of
    /// it is sent, neither a resolved one for a row that was firing nor a repeat. Returns
    /// whether it was not handed off already.
    pub fn hand_off(&mut self, service: &str) -> bool {
        self.handed_off.insert(service.to_owned())
    }

    /// Takes `service` back after [`hand_off`](Self::hand_off): its events are sent again.
    /// Returns whether it was handed off.
    pub fn take_back(&mut self, service: &str) -> bool {
        self.handed_off.remove(service)
    }

    /// Whether `service` is handed off.
    pub fn is_handed_off(&self, service: &str) -> bool {
        self.handed_off.contains(service)
    }

    /// The services this engine holds state of (seen in traffic or with SLOs).
    pub fn services(&self) -> Vec<String> {
        let mut out: Vec<String> = self.seen.keys().cloned().collect();
        out.extend(self.by_service.keys().cloned());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Drops what the engine holds of `service`, to take it from a peer afresh: its templated
    /// SLOs and the data kept aside for them go, its explicit SLOs start from empty windows and
    /// clear alert rows, and it is no longer seen (its versions go too). Nothing is sent for a
    /// row that was firing: the state imported next says whether it fires.
    pub fn forget_service(&mut self, service: &str) {
        if self.seen.remove(service).is_some() {
            self.versions.remove(service);
            if !self.explicit_services.contains(service) {
                self.discovered -= 1;
                self.metrics.discovered.add(-1);
            }
            if !self.catalog.contains_key(service) {
                self.metrics.uncataloged.add(-1);
            }
        }
        self.pending
            .retain(|_, saved| saved.fingerprint.service() != service);
        let ids: Vec<SloId> = self.by_service.get(service).cloned().unwrap_or_default();
        for id in ids {
            let slo = &mut self.slos[id.0 as usize];
            if slo.spec.source == SloSource::Explicit {
                slo.store = WindowStore::new(slo.spec.longest_window());
                slo.rows = vec![RowState::default(); slo.spec.policy.len()];
                slo.last_observed = 0;
            }
        }
        self.remove_slos(|spec| spec.source == SloSource::Template && spec.service == service);
    }

    /// Adds the state of `service` from `state` (another engine's
    /// [`export_service`](Self::export_service)) to this engine, which should hold nothing of
    /// it yet: window rings are added to the SLOs' own, so data this engine already counted
    /// for the service would count twice.
    ///
    /// The rules are [`restore_state`](Self::restore_state)'s for the service alone: an SLO's
    /// windows and alert rows go into the SLO of the same name and an equal fingerprint (a
    /// row that fired goes on firing, without a new firing event); a service seen there is
    /// seen here, with its templated SLOs (within `slo.discovery.max_services`); its versions
    /// are merged. Anything of another service in `state` is left out, and so are its
    /// silences and events. A state of another format imports nothing
    /// (`incompatible_format` is set).
    pub fn import_service(&mut self, service: &str, state: EngineState) -> RestoreReport {
        let mut report = report_for(&state);
        if report.incompatible_format.is_some() {
            return report;
        }
        let EngineState {
            slos,
            seen,
            seen_times,
            versions,
            saved_at,
            ..
        } = state;
        let mut waiting = Vec::new();
        for saved in slos
            .into_iter()
            .filter(|s| s.fingerprint.service() == service)
        {
            match self.id(&saved.name) {
                Some(id) => {
                    let applied = self.apply_saved(id, &saved);
                    record(&mut report, saved.name, applied);
                }
                None => {
                    waiting.push(saved.name.clone());
                    self.pending.insert(saved.name.clone(), saved);
                }
            }
        }
        if seen.iter().any(|s| s == service) {
            report.services_seen = 1;
            let (first, last) = seen_times
                .get(service)
                .map_or((saved_at, saved_at), |t| (t.first, t.last));
            for (id, applied) in self.see_at(service, first, last) {
                if let Some(applied) = applied {
                    let name = self.slos[id.0 as usize].spec.name.clone();
                    record(&mut report, name, applied);
                }
            }
        }
        // Templated data whose SLO was not made (the service over the limit, or no longer
        // templated here) is not kept aside: the service is not coming back to this engine.
        for name in waiting {
            if let Some(saved) = self.pending.remove(&name) {
                let reason = if self.explicit_services.contains(service) || !saved.template {
                    DropReason::NotConfigured
                } else {
                    DropReason::OverLimit
                };
                let applied = Applied {
                    dropped: Some(reason),
                    firing_dropped: saved.rows.iter().any(|r| r.notified),
                };
                record(&mut report, name, applied);
            }
        }
        if let Some(map) = versions.get(service) {
            for (version, seen) in map {
                self.observe_version_seen(service, version, seen.first, seen.last);
            }
        }
        report
    }
}

impl EngineState {
    /// When `service` last had traffic, as far as this state knows (`None`: not seen in it).
    /// Of two peers' states for a service, the one seen later holds more.
    pub fn last_seen(&self, service: &str) -> Option<UnixNanos> {
        if !self.seen.iter().any(|s| s == service) {
            return None;
        }
        Some(
            self.seen_times
                .get(service)
                .map_or(self.saved_at, |t| t.last),
        )
    }
}
