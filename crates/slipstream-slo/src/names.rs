//! The self-metrics of the SLO engine, declared once.

use slipstream_core::metric;
use slipstream_core::telemetry::MetricDesc;

metric!(
    EVENTS,
    "slipstream_slo_events_total",
    Counter,
    ["severity", "state"],
    "Burn-rate alert events emitted, by severity (page, ticket) and state (firing, resolved)."
);
metric!(
    SUPPRESSED_EVENTS,
    "slipstream_slo_suppressed_events_total",
    Counter,
    ["reason"],
    "Alert transitions not sent, by reason (silence, maintenance, superseded by a page)."
);
metric!(
    DROPPED_OBSERVATIONS,
    "slipstream_slo_dropped_observations_total",
    Counter,
    ["reason"],
    "Per-slot counts the SLO engine refused, by reason (too_old, future, unknown_slo, invalid)."
);
metric!(
    EVALUATIONS,
    "slipstream_slo_evaluations_total",
    Counter,
    [],
    "Evaluation ticks of the SLO engine."
);
metric!(
    OBJECTIVES,
    "slipstream_slo_objectives",
    Gauge,
    ["source"],
    "SLOs evaluated, by source (explicit, template)."
);
metric!(
    ALERTS_FIRING,
    "slipstream_slo_alerts_firing",
    Gauge,
    ["severity"],
    "Alert policy rows whose condition fires, by severity."
);
metric!(
    SERVICES_UNCATALOGED,
    "slipstream_slo_services_uncataloged",
    Gauge,
    [],
    "Services seen in traffic that the service catalog does not list."
);
metric!(
    SERVICES_DISCOVERED,
    "slipstream_slo_services_discovered",
    Gauge,
    [],
    "Services discovered in traffic (no explicit objective) that hold templated SLOs; at most slo.discovery.max_services."
);
metric!(
    SERVICES_OVER_LIMIT,
    "slipstream_slo_services_over_limit",
    Gauge,
    [],
    "Services seen in traffic but refused templated SLOs because slo.discovery.max_services was reached (at most 1000 are tracked)."
);
metric!(
    SERVICES_REFUSED,
    "slipstream_slo_services_refused_total",
    Counter,
    ["reason"],
    "Services refused templated SLOs, by reason (over_limit): once while listed as over the limit, at each step with traffic beyond the 1000 listed."
);
metric!(
    SERVICES_EXPIRED,
    "slipstream_slo_services_expired_total",
    Counter,
    ["reason"],
    "Discovered services whose templated SLOs were removed, by reason (idle: no traffic for expire_after; transient: brief traffic, then none for expire_transient_after)."
);

/// Every self-metric of the SLO engine, in the order they are rendered.
pub static ALL: &[&MetricDesc] = &[
    &EVENTS,
    &SUPPRESSED_EVENTS,
    &DROPPED_OBSERVATIONS,
    &EVALUATIONS,
    &OBJECTIVES,
    &ALERTS_FIRING,
    &SERVICES_UNCATALOGED,
    &SERVICES_DISCOVERED,
    &SERVICES_OVER_LIMIT,
    &SERVICES_REFUSED,
    &SERVICES_EXPIRED,
];
