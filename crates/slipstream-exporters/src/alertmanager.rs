//! Burn-rate events posted to Alertmanager's v2 API, the way Prometheus sends its alerts.
//!
//! Each [`AlertmanagerExporter::publish`] posts one JSON array of alerts (one per event) to
//! `POST {endpoint}/api/v2/alerts` on every configured endpoint, each endpoint with its own
//! [`crate::delivery`] queue, so one Alertmanager being down does not hold up another.
//!
//! An alert ([`Alert`]) is:
//!
//! - `labels`: the event's labels (`alertname`, `service`, `slo`, `severity`, `long_window`,
//!   `short_window`, then the SLO's and the catalog's). Any of those six the event lacks is
//!   filled in from the event's fields (`alertname` with [`DEFAULT_ALERTNAME`]); label names
//!   are made Prometheus-safe (other characters become `_`) and empty values are left out.
//! - `annotations`: the event's annotations, plus (unless the event already has them)
//!   `summary`, `long_burn_rate`, `short_burn_rate`, `burn_rate_threshold`, `objective`,
//!   `budget_remaining`, `versions` (comma-separated), `newest_version` and
//!   `newest_version_since` (RFC 3339), numbers written with up to six decimals; a value that
//!   is unknown (no traffic) is left out.
//! - `startsAt`: when the alert started firing (`firing_since`), RFC 3339.
//! - `endsAt`: for a firing alert, the send time plus four resend intervals (Alertmanager
//!   resolves an alert whose `endsAt` passes, so an alert slipstream stops sending, because
//!   slipstream stopped, expires on its own); for a resolved alert, the event's time.
//! - no `generatorURL`.
//!
//! Nothing in an alert names the slipstream that sent it, so replicated gateways evaluating
//! the same SLO send identical label sets and a clustered Alertmanager notifies once.
//! [`incident_key`] names that label set in the webhook and OTLP log events.
//!
//! Alertmanager forgets alerts that are not re-sent, so the exporter keeps the set of firing
//! alerts (keyed by their label set) and re-sends all of them every `resend_interval` until a
//! resolved event for the same labels arrives; that one is sent with its `endsAt` and the alert
//! is forgotten.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use slipstream_config::exporters::AlertmanagerConfig;
use slipstream_core::export::{EventState, format_duration};
use slipstream_core::{BurnRateEvent, Registry, UnixNanos};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::Error;
use crate::delivery::{self, Delivery, DeliveryQueue};

/// The `exporter` label value of the Alertmanager delivery metrics.
pub const EXPORTER: &str = "alertmanager";
/// `alertname` of an event whose labels have none.
pub const DEFAULT_ALERTNAME: &str = "SlipstreamBurnRate";
/// The path alerts are posted to, under each endpoint.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// One alert as slipstream holds it: `endsAt` is only fixed for resolved alerts, firing
/// alerts get theirs when sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    pub starts_at: UnixNanos,
    /// When it resolved; `None` while firing.
    pub ends_at: Option<UnixNanos>,
}

/// An alert as Alertmanager's `postableAlert` takes it.
#[derive(Debug, Serialize)]
struct Postable<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
}

type Batch = Arc<[Alert]>;
type Firing = Arc<Mutex<BTreeMap<BTreeMap<String, String>, Alert>>>;

/// The running Alertmanager exporter.
#[derive(Debug)]
pub struct AlertmanagerExporter {
    queues: Vec<Delivery<Batch>>,
    firing: Firing,
    resender: JoinHandle<()>,
}

impl AlertmanagerExporter {
    /// Starts one delivery worker per endpoint and the resend timer, on the current tokio
    /// runtime. Fails on an unsupported URL or a header that is not valid HTTP.
    pub fn start(cfg: &AlertmanagerConfig, registry: &Registry) -> Result<Self, Error> {
        let delivery_cfg = cfg.delivery();
        let posts = delivery::EndpointPosts {
            exporter: EXPORTER,
            section: "exporters.alertmanager",
            path: ALERTS_PATH,
            content_type: "application/json",
            headers: delivery::header_map("exporters.alertmanager", &cfg.headers)?,
        };
        let resend = cfg.resend_interval;
        let queues = delivery::endpoint_queues(
            posts,
            &cfg.endpoints,
            &delivery_cfg,
            registry,
            move |batch: &Batch| render(batch, now(), resend),
        )?;
        let firing = Firing::default();
        let resender = tokio::spawn(resend_loop(
            firing.clone(),
            queues.iter().map(Delivery::queue).collect(),
            resend,
        ));
        Ok(AlertmanagerExporter {
            queues,
            firing,
            resender,
        })
    }

    /// Sends the alerts of `events` to every endpoint in one request each, and updates the
    /// set of firing alerts that are re-sent; never waits.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        if events.is_empty() {
            return;
        }
        // The queues are pushed while the set is locked, so a re-send of the set taken
        // before a resolve can never be queued after the resolved alert and revive it.
        let mut firing = self.firing.lock().unwrap_or_else(|e| e.into_inner());
        let batch: Batch = events
            .iter()
            .map(|event| {
                let alert = alert(event);
                match event.state {
                    EventState::Firing => {
                        firing.insert(alert.labels.clone(), alert.clone());
                    }
                    EventState::Resolved => {
                        firing.remove(&alert.labels);
                    }
                }
                alert
            })
            .collect();
        for q in &self.queues {
            q.push(batch.clone());
        }
    }

    /// Forgets the firing alerts of `service` (its `service` label) without sending them
    /// resolved: they are no longer re-sent, and Alertmanager keeps each one active while
    /// another gateway that evaluates the service re-sends it (else until its `endsAt`).
    /// What is already queued is delivered. Returns how many were forgotten.
    pub fn forget_service(&self, service: &str) -> usize {
        let mut firing = self.firing.lock().unwrap_or_else(|e| e.into_inner());
        let before = firing.len();
        firing.retain(|labels, _| labels.get("service").map(String::as_str) != Some(service));
        before - firing.len()
    }

    /// Alerts currently firing (re-sent every `resend_interval`).
    pub fn firing(&self) -> Vec<Alert> {
        let firing = self.firing.lock().unwrap_or_else(|e| e.into_inner());
        firing.values().cloned().collect()
    }

    /// Stops re-sending and delivers what is queued within `deadline`; returns how many
    /// batches were dropped. Firing alerts are not resolved: Alertmanager lets them expire at
    /// their `endsAt`.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        self.resender.abort();
        let mut set = tokio::task::JoinSet::new();
        for q in self.queues {
            set.spawn(q.shutdown(deadline));
        }
        set.join_all().await.into_iter().sum()
    }
}

crate::lifecycle::exporter!(AlertmanagerExporter, EXPORTER);

impl crate::lifecycle::EventExporter for AlertmanagerExporter {
    fn publish(&self, events: &[BurnRateEvent]) {
        AlertmanagerExporter::publish(self, events);
    }

    fn forget_service(&self, service: &str) -> usize {
        AlertmanagerExporter::forget_service(self, service)
    }
}

async fn resend_loop(firing: Firing, queues: Vec<DeliveryQueue<Batch>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Pushed under the lock: see `publish`.
        let firing = firing.lock().unwrap_or_else(|e| e.into_inner());
        if firing.is_empty() {
            continue;
        }
        let batch: Batch = firing.values().cloned().collect();
        for q in &queues {
            q.push(batch.clone());
        }
    }
}

/// A stable name of the alert an event belongs to, the same on every slipstream that
/// evaluates the SLO: the lowercase hex of the first 16 bytes of SHA-256 over its Alertmanager
/// labels (the set Alertmanager deduplicates on), each written `name=value` and ended by a NUL,
/// in name order. It depends on the SLO, service, severity, the policy row's parameters and the
/// SLO's and catalog's labels, never on an evaluation time, so replicas that evaluate seconds
/// apart agree; as with Alertmanager, one incident is the run of events from a firing one to
/// the next resolved one.
pub fn incident_key(event: &BurnRateEvent) -> String {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    for (k, v) in alert_labels(event) {
        hash.update(k.as_bytes());
        hash.update(b"=");
        hash.update(v.as_bytes());
        hash.update(b"\0");
    }
    hex::encode(&hash.finalize()[..16])
}

/// The alert of one event (see the module docs for its labels and annotations).
pub fn alert(event: &BurnRateEvent) -> Alert {
    let labels = alert_labels(event);
    let mut annotations = event.annotations.clone();
    let number = |x: Option<f64>| x.filter(|x| x.is_finite()).map(format_number);
    let versions = (!event.versions.is_empty()).then(|| event.versions.join(", "));
    for (k, v) in [
        ("summary", Some(summary(event))),
        ("long_burn_rate", number(event.long_burn_rate)),
        ("short_burn_rate", number(event.short_burn_rate)),
        ("burn_rate_threshold", number(Some(event.factor))),
        ("objective", number(Some(event.objective))),
        ("budget_remaining", number(event.budget_remaining)),
        ("versions", versions),
        ("newest_version", event.newest_version.clone()),
        (
            "newest_version_since",
            event.newest_version_since.map(rfc3339),
        ),
    ] {
        if let Some(v) = v {
            annotations.entry(k.to_owned()).or_insert(v);
        }
    }
    Alert {
        labels,
        annotations,
        starts_at: event.firing_since,
        ends_at: match event.state {
            EventState::Firing => None,
            // Alertmanager refuses an end before the start.
            EventState::Resolved => Some(event.at.max(event.firing_since)),
        },
    }
}

/// An event's Alertmanager labels (see the module docs).
fn alert_labels(event: &BurnRateEvent) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = event
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (label_name(k), v.clone()))
        .collect();
    for (k, v) in [
        ("alertname", DEFAULT_ALERTNAME.to_owned()),
        ("service", event.service.clone()),
        ("slo", event.slo.clone()),
        ("severity", event.severity.clone()),
        ("long_window", format_duration(event.long_window)),
        ("short_window", format_duration(event.short_window)),
    ] {
        if !v.is_empty() {
            labels.entry(k.to_owned()).or_insert(v);
        }
    }
    labels
}

/// One line saying what burns: `checkout: SLO checkout-availability burns its error budget
/// 20.5x over 1h and 31.25x over 5m (threshold 14.4x)` (`-` for a rate without traffic); for
/// a time-to-exhaustion row (its `exhausts_within` label) `checkout: SLO
/// checkout-availability runs out of error budget within 4h at 20.5x over 1h (budget
/// remaining 0.3)`, for a budget-drop row (`budget_drop_percent`) `checkout: SLO
/// checkout-availability spent at least 10% of its error budget in 2h (3.5x over 2h)`.
pub(crate) fn summary(event: &BurnRateEvent) -> String {
    let rate = |x: Option<f64>| {
        x.filter(|x| x.is_finite())
            .map_or_else(|| "-".to_owned(), format_number)
    };
    let window = format_duration(event.long_window);
    if let Some(within) = event.labels.get("exhausts_within") {
        return format!(
            "{}: SLO {} runs out of error budget within {within} at {}x over {window} (budget remaining {})",
            event.service,
            event.slo,
            rate(event.long_burn_rate),
            rate(event.budget_remaining),
        );
    }
    if let Some(percent) = event.labels.get("budget_drop_percent") {
        return format!(
            "{}: SLO {} spent at least {percent}% of its error budget in {window} ({}x over {window})",
            event.service,
            event.slo,
            rate(event.long_burn_rate),
        );
    }
    format!(
        "{}: SLO {} burns its error budget {}x over {} and {}x over {} (threshold {}x)",
        event.service,
        event.slo,
        rate(event.long_burn_rate),
        format_duration(event.long_window),
        rate(event.short_burn_rate),
        format_duration(event.short_window),
        format_number(event.factor),
    )
}

/// The request body for `alerts` sent at `now`: firing alerts end at `now + 4 × resend`.
pub fn render(alerts: &[Alert], now: UnixNanos, resend: Duration) -> Bytes {
    let expires =
        now.saturating_add(u64::try_from(resend.as_nanos().saturating_mul(4)).unwrap_or(u64::MAX));
    let postable: Vec<Postable<'_>> = alerts
        .iter()
        .map(|a| Postable {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: rfc3339(a.starts_at),
            ends_at: rfc3339(a.ends_at.unwrap_or(expires)),
        })
        .collect();
    Bytes::from(serde_json::to_vec(&postable).expect("alerts serialize to JSON"))
}

/// `2025-01-02T03:04:05.000Z`.
pub fn rfc3339(t: UnixNanos) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(t)).to_string()
}

fn now() -> UnixNanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Up to six decimals, trailing zeros dropped: `14.4`, `0.999`, `20`.
fn format_number(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A Prometheus-safe label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name(k: &str) -> String {
    let mut out: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests;
