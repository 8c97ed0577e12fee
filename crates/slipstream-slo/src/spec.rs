//! SLO specs: what the engine evaluates, resolved from the configuration (explicit objectives
//! and templates) with the default alert policy filled in.

use std::collections::BTreeMap;
use std::time::Duration;

use slipstream_config::slo::{
    AlertPolicyConfig, AlertRowKind, AnnotationsConfig, CatalogEntry, ObjectiveConfig, Period,
    Severity, SliConfig, TemplateConfig,
};
use slipstream_core::export::format_duration;

use crate::window::Counts;

/// The default multi-window table for a 30-day period: severity, long window, short window,
/// share of the budget spent when it fires. Factors are `share * period / long`.
pub const DEFAULT_POLICY: [(Severity, Duration, Duration, f64); 4] = [
    (
        Severity::Page,
        Duration::from_secs(3600),
        Duration::from_secs(300),
        0.02,
    ),
    (
        Severity::Page,
        Duration::from_secs(6 * 3600),
        Duration::from_secs(1800),
        0.05,
    ),
    (
        Severity::Ticket,
        Duration::from_secs(86_400),
        Duration::from_secs(7200),
        0.10,
    ),
    (
        Severity::Ticket,
        Duration::from_secs(3 * 86_400),
        Duration::from_secs(6 * 3600),
        0.10,
    ),
];

/// The windows every SLO reports in its snapshot, besides those of its alert policy (the
/// Sloth set), as far as the period reaches.
pub const REPORTED_WINDOWS: [Duration; 7] = [
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(86_400),
    Duration::from_secs(3 * 86_400),
];

/// The window whose burn rate is "the current burn rate" for the time to budget exhaustion.
pub const CURRENT_BURN_WINDOW: Duration = Duration::from_secs(3600);

/// What makes a request good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sli {
    /// Good unless the outcome is an error.
    Availability,
    /// Good when `end - start <= threshold`.
    Latency {
        /// The longest duration of a good request.
        threshold: Duration,
    },
}

impl Sli {
    /// `availability` or `latency`.
    pub fn kind(self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::Latency { .. } => "latency",
        }
    }
}

impl From<SliConfig> for Sli {
    fn from(c: SliConfig) -> Sli {
        match c {
            SliConfig::Availability => Sli::Availability,
            SliConfig::Latency { threshold } => Sli::Latency { threshold },
        }
    }
}

/// What a policy row compares, besides its windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowKind {
    /// Multi-window burn rate: both windows burn above the factor; resolved when the short
    /// window no longer does.
    BurnRate,
    /// Time to exhaustion: the budget left runs out within `within` at the burn rate of the
    /// row's window (`long`, equal to `short`). Fires while `burn_rate(window) > factor *
    /// max(budget_remaining, 0)`, the factor being `period / within` (the burn rate that
    /// spends a whole budget in `within`): with budget left, while `budget_remaining *
    /// period / burn_rate < within`; once the budget is spent, while the window holds bad
    /// requests. Resolved as soon as that no longer holds.
    Exhaustion {
        /// The time within which the budget would run out.
        within: Duration,
    },
    /// Budget drop: the bad requests of the row's window (`long`, equal to `short`) are at
    /// least `percent` of the period's error budget in requests, `(1 - objective) *
    /// total(period)` (the budget that `budget_remaining` counts down). Resolved as soon as
    /// they are fewer. The factor is the burn rate that drops as much with steady traffic:
    /// `percent / 100 * period / window`.
    BudgetDrop {
        /// The share of the budget, in percent.
        percent: f64,
    },
}

impl RowKind {
    /// `burn_rate`, `exhaustion` or `budget_drop`.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::BurnRate => "burn_rate",
            RowKind::Exhaustion { .. } => "exhaustion",
            RowKind::BudgetDrop { .. } => "budget_drop",
        }
    }

    /// The `alertname` of the row's alerts (slipstream's events and the generated rules).
    pub fn alert_name(self) -> &'static str {
        match self {
            RowKind::BurnRate => ALERT_NAME_BURN_RATE,
            RowKind::Exhaustion { .. } => ALERT_NAME_EXHAUSTION,
            RowKind::BudgetDrop { .. } => ALERT_NAME_BUDGET_DROP,
        }
    }
}

/// The `alertname` of multi-window burn-rate alerts.
pub const ALERT_NAME_BURN_RATE: &str = "SlipstreamErrorBudgetBurn";
/// The `alertname` of time-to-exhaustion alerts.
pub const ALERT_NAME_EXHAUSTION: &str = "SlipstreamErrorBudgetExhaustion";
/// The `alertname` of budget-drop alerts.
pub const ALERT_NAME_BUDGET_DROP: &str = "SlipstreamErrorBudgetDrop";

/// One row of an alert policy, with its factor resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyRow {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window (the one window of exhaustion and budget-drop rows).
    pub long: Duration,
    /// The short window (equal to `long` for exhaustion and budget-drop rows).
    pub short: Duration,
    /// The burn rate both windows must exceed (see [`RowKind`] for the other kinds).
    pub factor: f64,
    /// What the row compares.
    pub kind: RowKind,
}

impl PolicyRow {
    /// The labels that tell the row apart from others of its SLO with the same severity and
    /// windows, besides `severity`, `long_window` and `short_window`: none for a burn-rate
    /// row, `exhausts_within` for time to exhaustion, `budget_drop_percent` for a budget
    /// drop. Alert events, SLI series and the generated rules carry them.
    pub fn kind_labels(&self) -> Vec<(&'static str, String)> {
        match self.kind {
            RowKind::BurnRate => Vec::new(),
            RowKind::Exhaustion { within } => vec![("exhausts_within", format_duration(within))],
            RowKind::BudgetDrop { percent } => vec![("budget_drop_percent", format!("{percent}"))],
        }
    }

    /// Whether the row's condition holds. `long` and `short` are the counts of its windows,
    /// `budget` the error budget as a fraction (`1 - objective`), `remaining` the budget
    /// remaining over the period, `period_total` the requests of the period; `min_events`
    /// the requests each window needs.
    #[allow(clippy::too_many_arguments)]
    pub fn condition(
        &self,
        long: Counts,
        short: Counts,
        budget: f64,
        remaining: Option<f64>,
        period_total: f64,
        min_events: u64,
    ) -> bool {
        let min = min_events as f64;
        let burn = |c: Counts| c.error_ratio().map(|r| r / budget);
        match self.kind {
            RowKind::BurnRate => {
                let hot = |c: Counts| c.total >= min && burn(c).is_some_and(|b| b > self.factor);
                hot(long) && hot(short)
            }
            RowKind::Exhaustion { .. } => {
                long.total >= min
                    && match (burn(long), remaining) {
                        (Some(b), Some(r)) => b > exhaustion_threshold(self.factor, r),
                        _ => false,
                    }
            }
            RowKind::BudgetDrop { percent } => {
                long.total >= min
                    && budget_drop(long.bad, budget, period_total)
                        .is_some_and(|d| d >= percent / 100.0)
            }
        }
    }
}

/// The burn rate a time-to-exhaustion row with factor `period / within` must exceed with
/// `remaining` of the budget left: `factor * max(remaining, 0)`.
pub fn exhaustion_threshold(factor: f64, remaining: f64) -> f64 {
    factor * remaining.max(0.0)
}

/// The share of the period's error budget that `bad` requests spend: `bad / (budget *
/// period_total)`; `None` without requests in the period.
pub fn budget_drop(bad: f64, budget: f64, period_total: f64) -> Option<f64> {
    (period_total > 0.0).then(|| bad / (budget * period_total))
}

/// Where an SLO came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloSource {
    /// `slo.objectives`.
    Explicit,
    /// `slo.templates`, for a service seen in traffic.
    Template,
}

impl SloSource {
    /// `explicit` or `template`.
    pub fn as_str(self) -> &'static str {
        match self {
            SloSource::Explicit => "explicit",
            SloSource::Template => "template",
        }
    }
}

/// A resolved SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct SloSpec {
    /// Unique name (the `slo` label).
    pub name: String,
    /// The `service.name` it is about.
    pub service: String,
    /// Dimension values a series must have (all must equal).
    pub match_labels: BTreeMap<String, String>,
    /// What makes a request good.
    pub sli: Sli,
    /// The objective as a fraction (0.999).
    pub objective: f64,
    /// The period.
    pub period: Period,
    /// Alert rows, pages first.
    pub policy: Vec<PolicyRow>,
    /// Minimum requests in both windows of a row before it may fire.
    pub min_events: u64,
    /// Labels of SLI series and alerts: the SLO's own, then the catalog's `owner`, `tier`
    /// and labels (the SLO's win on a clash).
    pub labels: BTreeMap<String, String>,
    /// Alert annotations: `summary`, `description`, `runbook_url` (the SLO's or the
    /// catalog's) and one `link_<name>` per catalog link.
    pub annotations: BTreeMap<String, String>,
    /// Explicit or templated.
    pub source: SloSource,
}

impl SloSpec {
    /// The error budget as a fraction of requests: `1 - objective`.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// The longest span of history the SLO needs: its period or its longest alert window.
    pub fn longest_window(&self) -> Duration {
        self.policy
            .iter()
            .map(|r| r.long)
            .chain(std::iter::once(self.period.longest()))
            .max()
            .unwrap_or(self.period.longest())
    }

    /// The windows evaluated for this SLO, ascending and without duplicates: the reported set
    /// up to the period and every window of the policy.
    pub fn windows(&self) -> Vec<Duration> {
        let mut w: Vec<Duration> = REPORTED_WINDOWS
            .iter()
            .copied()
            .filter(|w| *w <= self.period.longest())
            .chain(self.policy.iter().flat_map(|r| [r.long, r.short]))
            .collect();
        w.sort();
        w.dedup();
        w
    }

    /// A spec from an explicit objective.
    pub fn from_objective(
        o: &ObjectiveConfig,
        catalog: Option<&CatalogEntry>,
        default_min_events: u64,
    ) -> SloSpec {
        SloSpec {
            name: o.name.clone(),
            service: o.service.clone(),
            match_labels: o.match_labels.clone(),
            sli: o.sli.into(),
            objective: o.objective / 100.0,
            period: o.period,
            policy: policy(o.alerts.as_deref(), o.period),
            min_events: o.min_events.unwrap_or(default_min_events),
            labels: labels(&o.labels, catalog),
            annotations: annotations(&o.annotations, catalog, &o.service),
            source: SloSource::Explicit,
        }
    }

    /// A spec from a template, for `service`.
    pub fn from_template(
        t: &TemplateConfig,
        kind: &str,
        service: &str,
        catalog: Option<&CatalogEntry>,
        default_min_events: u64,
    ) -> SloSpec {
        let sli = match t.threshold {
            Some(threshold) => Sli::Latency { threshold },
            None => Sli::Availability,
        };
        SloSpec {
            name: format!("{service}-{kind}"),
            service: service.to_owned(),
            match_labels: BTreeMap::new(),
            sli,
            objective: t.objective / 100.0,
            period: t.period,
            policy: policy(t.alerts.as_deref(), t.period),
            min_events: t.min_events.unwrap_or(default_min_events),
            labels: labels(&t.labels, catalog),
            annotations: annotations(&t.annotations, catalog, service),
            source: SloSource::Template,
        }
    }
}

/// The alert rows for a period: the configured ones, or the default table scaled to the
/// period (rows whose long window exceeds the period are left out). Pages come first.
pub fn policy(rows: Option<&[AlertPolicyConfig]>, period: Period) -> Vec<PolicyRow> {
    let nominal = period.nominal().as_secs_f64();
    let mut out: Vec<PolicyRow> = match rows {
        None => DEFAULT_POLICY
            .iter()
            .filter(|(_, long, _, _)| *long <= period.longest())
            .map(|&(severity, long, short, share)| PolicyRow {
                severity,
                long,
                short,
                factor: scaled_factor(share, nominal, long),
                kind: RowKind::BurnRate,
            })
            .collect(),
        Some(rows) => rows.iter().map(|r| row(r, nominal)).collect(),
    };
    out.sort_by_key(|r| r.severity);
    out
}

/// One configured row, its factor resolved for a period of `nominal` seconds.
fn row(r: &AlertPolicyConfig, nominal: f64) -> PolicyRow {
    match r.kind() {
        AlertRowKind::BurnRate => PolicyRow {
            severity: r.severity,
            long: r.long_window,
            short: r.short_window,
            factor: match (r.burn_rate, r.budget_percent) {
                (Some(f), _) => f,
                (None, Some(b)) => scaled_factor(b / 100.0, nominal, r.long_window),
                (None, None) => f64::INFINITY,
            },
            kind: RowKind::BurnRate,
        },
        AlertRowKind::Exhaustion { within, window } => PolicyRow {
            severity: r.severity,
            long: window,
            short: window,
            factor: scaled_factor(1.0, nominal, within),
            kind: RowKind::Exhaustion { within },
        },
        AlertRowKind::BudgetDrop { percent, within } => PolicyRow {
            severity: r.severity,
            long: within,
            short: within,
            factor: scaled_factor(percent / 100.0, nominal, within),
            kind: RowKind::BudgetDrop { percent },
        },
    }
}

/// `share * period / long`: the burn rate that spends `share` of the budget in `long`.
pub fn scaled_factor(share: f64, period_secs: f64, long: Duration) -> f64 {
    share * period_secs / long.as_secs_f64()
}

fn labels(own: &BTreeMap<String, String>, c: Option<&CatalogEntry>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(c) = c {
        out.extend(c.labels.clone());
        if let Some(o) = &c.owner {
            out.insert("owner".to_owned(), o.clone());
        }
        if let Some(t) = &c.tier {
            out.insert("tier".to_owned(), t.clone());
        }
    }
    out.extend(own.clone());
    out
}

fn annotations(
    own: &AnnotationsConfig,
    c: Option<&CatalogEntry>,
    service: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let fill = |s: &String| s.replace("{{service}}", service);
    if let Some(c) = c {
        if let Some(u) = &c.runbook_url {
            out.insert("runbook_url".to_owned(), u.clone());
        }
        for (k, v) in &c.links {
            out.insert(format!("link_{k}"), v.clone());
        }
    }
    if let Some(s) = &own.summary {
        out.insert("summary".to_owned(), fill(s));
    }
    if let Some(s) = &own.description {
        out.insert("description".to_owned(), fill(s));
    }
    if let Some(s) = &own.runbook_url {
        out.insert("runbook_url".to_owned(), fill(s));
    }
    out
}
