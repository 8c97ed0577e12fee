//! The rules `slipstream generate prometheus-rules` writes for the example configuration
//! (`config/slipstream.yaml`: templated SLOs only) alert in Prometheus at the same evaluation
//! as slipstream itself, on the series slipstream exports.
//!
//! slipstream runs in this process on a manual clock with the example configuration (its
//! ports moved to loopback port 0). A service unknown to the configuration, `cart`, sends
//! four hours of traffic: 60-139 requests every 10 s (the least in the first minute), no
//! errors for 50 minutes, then 5% for 40, none for 30, 2% for 40 (the 1h/5m page keeps firing
//! on its short window after its long one drops under the factor), none for 40, five minutes
//! at 50% and none again.
//! Every 10 s the spans of the last 10 s are exported over OTLP/HTTP, slipstream steps (the
//! example's `evaluation_interval` is 10 s) and its `/metrics` is scraped. The scrapes are the
//! input series of a `promtool test rules` file, with the generated rules, evaluated every
//! 10 s; the expected alerts at every evaluation are the policy rows slipstream has firing at
//! that step (from the evaluation where both windows burn above the factor with `min_events`
//! requests, until the short window alone stops burning), so Prometheus fires and resolves
//! every row at the same evaluation as slipstream.
//!
//! A third run gives an explicit SLO time-to-exhaustion and budget-drop rows only: their own
//! generated alerts fire and resolve at slipstream's evaluations too.
//!
//! A second run adds an explicit SLO for a second service (its own objective, 28-day period,
//! policy rows, `min_events` high enough to hold a page back, catalog and own labels): the
//! same generic rules alert for it, with its labels, at slipstream's evaluations too.
//!
//! Why the two agree exactly rather than nearly: traffic is even within every minute, so the
//! engine's windows (whole one-minute slots, the one at the old edge by time share) hold
//! exactly the requests of `[T - W, T)`, and Prometheus' `rate()` over `[T - W, T]` finds a
//! scrape at both ends (no extrapolation) once the series are older than `W`. Before that,
//! the counters' first scrape is at most one interval's requests (`bad` is 0), so `rate()`
//! extrapolates back to zero and counts every request since the SLO appeared, as the engine
//! does. The test also asserts that no burn rate sits within 1e-9 of its factor and no
//! window's count within 1e-6 of `min_events` (short of equal), so no comparison hangs on the
//! last bits of two computations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use slipstream::generate::{prometheus_rules, rule_specs};
use slipstream_app::app::App;
use slipstream_config::Config;
use slipstream_core::ManualClock;
use slipstream_core::export::format_duration;
use slipstream_slo::{RowKind, Severity, budget_drop, exhaustion_threshold};
use slipstream_step::series::label_name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROMTOOL: &str = "/usr/bin/promtool";
const SEC: u64 = 1_000_000_000;
const STEP: u64 = 10 * SEC;
/// 2026-06-01T00:00:00Z, promtool's time 0.
const START: u64 = 1_780_272_000_000_000_000;
const MINUTES: u64 = 240;
const SERVICE: &str = "cart";

/// Requests and bad requests in each 10 s of minute `m`.
fn traffic(m: u64) -> (u64, u64) {
    let total = 60 + (m * 37) % 80;
    let per_cent = match m {
        50..90 => 5,
        120..160 => 2,
        200..205 => 50,
        _ => 0,
    };
    (total, (total * per_cent).div_ceil(100))
}

/// The example configuration with its listeners on loopback, port 0, and `slo` (YAML lines
/// indented for the `slo` section) added to its `slo` section.
fn example_config(slo: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/slipstream.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let section = "\nslo:\n";
    assert!(
        text.contains(section),
        "{} has no slo section",
        path.display()
    );
    let mut local = text.replacen(section, &format!("{section}{slo}"), 1);
    // Port 0 on distinct loopback addresses: the listeners may not share an address.
    for (i, addr) in [
        "0.0.0.0:4317",
        "0.0.0.0:4318",
        "127.0.0.1:8888",
        "0.0.0.0:8889",
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            local.contains(addr),
            "{} no longer holds {addr}",
            path.display()
        );
        local = local.replace(addr, &format!("127.0.0.{}:0", i + 1));
    }
    let mut cfg = Config::from_yaml(&local).unwrap();
    // No saved state: every run starts from nothing. Events are checked here, not printed.
    cfg.state.dir = None;
    cfg.exporters.stdout.enabled = false;
    cfg
}

/// OTLP JSON: for each of `services`, `total` spans ending evenly over `[end - 10 s, end)`,
/// the first `bad` of them failed.
fn request(end: u64, services: &[&str], total: u64, bad: u64) -> String {
    let spans: Vec<serde_json::Value> = (0..total)
        .map(|i| {
            let t = end - STEP + i * STEP / total;
            let mut span = serde_json::json!({
                "traceId": format!("{:016x}{:016x}", end / SEC, i + 1),
                "spanId": format!("{:016x}", i + 1),
                "name": "GET /cart",
                "kind": 2,
                "startTimeUnixNano": (t - 20_000_000).to_string(),
                "endTimeUnixNano": t.to_string(),
            });
            if i < bad {
                span["status"] = serde_json::json!({ "code": 2 });
            }
            span
        })
        .collect();
    let resource_spans: Vec<serde_json::Value> = services
        .iter()
        .map(|service| {
            serde_json::json!({
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": service } }
                ]},
                "scopeSpans": [{ "spans": spans }],
            })
        })
        .collect();
    serde_json::json!({ "resourceSpans": resource_spans }).to_string()
}

/// One HTTP/1.1 exchange; returns the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The samples of `/metrics` whose family the rules read: `name{labels}` -> value.
fn samples(body: &str, families: &BTreeSet<String>) -> BTreeMap<String, String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            families
                .contains(name)
                .then(|| (series.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `name{a="b"}` with Prometheus' target labels added.
fn scraped(series: &str) -> String {
    let target = "instance=\"slipstream:8889\",job=\"slipstream\"";
    match series.strip_suffix('}') {
        Some(s) if !s.ends_with('{') => format!("{s},{target}}}"),
        Some(s) => format!("{s}{target}}}"),
        None => format!("{series}{{{target}}}"),
    }
}

/// A row as the alert's labels name it: (slo, severity, long window, short window, the
/// labels of its kind, alert name).
type Row = (
    String,
    &'static str,
    String,
    String,
    Vec<(&'static str, String)>,
    &'static str,
);

/// The row of `slo` as its alert names it.
fn row_of(slo: &str, r: &slipstream_slo::PolicyRow) -> Row {
    (
        slo.to_owned(),
        severity(r.severity),
        format_duration(r.long),
        format_duration(r.short),
        r.kind_labels(),
        r.kind.alert_name(),
    )
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Page => "page",
        Severity::Ticket => "ticket",
    }
}

/// What one run recorded.
#[derive(Debug, Default)]
struct Run {
    /// Per series, its value at every step (index 0 is time 0, before any scrape).
    series: BTreeMap<String, Vec<Option<String>>>,
    /// Per step, the rows slipstream has firing.
    firing: Vec<BTreeSet<Row>>,
    /// Steps where a row fires only because its short window still burns.
    held: usize,
    /// Steps where both windows of a row burn above its factor but one holds fewer than
    /// `min_events` requests.
    guarded: usize,
    /// Per row, the steps where slipstream starts firing it, and where it sends a page.
    starts: BTreeMap<Row, Vec<u64>>,
    page_events: BTreeMap<Row, Vec<u64>>,
    /// Per row, its factor; per SLO, its service and labels.
    factors: BTreeMap<Row, f64>,
    slos: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

/// Runs the scenario for `services` on slipstream with `cfg`, then `promtool test rules` on
/// its scrapes with the rules generated for `cfg`; returns what slipstream did.
async fn run(cfg: Config, services: &[&str]) -> Run {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/test-deps.sh (Debian package `prometheus`)"
    );
    let rules = prometheus_rules(&rule_specs(&cfg, &[]).unwrap());
    let families: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("slipstream_"))
        .map(str::to_owned)
        .collect();
    assert!(
        families.contains("slipstream_slo_requests_total"),
        "{families:?}"
    );

    let clock = ManualClock::new(START);
    let app = App::start_with(cfg, Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let (otlp, metrics) = (app.http_addr.unwrap(), app.prometheus_addr.unwrap());

    let steps = MINUTES * 60 * SEC / STEP;
    let mut r = Run {
        firing: vec![BTreeSet::new()],
        ..Run::default()
    };
    // How close a burn rate came to its factor, and a window's requests to `min_events`.
    let (mut closest, mut closest_min) = (f64::INFINITY, f64::INFINITY);
    for k in 1..=steps {
        let now = START + k * STEP;
        let (total, bad) = traffic((k - 1) * STEP / (60 * SEC));
        clock.set(now);
        let body = request(now, services, total, bad);
        let (status, body) = http(otlp, "POST", "/v1/traces", &body).await;
        assert_eq!(status, 200, "{body}");
        let step = app.step().await;
        let snap = step.slos.expect("every step evaluates");
        let mut holding = BTreeSet::new();
        for slo in &snap.slos {
            r.slos
                .insert(slo.name.clone(), (slo.service.clone(), slo.labels.clone()));
            for a in &slo.alerts {
                let row = row_of(&slo.name, &a.row);
                r.factors.insert(row.clone(), a.row.factor);
                let budget = 1.0 - slo.objective;
                match a.row.kind {
                    RowKind::BurnRate => {}
                    RowKind::Exhaustion { .. } => {
                        let burn = slo.window(a.row.long).and_then(|w| w.burn_rate);
                        if let (Some(b), Some(rem)) = (burn, slo.budget_remaining) {
                            let t = exhaustion_threshold(a.row.factor, rem);
                            if b > 0.0 || t > 0.0 {
                                closest = closest.min((b - t).abs() / b.max(t));
                            }
                        }
                    }
                    RowKind::BudgetDrop { percent } => {
                        let bad = slo.window(a.row.long).map_or(0.0, |w| w.counts.bad);
                        if let Some(d) = budget_drop(bad, budget, slo.period_counts.total) {
                            closest = closest.min((d - percent / 100.0).abs() / d.max(1e-300));
                        }
                    }
                }
                for w in [a.row.long, a.row.short] {
                    if a.row.kind != RowKind::BurnRate {
                        break;
                    }
                    let Some(w) = slo.window(w) else { continue };
                    if let Some(b) = w.burn_rate {
                        closest = closest.min((b - a.row.factor).abs() / a.row.factor);
                    }
                    // Equal is fine (both sides count whole requests); nearly equal is not.
                    let d = (w.counts.total - a.min_events as f64).abs();
                    if d > 0.0 {
                        closest_min = closest_min.min(d);
                    }
                }
                if a.firing && !a.condition {
                    r.held += 1;
                }
                let burns = a.row.kind == RowKind::BurnRate
                    && [a.row.long, a.row.short].iter().all(|w| {
                        slo.window(*w)
                            .and_then(|w| w.burn_rate)
                            .is_some_and(|b| b > a.row.factor)
                    });
                if burns && !a.condition {
                    r.guarded += 1;
                }
                if a.firing {
                    holding.insert(row.clone());
                }
                if a.since == Some(now) {
                    r.starts.entry(row).or_default().push(k);
                }
            }
        }
        for e in &step.events {
            if e.severity == Severity::Page
                && e.state == slipstream_slo::AlertState::Firing
                && !e.repeat
            {
                let row = row_of(&e.slo, &e.row);
                r.page_events.entry(row).or_default().push(k);
            }
        }
        r.firing.push(holding);
        let (status, body) = http(metrics, "GET", "/metrics", "").await;
        assert_eq!(status, 200, "{body}");
        for (s, v) in samples(&body, &families) {
            let values = r.series.entry(s).or_insert_with(|| vec![None; k as usize]);
            values.resize(k as usize, None);
            values.push(Some(v));
        }
    }
    app.shutdown().await;
    // The comparisons never hang on the last bits of two computations.
    assert!(
        closest > 1e-9,
        "a burn rate came within {closest:e} of its factor: the scenario is ill-posed"
    );
    assert!(
        closest_min > 1e-6,
        "a window held min_events requests to {closest_min:e}: the scenario is ill-posed"
    );
    // Pages are sent at the step their row starts firing.
    for (row, st) in &r.starts {
        for &k in st {
            assert!(r.firing[k as usize].contains(row));
            assert!(!r.firing[k as usize - 1].contains(row));
        }
        if row.1 == "page" {
            assert_eq!(r.page_events.get(row), Some(st), "{row:?}");
        }
        eprintln!(
            "{row:?} starts firing at minute(s) {:?}",
            st.iter().map(|k| k * STEP / (60 * SEC)).collect::<Vec<_>>()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(dir.path().join("test.yml"), test_file(&rules, &r)).unwrap();
    for args in [
        &["check", "rules", "rules.yml"][..],
        &["test", "rules", "test.yml"],
    ] {
        let out = Command::new(PROMTOOL)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let kept = dir.keep();
            panic!(
                "promtool {args:?} failed (files in {}):\n{}\n{}",
                kept.display(),
                &stdout[..stdout.len().min(20_000)],
                &stderr[..stderr.len().min(20_000)]
            );
        }
        assert!(stdout.contains("SUCCESS"), "{stdout}");
    }
    r
}

/// The rows of `slo` that fired in `r`.
fn fired<'a>(r: &'a Run, slo: &str) -> Vec<&'a Row> {
    r.starts.keys().filter(|row| row.0 == slo).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_rules_alert_at_the_same_evaluation_as_slipstream() {
    let cfg = example_config("");
    assert!(cfg.slo.objectives.is_empty(), "the example lists no SLOs");
    let r = run(cfg, &[SERVICE]).await;
    // Every row of the templated availability SLO fires, one of them also on its short
    // window alone; the latency SLO (every request takes 20 ms) never does.
    assert_eq!(fired(&r, &format!("{SERVICE}-availability")).len(), 4);
    assert!(fired(&r, &format!("{SERVICE}-latency")).is_empty());
    assert!(
        r.held > 0,
        "the scenario should keep a row firing on its short window alone"
    );
}

/// An explicit SLO next to the templated ones, with its own objective, period, policy,
/// `min_events` and catalog labels, alerts through the same generic rules at the same
/// evaluations as slipstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_slo_alerts_through_the_same_rules() {
    let cfg = example_config(
        "  catalog:
    checkout: { owner: team-payments, tier: tier-1 }
  objectives:
    - name: checkout-availability
      service: checkout
      objective: 99.5
      period: 28d
      min_events: 3200
      labels: { team.channel: payments-oncall }
      alerts:
        - { severity: page, long_window: 1h, short_window: 5m, burn_rate: 9.3 }
        - { severity: ticket, long_window: 6h, short_window: 30m, burn_rate: 2.7 }
",
    );
    let r = run(cfg, &[SERVICE, "checkout"]).await;
    assert_eq!(fired(&r, "checkout-availability").len(), 2);
    assert_eq!(fired(&r, &format!("{SERVICE}-availability")).len(), 4);
    assert!(r.guarded > 0, "min_events should hold a row back");
    let labels = &r.slos["checkout-availability"].1;
    assert_eq!(labels["owner"], "team-payments");
}

/// Time-to-exhaustion and budget-drop rows of an explicit SLO (2h period, 98%, so the
/// scenario's incidents spend and refill its budget) alert through their generated rules at
/// the same evaluations as slipstream, each firing and resolving several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_rows_alert_through_their_generated_rules() {
    let cfg = example_config(
        "  objectives:
    - name: checkout-budget
      service: checkout
      objective: 98
      period: 2h
      min_events: 100
      alerts:
        - { severity: page, exhausts_within: 1h, window: 30m }
        - { severity: ticket, budget_drop_percent: 28, within: 30m }
",
    );
    let r = run(cfg, &[SERVICE, "checkout"]).await;
    let kinds: BTreeMap<&str, usize> = r
        .starts
        .iter()
        .filter(|(row, _)| row.0 == "checkout-budget")
        .map(|(row, st)| (row.5, st.len()))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            (slipstream_slo::ALERT_NAME_BUDGET_DROP, 3),
            (slipstream_slo::ALERT_NAME_EXHAUSTION, 3),
        ])
    );
}

/// The promtool unit test: the scraped series, and at every step, for every alert name of the
/// rules, the alerts slipstream had firing, with the annotations the rules render for them.
fn test_file(rules: &str, r: &Run) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(rules).unwrap();
    let alerts: Vec<&serde_yaml::Value> = doc["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| r.get("alert").is_some())
        .collect();
    let mut names: Vec<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    names.dedup();
    let summary = |row: &Row| -> String {
        let rule = alerts
            .iter()
            .find(|a| {
                a["alert"] == row.5
                    && a["labels"]["long_window"] == row.2.as_str()
                    && a["labels"]["short_window"] == row.3.as_str()
                    && row.4.iter().all(|(k, v)| a["labels"][*k] == v.as_str())
            })
            .unwrap_or_else(|| panic!("no alert rule for {row:?}"));
        let s = rule["annotations"]["summary"].as_str().unwrap();
        let out = s
            .replace("{{ $labels.service }}", &r.slos[&row.0].0)
            .replace("{{ $labels.slo }}", &row.0)
            .replace("{{ $value }}", &r.factors[row].to_string());
        assert!(!out.contains("{{"), "{out}");
        out
    };
    let mut t = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 10s\ntests:\n  - interval: 10s\n    input_series:\n",
    );
    let steps = r.firing.len();
    for (name, values) in &r.series {
        let mut v: Vec<&str> = values.iter().map(|v| v.as_deref().unwrap_or("_")).collect();
        v.resize(steps, "_");
        let _ = write!(
            t,
            "      - series: '{}'\n        values: '{}'\n",
            scraped(name),
            v.join(" ")
        );
    }
    t.push_str("    alert_rule_test:\n");
    for (k, holding) in r.firing.iter().enumerate().skip(1) {
        for name in &names {
            let _ = write!(
                t,
                "      - eval_time: {}s\n        alertname: {name}\n        exp_alerts:",
                k as u64 * STEP / SEC
            );
            let rows: Vec<&Row> = holding.iter().filter(|row| row.5 == *name).collect();
            if rows.is_empty() {
                t.push_str(" []\n");
                continue;
            }
            t.push('\n');
            for row in rows {
                let (service, labels) = &r.slos[&row.0];
                let mut exp = format!(
                    "slo: {}, service: {service}, severity: {}, long_window: {}, short_window: {}",
                    row.0, row.1, row.2, row.3
                );
                for (k, v) in &row.4 {
                    let _ = write!(exp, ", {k}: {}", serde_json::to_string(v).unwrap());
                }
                for (k, v) in labels {
                    let _ = write!(exp, ", {}: {v}", label_name(k));
                }
                let _ = write!(
                    t,
                    "          - exp_labels: {{ {exp} }}\n            exp_annotations: {{ summary: {} }}\n",
                    serde_json::to_string(&summary(row)).unwrap()
                );
            }
        }
    }
    t
}
