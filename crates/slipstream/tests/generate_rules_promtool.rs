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
//! Why the two agree exactly rather than nearly: traffic is even within every minute, so the
//! engine's windows (whole one-minute slots, the one at the old edge by time share) hold
//! exactly the requests of `[T - W, T)`, and Prometheus' `rate()` over `[T - W, T]` finds a
//! scrape at both ends (no extrapolation) once the series are older than `W`. Before that,
//! the counters' first scrape is at most one interval's requests (`bad` is 0), so `rate()`
//! extrapolates back to zero and counts every request since the SLO appeared, as the engine
//! does. The test also asserts that no burn rate sits within 1e-9 of its factor, so the
//! comparison never hangs on the last bits of the two divisions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use slipstream::app::App;
use slipstream::generate::{ALERT_NAME, prometheus_rules, rule_specs};
use slipstream_config::Config;
use slipstream_core::ManualClock;
use slipstream_core::export::format_duration;
use slipstream_slo::Severity;
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

/// The example configuration with its listeners on loopback, port 0.
fn example_config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/slipstream.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut local = text.clone();
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

/// OTLP JSON: the spans of `SERVICE` ending evenly over `[end - 10 s, end)`.
fn request(end: u64, total: u64, bad: u64) -> String {
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
    serde_json::json!({ "resourceSpans": [{
        "resource": { "attributes": [
            { "key": "service.name", "value": { "stringValue": SERVICE } }
        ]},
        "scopeSpans": [{ "spans": spans }],
    }]})
    .to_string()
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

/// A row as the alert's labels name it: (slo, severity, long window, short window).
type Row = (String, &'static str, String, String);

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Page => "page",
        Severity::Ticket => "ticket",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_rules_alert_at_the_same_evaluation_as_slipstream() {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: run scripts/test-deps.sh (Debian package `prometheus`)"
    );
    let cfg = example_config();
    assert!(cfg.slo.objectives.is_empty(), "the example lists no SLOs");
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
    // Per series, its value at every step (index 0 is time 0, before any scrape).
    let mut series: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    // Per step, the rows slipstream has firing.
    let mut firing: Vec<BTreeSet<Row>> = vec![BTreeSet::new()];
    // Steps where a row fires only because its short window still burns.
    let mut held = 0;
    // Per row, the steps where slipstream starts firing it, and where it sends a page.
    let mut starts: BTreeMap<Row, Vec<u64>> = BTreeMap::new();
    let mut page_events: BTreeMap<Row, Vec<u64>> = BTreeMap::new();
    let mut factors: BTreeMap<Row, f64> = BTreeMap::new();
    let mut closest = f64::INFINITY;
    for k in 1..=steps {
        let now = START + k * STEP;
        let (total, bad) = traffic((k - 1) * STEP / (60 * SEC));
        clock.set(now);
        let (status, body) = http(otlp, "POST", "/v1/traces", &request(now, total, bad)).await;
        assert_eq!(status, 200, "{body}");
        let step = app.step().await;
        let snap = step.slos.expect("every step evaluates");
        let mut holding = BTreeSet::new();
        for slo in &snap.slos {
            for a in &slo.alerts {
                let row: Row = (
                    slo.name.clone(),
                    severity(a.row.severity),
                    format_duration(a.row.long),
                    format_duration(a.row.short),
                );
                factors.insert(row.clone(), a.row.factor);
                for w in [a.row.long, a.row.short] {
                    if let Some(b) = slo.window(w).and_then(|w| w.burn_rate) {
                        closest = closest.min((b - a.row.factor).abs() / a.row.factor);
                    }
                }
                if a.firing && !a.condition {
                    held += 1;
                }
                if a.firing {
                    holding.insert(row.clone());
                }
                if a.since == Some(now) {
                    starts.entry(row).or_default().push(k);
                }
            }
        }
        for e in &step.events {
            if e.severity == Severity::Page
                && e.state == slipstream_slo::AlertState::Firing
                && !e.repeat
            {
                let row = (
                    e.slo.clone(),
                    "page",
                    format_duration(e.row.long),
                    format_duration(e.row.short),
                );
                page_events.entry(row).or_default().push(k);
            }
        }
        firing.push(holding);
        let (status, body) = http(metrics, "GET", "/metrics", "").await;
        assert_eq!(status, 200, "{body}");
        for (s, v) in samples(&body, &families) {
            let values = series.entry(s).or_insert_with(|| vec![None; k as usize]);
            values.resize(k as usize, None);
            values.push(Some(v));
        }
    }
    app.shutdown().await;
    assert!(
        closest > 1e-9,
        "a burn rate came within {closest:e} of its factor: the scenario is ill-posed"
    );

    assert!(
        held > 0,
        "the scenario should keep a row firing on its short window alone"
    );

    // Every row of the templated availability SLO fires; pages are sent at the step their
    // row starts firing.
    let availability = format!("{SERVICE}-availability");
    let rows: Vec<&Row> = factors.keys().filter(|r| r.0 == availability).collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in rows {
        let st = starts
            .get(row)
            .unwrap_or_else(|| panic!("{row:?} never fires"));
        for &k in st {
            assert!(firing[k as usize].contains(row));
            assert!(!firing[k as usize - 1].contains(row));
        }
        if row.1 == "page" {
            assert_eq!(page_events.get(row), Some(st), "{row:?}");
        }
        eprintln!(
            "{row:?} starts firing at minute(s) {:?}",
            st.iter().map(|k| k * STEP / (60 * SEC)).collect::<Vec<_>>()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(
        dir.path().join("test.yml"),
        test_file(&rules, &series, &firing, &factors),
    )
    .unwrap();
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
}

/// The promtool unit test: the scraped series, and at every step the alerts slipstream had
/// firing, with the annotations the rules render for them.
fn test_file(
    rules: &str,
    series: &BTreeMap<String, Vec<Option<String>>>,
    firing: &[BTreeSet<Row>],
    factors: &BTreeMap<Row, f64>,
) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(rules).unwrap();
    let alerts: Vec<&serde_yaml::Value> = doc["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| r.get("alert").is_some())
        .collect();
    let summary = |row: &Row| -> String {
        let rule = alerts
            .iter()
            .find(|a| {
                a["labels"]["long_window"] == row.2.as_str()
                    && a["labels"]["short_window"] == row.3.as_str()
            })
            .unwrap_or_else(|| panic!("no alert rule for {row:?}"));
        let s = rule["annotations"]["summary"].as_str().unwrap();
        let out = s
            .replace("{{ $labels.service }}", SERVICE)
            .replace("{{ $labels.slo }}", &row.0)
            .replace("{{ $value }}", &factors[row].to_string());
        assert!(!out.contains("{{"), "{out}");
        out
    };
    let mut t = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 10s\ntests:\n  - interval: 10s\n    input_series:\n",
    );
    let steps = firing.len();
    for (name, values) in series {
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
    for (k, holding) in firing.iter().enumerate().skip(1) {
        let _ = write!(
            t,
            "      - eval_time: {}s\n        alertname: {ALERT_NAME}\n        exp_alerts:",
            k as u64 * STEP / SEC
        );
        if holding.is_empty() {
            t.push_str(" []\n");
            continue;
        }
        t.push('\n');
        for row in holding {
            let _ = write!(
                t,
                "          - exp_labels: {{ slo: {}, service: {SERVICE}, severity: {}, long_window: {}, short_window: {} }}\n            exp_annotations: {{ summary: {} }}\n",
                row.0,
                row.1,
                row.2,
                row.3,
                serde_json::to_string(&summary(row)).unwrap()
            );
        }
    }
    t
}
