//! `slo`: SLOs, the service catalog, SLO templates, alert policies and silences.
//!
//! ```yaml
//! slo:
//!   evaluation_interval: 10s
//!   catalog:
//!     checkout:
//!       owner: team-payments
//!       tier: tier-1
//!       runbook_url: https://runbooks.example/checkout
//!       links: { dashboard: https://grafana.example/d/checkout }
//!   templates:
//!     availability: { objective: 99.9 }
//!     latency: { objective: 99, threshold: 1s }
//!   objectives:
//!     - name: checkout-availability
//!       service: checkout
//!       sli: { kind: availability }
//!       objective: 99.9
//!       period: 30d
//!     - name: checkout-latency
//!       service: checkout
//!       match_labels: { http.route: /api/pay }
//!       sli: { kind: latency, threshold: 300ms }
//!       objective: 99
//!       period: calendar_month
//!       alerts:
//!         - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4 }
//!         - { severity: ticket, long_window: 3d, short_window: 6h, budget_percent: 10 }
//!         - { severity: page, exhausts_within: 4h, window: 1h }
//!         - { severity: ticket, budget_drop_percent: 10, within: 2h }
//!   silences:
//!     - service: checkout
//!       kind: maintenance
//!       starts_at: 2025-01-04T22:00:00Z
//!       ends_at: 2025-01-05T02:00:00Z
//!       comment: database migration
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Errors;

/// Default time between two evaluations of every SLO.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(10);
/// Default rolling period of an SLO: 30 days.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30 * 86_400);
/// Default minimum number of requests a window must hold before its burn rate may fire an
/// alert.
pub const DEFAULT_MIN_EVENTS: u64 = 10;
/// Default objective of the templated availability SLO, in percent.
pub const DEFAULT_TEMPLATE_AVAILABILITY_OBJECTIVE: f64 = 99.9;
/// Default objective of the templated latency SLO, in percent.
pub const DEFAULT_TEMPLATE_LATENCY_OBJECTIVE: f64 = 99.0;
/// Default latency threshold of the templated latency SLO.
pub const DEFAULT_TEMPLATE_LATENCY_THRESHOLD: Duration = Duration::from_secs(1);
/// The longest period an SLO may have.
pub const MAX_PERIOD: Duration = Duration::from_secs(400 * 86_400);
/// The shortest window an alert policy may use (the window store's finest granularity).
pub const MIN_WINDOW: Duration = Duration::from_secs(60);
/// Default most services (without an explicit objective) that get templated SLOs at once.
pub const DEFAULT_DISCOVERY_MAX_SERVICES: usize = 2_000;
/// The largest `slo.discovery.max_services` accepted.
pub const MAX_DISCOVERY_MAX_SERVICES: usize = 100_000;
/// Default idle time after which a discovered service's templated SLOs are removed: the
/// longest window of the default alert policy (3d), so nothing an alert row could still
/// read is lost, and longer than a weekend without traffic.
pub const DEFAULT_DISCOVERY_EXPIRE_AFTER: Duration = Duration::from_secs(72 * 3600);
/// Default idle time after which a discovered service whose traffic lasted less than this
/// (a name seen once, say) loses its templated SLOs.
pub const DEFAULT_DISCOVERY_EXPIRE_TRANSIENT_AFTER: Duration = Duration::from_secs(3600);

/// `slo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Time between two evaluations of every SLO: burn rates, budgets and alert states are
    /// recomputed, and alert events emitted, this often.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// While an alert keeps firing, its event is sent again this often; `null` sends one event
    /// per transition only (firing, resolved).
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// Minimum number of requests both windows of an alert policy row must hold before the row
    /// may fire, so a low-traffic service does not page on one failure. An objective may
    /// override it. 0 turns the guard off.
    pub min_events: u64,
    /// The service catalog, keyed by `service.name`: who owns each service and where its
    /// runbook is. Services seen in traffic but missing here are reported by the status API and
    /// the `slipstream_slo_services_uncataloged` self-metric.
    pub catalog: BTreeMap<String, CatalogEntry>,
    /// SLOs created for every service seen in traffic that has no explicit objective.
    pub templates: TemplatesConfig,
    /// Which discovered services get templated SLOs, and for how long: a cap on their
    /// number and the idle time after which they go.
    pub discovery: DiscoveryConfig,
    /// The explicit SLOs.
    pub objectives: Vec<ObjectiveConfig>,
    /// Silences and maintenance windows: matching alert events are not sent (they are counted),
    /// while SLIs and budgets keep being computed.
    pub silences: Vec<SilenceConfig>,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            repeat_interval: None,
            min_events: DEFAULT_MIN_EVENTS,
            catalog: BTreeMap::new(),
            templates: TemplatesConfig::default(),
            discovery: DiscoveryConfig::default(),
            objectives: Vec::new(),
            silences: Vec::new(),
        }
    }
}

/// `slo.discovery`: bounds on the services discovered in traffic (those without an explicit
/// objective). Services with an explicit objective are never capped nor expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Most discovered services that get templated SLOs (and are tracked as seen) at once.
    /// A service first seen while this many hold templated SLOs gets none: it is listed as
    /// over the limit by the status API and counted
    /// (`slipstream_slo_services_refused_total`); it gets its SLOs once an expired service
    /// makes room and it is seen again. Only services holding an ordinary series count: one
    /// seen only in an aggregator overflow series gets nothing.
    pub max_services: usize,
    /// A discovered service with no traffic for this long loses its templated SLOs and their
    /// saved state (a firing alert keeps them until it resolves). The budget of a service
    /// that comes back starts afresh.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
    /// A discovered service whose traffic lasted less than this (first to last request)
    /// goes once idle this long, so names seen once make room within the hour instead of
    /// holding a place for `expire_after`. `0s` turns this rule off.
    #[serde(with = "humantime_serde")]
    pub expire_transient_after: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            max_services: DEFAULT_DISCOVERY_MAX_SERVICES,
            expire_after: DEFAULT_DISCOVERY_EXPIRE_AFTER,
            expire_transient_after: DEFAULT_DISCOVERY_EXPIRE_TRANSIENT_AFTER,
        }
    }
}

impl DiscoveryConfig {
    fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            (1..=MAX_DISCOVERY_MAX_SERVICES).contains(&self.max_services),
            format!("{path}.max_services"),
            format!("expected 1 to {MAX_DISCOVERY_MAX_SERVICES} services"),
        );
        errs.check(
            self.expire_after >= MIN_WINDOW,
            format!("{path}.expire_after"),
            "expected at least 1m",
        );
        errs.check(
            self.expire_transient_after <= self.expire_after,
            format!("{path}.expire_transient_after"),
            "expected at most `expire_after` (or 0s to turn it off)",
        );
    }
}

/// `slo.catalog.<service>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogEntry {
    /// The owning team; becomes the `owner` label of the service's SLI series and alerts.
    pub owner: Option<String>,
    /// Criticality tier (`tier-1`, `critical`, ...); becomes the `tier` label.
    pub tier: Option<String>,
    /// Runbook for the service; the `runbook_url` annotation of its alerts unless the SLO sets
    /// its own.
    pub runbook_url: Option<String>,
    /// Further links (dashboard, repository, on-call schedule), by name; each becomes an
    /// annotation of the service's alerts.
    pub links: BTreeMap<String, String>,
    /// Extra labels put on every SLI series and alert of the service.
    pub labels: BTreeMap<String, String>,
}

/// `slo.templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// The availability SLO given to every discovered service without an explicit objective,
    /// named `<service>-availability`; `null` turns it off.
    pub availability: Option<TemplateConfig>,
    /// The latency SLO given to every discovered service without an explicit objective, named
    /// `<service>-latency`; `threshold` is required; `null` turns it off.
    pub latency: Option<TemplateConfig>,
}

impl Default for TemplatesConfig {
    fn default() -> Self {
        TemplatesConfig {
            availability: Some(TemplateConfig {
                objective: DEFAULT_TEMPLATE_AVAILABILITY_OBJECTIVE,
                ..TemplateConfig::default()
            }),
            latency: Some(TemplateConfig {
                objective: DEFAULT_TEMPLATE_LATENCY_OBJECTIVE,
                threshold: Some(DEFAULT_TEMPLATE_LATENCY_THRESHOLD),
                ..TemplateConfig::default()
            }),
        }
    }
}

/// `slo.templates.availability` and `slo.templates.latency`: an objective without a name and
/// a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Target share of good requests, in percent (`99.9`).
    pub objective: f64,
    /// Latency templates only: a request is good when it took at most this long.
    #[serde(with = "humantime_serde")]
    pub threshold: Option<Duration>,
    /// The SLO period: a duration (`30d`, `28d`, `7d`) for a rolling window, or
    /// `calendar_month`.
    pub period: Period,
    /// Alert policy rows; `null` (the default) means the standard multi-window table scaled to
    /// the period, `[]` means no alerts.
    pub alerts: Option<Vec<AlertPolicyConfig>>,
    /// Overrides `slo.min_events`.
    pub min_events: Option<u64>,
    /// Extra labels on the SLI series and alerts.
    pub labels: BTreeMap<String, String>,
    /// Alert annotations; `{{service}}` in them is replaced by the service name.
    pub annotations: AnnotationsConfig,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            objective: DEFAULT_TEMPLATE_AVAILABILITY_OBJECTIVE,
            threshold: None,
            period: Period::default(),
            alerts: None,
            min_events: None,
            labels: BTreeMap::new(),
            annotations: AnnotationsConfig::default(),
        }
    }
}

/// `slo.objectives[i]`: one SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Unique name, used as the `slo` label (`checkout-availability`): letters, digits, `-`,
    /// `_`, `.` and `:`.
    pub name: String,
    /// The `service.name` whose requests this SLO counts.
    pub service: String,
    /// Further selection on the series' dimension values (configured in the aggregator), e.g.
    /// `{ http.route: /api/pay }`; every entry must equal. Empty selects all of the service.
    pub match_labels: BTreeMap<String, String>,
    /// What makes a request good.
    pub sli: SliConfig,
    /// Target share of good requests, in percent (`99.9`), strictly between 0 and 100.
    pub objective: f64,
    /// The SLO period: a duration (`30d`, `28d`, `7d`) for a rolling window, or
    /// `calendar_month` (budget resets on the first of each month, UTC).
    pub period: Period,
    /// Alert policy rows; `null` (the default) means the standard multi-window table scaled to
    /// the period (page 1h/5m at 2% of the budget, page 6h/30m at 5%, ticket 1d/2h and 3d/6h at
    /// 10%), `[]` means no alerts.
    pub alerts: Option<Vec<AlertPolicyConfig>>,
    /// Overrides `slo.min_events`.
    pub min_events: Option<u64>,
    /// Extra labels on the SLI series and alerts.
    pub labels: BTreeMap<String, String>,
    /// Alert annotations.
    pub annotations: AnnotationsConfig,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        ObjectiveConfig {
            name: String::new(),
            service: String::new(),
            match_labels: BTreeMap::new(),
            sli: SliConfig::Availability,
            objective: 0.0,
            period: Period::default(),
            alerts: None,
            min_events: None,
            labels: BTreeMap::new(),
            annotations: AnnotationsConfig::default(),
        }
    }
}

/// `sli`: the kind of indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SliConfig {
    /// `{ kind: availability }`: a request is bad when its outcome is an error (span status,
    /// HTTP 5xx, failing gRPC codes).
    #[default]
    Availability,
    /// `{ kind: latency, threshold: 300ms }`: a request is good when it took at most
    /// `threshold`.
    Latency {
        /// The longest duration a good request may take.
        #[serde(with = "humantime_serde")]
        threshold: Duration,
    },
}

/// The period over which an SLO's error budget is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last `d` (`30d`, `28d`, `7d`, any duration of at least one hour).
    Rolling(Duration),
    /// From 00:00 UTC on the first day of the current month (`calendar_month`).
    CalendarMonth,
}

impl Default for Period {
    fn default() -> Self {
        Period::Rolling(DEFAULT_PERIOD)
    }
}

impl Period {
    /// The nominal length: the rolling duration, or 30 days for a calendar month (used to
    /// scale alert factors and budgets).
    pub fn nominal(self) -> Duration {
        match self {
            Period::Rolling(d) => d,
            Period::CalendarMonth => Duration::from_secs(30 * 86_400),
        }
    }

    /// The longest span of history the period can reach back: the rolling duration, or 31
    /// days for a calendar month.
    pub fn longest(self) -> Duration {
        match self {
            Period::Rolling(d) => d,
            Period::CalendarMonth => Duration::from_secs(31 * 86_400),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Period::Rolling(d) => s.collect_str(&humantime::format_duration(*d)),
            Period::CalendarMonth => s.serialize_str("calendar_month"),
        }
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Period;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 30d, 28d or 7d, or `calendar_month`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Period, E> {
                if v.trim() == "calendar_month" {
                    return Ok(Period::CalendarMonth);
                }
                humantime::parse_duration(v)
                    .map(Period::Rolling)
                    .map_err(|e| {
                        E::custom(format!(
                            "`{v}` is not a period ({e}); expected a duration such as 30d, 28d \
                             or 7d, or `calendar_month`"
                        ))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Wake someone up now.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl Severity {
    /// `page` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// `alerts[i]`: one alert row, of one of three kinds:
///
/// - multi-window burn rate: `long_window`, `short_window` and `burn_rate` or
///   `budget_percent`;
/// - time to exhaustion: `exhausts_within` (and optionally `window`);
/// - budget drop: `budget_drop_percent` and `within`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicyConfig {
    /// `page` or `ticket`. A firing page holds back the tickets of the same SLO.
    pub severity: Severity,
    /// Burn-rate rows: the long window (e.g. `1h`): it must burn above the factor, so one
    /// blip cannot fire.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "is_zero")]
    pub long_window: Duration,
    /// Burn-rate rows: the short window (e.g. `5m`): it must burn above the factor too, and
    /// the alert resolves as soon as it no longer does.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "is_zero")]
    pub short_window: Duration,
    /// Burn-rate rows: the burn-rate factor both windows must exceed. Give this or
    /// `budget_percent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<f64>,
    /// Burn-rate rows: the share of the period's error budget, in percent, that burning for
    /// the whole long window would consume; the factor is
    /// `budget_percent / 100 * period / long_window` (2% over 1h of 30 days gives 14.4).
    /// Give this or `burn_rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<f64>,
    /// Time-to-exhaustion rows: fire while the budget left runs out within this long at the
    /// burn rate of `window`: `burn_rate(window) > max(budget_remaining, 0) * period /
    /// exhausts_within` (so also while the budget is spent and `window` holds bad requests);
    /// resolve as soon as that no longer holds.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub exhausts_within: Option<Duration>,
    /// Time-to-exhaustion rows: the window whose burn rate is the current rate (default
    /// `1h`, the window of the reported time to exhaustion).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// Budget-drop rows: fire while the bad requests of the last `within` are at least this
    /// share, in percent, of the period's error budget in requests:
    /// `bad(within) >= budget_drop_percent / 100 * (1 - objective) * total(period)`;
    /// resolve as soon as they are fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_drop_percent: Option<f64>,
    /// Budget-drop rows: the window the bad requests are counted over (e.g. `2h`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub within: Option<Duration>,
}

fn is_zero(d: &Duration) -> bool {
    d.is_zero()
}

/// The window of a time-to-exhaustion row that gives none: one hour.
pub const DEFAULT_EXHAUSTION_WINDOW: Duration = Duration::from_secs(3600);

/// The kind of an alert row, as its fields give it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlertRowKind {
    /// `long_window`, `short_window`, `burn_rate` or `budget_percent`.
    BurnRate,
    /// `exhausts_within` and `window`.
    Exhaustion {
        /// Fire when the budget runs out within this long.
        within: Duration,
        /// The window of the current burn rate.
        window: Duration,
    },
    /// `budget_drop_percent` and `within`.
    BudgetDrop {
        /// The share of the period's budget, in percent.
        percent: f64,
        /// The window the bad requests are counted over.
        within: Duration,
    },
}

impl AlertPolicyConfig {
    /// The row's kind: a budget drop when `budget_drop_percent` is given, time to exhaustion
    /// when `exhausts_within` is, otherwise a burn-rate row (validation makes sure a row
    /// holds the fields of one kind only).
    pub fn kind(&self) -> AlertRowKind {
        if let Some(percent) = self.budget_drop_percent {
            AlertRowKind::BudgetDrop {
                percent,
                within: self.within.unwrap_or_default(),
            }
        } else if let Some(within) = self.exhausts_within {
            AlertRowKind::Exhaustion {
                within,
                window: self.window.unwrap_or(DEFAULT_EXHAUSTION_WINDOW),
            }
        } else {
            AlertRowKind::BurnRate
        }
    }
}

/// `annotations`: texts that travel with an SLO's alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AnnotationsConfig {
    /// One line saying what is wrong.
    pub summary: Option<String>,
    /// What it means for users and what to look at first.
    pub description: Option<String>,
    /// The runbook; overrides the catalog's `runbook_url` of the service.
    pub runbook_url: Option<String>,
}

/// What a silence is for; it becomes the `reason` label of
/// `slipstream_slo_suppressed_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SilenceKind {
    /// An ad-hoc silence (someone is already on it).
    #[default]
    Silence,
    /// A planned maintenance window.
    Maintenance,
}

impl SilenceKind {
    /// `silence` or `maintenance`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceKind::Silence => "silence",
            SilenceKind::Maintenance => "maintenance",
        }
    }
}

/// `slo.silences[i]`: alert events that are not sent while it is active. At least one of
/// `slo`, `service` and `severity` must be given; every given one must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceConfig {
    /// `silence` or `maintenance`.
    pub kind: SilenceKind,
    /// Only events of this SLO (by name).
    pub slo: Option<String>,
    /// Only events of SLOs of this service.
    pub service: Option<String>,
    /// Only events of this severity.
    pub severity: Option<Severity>,
    /// Active from (RFC 3339, e.g. `2025-01-04T22:00:00Z`); `null` means since always.
    #[serde(with = "humantime_serde")]
    pub starts_at: Option<SystemTime>,
    /// Active until (RFC 3339), exclusive; `null` means until removed.
    #[serde(with = "humantime_serde")]
    pub ends_at: Option<SystemTime>,
    /// Why, and who to ask.
    pub comment: String,
}

// === validation ===

impl SilenceConfig {
    /// Every problem of this silence (as given to the admin API), with paths under `path`.
    pub fn errors(&self, path: &str) -> Vec<crate::ConfigError> {
        let mut errs = Errors::default();
        self.validate(path, &mut errs);
        errs.into_vec()
    }

    fn validate(&self, p: &str, errs: &mut Errors) {
        errs.check(
            self.slo.is_some() || self.service.is_some() || self.severity.is_some(),
            p,
            "expected at least one of `slo`, `service` and `severity` (a silence of \
             everything is a disabled alerting)",
        );
        if let (Some(a), Some(b)) = (self.starts_at, self.ends_at) {
            errs.check(
                b > a,
                format!("{p}.ends_at"),
                "expected a time after starts_at",
            );
        }
    }
}

fn check_objective(errs: &mut Errors, path: &str, v: f64) {
    errs.check(
        v.is_finite() && v > 0.0 && v < 100.0,
        path,
        format!("expected a percentage strictly between 0 and 100 (e.g. 99.9), got {v}"),
    );
}

fn check_url(errs: &mut Errors, path: &str, v: &str) {
    errs.check(
        v.starts_with("http://") || v.starts_with("https://"),
        path,
        format!("`{v}` is not a URL (expected http:// or https://...)"),
    );
}

fn check_period(errs: &mut Errors, path: &str, p: Period) {
    if let Period::Rolling(d) = p {
        errs.check(
            d >= Duration::from_secs(3600) && d <= MAX_PERIOD,
            path,
            format!(
                "expected a period between 1h and 400d, got {}",
                humantime::format_duration(d)
            ),
        );
    }
}

/// A window of an alert row: a whole number of minutes, at least 1m, within the period.
fn check_row_window(errs: &mut Errors, path: String, w: Duration, period: Period) {
    errs.check(
        w >= MIN_WINDOW && w.as_nanos().is_multiple_of(MIN_WINDOW.as_nanos()),
        path.clone(),
        "expected a whole number of minutes, at least 1m",
    );
    errs.check(
        w <= period.longest(),
        path,
        "expected a window no longer than the SLO period",
    );
}

fn check_alerts(errs: &mut Errors, path: &str, alerts: &[AlertPolicyConfig], period: Period) {
    for (i, a) in alerts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let burn = !a.long_window.is_zero()
            || !a.short_window.is_zero()
            || a.burn_rate.is_some()
            || a.budget_percent.is_some();
        let exhaustion = a.exhausts_within.is_some() || a.window.is_some();
        let drop = a.budget_drop_percent.is_some() || a.within.is_some();
        if usize::from(burn) + usize::from(exhaustion) + usize::from(drop) > 1 {
            errs.push(
                p,
                "expected the fields of one kind of row: `long_window`, `short_window` and \
                 `burn_rate` or `budget_percent` (burn rate), `exhausts_within` and `window` \
                 (time to exhaustion), or `budget_drop_percent` and `within` (budget drop)",
            );
            continue;
        }
        if exhaustion {
            match a.exhausts_within {
                Some(t) => errs.check(
                    t >= MIN_WINDOW && t <= period.longest(),
                    format!("{p}.exhausts_within"),
                    "expected a time of at least 1m and at most the SLO period",
                ),
                None => errs.push(
                    format!("{p}.exhausts_within"),
                    "expected the time within which the budget would run out (e.g. 4h)",
                ),
            }
            if let Some(w) = a.window {
                check_row_window(errs, format!("{p}.window"), w, period);
            }
            continue;
        }
        if drop {
            match a.budget_drop_percent {
                Some(b) => errs.check(
                    b.is_finite() && b > 0.0 && b <= 100.0,
                    format!("{p}.budget_drop_percent"),
                    format!("expected a percentage above 0 and at most 100, got {b}"),
                ),
                None => errs.push(
                    format!("{p}.budget_drop_percent"),
                    "expected the share of the budget, in percent, that fires (e.g. 10)",
                ),
            }
            match a.within {
                Some(w) => check_row_window(errs, format!("{p}.within"), w, period),
                None => errs.push(
                    format!("{p}.within"),
                    "expected the window the budget drop is counted over (e.g. 2h)",
                ),
            }
            continue;
        }
        errs.check(
            a.short_window >= MIN_WINDOW && a.short_window.as_nanos() % MIN_WINDOW.as_nanos() == 0,
            format!("{p}.short_window"),
            "expected a whole number of minutes, at least 1m",
        );
        errs.check(
            a.long_window > a.short_window,
            format!("{p}.long_window"),
            "expected a long window longer than the short window",
        );
        errs.check(
            a.long_window.as_nanos() % MIN_WINDOW.as_nanos() == 0,
            format!("{p}.long_window"),
            "expected a whole number of minutes",
        );
        errs.check(
            a.long_window <= period.longest(),
            format!("{p}.long_window"),
            "expected a long window no longer than the SLO period",
        );
        match (a.burn_rate, a.budget_percent) {
            (Some(f), None) => errs.check(
                f.is_finite() && f > 0.0,
                format!("{p}.burn_rate"),
                format!("expected a burn-rate factor above 0, got {f}"),
            ),
            (None, Some(b)) => errs.check(
                b.is_finite() && b > 0.0 && b <= 100.0,
                format!("{p}.budget_percent"),
                format!("expected a percentage above 0 and at most 100, got {b}"),
            ),
            _ => errs.push(
                p,
                "expected exactly one of `burn_rate` (a factor such as 14.4) and \
                 `budget_percent` (a share of the budget such as 2)",
            ),
        }
    }
}

fn check_annotations(errs: &mut Errors, path: &str, a: &AnnotationsConfig) {
    if let Some(u) = &a.runbook_url {
        check_url(errs, &format!("{path}.runbook_url"), u);
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

impl TemplateConfig {
    fn validate(&self, path: &str, errs: &mut Errors, latency: bool) {
        check_objective(errs, &format!("{path}.objective"), self.objective);
        check_period(errs, &format!("{path}.period"), self.period);
        match (latency, self.threshold) {
            (true, None) => errs.push(
                format!("{path}.threshold"),
                "expected a latency threshold such as 300ms",
            ),
            (true, Some(t)) => errs.check(
                !t.is_zero(),
                format!("{path}.threshold"),
                "expected a threshold above 0",
            ),
            (false, Some(_)) => errs.push(
                format!("{path}.threshold"),
                "an availability template takes no threshold",
            ),
            (false, None) => {}
        }
        if let Some(a) = &self.alerts {
            check_alerts(errs, &format!("{path}.alerts"), a, self.period);
        }
        check_annotations(errs, &format!("{path}.annotations"), &self.annotations);
    }
}

impl SloConfig {
    /// Validates this section on its own, as `Config::validate` does, with paths under `slo`.
    pub fn errors(&self) -> Vec<crate::ConfigError> {
        let mut errs = Errors::default();
        self.validate("slo", &mut errs);
        errs.into_vec()
    }

    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            !self.evaluation_interval.is_zero()
                && self.evaluation_interval <= Duration::from_secs(300),
            format!("{path}.evaluation_interval"),
            "expected an interval above 0 and at most 5m",
        );
        if let Some(r) = self.repeat_interval {
            errs.check(
                r >= self.evaluation_interval,
                format!("{path}.repeat_interval"),
                "expected at least the evaluation interval, or null for no repeats",
            );
        }
        for (service, c) in &self.catalog {
            let p = format!("{path}.catalog.{service}");
            errs.check(
                !service.trim().is_empty(),
                p.clone(),
                "expected a service name",
            );
            if let Some(u) = &c.runbook_url {
                check_url(errs, &format!("{p}.runbook_url"), u);
            }
            for (k, u) in &c.links {
                check_url(errs, &format!("{p}.links.{k}"), u);
            }
        }
        if let Some(t) = &self.templates.availability {
            t.validate(&format!("{path}.templates.availability"), errs, false);
        }
        if let Some(t) = &self.templates.latency {
            t.validate(&format!("{path}.templates.latency"), errs, true);
        }
        self.discovery.validate(&format!("{path}.discovery"), errs);
        let mut names = BTreeSet::new();
        for (i, o) in self.objectives.iter().enumerate() {
            let p = format!("{path}.objectives[{i}]");
            if !valid_name(&o.name) {
                errs.push(
                    format!("{p}.name"),
                    format!(
                        "`{}` is not an SLO name (expected letters, digits, `-`, `_`, `.`, `:`)",
                        o.name
                    ),
                );
            } else if !names.insert(o.name.as_str()) {
                errs.push(
                    format!("{p}.name"),
                    format!("`{}` is already the name of another objective", o.name),
                );
            }
            errs.check(
                !o.service.trim().is_empty(),
                format!("{p}.service"),
                "expected the service.name the SLO is about",
            );
            if let SliConfig::Latency { threshold } = o.sli {
                errs.check(
                    !threshold.is_zero(),
                    format!("{p}.sli.threshold"),
                    "expected a threshold above 0",
                );
            }
            check_objective(errs, &format!("{p}.objective"), o.objective);
            check_period(errs, &format!("{p}.period"), o.period);
            if let Some(a) = &o.alerts {
                check_alerts(errs, &format!("{p}.alerts"), a, o.period);
            }
            check_annotations(errs, &format!("{p}.annotations"), &o.annotations);
        }
        for (i, s) in self.silences.iter().enumerate() {
            s.validate(&format!("{path}.silences[{i}]"), errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn discovery_bounds_are_validated_with_their_paths() {
        let yaml = "slo:\n  discovery: { max_services: 0, expire_after: 30s, expire_transient_after: 1h }\n";
        let err = Config::from_yaml(yaml).unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "slo.discovery.max_services",
                "slo.discovery.expire_after",
                "slo.discovery.expire_transient_after",
            ]
        );
        let c = Config::from_yaml("slo:\n  discovery: { expire_transient_after: 0s }\n").unwrap();
        assert_eq!(c.slo.discovery.max_services, DEFAULT_DISCOVERY_MAX_SERVICES);
        assert_eq!(c.slo.discovery.expire_after, DEFAULT_DISCOVERY_EXPIRE_AFTER);
        assert!(c.slo.discovery.expire_transient_after.is_zero());
    }
}
