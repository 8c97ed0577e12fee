//! Hop 10 of the life of a span (see [the crate docs](crate)): the SLI series every metrics
//! exporter sends, built from the results the last step published, and, for the publish hop,
//! the burn-rate events every event exporter sends, built from the engine's alert events.
//!
//! [`SERIES`] declares every exported family (name, type, unit, labels); `docs/sli-series.md`
//! is checked against it by a test, and [`build`] only emits declared families.

use std::collections::BTreeMap;
use std::time::Duration;

use slipstream_aggregator::{QUANTILES, Snapshot, bucket_high, bucket_low};
use slipstream_config::exporters::MetricNaming;
use slipstream_config::slo::CatalogEntry;
use slipstream_core::export::{
    BurnRateEvent, EventState, ExampleTrace, HistogramValue, MetricFamily, MetricKind,
    MetricsSnapshot, Point, PointValue, format_duration,
};
use slipstream_slo::{AlertEvent, AlertState, Period, SloSnapshot, SloStatus};

use crate::evaluate::SeriesTotals;

/// One exported family, declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesDesc {
    /// The name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Unit (OTLP).
    pub unit: &'static str,
    /// Labels besides the series' or SLO's own.
    pub labels: &'static [&'static str],
    /// Only with `naming: sloth`.
    pub sloth: bool,
    /// Help text.
    pub help: &'static str,
}

macro_rules! series {
    ($id:ident, $name:literal, $kind:ident, $unit:literal, [$($l:literal),*], $sloth:literal, $help:literal) => {
        #[doc = $help]
        pub const $id: SeriesDesc = SeriesDesc {
            name: $name,
            kind: MetricKind::$kind,
            unit: $unit,
            labels: &[$($l),*],
            sloth: $sloth,
            help: $help,
        };
    };
}

series!(
    REQUESTS,
    "slipstream_sli_requests_total",
    Counter,
    "{request}",
    [],
    false,
    "Requests (selected spans) of the series since slipstream first saw it."
);
series!(
    ERRORS,
    "slipstream_sli_errors_total",
    Counter,
    "{request}",
    [],
    false,
    "Bad requests of the series (outcome rules) since slipstream first saw it."
);
series!(
    LATENCY,
    "slipstream_sli_latency_seconds",
    Histogram,
    "s",
    [],
    false,
    "Request latency (span end - start) of the series since slipstream first saw it."
);
series!(
    LATENCY_QUANTILE,
    "slipstream_sli_latency_quantile_seconds",
    Gauge,
    "s",
    ["quantile", "window"],
    false,
    "Latency quantile (0.5, 0.9, 0.95, 0.99, 0.999) over a rolling window (1m, 5m, 1h)."
);
series!(
    SUCCESS_RATIO,
    "slipstream_sli_success_ratio",
    Gauge,
    "1",
    ["window"],
    false,
    "Good / total requests of the series over a rolling window (absent without traffic)."
);
series!(
    SLO_REQUESTS,
    "slipstream_slo_requests_total",
    Counter,
    "{request}",
    ["outcome"],
    false,
    "Requests counted towards the SLO since slipstream started, by outcome (good, bad); the input of the generated Prometheus rules."
);
series!(
    SLO_OBJECTIVE,
    "slipstream_slo_objective_ratio",
    Gauge,
    "1",
    [],
    false,
    "The SLO's objective as a fraction (0.999)."
);
series!(
    SLO_PERIOD,
    "slipstream_slo_period_seconds",
    Gauge,
    "s",
    [],
    false,
    "The SLO's period (its nominal length: 30 days for a calendar month); the generated rules read it."
);
series!(
    SLO_ERROR_RATIO,
    "slipstream_slo_error_ratio",
    Gauge,
    "1",
    ["window"],
    false,
    "Bad / total requests of the SLO over the window (absent without traffic)."
);
series!(
    SLO_BURN_RATE,
    "slipstream_slo_burn_rate",
    Gauge,
    "1",
    ["window"],
    false,
    "Error ratio over the window divided by the error budget (1 - objective)."
);
series!(
    SLO_BUDGET_REMAINING,
    "slipstream_slo_error_budget_remaining_ratio",
    Gauge,
    "1",
    [],
    false,
    "Share of the period's error budget left: 1 - bad / ((1 - objective) * total); negative when overspent."
);
series!(
    SLO_TIME_TO_EXHAUSTION,
    "slipstream_slo_time_to_exhaustion_seconds",
    Gauge,
    "s",
    [],
    false,
    "How long the remaining budget lasts at the last hour's burn rate (absent when nothing burns)."
);
series!(
    SLO_PERIOD_REQUESTS,
    "slipstream_slo_period_requests",
    Gauge,
    "{request}",
    ["outcome"],
    false,
    "Requests of the SLO in its period, by outcome (good, bad)."
);
series!(
    SLO_ALERT_FIRING,
    "slipstream_slo_alert_firing",
    Gauge,
    "1",
    [
        "severity",
        "long_window",
        "short_window",
        "exhausts_within",
        "budget_drop_percent"
    ],
    false,
    "1 while the policy row fires (also when silenced or superseded), else 0; exhausts_within and budget_drop_percent only on rows of those kinds."
);
series!(
    SLO_ALERT_FACTOR,
    "slipstream_slo_alert_burn_rate_factor",
    Gauge,
    "1",
    [
        "severity",
        "long_window",
        "short_window",
        "exhausts_within",
        "budget_drop_percent"
    ],
    false,
    "The policy row's burn-rate factor: the row fires when both windows burn above it (exhaustion rows: period / exhausts_within, times the budget left; budget-drop rows: the steady-traffic equivalent); the generated alert rules read it."
);
series!(
    SLO_ALERT_MIN_EVENTS,
    "slipstream_slo_alert_min_events",
    Gauge,
    "{request}",
    [
        "severity",
        "long_window",
        "short_window",
        "exhausts_within",
        "budget_drop_percent"
    ],
    false,
    "Requests each window of the policy row needs before the row may fire (min_events); the generated alert rules read it."
);
series!(
    SLOTH_SLI_ERROR,
    "slo:sli_error:ratio_rate",
    Gauge,
    "1",
    ["sloth_window"],
    true,
    "Sloth: error ratio over the window; the name ends with the window (slo:sli_error:ratio_rate5m)."
);
series!(
    SLOTH_OBJECTIVE,
    "slo:objective:ratio",
    Gauge,
    "1",
    [],
    true,
    "Sloth: the objective as a fraction."
);
series!(
    SLOTH_ERROR_BUDGET,
    "slo:error_budget:ratio",
    Gauge,
    "1",
    [],
    true,
    "Sloth: the error budget, 1 - objective."
);
series!(
    SLOTH_TIME_PERIOD,
    "slo:time_period:days",
    Gauge,
    "d",
    [],
    true,
    "Sloth: the SLO period in days."
);
series!(
    SLOTH_CURRENT_BURN,
    "slo:current_burn_rate:ratio",
    Gauge,
    "1",
    [],
    true,
    "Sloth: burn rate over 5 minutes."
);
series!(
    SLOTH_PERIOD_BURN,
    "slo:period_burn_rate:ratio",
    Gauge,
    "1",
    [],
    true,
    "Sloth: burn rate over the whole period."
);
series!(
    SLOTH_BUDGET_REMAINING,
    "slo:period_error_budget_remaining:ratio",
    Gauge,
    "1",
    [],
    true,
    "Sloth: 1 - period burn rate."
);
series!(
    SLOTH_INFO,
    "sloth_slo_info",
    Gauge,
    "1",
    ["sloth_mode", "sloth_version", "sloth_objective"],
    true,
    "Sloth: 1 for each SLO, labelled with its objective."
);

/// Every exported family.
pub const SERIES: &[SeriesDesc] = &[
    REQUESTS,
    ERRORS,
    LATENCY,
    LATENCY_QUANTILE,
    SUCCESS_RATIO,
    SLO_REQUESTS,
    SLO_OBJECTIVE,
    SLO_PERIOD,
    SLO_ERROR_RATIO,
    SLO_BURN_RATE,
    SLO_BUDGET_REMAINING,
    SLO_TIME_TO_EXHAUSTION,
    SLO_PERIOD_REQUESTS,
    SLO_ALERT_FIRING,
    SLO_ALERT_FACTOR,
    SLO_ALERT_MIN_EVENTS,
    SLOTH_SLI_ERROR,
    SLOTH_OBJECTIVE,
    SLOTH_ERROR_BUDGET,
    SLOTH_TIME_PERIOD,
    SLOTH_CURRENT_BURN,
    SLOTH_PERIOD_BURN,
    SLOTH_BUDGET_REMAINING,
    SLOTH_INFO,
];

/// Windows of the per-series quantile and success-ratio gauges.
pub const SERIES_WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(3600),
];

/// A label name as Prometheus accepts it: `service.name` becomes `service_name`.
pub fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Builds families in declaration order, dropping empty ones.
#[derive(Debug, Default)]
struct Families {
    by_name: BTreeMap<String, MetricFamily>,
    order: Vec<String>,
}

impl Families {
    fn push(&mut self, desc: &SeriesDesc, name_suffix: &str, point: Point) {
        let name = format!("{}{name_suffix}", desc.name);
        let fam = self.by_name.entry(name.clone()).or_insert_with(|| {
            self.order.push(name.clone());
            MetricFamily {
                name,
                help: desc.help.to_owned(),
                unit: desc.unit,
                kind: desc.kind,
                points: Vec::new(),
            }
        });
        fam.points.push(point);
    }

    fn finish(mut self, at: u64) -> MetricsSnapshot {
        let families = self
            .order
            .iter()
            .filter_map(|n| self.by_name.remove(n))
            .collect();
        MetricsSnapshot { at, families }
    }
}

fn point(
    mut labels: Vec<(String, String)>,
    service: Option<&str>,
    value: PointValue,
    start: u64,
) -> Point {
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    Point {
        labels,
        service: service.map(str::to_owned),
        value,
        start_time: start,
        exemplars: Vec::new(),
    }
}

fn with(labels: &[(String, String)], extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for (k, v) in labels {
        if !out.iter().any(|(ek, _)| ek == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

fn catalog_labels(
    catalog: &BTreeMap<String, CatalogEntry>,
    service: Option<&str>,
) -> Vec<(String, String)> {
    let Some(entry) = service.and_then(|s| catalog.get(s)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entry
        .labels
        .iter()
        .map(|(k, v)| (label_name(k), v.clone()))
        .collect();
    out.extend(entry.owner.iter().map(|o| ("owner".to_owned(), o.clone())));
    out.extend(entry.tier.iter().map(|t| ("tier".to_owned(), t.clone())));
    out
}

/// What [`build`] reads: the snapshots one step published.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The aggregator snapshot.
    pub series: &'a Snapshot,
    /// Cumulative counts per series.
    pub totals: &'a [std::sync::Arc<SeriesTotals>],
    /// The SLO snapshot.
    pub slos: &'a SloSnapshot,
    /// Cumulative good and total requests per SLO.
    pub slo_totals: &'a BTreeMap<String, (u64, u64)>,
    /// The service catalog (owner and tier labels).
    pub catalog: &'a BTreeMap<String, CatalogEntry>,
    /// When the process started (start time of SLO counters).
    pub started: u64,
}

/// The SLI series of one step's published results, named per `naming`.
pub fn build(inp: Inputs<'_>, naming: MetricNaming) -> MetricsSnapshot {
    let mut f = Families::default();
    let at = inp.series.taken_at().max(inp.slos.at);
    for (t, s) in inp.totals.iter().zip(series_data(inp)) {
        if t.over_limit {
            // A service refused SLOs (over `slo.discovery.max_services`) exports nothing, so
            // no number of service names can grow the exported series past the cap's size.
            continue;
        }
        let service = t
            .labels
            .iter()
            .find(|(k, _)| k == slipstream_aggregator::SERVICE_LABEL)
            .map(|(_, v)| v.as_str());
        let mut labels: Vec<(String, String)> = t
            .labels
            .iter()
            .map(|(k, v)| (label_name(k), v.clone()))
            .collect();
        labels.extend(catalog_labels(inp.catalog, service));
        let num = |v: f64| PointValue::Number(v);
        // The newest slot's example requests: the newest on the requests counter, the newest
        // bad one on the errors counter, all of them on the latency histogram.
        let ex = s.and_then(newest_exemplars);
        let mut requests = point(labels.clone(), service, num(t.total as f64), t.since);
        requests
            .exemplars
            .extend(ex.and_then(|e| e.iter().max_by_key(|x| x.end_unix_nanos)));
        f.push(&REQUESTS, "", requests);
        let mut errors = point(labels.clone(), service, num(t.bad as f64), t.since);
        errors.exemplars.extend(ex.and_then(|e| e.bad().next()));
        f.push(&ERRORS, "", errors);
        if t.total > 0 {
            let mut p = point(labels.clone(), service, latency(t), t.since);
            p.exemplars.extend(ex.iter().flat_map(|e| e.iter()));
            f.push(&LATENCY, "", p);
        }
        let Some(s) = s else { continue };
        for w in SERIES_WINDOWS {
            let stats = inp.series.window(s, w);
            let wl = format_duration(w);
            if let Some(r) = stats.success_ratio() {
                let l = with(&labels, &[("window", wl.clone())]);
                f.push(&SUCCESS_RATIO, "", point(l, service, num(r), at));
            }
            if let Some(qs) = stats.quantiles() {
                for (q, v) in QUANTILES.iter().zip(qs) {
                    let l = with(
                        &labels,
                        &[("quantile", q.to_string()), ("window", wl.clone())],
                    );
                    f.push(
                        &LATENCY_QUANTILE,
                        "",
                        point(l, service, num(v.as_secs_f64()), at),
                    );
                }
            }
        }
    }
    for slo in &inp.slos.slos {
        let totals = inp.slo_totals.get(&slo.name).copied().unwrap_or((0, 0));
        slo_families(&mut f, slo, totals, naming, inp.started, at);
    }
    f.finish(at)
}

/// The exemplars of the newest slot of `s` that has any.
fn newest_exemplars(s: &slipstream_aggregator::SeriesData) -> Option<&slipstream_core::Exemplars> {
    s.exemplar_slots().last().map(|(_, e)| *e)
}

/// The aggregator's series matching each totals entry (both are in id order).
fn series_data<'a>(
    inp: Inputs<'a>,
) -> impl Iterator<Item = Option<&'a slipstream_aggregator::SeriesData>> + 'a {
    let mut j = 0;
    let all = inp.series.series();
    inp.totals.iter().map(move |t| {
        while j < all.len() && all[j].id() < t.id {
            j += 1;
        }
        all.get(j).filter(|s| s.id() == t.id).map(|s| &**s)
    })
}

fn latency(t: &SeriesTotals) -> PointValue {
    const NS: f64 = 1e-9;
    let mut sum = 0.0;
    let buckets = t
        .histogram
        .iter()
        .map(|(b, n)| {
            let (lo, hi) = (bucket_low(b), bucket_high(b));
            sum += (lo as f64 + hi as f64) / 2.0 * NS * n as f64;
            // Bucket b holds [lo, hi] in whole nanoseconds: (lo - 1ns, hi] in seconds.
            (lo.saturating_sub(1) as f64 * NS, hi as f64 * NS, n)
        })
        .collect();
    PointValue::Histogram(HistogramValue {
        count: t.total,
        sum,
        buckets,
    })
}

fn slo_families(
    f: &mut Families,
    slo: &SloStatus,
    (good, total): (u64, u64),
    naming: MetricNaming,
    started: u64,
    at: u64,
) {
    let service = Some(slo.service.as_str());
    let mut base: Vec<(String, String)> = slo
        .labels
        .iter()
        .map(|(k, v)| (label_name(k), v.clone()))
        .collect();
    for (k, v) in [
        ("slo", slo.name.clone()),
        ("service", slo.service.clone()),
        ("sli", slo.sli.kind().to_owned()),
    ] {
        base.retain(|(bk, _)| bk != k);
        base.push((k.to_owned(), v));
    }
    let num = PointValue::Number;
    for (outcome, n) in [("good", good), ("bad", total - good)] {
        let l = with(&base, &[("outcome", outcome.to_owned())]);
        f.push(&SLO_REQUESTS, "", point(l, service, num(n as f64), started));
    }
    f.push(
        &SLO_OBJECTIVE,
        "",
        point(base.clone(), service, num(slo.objective), at),
    );
    let period = num(slo.period.nominal().as_secs_f64());
    f.push(&SLO_PERIOD, "", point(base.clone(), service, period, at));
    for w in &slo.windows {
        let wl = format_duration(w.window);
        if let Some(r) = w.error_ratio {
            let l = with(&base, &[("window", wl.clone())]);
            f.push(&SLO_ERROR_RATIO, "", point(l, service, num(r), at));
        }
        if let Some(b) = w.burn_rate {
            let l = with(&base, &[("window", wl)]);
            f.push(&SLO_BURN_RATE, "", point(l, service, num(b), at));
        }
    }
    if let Some(r) = slo.budget_remaining {
        f.push(
            &SLO_BUDGET_REMAINING,
            "",
            point(base.clone(), service, num(r), at),
        );
    }
    if let Some(t) = slo.time_to_exhaustion {
        let v = num(t.as_secs_f64());
        f.push(
            &SLO_TIME_TO_EXHAUSTION,
            "",
            point(base.clone(), service, v, at),
        );
    }
    let c = slo.period_counts;
    for (outcome, n) in [("good", (c.total - c.bad).max(0.0)), ("bad", c.bad)] {
        let l = with(&base, &[("outcome", outcome.to_owned())]);
        f.push(&SLO_PERIOD_REQUESTS, "", point(l, service, num(n), started));
    }
    for a in &slo.alerts {
        let mut row = vec![
            ("severity", a.row.severity.as_str().to_owned()),
            ("long_window", format_duration(a.row.long)),
            ("short_window", format_duration(a.row.short)),
        ];
        row.extend(a.row.kind_labels());
        let l = with(&base, &row);
        let v = num(if a.firing { 1.0 } else { 0.0 });
        f.push(&SLO_ALERT_FIRING, "", point(l.clone(), service, v, at));
        let factor = num(a.row.factor);
        f.push(&SLO_ALERT_FACTOR, "", point(l.clone(), service, factor, at));
        let min = num(a.min_events as f64);
        f.push(&SLO_ALERT_MIN_EVENTS, "", point(l, service, min, at));
    }
    if naming == MetricNaming::Sloth {
        sloth_families(f, slo, at);
    }
}

fn period_days(p: Period) -> f64 {
    p.nominal().as_secs_f64() / 86_400.0
}

fn sloth_families(f: &mut Families, slo: &SloStatus, at: u64) {
    let service = Some(slo.service.as_str());
    let base = vec![
        (
            "sloth_id".to_owned(),
            format!("{}-{}", slo.service, slo.name),
        ),
        ("sloth_service".to_owned(), slo.service.clone()),
        ("sloth_slo".to_owned(), slo.name.clone()),
    ];
    let num = PointValue::Number;
    let budget = 1.0 - slo.objective;
    for w in &slo.windows {
        if let Some(r) = w.error_ratio {
            let wl = format_duration(w.window);
            let l = with(&base, &[("sloth_window", wl.clone())]);
            f.push(&SLOTH_SLI_ERROR, &wl, point(l, service, num(r), at));
        }
    }
    let period_ratio = slo.period_counts.error_ratio();
    if let Some(r) = period_ratio {
        let wl = format_duration(slo.period.nominal());
        if slo.window(slo.period.nominal()).is_none() {
            let l = with(&base, &[("sloth_window", wl.clone())]);
            f.push(&SLOTH_SLI_ERROR, &wl, point(l, service, num(r), at));
        }
    }
    f.push(
        &SLOTH_OBJECTIVE,
        "",
        point(base.clone(), service, num(slo.objective), at),
    );
    f.push(
        &SLOTH_ERROR_BUDGET,
        "",
        point(base.clone(), service, num(budget), at),
    );
    let days = num(period_days(slo.period));
    f.push(
        &SLOTH_TIME_PERIOD,
        "",
        point(base.clone(), service, days, at),
    );
    if let Some(b) = slo
        .window(Duration::from_secs(300))
        .and_then(|w| w.burn_rate)
    {
        f.push(
            &SLOTH_CURRENT_BURN,
            "",
            point(base.clone(), service, num(b), at),
        );
    }
    if let Some(r) = period_ratio {
        let burn = r / budget;
        f.push(
            &SLOTH_PERIOD_BURN,
            "",
            point(base.clone(), service, num(burn), at),
        );
        let rem = num(1.0 - burn);
        f.push(
            &SLOTH_BUDGET_REMAINING,
            "",
            point(base.clone(), service, rem, at),
        );
    }
    let info = with(
        &base,
        &[
            ("sloth_mode", "slipstream".to_owned()),
            ("sloth_version", env!("CARGO_PKG_VERSION").to_owned()),
            ("sloth_objective", format!("{}", slo.objective * 100.0)),
        ],
    );
    f.push(&SLOTH_INFO, "", point(info, service, num(1.0), at));
}

/// The event every event exporter sends for an engine alert event, its example requests
/// without links ([`burn_rate_event_linked`]).
pub fn burn_rate_event(e: &AlertEvent, objective: f64) -> BurnRateEvent {
    burn_rate_event_linked(e, objective, None)
}

/// The event every event exporter sends for an engine alert event: its example requests
/// linked through the trace URL template `trace_url` (`exemplars.trace_url`), and the
/// attribute values its bad requests share.
pub fn burn_rate_event_linked(
    e: &AlertEvent,
    objective: f64,
    trace_url: Option<&str>,
) -> BurnRateEvent {
    let long = format_duration(e.row.long);
    let short = format_duration(e.row.short);
    let mut labels = e.labels.clone();
    labels
        .entry("alertname".to_owned())
        .or_insert_with(|| e.row.kind.alert_name().to_owned());
    labels.insert("long_window".to_owned(), long);
    labels.insert("short_window".to_owned(), short);
    BurnRateEvent {
        state: match e.state {
            AlertState::Firing => EventState::Firing,
            AlertState::Resolved => EventState::Resolved,
        },
        slo: e.slo.clone(),
        service: e.service.clone(),
        severity: e.severity.as_str().to_owned(),
        long_window: e.row.long,
        short_window: e.row.short,
        factor: e.row.factor,
        objective,
        long_burn_rate: e.long_burn_rate,
        short_burn_rate: e.short_burn_rate,
        budget_remaining: e.budget_remaining,
        versions: e.versions.clone(),
        newest_version: e.newest_version.as_ref().map(|(v, _)| v.clone()),
        newest_version_since: e.newest_version.as_ref().map(|(_, t)| *t),
        repeat: e.repeat,
        at: e.at,
        firing_since: e.firing_since,
        labels,
        annotations: e.annotations.clone(),
        example_traces: e
            .exemplars
            .iter()
            .map(|x| ExampleTrace::linked(x, trace_url))
            .collect(),
        bad_requests_share: e.bad_requests_share.clone(),
    }
}
