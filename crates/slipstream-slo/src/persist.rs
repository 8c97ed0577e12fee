//! The engine's state as it is persisted across restarts ([`EngineState`]) and what restoring
//! it or reconfiguring the engine did ([`RestoreReport`], [`ReconfigureReport`]).
//!
//! The saved form is a set of private serde types, independent of the engine's public model,
//! so that the model can change without breaking saved files; [`ENGINE_STATE_FORMAT`] is bumped
//! when the saved form changes incompatibly.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipstream_config::slo::{Period, Severity, SilenceKind};
use slipstream_core::explain::ValueShare;
use slipstream_core::{Exemplar, UnixNanos};

use crate::model::{AlertEvent, AlertState, Silence, SilenceId, SloId};
use crate::spec::{PolicyRow, RowKind, Sli, SloSpec};
use crate::window::SavedRing;

/// The version of the [`EngineState`] layout this build writes and reads.
pub const ENGINE_STATE_FORMAT: u32 = 1;

/// Everything of an [`SloEngine`](crate::SloEngine) worth keeping across a restart: per SLO
/// its fingerprint, window rings and alert rows; the silences (with their ids and whether the
/// configuration made them); the `service.version`s seen per service; the services seen; the
/// recent events. Serialize it with any serde format (floats that may be infinite are saved
/// as `null`, so JSON round-trips it exactly).
///
/// The fields are private: the layout is the engine's business, versioned by
/// [`format_version`](Self::format_version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub(crate) format_version: u32,
    /// The clock's time at export.
    pub(crate) saved_at: UnixNanos,
    /// In SLO id order, then the template SLOs still waiting for their service.
    pub(crate) slos: Vec<SavedSlo>,
    pub(crate) silences: Vec<SavedSilence>,
    pub(crate) next_silence: u64,
    pub(crate) seen: Vec<String>,
    /// When each service of `seen` had its first and latest traffic (absent in states written
    /// before discovered services expired: they count as seen at `saved_at`).
    #[serde(default)]
    pub(crate) seen_times: BTreeMap<String, SavedSeen>,
    pub(crate) versions: BTreeMap<String, BTreeMap<String, SavedVersion>>,
    #[serde(default)]
    pub(crate) recent_events: Vec<SavedEvent>,
}

impl EngineState {
    /// The layout version it was written with ([`ENGINE_STATE_FORMAT`] for states this build
    /// exported).
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The engine clock's time when it was exported.
    pub fn saved_at(&self) -> UnixNanos {
        self.saved_at
    }

    /// The names of the SLOs it holds data for.
    pub fn slo_names(&self) -> impl Iterator<Item = &str> {
        self.slos.iter().map(|s| s.name.as_str())
    }

    /// How many silences it holds (from the configuration and from the API).
    pub fn silence_count(&self) -> usize {
        self.silences.len()
    }
}

/// What makes an SLO's data meaningful: its windows and alert states are carried over (by a
/// restore or a reconfigure) only to an SLO of the same name with an equal fingerprint.
/// Labels, annotations, the alert policy and `min_events` are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    service: String,
    match_labels: BTreeMap<String, String>,
    sli: SavedSli,
    /// As a fraction, written out in full (`0.9990000000000001` for 99.9%): some text
    /// formats round the last bit of a float they parse. Compared with a tolerance of 1e-12.
    objective: String,
    period: SavedPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SavedSli {
    Availability,
    Latency { threshold: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SavedPeriod {
    Rolling(Duration),
    CalendarMonth,
}

impl Fingerprint {
    pub(crate) fn of(spec: &SloSpec) -> Fingerprint {
        Fingerprint {
            service: spec.service.clone(),
            match_labels: spec.match_labels.clone(),
            sli: match spec.sli {
                Sli::Availability => SavedSli::Availability,
                Sli::Latency { threshold } => SavedSli::Latency { threshold },
            },
            objective: spec.objective.to_string(),
            period: match spec.period {
                Period::Rolling(d) => SavedPeriod::Rolling(d),
                Period::CalendarMonth => SavedPeriod::CalendarMonth,
            },
        }
    }

    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The fields that differ from `other` (empty: the same).
    pub(crate) fn diff(&self, other: &Fingerprint) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.service != other.service {
            out.push("service");
        }
        if self.match_labels != other.match_labels {
            out.push("match_labels");
        }
        if self.sli != other.sli {
            out.push("sli");
        }
        let objective = |f: &Fingerprint| f.objective.parse::<f64>().unwrap_or(f64::NAN);
        let d = (objective(self) - objective(other)).abs();
        if d.is_nan() || d > 1e-12 {
            out.push("objective");
        }
        if self.period != other.period {
            out.push("period");
        }
        out
    }
}

/// One SLO's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedSlo {
    pub(crate) name: String,
    pub(crate) template: bool,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) rings: Vec<SavedRing>,
    pub(crate) rows: Vec<SavedRow>,
}

/// What tells a saved row's kind and parameters apart (absent for a burn-rate row, as in
/// states written before the other kinds existed).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct SavedKind {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exhausts_within: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_drop_percent: Option<f64>,
}

impl SavedKind {
    pub(crate) fn of(kind: RowKind) -> SavedKind {
        match kind {
            RowKind::BurnRate => SavedKind::default(),
            RowKind::Exhaustion { within } => SavedKind {
                exhausts_within: Some(within),
                ..SavedKind::default()
            },
            RowKind::BudgetDrop { percent } => SavedKind {
                budget_drop_percent: Some(percent),
                ..SavedKind::default()
            },
        }
    }

    pub(crate) fn kind(self) -> RowKind {
        match (self.exhausts_within, self.budget_drop_percent) {
            (Some(within), _) => RowKind::Exhaustion { within },
            (None, Some(percent)) => RowKind::BudgetDrop { percent },
            (None, None) => RowKind::BurnRate,
        }
    }
}

/// One alert row's state, keyed by severity, windows and kind with its parameters (not the
/// factor: a rescaled policy keeps its rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedRow {
    pub(crate) severity: Severity,
    pub(crate) long: Duration,
    pub(crate) short: Duration,
    #[serde(flatten)]
    pub(crate) kind: SavedKind,
    pub(crate) condition: bool,
    pub(crate) firing: bool,
    pub(crate) since: UnixNanos,
    pub(crate) notified: bool,
    pub(crate) last_sent: UnixNanos,
    pub(crate) held_counted: bool,
    pub(crate) superseded_counted: bool,
    pub(crate) superseded: bool,
    /// What the row's firing events were last sent with: the attribute values the bad
    /// requests share and the example requests. Left out when there are none, and absent in
    /// states written before they were kept (the row then has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) bad_requests_share: Vec<SavedShare>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exemplars: Vec<SavedExemplar>,
}

/// An attribute value the bad requests share, as a row last sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedShare {
    attribute: String,
    value: String,
    bad_share: f64,
    all_share: f64,
}

impl SavedShare {
    pub(crate) fn new(s: &ValueShare) -> SavedShare {
        SavedShare {
            attribute: s.attribute.clone(),
            value: s.value.clone(),
            bad_share: s.bad_share,
            all_share: s.all_share,
        }
    }

    pub(crate) fn share(&self) -> ValueShare {
        ValueShare {
            attribute: self.attribute.clone(),
            value: self.value.clone(),
            bad_share: self.bad_share,
            all_share: self.all_share,
            example: None,
        }
    }
}

/// An example request, as a row last sent it: the ids in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedExemplar {
    trace_id: String,
    span_id: String,
    end_unix_nanos: UnixNanos,
    duration_nanos: u64,
    bad: bool,
}

impl SavedExemplar {
    pub(crate) fn new(e: &Exemplar) -> SavedExemplar {
        SavedExemplar {
            trace_id: e.trace_id_hex(),
            span_id: e.span_id_hex(),
            end_unix_nanos: e.end_unix_nanos,
            duration_nanos: e.duration_nanos,
            bad: e.bad,
        }
    }

    /// The exemplar; `None` when the ids are not 32 and 16 hex digits (or the trace id is
    /// all zero).
    pub(crate) fn exemplar(&self) -> Option<Exemplar> {
        let trace: [u8; 16] = unhex(&self.trace_id)?;
        let span: [u8; 8] = unhex(&self.span_id)?;
        Exemplar::new(
            &trace,
            &span,
            self.end_unix_nanos,
            self.duration_nanos,
            self.bad,
        )
    }
}

/// `N` bytes from `2 * N` hex digits.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl SavedRow {
    pub(crate) fn matches(&self, row: &PolicyRow) -> bool {
        self.severity == row.severity
            && self.long == row.long
            && self.short == row.short
            && self.kind.kind() == row.kind
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedSilence {
    pub(crate) id: u64,
    pub(crate) from_config: bool,
    kind: SilenceKind,
    slo: Option<String>,
    service: Option<String>,
    severity: Option<Severity>,
    starts_at: Option<UnixNanos>,
    ends_at: Option<UnixNanos>,
    comment: String,
}

impl SavedSilence {
    pub(crate) fn new(id: SilenceId, s: &Silence, from_config: bool) -> SavedSilence {
        SavedSilence {
            id: id.0,
            from_config,
            kind: s.kind,
            slo: s.slo.clone(),
            service: s.service.clone(),
            severity: s.severity,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: s.comment.clone(),
        }
    }

    pub(crate) fn silence(&self) -> Silence {
        Silence {
            kind: self.kind,
            slo: self.slo.clone(),
            service: self.service.clone(),
            severity: self.severity,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            comment: self.comment.clone(),
        }
    }
}

/// A service's first and latest traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedSeen {
    pub(crate) first: UnixNanos,
    pub(crate) last: UnixNanos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SavedVersion {
    pub(crate) first: UnixNanos,
    pub(crate) last: UnixNanos,
}

/// A recent event; its SLO is found again by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedEvent {
    slo: String,
    service: String,
    severity: Severity,
    firing: bool,
    repeat: bool,
    superseded_by_page: bool,
    long: Duration,
    short: Duration,
    /// `None` for a row that never fires (an infinite factor).
    factor: Option<f64>,
    #[serde(flatten)]
    kind: SavedKind,
    long_burn_rate: Option<f64>,
    short_burn_rate: Option<f64>,
    budget_remaining: Option<f64>,
    versions: Vec<String>,
    newest_version: Option<(String, UnixNanos)>,
    at: UnixNanos,
    firing_since: UnixNanos,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

impl SavedEvent {
    pub(crate) fn new(e: &AlertEvent) -> SavedEvent {
        SavedEvent {
            slo: e.slo.clone(),
            service: e.service.clone(),
            severity: e.severity,
            firing: e.state == AlertState::Firing,
            repeat: e.repeat,
            superseded_by_page: e.superseded_by_page,
            long: e.row.long,
            short: e.row.short,
            factor: finite(Some(e.row.factor)),
            kind: SavedKind::of(e.row.kind),
            long_burn_rate: finite(e.long_burn_rate),
            short_burn_rate: finite(e.short_burn_rate),
            budget_remaining: finite(e.budget_remaining),
            versions: e.versions.clone(),
            newest_version: e.newest_version.clone(),
            at: e.at,
            firing_since: e.firing_since,
            labels: e.labels.clone(),
            annotations: e.annotations.clone(),
        }
    }

    pub(crate) fn slo(&self) -> &str {
        &self.slo
    }

    pub(crate) fn event(&self, slo_id: SloId) -> AlertEvent {
        AlertEvent {
            slo_id,
            slo: self.slo.clone(),
            service: self.service.clone(),
            severity: self.severity,
            state: if self.firing {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            repeat: self.repeat,
            superseded_by_page: self.superseded_by_page,
            row: PolicyRow {
                severity: self.severity,
                long: self.long,
                short: self.short,
                factor: self.factor.unwrap_or(f64::INFINITY),
                kind: self.kind.kind(),
            },
            long_burn_rate: self.long_burn_rate,
            short_burn_rate: self.short_burn_rate,
            budget_remaining: self.budget_remaining,
            versions: self.versions.clone(),
            newest_version: self.newest_version.clone(),
            at: self.at,
            firing_since: self.firing_since,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            bad_requests_share: Vec::new(),
            exemplars: Vec::new(),
        }
    }
}

/// Why an SLO's saved or previous data was not carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// No SLO of that name in the (new) configuration: an objective removed or renamed, a
    /// template turned off, or a service that now has an explicit objective.
    NotConfigured,
    /// An SLO of that name exists but what its data means changed: the fields that differ
    /// (`service`, `match_labels`, `sli`, `objective`, `period`). It starts afresh.
    Changed(Vec<&'static str>),
    /// A templated SLO whose service had no traffic for `slo.discovery.expire_after` (or
    /// `expire_transient_after`) when restored.
    Expired,
    /// A templated SLO whose service is beyond `slo.discovery.max_services`.
    OverLimit,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::NotConfigured => f.write_str("no longer configured"),
            DropReason::Changed(what) => write!(f, "changed {}", what.join(", ")),
            DropReason::Expired => f.write_str("service expired (no traffic)"),
            DropReason::OverLimit => f.write_str("service over slo.discovery.max_services"),
        }
    }
}

/// An SLO whose data was dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedSlo {
    /// The SLO's name.
    pub name: String,
    /// Why.
    pub reason: DropReason,
}

impl fmt::Display for DroppedSlo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

/// What [`SloEngine::restore_state`](crate::SloEngine::restore_state) did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestoreReport {
    /// Set when the state's layout version is not [`ENGINE_STATE_FORMAT`]: nothing was
    /// restored.
    pub incompatible_format: Option<u32>,
    /// When the state was exported (engine clock).
    pub saved_at: UnixNanos,
    /// SLOs whose windows and alert rows were restored.
    pub restored: Vec<String>,
    /// Templated SLOs of services not seen yet: their data is kept aside (and exported again)
    /// until [`service_seen`](crate::SloEngine::service_seen) creates them.
    pub deferred: Vec<String>,
    /// SLOs whose saved data was dropped; they start afresh (or no longer exist).
    pub dropped: Vec<DroppedSlo>,
    /// Dropped SLOs that receivers were last told fire: no resolved event is sent for them
    /// (a receiver such as Alertmanager resolves them on its own once they are not re-sent).
    pub firing_dropped: Vec<String>,
    /// Silences restored (those from the API; the configuration's are the current ones).
    pub silences: usize,
    /// Services seen before the restart (their templated SLOs are created by the restore).
    pub services_seen: usize,
    /// Recent events restored.
    pub recent_events: usize,
}

/// What [`SloEngine::reconfigure`](crate::SloEngine::reconfigure) did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReconfigureReport {
    /// SLOs whose name and fingerprint are unchanged: they keep their windows and alert rows
    /// (their labels, annotations, policy and `min_events` are the new ones).
    pub kept: Vec<String>,
    /// New SLOs (explicit objectives, or templated SLOs of services already seen).
    pub added: Vec<String>,
    /// SLOs whose fingerprint changed: they start afresh.
    pub reset: Vec<DroppedSlo>,
    /// SLOs no longer configured.
    pub removed: Vec<String>,
    /// SLOs with an alert row that receivers were last told fires and whose state went away
    /// (the SLO removed or reset, or the row gone from its policy): no resolved event is
    /// invented for it.
    pub firing_dropped: Vec<String>,
}
