//! `exemplars`: the example requests kept per series and slot, and how they link to traces.

use serde::{Deserialize, Serialize};

use crate::Errors;

/// Whether exemplars are kept by default.
pub const DEFAULT_EXEMPLARS_ENABLED: bool = true;
/// Default trace URL template: none (exemplars carry ids, not links).
pub const DEFAULT_TRACE_URL: Option<&str> = None;

/// `exemplars`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    /// Keep a few example requests (trace id, span id, end time, latency, outcome) per series
    /// and slot: its two most recent bad requests and its two slowest (each tick brings the
    /// most recent bad one and the slowest of each series), for the three newest slots of a
    /// series that have any. They are published as
    /// OpenMetrics and OTLP exemplars, in burn-rate events, in the API and on the status page.
    /// `false` keeps none.
    pub enabled: bool,
    /// A URL template that turns an exemplar into a link to its trace, in Alertmanager
    /// annotations, webhooks, `slipstream replay`'s events and the status page: `{trace_id}`
    /// (required) and `{span_id}` are replaced by the ids in hex, for example
    /// `https://tempo.example/trace/{trace_id}`.
    /// `null`: no links, ids only.
    pub trace_url: Option<String>,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig {
            enabled: DEFAULT_EXEMPLARS_ENABLED,
            trace_url: DEFAULT_TRACE_URL.map(str::to_owned),
        }
    }
}

impl ExemplarsConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        if let Some(url) = &self.trace_url {
            errs.check(
                url.contains("{trace_id}"),
                format!("{path}.trace_url"),
                "expected a URL template with `{trace_id}` in it, such as `https://tempo.example/trace/{trace_id}`",
            );
        }
    }
}

#[cfg(test)]
mod tests;
