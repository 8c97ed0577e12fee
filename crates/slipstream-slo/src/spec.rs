//! SLO specs: what the engine evaluates, resolved from the configuration (explicit objectives
//! and templates) with the default alert policy filled in.

use std::collections::BTreeMap;
use std::time::Duration;

use slipstream_config::slo::{
    AlertPolicyConfig, AnnotationsConfig, CatalogEntry, ObjectiveConfig, Period, Severity,
    SliConfig, TemplateConfig,
};

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

/// One row of an alert policy, with its factor resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyRow {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window.
    pub long: Duration,
    /// The short window.
    pub short: Duration,
    /// The burn rate both windows must exceed.
    pub factor: f64,
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
            })
            .collect(),
        Some(rows) => rows
            .iter()
            .map(|r| PolicyRow {
                severity: r.severity,
                long: r.long_window,
                short: r.short_window,
                factor: match (r.burn_rate, r.budget_percent) {
                    (Some(f), _) => f,
                    (None, Some(b)) => scaled_factor(b / 100.0, nominal, r.long_window),
                    (None, None) => f64::INFINITY,
                },
            })
            .collect(),
    };
    out.sort_by_key(|r| r.severity);
    out
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
