//! The SLO engine: SLO specs, SLIs over time windows, error budgets and multi-window
//! multi-burn-rate alerts.
//!
//! [`SloEngine::new`] resolves the `slo` configuration section into [`SloSpec`]s: explicit
//! objectives, plus templated ones created when the evaluation step (`slipstream-step`)
//! reports a new service with [`SloEngine::service_seen`]; the service catalog's owner, tier
//! and links become labels and annotations. The step finds the SLOs a series counts towards
//! with [`SloEngine::matching`] and feeds good/total counts per event-time slot with
//! [`SloEngine::observe`] (and `service.version` sightings with
//! [`SloEngine::observe_version`]). Each SLO keeps its counts in a [`WindowStore`] of
//! multi-resolution rings (1-minute slots up to 6h, 5-minute up to 3d, hourly up to the
//! period). On every [`SloEngine::tick`] (the evaluate hop of a step, on
//! `slo.evaluation_interval`; time read from an injected [`slipstream_core::Clock`])
//! the engine computes, per SLO, the error ratio and burn rate of every window, the budget
//! remaining over the period and the time to its exhaustion, runs the alert state machine of
//! every policy row (a burn-rate row fires when both windows burn above the factor and
//! resolves when the short one no longer does; a time-to-exhaustion row or a budget-drop row,
//! see [`RowKind`], fires and resolves with its condition; a firing page holds back the SLO's
//! tickets), applies silences, and
//! publishes an immutable [`SloSnapshot`]. `tick` returns the [`AlertEvent`]s to send.
//! Self-metrics are declared in [`names`].
//!
//! # Discovered services are bounded
//!
//! The step reports traffic per series with [`SloEngine::service_traffic`]. Templated SLOs
//! go only to services that hold an ordinary series (not only an aggregator overflow series),
//! and to at most `slo.discovery.max_services` of them at once; services beyond the cap are
//! listed in the snapshot ([`SloSnapshot::services_over_limit`], bounded) and counted. A
//! discovered service with no traffic for `slo.discovery.expire_after` (or, when its traffic
//! lasted less than `slo.discovery.expire_transient_after`, for that long) loses its
//! templated SLOs and their saved state on the next tick, unless one of its alerts fires;
//! the other SLOs are numbered anew ([`SloEngine::generation`] changes). Explicit objectives
//! are never capped nor expired.
//!
//! # Restarts and reloads
//!
//! [`SloEngine::export_state`] takes an [`EngineState`] (serde, versioned by
//! [`ENGINE_STATE_FORMAT`]) that the application (`slipstream-app`) persists; [`SloEngine::restore_state`] puts it back
//! into an engine built from the configuration at start-up. Persisted: per SLO, its
//! *fingerprint* (service, `match_labels`, SLI kind and latency threshold, objective, period),
//! the contents of its window rings and the state of every alert row (keyed by severity, long
//! and short window, kind and parameter); the silences with their ids, marked as coming from the configuration or
//! the API; the `service.version`s seen per service; the services seen; the recent events.
//! Not persisted: the snapshot (the next tick makes one), self-metric counters, dropped-data
//! counts.
//!
//! Data goes only to an SLO of the same *name* and an equal fingerprint: a change of
//! labels, annotations, alert policy or `min_events` keeps it, a change of what is measured or
//! against what starts the SLO afresh (the [`RestoreReport`] says which and why). Alert rows
//! are matched by severity, windows, kind and parameter (not the factor), so a rescaled or extended policy keeps the rows it
//! shares: a row firing before the restart goes on firing without a second firing event and
//! resolves with one resolved event. The services seen are seen again, so their templated SLOs
//! exist at once with their data. Slots older than an SLO's rings hold fall out at the next
//! tick, so after a long outage only what the period still covers counts.
//!
//! [`SloEngine::reconfigure`] applies a new `slo` section in place with the same matching:
//! unchanged SLOs keep windows and alert rows, changed ones restart, new ones are added, gone
//! ones removed (without inventing resolved events: the [`ReconfigureReport`] names them);
//! templated SLOs are derived again for the services seen; the configuration's silences are
//! replaced and the API's kept. SLO ids may change on a reconfigure.
#![forbid(unsafe_code)]

mod engine;
mod model;
pub mod names;
mod persist;
mod spec;
mod window;

pub use engine::{
    MAX_FUTURE, MAX_OVER_LIMIT_TRACKED, MAX_VERSIONS_PER_SERVICE, OVER_LIMIT_LISTED, RECENT_EVENTS,
    SloEngine, month_start,
};
pub use model::{
    AlertEvent, AlertState, AlertStatus, MAX_EVENT_EXEMPLARS, Silence, SilenceId, SloId,
    SloSnapshot, SloStatus, WindowStatus,
};
pub use persist::{
    DropReason, DroppedSlo, ENGINE_STATE_FORMAT, EngineState, ReconfigureReport, RestoreReport,
};
pub use slipstream_config::slo::{Period, Severity, SilenceKind};
pub use spec::{
    ALERT_NAME_BUDGET_DROP, ALERT_NAME_BURN_RATE, ALERT_NAME_EXHAUSTION, CURRENT_BURN_WINDOW,
    DEFAULT_POLICY, PolicyRow, REPORTED_WINDOWS, RowKind, Sli, SloSource, SloSpec, budget_drop,
    exhaustion_threshold, policy, scaled_factor,
};
pub use window::{Counts, DAY, HOUR, MINUTE, Stored, WindowStore};

#[cfg(test)]
mod tests;
