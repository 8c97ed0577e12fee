//! What the engine hands out: alert events, silences and the immutable snapshot.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slipstream_config::slo::{Period, Severity, SilenceConfig, SilenceKind};
use slipstream_core::UnixNanos;

use crate::spec::{PolicyRow, Sli, SloSource};
use crate::window::Counts;

/// Identifies one SLO of an engine (stable until
/// [`SloEngine::reconfigure`](crate::SloEngine::reconfigure) renumbers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SloId(pub u32);

/// Identifies one silence of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SilenceId(pub u64);

/// The transition an event announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Both windows burn above the factor.
    Firing,
    /// The short window no longer does (or a page took over a ticket).
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// A burn-rate alert event: one per transition of one policy row of one SLO (and one per
/// repeat interval while firing, when configured).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    /// The SLO.
    pub slo_id: SloId,
    /// The SLO's name.
    pub slo: String,
    /// The service.
    pub service: String,
    /// Page or ticket.
    pub severity: Severity,
    /// Firing or resolved.
    pub state: AlertState,
    /// True for a re-sent firing event (repeat interval).
    pub repeat: bool,
    /// True for a ticket resolved because a page of the same SLO fires.
    pub superseded_by_page: bool,
    /// The policy row: windows and factor.
    pub row: PolicyRow,
    /// Burn rate over the long window (`None`: no traffic).
    pub long_burn_rate: Option<f64>,
    /// Burn rate over the short window (`None`: no traffic).
    pub short_burn_rate: Option<f64>,
    /// Share of the period's error budget left (negative when overspent).
    pub budget_remaining: Option<f64>,
    /// `service.version` values with requests in the long window, least recently seen first
    /// (by when each last served a request).
    pub versions: Vec<String>,
    /// The version running at the event: of those, the one seen most recently (after a
    /// rollback, the version rolled back to), and when it first appeared.
    pub newest_version: Option<(String, UnixNanos)>,
    /// When the event was produced (evaluation time).
    pub at: UnixNanos,
    /// When the row started firing.
    pub firing_since: UnixNanos,
    /// Labels: `slo`, `service`, `severity`, then the SLO's and the catalog's.
    pub labels: BTreeMap<String, String>,
    /// Annotations: summary, description, runbook_url, catalog links.
    pub annotations: BTreeMap<String, String>,
    /// The attribute values that concentrate the bad requests of the short window, best
    /// ranked first (filled where events are published, from the aggregator's counts; empty
    /// when none stands out or `aggregator.explain` is off).
    pub bad_requests_share: Vec<slipstream_core::explain::ValueShare>,
    /// Example bad requests of the SLO's series in the short window, most recent first (at
    /// most [`MAX_EVENT_EXEMPLARS`]; filled where events are published, from the aggregator's
    /// exemplars; empty when exemplars are off or none was kept).
    pub exemplars: Vec<slipstream_core::Exemplar>,
}

/// The most example requests an [`AlertEvent`] carries.
pub const MAX_EVENT_EXEMPLARS: usize = 3;

/// A silence or maintenance window, as the engine holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Silence {
    /// Silence or maintenance (the `reason` it is counted under).
    pub kind: SilenceKind,
    /// Only events of this SLO name.
    pub slo: Option<String>,
    /// Only events of this service.
    pub service: Option<String>,
    /// Only events of this severity.
    pub severity: Option<Severity>,
    /// Active from (inclusive); `None` since always.
    pub starts_at: Option<UnixNanos>,
    /// Active until (exclusive); `None` until removed.
    pub ends_at: Option<UnixNanos>,
    /// Why.
    pub comment: String,
}

fn unix_nanos(t: SystemTime) -> UnixNanos {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl From<&SilenceConfig> for Silence {
    fn from(c: &SilenceConfig) -> Silence {
        Silence {
            kind: c.kind,
            slo: c.slo.clone(),
            service: c.service.clone(),
            severity: c.severity,
            starts_at: c.starts_at.map(unix_nanos),
            ends_at: c.ends_at.map(unix_nanos),
            comment: c.comment.clone(),
        }
    }
}

impl Silence {
    /// Whether it is active at `now`.
    pub fn active(&self, now: UnixNanos) -> bool {
        self.starts_at.is_none_or(|s| now >= s) && self.ends_at.is_none_or(|e| now < e)
    }

    /// Whether it covers an event of `slo`/`service`/`severity` at `now`.
    pub fn matches(&self, slo: &str, service: &str, severity: Severity, now: UnixNanos) -> bool {
        self.active(now)
            && self.slo.as_deref().is_none_or(|s| s == slo)
            && self.service.as_deref().is_none_or(|s| s == service)
            && self.severity.is_none_or(|s| s == severity)
    }
}

/// One window of one SLO at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStatus {
    /// The window length.
    pub window: Duration,
    /// Bad and total requests in it.
    pub counts: Counts,
    /// `bad / total`; `None` without traffic.
    pub error_ratio: Option<f64>,
    /// `error_ratio / (1 - objective)`; `None` without traffic.
    pub burn_rate: Option<f64>,
}

/// One policy row of one SLO at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertStatus {
    /// Windows, factor, severity.
    pub row: PolicyRow,
    /// Both windows burn above the factor now (with enough requests): what a Prometheus
    /// alert `long > f and short > f` without `for:` evaluates. For time-to-exhaustion and
    /// budget-drop rows, their condition (see [`RowKind`](crate::RowKind)).
    pub condition: bool,
    /// The row's state: it fires from the evaluation where `condition` first holds until the
    /// short window alone stops burning above the factor (so a long window that dips below
    /// the factor while the short one still burns keeps it firing); time-to-exhaustion and
    /// budget-drop rows fire exactly while `condition` holds.
    pub firing: bool,
    /// Since when it fires.
    pub since: Option<UnixNanos>,
    /// A ticket held back because a page of the same SLO fires.
    pub superseded: bool,
    /// Whether the receivers were last told it fires (false while silenced or superseded).
    pub notified: bool,
    /// The requests both windows need before the row may fire (the SLO's `min_events`).
    pub min_events: u64,
}

/// One SLO at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SloStatus {
    /// Its id.
    pub id: SloId,
    /// Its name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Availability or latency.
    pub sli: Sli,
    /// Explicit or templated.
    pub source: SloSource,
    /// The objective as a fraction.
    pub objective: f64,
    /// The period.
    pub period: Period,
    /// Labels for its SLI series (the catalog's included).
    pub labels: BTreeMap<String, String>,
    /// Every evaluated window, ascending.
    pub windows: Vec<WindowStatus>,
    /// Bad and total requests over the period.
    pub period_counts: Counts,
    /// `1 - bad(P) / ((1 - objective) * total(P))`; `None` without traffic in the period.
    pub budget_remaining: Option<f64>,
    /// The burn rate over the last hour, used for the time to exhaustion.
    pub current_burn_rate: Option<f64>,
    /// How long the remaining budget lasts at the current burn rate: `remaining * period /
    /// burn rate`; zero once spent; `None` when nothing burns (or no traffic).
    pub time_to_exhaustion: Option<Duration>,
    /// One per policy row, in policy order (pages first).
    pub alerts: Vec<AlertStatus>,
}

impl SloStatus {
    /// The status of `window`, when it is evaluated.
    pub fn window(&self, window: Duration) -> Option<&WindowStatus> {
        self.windows.iter().find(|w| w.window == window)
    }
}

/// Everything the exporters and the status API read, as of one evaluation. Immutable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SloSnapshot {
    /// Evaluation time.
    pub at: UnixNanos,
    /// Every SLO, in id order.
    pub slos: Vec<SloStatus>,
    /// Services seen in traffic (and tracked) that the catalog does not list, sorted.
    pub uncataloged_services: Vec<String>,
    /// Services refused templated SLOs because `slo.discovery.max_services` was reached: the
    /// first [`OVER_LIMIT_LISTED`](crate::OVER_LIMIT_LISTED) by name.
    pub services_over_limit: Vec<String>,
    /// How many services are listed as over the limit (at most
    /// [`MAX_OVER_LIMIT_TRACKED`](crate::MAX_OVER_LIMIT_TRACKED); more are only counted).
    pub services_over_limit_count: usize,
}

impl SloSnapshot {
    /// The status of the SLO named `name`.
    pub fn slo(&self, name: &str) -> Option<&SloStatus> {
        self.slos.iter().find(|s| s.name == name)
    }
}
