//! `aggregator.explain`: what the bad requests share.
//!
//! For each service and event-time slot the aggregator counts, per candidate attribute, the
//! bad requests and all requests by the attribute's value, in sketches of a fixed size
//! whatever the cardinality. A burn-rate event then names the values whose share of the bad
//! requests in the alert's short window most exceeds their share of all requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipstream_core::MAX_CANDIDATES;

use crate::Errors;

/// Default candidate attributes: each is looked up on the span first, then on its resource.
pub const DEFAULT_ATTRIBUTES: &[&str] = &[
    "http.route",
    "rpc.method",
    "http.request.method",
    "http.response.status_code",
    "rpc.grpc.status_code",
    "error.type",
    "server.address",
    "service.version",
    "service.instance.id",
    "k8s.pod.name",
    "k8s.node.name",
    "cloud.region",
    "cloud.availability_zone",
];
/// Default number of values a sketch keeps per attribute (for bad requests and for all).
pub const DEFAULT_COUNTERS: usize = 16;
/// Fewest counters a sketch may keep.
pub const MIN_COUNTERS: usize = 4;
/// Most counters a sketch may keep.
pub const MAX_COUNTERS: usize = 256;
/// Default sampling of good requests: one in this many is counted, as this many.
pub const DEFAULT_GOOD_SAMPLE: u32 = 64;
/// Largest `good_sample`.
pub const MAX_GOOD_SAMPLE: u32 = 4096;
/// Default limit on services counted.
pub const DEFAULT_MAX_SERVICES: usize = 128;
/// Default history kept (capped at `aggregator.retention`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Default number of values an event names.
pub const DEFAULT_TOP: usize = 3;
/// Most values an event may name.
pub const MAX_TOP: usize = 10;

/// `aggregator.explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplainConfig {
    /// Count what the bad requests share; off, the scanner reads no candidate attribute and
    /// events name none.
    pub enabled: bool,
    /// Candidate attribute keys (at most 16). Each is read from the span's attributes first,
    /// then from its resource's: `k8s.pod.name` on a resource names the pod of every span of
    /// it unless a span says otherwise.
    pub attributes: Vec<String>,
    /// Values a sketch keeps per attribute, for the bad requests and for all requests (4 to
    /// 256). A share is within about `1 / counters` of the exact one (6% at 16).
    pub counters: usize,
    /// One in this many good requests is counted, as this many (1: all), chosen by a hash of
    /// the span id: the shares stay unbiased and the cost falls with it. Bad requests are all
    /// counted.
    pub good_sample: u32,
    /// Most services counted per worker between two merges and kept; requests of services
    /// beyond are not counted.
    pub max_services: usize,
    /// How much history is kept per service, in slots of `aggregator.slot_width` (at most
    /// `aggregator.retention`): an event's short window looks back at most this far.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Values an event names at most, best ranked first (1 to 10).
    pub top: usize,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            enabled: true,
            attributes: DEFAULT_ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect(),
            counters: DEFAULT_COUNTERS,
            good_sample: DEFAULT_GOOD_SAMPLE,
            max_services: DEFAULT_MAX_SERVICES,
            window: DEFAULT_WINDOW,
            top: DEFAULT_TOP,
        }
    }
}

impl ExplainConfig {
    /// The candidate keys the scanner reads: none when disabled.
    pub fn candidate_keys(&self) -> Vec<String> {
        if self.enabled {
            self.attributes
                .iter()
                .take(MAX_CANDIDATES)
                .cloned()
                .collect()
        } else {
            Vec::new()
        }
    }

    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            self.attributes.len() <= MAX_CANDIDATES,
            format!("{path}.attributes"),
            format!("expected at most {MAX_CANDIDATES} attribute keys"),
        );
        for (i, k) in self.attributes.iter().enumerate() {
            errs.check(
                !k.trim().is_empty() && !self.attributes[..i].contains(k),
                format!("{path}.attributes.{i}"),
                "expected an attribute key, not empty and not listed before",
            );
        }
        errs.check(
            (MIN_COUNTERS..=MAX_COUNTERS).contains(&self.counters),
            format!("{path}.counters"),
            format!("expected {MIN_COUNTERS} to {MAX_COUNTERS}"),
        );
        errs.check(
            (1..=MAX_GOOD_SAMPLE).contains(&self.good_sample),
            format!("{path}.good_sample"),
            format!("expected 1 to {MAX_GOOD_SAMPLE}"),
        );
        errs.check(
            self.max_services >= 1,
            format!("{path}.max_services"),
            "expected at least 1",
        );
        errs.check(
            !self.window.is_zero(),
            format!("{path}.window"),
            "expected a duration above 0",
        );
        errs.check(
            (1..=MAX_TOP).contains(&self.top),
            format!("{path}.top"),
            format!("expected 1 to {MAX_TOP}"),
        );
    }
}
