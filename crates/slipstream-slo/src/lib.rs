//! The SLO engine: SLO specs, SLIs over time windows, error budgets and multi-window
//! multi-burn-rate alerts.
//!
//! [`SloEngine::new`] resolves the `slo` configuration section into [`SloSpec`]s: explicit
//! objectives, plus templated ones created when the binary reports a new service with
//! [`SloEngine::service_seen`]; the service catalog's owner, tier and links become labels and
//! annotations. The binary finds the SLOs a series counts towards with
//! [`SloEngine::matching`] and feeds good/total counts per event-time slot with
//! [`SloEngine::observe`] (and `service.version` sightings with
//! [`SloEngine::observe_version`]). Each SLO keeps its counts in a [`WindowStore`] of
//! multi-resolution rings (1-minute slots up to 6h, 5-minute up to 3d, hourly up to the
//! period). On every [`SloEngine::tick`] (read from an injected [`slipstream_core::Clock`])
//! the engine computes, per SLO, the error ratio and burn rate of every window, the budget
//! remaining over the period and the time to its exhaustion, runs the alert state machine of
//! every policy row (firing when both windows burn above the factor, resolved when the short
//! one no longer does; a firing page holds back the SLO's tickets), applies silences, and
//! publishes an immutable [`SloSnapshot`]. `tick` returns the [`AlertEvent`]s to send.
//! Self-metrics are declared in [`names`].
#![forbid(unsafe_code)]

mod engine;
mod model;
pub mod names;
mod spec;
mod window;

pub use engine::{MAX_FUTURE, MAX_VERSIONS_PER_SERVICE, RECENT_EVENTS, SloEngine, month_start};
pub use model::{
    AlertEvent, AlertState, AlertStatus, Silence, SilenceId, SloId, SloSnapshot, SloStatus,
    WindowStatus,
};
pub use slipstream_config::slo::{Period, Severity, SilenceKind};
pub use spec::{
    CURRENT_BURN_WINDOW, DEFAULT_POLICY, PolicyRow, REPORTED_WINDOWS, Sli, SloSource, SloSpec,
    policy, scaled_factor,
};
pub use window::{Counts, DAY, HOUR, MINUTE, Stored, WindowStore};

#[cfg(test)]
mod tests;
