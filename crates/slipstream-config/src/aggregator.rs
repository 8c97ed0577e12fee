//! `aggregator`: streaming aggregation of spans into per-series SLIs.
//!
//! A series is `service.name` plus the configured dimensions. Observations land in event-time
//! slots of `slot_width`; `retention` of slots is kept so that windows up to that length (1m,
//! 5m, 1h by default) can be computed by merging slots.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipstream_core::{GrpcBadCodes, MAX_DIMENSIONS, OutcomeRules, ScanSpec, SpanKind};

use crate::Errors;

/// Default width of an event-time slot.
pub const DEFAULT_SLOT_WIDTH: Duration = Duration::from_secs(60);
/// Default span of slots kept (the longest window that can be asked for).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// Default interval between merges of the per-worker shards into the window store.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(5);
/// Default largest distance into the future an end timestamp may have before it is clamped.
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(60);
/// Default largest latency the histograms track; longer durations are clamped to it.
pub const DEFAULT_HISTOGRAM_MAX_VALUE: Duration = Duration::from_secs(3600);
/// Default span kinds that count as requests.
pub const DEFAULT_SPAN_KINDS: &[&str] = &["server", "consumer"];
/// Default resource attributes that become series dimensions.
pub const DEFAULT_RESOURCE_DIMENSIONS: &[&str] = &["deployment.environment"];
/// Default attribute keys resource dimensions are read from: `deployment.environment` from the
/// current semantic convention's `deployment.environment.name` or, when a resource has none,
/// the older `deployment.environment`. The dimension (and label) keeps the older name, so
/// series, SLO selectors and exported labels (`deployment_environment`) keep theirs.
pub const DEFAULT_RESOURCE_DIMENSION_ATTRIBUTES: &[(&str, &[&str])] = &[(
    "deployment.environment",
    &["deployment.environment.name", "deployment.environment"],
)];
/// Most attribute keys one resource dimension may be read from.
pub const MAX_ATTRIBUTES_PER_DIMENSION: usize = 4;
/// Default limit on series across all services.
pub const DEFAULT_MAX_SERIES: usize = 100_000;
/// Default limit on series of one service.
pub const DEFAULT_MAX_SERIES_PER_SERVICE: usize = 10_000;
/// Default time after its last observation at which a series is expired.
pub const DEFAULT_SERIES_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default number of distinct `service.version` values remembered per series.
pub const DEFAULT_MAX_VERSIONS_PER_SERIES: usize = 8;
/// Default limit on pending (series, slot) accumulators in one worker shard between ticks.
pub const DEFAULT_MAX_PENDING_PER_SHARD: usize = 262_144;
/// Default HTTP status code range that is bad on a server span (5xx).
pub const DEFAULT_HTTP_BAD_STATUS: (i64, i64) = (500, 599);
/// Default gRPC status codes that are bad: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS.
pub const DEFAULT_GRPC_BAD_CODES: &[i64] = &[2, 4, 12, 13, 14, 15];

/// `aggregator`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {
    /// Width of an event-time slot: a span lands in the slot holding its end time. Windows are
    /// whole numbers of slots. At least 1s, whole seconds, and it must divide 1h.
    #[serde(with = "humantime_serde")]
    pub slot_width: Duration,
    /// How much history is kept per series, a multiple of `slot_width`: the longest window
    /// that can be asked for. Spans ending before it (relative to now) are dropped and counted
    /// (`reason="late"`).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the per-worker shards are merged into the window store and a new snapshot
    /// is published. Readers see data at most this old.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Spans ending further than this in the future are clamped to now and counted.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Largest latency the histograms track (they track from 1ns, exact below 64ns and within
    /// 0.79% relative error above); longer durations are clamped to it and counted.
    #[serde(with = "humantime_serde")]
    pub histogram_max_value: Duration,
    /// Span kinds that count as requests: `server`, `client`, `consumer`, `producer`,
    /// `internal`, `unspecified`.
    pub span_kinds: Vec<String>,
    /// Resource attributes that become series dimensions, after `service.name` (which always
    /// is one). An absent attribute is an empty value.
    pub resource_dimensions: Vec<String>,
    /// The attribute keys a resource dimension is read from, by dimension name, in order of
    /// preference (at most 4): the value is that of the first key the resource has, whatever
    /// the order of its attributes. A dimension not listed reads the attribute of its name.
    pub resource_dimension_attributes: BTreeMap<String, Vec<String>>,
    /// Span attributes that become series dimensions (e.g. `http.route`). Together with
    /// `resource_dimensions` at most 8.
    pub span_dimensions: Vec<String>,
    /// Add the span name as a dimension (label `span.name`). Beware of high-cardinality names.
    pub span_name_dimension: bool,
    /// Add the span kind as a dimension (label `span.kind`).
    pub span_kind_dimension: bool,
    /// Limit on series across all services. Beyond it, observations of new series go to the
    /// overflow series `otel.metric.overflow="true"`.
    pub max_series: usize,
    /// Limit on series of one service. Beyond it, observations of new series of that service
    /// go to its overflow series `{service.name, otel.metric.overflow="true"}`.
    pub max_series_per_service: usize,
    /// A series with no observation for this long is expired with its data.
    #[serde(with = "humantime_serde")]
    pub series_idle_timeout: Duration,
    /// Number of distinct `service.version` values remembered per series (with when each was
    /// first seen and when it last served a request); the least recently seen is forgotten
    /// first.
    pub max_versions_per_series: usize,
    /// Limit on (series, slot) accumulators a worker shard holds between two ticks; spans
    /// beyond it are dropped and counted (`reason="shard_full"`). Bounds memory whatever the
    /// input.
    pub max_pending_per_shard: usize,
    /// How a span's outcome is decided.
    pub outcome: OutcomeConfig,
    /// What the bad requests share: candidate attributes counted per service and slot.
    pub explain: crate::explain::ExplainConfig,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            slot_width: DEFAULT_SLOT_WIDTH,
            retention: DEFAULT_RETENTION,
            tick_interval: DEFAULT_TICK_INTERVAL,
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW,
            histogram_max_value: DEFAULT_HISTOGRAM_MAX_VALUE,
            span_kinds: DEFAULT_SPAN_KINDS.iter().map(|s| (*s).to_owned()).collect(),
            resource_dimensions: DEFAULT_RESOURCE_DIMENSIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            resource_dimension_attributes: DEFAULT_RESOURCE_DIMENSION_ATTRIBUTES
                .iter()
                .map(|(name, keys)| {
                    let keys = keys.iter().map(|k| (*k).to_owned()).collect();
                    ((*name).to_owned(), keys)
                })
                .collect(),
            span_dimensions: Vec::new(),
            span_name_dimension: false,
            span_kind_dimension: false,
            max_series: DEFAULT_MAX_SERIES,
            max_series_per_service: DEFAULT_MAX_SERIES_PER_SERVICE,
            series_idle_timeout: DEFAULT_SERIES_IDLE_TIMEOUT,
            max_versions_per_series: DEFAULT_MAX_VERSIONS_PER_SERIES,
            max_pending_per_shard: DEFAULT_MAX_PENDING_PER_SHARD,
            outcome: OutcomeConfig::default(),
            explain: crate::explain::ExplainConfig::default(),
        }
    }
}

/// `aggregator.outcome`: the outcome rules of DESIGN.md, "SLO semantics".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutcomeConfig {
    /// Span status ERROR makes a span bad.
    pub status_error_is_bad: bool,
    /// Lowest HTTP status code (`http.response.status_code`, or `http.status_code`) that makes
    /// a server span bad.
    pub http_bad_status_min: i64,
    /// Highest HTTP status code that makes a server span bad.
    pub http_bad_status_max: i64,
    /// Also apply the HTTP rule to client spans.
    pub http_rule_on_client_spans: bool,
    /// `rpc.grpc.status_code` values (0..=16) that make a span bad.
    pub grpc_bad_codes: Vec<i64>,
}

impl Default for OutcomeConfig {
    fn default() -> Self {
        OutcomeConfig {
            status_error_is_bad: true,
            http_bad_status_min: DEFAULT_HTTP_BAD_STATUS.0,
            http_bad_status_max: DEFAULT_HTTP_BAD_STATUS.1,
            http_rule_on_client_spans: false,
            grpc_bad_codes: DEFAULT_GRPC_BAD_CODES.to_vec(),
        }
    }
}

impl OutcomeConfig {
    /// The rules the aggregator classifies spans with.
    pub fn rules(&self) -> OutcomeRules {
        OutcomeRules {
            status_error_is_bad: self.status_error_is_bad,
            http_bad_min: self.http_bad_status_min,
            http_bad_max: self.http_bad_status_max,
            http_rule_on_client_spans: self.http_rule_on_client_spans,
            grpc_bad_codes: GrpcBadCodes::from_codes(self.grpc_bad_codes.iter().copied()),
        }
    }
}

impl AggregatorConfig {
    /// The attribute keys the span scanner must extract: `resource_dimensions` then
    /// `span_dimensions`, in that order (the layout of `SpanRecord::dims`).
    ///
    /// A resource dimension listed in `resource_dimension_attributes` is read from its first
    /// key there, then the others in order ([`ScanSpec::resource_alternatives`]).
    pub fn scan_spec(&self) -> ScanSpec {
        fn keys<'a>(map: &'a BTreeMap<String, Vec<String>>, name: &'a String) -> &'a [String] {
            match map.get(name) {
                Some(keys) if !keys.is_empty() => keys,
                _ => std::slice::from_ref(name),
            }
        }
        let map = &self.resource_dimension_attributes;
        ScanSpec {
            resource_keys: self
                .resource_dimensions
                .iter()
                .map(|d| keys(map, d)[0].clone())
                .collect(),
            resource_alternatives: self
                .resource_dimensions
                .iter()
                .map(|d| keys(map, d)[1..].to_vec())
                .collect(),
            span_keys: self.span_dimensions.clone(),
            candidate_keys: self.explain.candidate_keys(),
        }
    }

    /// The span kinds that count as requests; unknown names (refused by validation) are
    /// skipped.
    pub fn kinds(&self) -> Vec<SpanKind> {
        self.span_kinds
            .iter()
            .filter_map(|k| SpanKind::parse(k))
            .collect()
    }

    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        let whole_secs = |d: Duration| d.subsec_nanos() == 0 && d.as_secs() > 0;
        errs.check(
            whole_secs(self.slot_width) && 3600 % self.slot_width.as_secs() == 0,
            format!("{path}.slot_width"),
            "expected a whole number of seconds that divides 1h (e.g. 10s, 1m)",
        );
        if whole_secs(self.slot_width) {
            let slots = self.retention.as_nanos() / self.slot_width.as_nanos();
            errs.check(
                self.retention
                    .as_nanos()
                    .is_multiple_of(self.slot_width.as_nanos())
                    && (1..=10_080).contains(&slots),
                format!("{path}.retention"),
                "expected a multiple of slot_width, between 1 and 10080 slots",
            );
        }
        errs.check(
            !self.tick_interval.is_zero() && self.tick_interval <= self.slot_width,
            format!("{path}.tick_interval"),
            "expected a duration above 0 and at most slot_width",
        );
        errs.check(
            self.histogram_max_value >= Duration::from_micros(1),
            format!("{path}.histogram_max_value"),
            "expected at least 1us",
        );
        for (i, k) in self.span_kinds.iter().enumerate() {
            errs.check(
                SpanKind::parse(k).is_some(),
                format!("{path}.span_kinds.{i}"),
                format!(
                    "unknown span kind `{k}` (expected server, client, consumer, producer, internal or unspecified)"
                ),
            );
        }
        errs.check(
            !self.span_kinds.is_empty(),
            format!("{path}.span_kinds"),
            "expected at least one span kind",
        );
        errs.check(
            self.resource_dimensions.len() + self.span_dimensions.len() <= MAX_DIMENSIONS,
            format!("{path}.span_dimensions"),
            format!("expected at most {MAX_DIMENSIONS} resource and span dimensions together"),
        );
        for (field, keys) in [
            ("resource_dimensions", &self.resource_dimensions),
            ("span_dimensions", &self.span_dimensions),
        ] {
            for (i, k) in keys.iter().enumerate() {
                errs.check(
                    !k.trim().is_empty() && k != "service.name",
                    format!("{path}.{field}.{i}"),
                    "expected an attribute key other than service.name (always a dimension)",
                );
            }
        }
        for (name, keys) in &self.resource_dimension_attributes {
            let at = format!("{path}.resource_dimension_attributes.{name}");
            errs.check(
                (1..=MAX_ATTRIBUTES_PER_DIMENSION).contains(&keys.len()),
                at.clone(),
                format!("expected 1 to {MAX_ATTRIBUTES_PER_DIMENSION} attribute keys"),
            );
            for (i, k) in keys.iter().enumerate() {
                errs.check(
                    !k.trim().is_empty() && k != "service.name",
                    format!("{at}.{i}"),
                    "expected an attribute key other than service.name",
                );
            }
        }
        errs.check(
            self.max_series >= 1,
            format!("{path}.max_series"),
            "expected at least 1",
        );
        errs.check(
            self.max_series_per_service >= 1,
            format!("{path}.max_series_per_service"),
            "expected at least 1",
        );
        errs.check(
            !self.series_idle_timeout.is_zero(),
            format!("{path}.series_idle_timeout"),
            "expected a duration above 0",
        );
        errs.check(
            self.max_pending_per_shard >= 16,
            format!("{path}.max_pending_per_shard"),
            "expected at least 16",
        );
        self.explain.validate(&format!("{path}.explain"), errs);
        let o = &self.outcome;
        errs.check(
            o.http_bad_status_min <= o.http_bad_status_max,
            format!("{path}.outcome.http_bad_status_max"),
            "expected at least http_bad_status_min",
        );
        for (i, c) in o.grpc_bad_codes.iter().enumerate() {
            errs.check(
                (0..=16).contains(c),
                format!("{path}.outcome.grpc_bad_codes.{i}"),
                format!("`{c}` is not a gRPC status code (expected 0..=16)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn defaults_map_onto_the_core_rules_and_scan_spec() {
        let c = AggregatorConfig::default();
        assert_eq!(c.outcome.rules(), OutcomeRules::default());
        let spec = c.scan_spec();
        assert_eq!(spec.resource_keys, ["deployment.environment.name"]);
        assert_eq!(spec.resource_alternatives, [["deployment.environment"]]);
        assert_eq!(c.kinds(), [SpanKind::Server, SpanKind::Consumer]);
        assert!(Config::default().validate().is_empty());
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let yaml = "aggregator:\n  slot_width: 7s\n  span_kinds: [server, bogus]\n  span_dimensions: [a, b, c, d, e, f, g, h]\n  max_series: 0\n  outcome:\n    http_bad_status_min: 600\n    http_bad_status_max: 500\n    grpc_bad_codes: [2, 17]\n";
        let err = Config::from_yaml(yaml).unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "aggregator.slot_width",
                "aggregator.retention",
                "aggregator.span_kinds.1",
                "aggregator.span_dimensions",
                "aggregator.max_series",
                "aggregator.outcome.http_bad_status_max",
                "aggregator.outcome.grpc_bad_codes.1",
            ]
        );
    }

    #[test]
    fn a_resource_dimension_is_read_from_its_attributes_in_order() {
        let c = Config::from_yaml(
            "aggregator:\n  resource_dimensions: [k8s.namespace.name, env, deployment.environment]\n  resource_dimension_attributes:\n    env: [env.new, env.old, env.older]\n",
        )
        .unwrap();
        let spec = c.aggregator.scan_spec();
        assert_eq!(
            spec.resource_keys,
            ["k8s.namespace.name", "env.new", "deployment.environment"],
            "a map given replaces the default one"
        );
        assert_eq!(
            spec.resource_alternatives,
            [
                vec![],
                vec!["env.old".to_owned(), "env.older".to_owned()],
                vec![]
            ]
        );

        let c =
            Config::from_yaml("aggregator:\n  resource_dimensions: [a, deployment.environment]\n")
                .unwrap();
        let spec = c.aggregator.scan_spec();
        assert_eq!(spec.resource_keys, ["a", "deployment.environment.name"]);
        assert_eq!(
            spec.resource_alternatives,
            [vec![], vec!["deployment.environment".to_owned()]]
        );

        let yaml = "aggregator:\n  resource_dimension_attributes:\n    a: []\n    e: [x, service.name, '', b, c]\n";
        let err = Config::from_yaml(yaml).unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "aggregator.resource_dimension_attributes.a",
                "aggregator.resource_dimension_attributes.e",
                "aggregator.resource_dimension_attributes.e.1",
                "aggregator.resource_dimension_attributes.e.2",
            ]
        );
    }

    #[test]
    fn durations_and_rules_parse() {
        let c = Config::from_yaml(
            "aggregator:\n  slot_width: 10s\n  retention: 30m\n  outcome:\n    grpc_bad_codes: [14]\n    http_rule_on_client_spans: true\n",
        )
        .unwrap();
        assert_eq!(c.aggregator.slot_width, Duration::from_secs(10));
        assert_eq!(c.aggregator.retention, Duration::from_secs(1800));
        let r = c.aggregator.outcome.rules();
        assert!(r.grpc_bad_codes.contains(14) && !r.grpc_bad_codes.contains(2));
        assert!(r.http_rule_on_client_spans);
    }
}
