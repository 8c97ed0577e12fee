//! `slipstream replay` backtests time-to-exhaustion and budget-drop rows: their events come
//! out with the row's parameter, in text and in JSON, and with their example traces, linked
//! through `exemplars.trace_url` as the live events are.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipstream::replay::{InputFormat, OutputFormat, ReplayOptions, replay};
use slipstream_config::Config;
use slipstream_slo::{AlertState, RowKind};

const SEC: u64 = 1_000_000_000;
/// 2026-06-01T00:00:00Z.
const START: u64 = 1_780_272_000_000_000_000;

/// What replay printed, shared with the test.
#[derive(Clone, Default)]
struct Out(Arc<Mutex<Vec<u8>>>);

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One OTLP JSON line per 10 s: 50 requests of `api`, 10% failing in minutes 30-39.
fn input(dir: &Path) -> std::path::PathBuf {
    let mut lines = String::new();
    for step in 0..360u64 {
        let minute = step / 6;
        let bad = if (30..40).contains(&minute) { 5 } else { 0 };
        let spans: Vec<serde_json::Value> = (0..50u64)
            .map(|i| {
                let end = START + step * 10 * SEC + i * 10 * SEC / 50;
                let mut span = serde_json::json!({
                    "traceId": format!("{:016x}{:016x}", step + 1, i + 1),
                    "spanId": format!("{:016x}", i + 1),
                    "name": "GET /",
                    "kind": 2,
                    "startTimeUnixNano": (end - 10_000_000).to_string(),
                    "endTimeUnixNano": end.to_string(),
                });
                if i < bad {
                    span["status"] = serde_json::json!({ "code": 2 });
                }
                span
            })
            .collect();
        let request = serde_json::json!({ "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "api" } }
            ]},
            "scopeSpans": [{ "spans": spans }],
        }]});
        lines.push_str(&request.to_string());
        lines.push('\n');
    }
    let path = dir.join("traces.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// The SLO of `api` with one time-to-exhaustion and one budget-drop row.
const BUDGET_ROWS: &str = "slo:
  templates: { availability: null, latency: null }
  objectives:
    - name: api
      service: api
      objective: 99
      period: 1h
      alerts:
        - { severity: page, exhausts_within: 30m, window: 10m }
        - { severity: ticket, budget_drop_percent: 20, within: 10m }
";

fn run(input: &Path, output: OutputFormat) -> (String, slipstream::replay::ReplayReport) {
    run_with(BUDGET_ROWS, input, output)
}

/// Replays `input` under the configuration `yaml`; returns what was printed and the report.
fn run_with(
    yaml: &str,
    input: &Path,
    output: OutputFormat,
) -> (String, slipstream::replay::ReplayReport) {
    let config = Config::from_yaml(yaml).unwrap();
    let out = Out::default();
    let report = replay(
        &ReplayOptions {
            config,
            input: input.to_owned(),
            format: InputFormat::Json,
            output,
            every: None,
            progress: false,
        },
        Box::new(out.clone()),
    )
    .unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    (text, report)
}

#[test]
fn replay_prints_budget_row_events_with_their_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let (text, report) = run(&input, OutputFormat::Text);
    // Both rows fire during the incident and resolve after it.
    for kind in ["exhaustion", "budget_drop"] {
        let states: Vec<AlertState> = report
            .events
            .iter()
            .filter(|e| e.row.kind.as_str() == kind)
            .map(|e| e.state)
            .collect();
        assert_eq!(
            states,
            [AlertState::Firing, AlertState::Resolved],
            "{kind}: {text}"
        );
    }
    let line = |state: &str, param: &str| {
        text.lines()
            .any(|l| l.contains(state) && l.contains(&format!("api {param}  ")))
    };
    assert!(line("FIRING", "exhausts_within=30m"), "{text}");
    assert!(line("RESOLVED", "exhausts_within=30m"), "{text}");
    assert!(line("FIRING", "budget_drop_percent=20"), "{text}");
    let exhaustion = report
        .events
        .iter()
        .find(|e| matches!(e.row.kind, RowKind::Exhaustion { .. }))
        .unwrap();
    assert_eq!(exhaustion.row.long, Duration::from_secs(600));

    // `slipstream status` names firing rows by their parameter (marked firing here).
    let slos: Vec<serde_json::Value> = report
        .slos
        .slos
        .iter()
        .map(slipstream_app::api::slo_json)
        .collect();
    let mut api = serde_json::json!({ "slos": slos });
    for a in api["slos"][0]["alerts"].as_array_mut().unwrap() {
        a["firing"] = true.into();
    }
    let table = slipstream::status::table(&api, false);
    assert!(table.contains("page exhausts within 30m (10m)"), "{table}");
    assert!(table.contains("ticket 20% of budget in 10m"), "{table}");

    let (json, _) = run(&input, OutputFormat::Json);
    let events: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("event").cloned())
        .collect();
    assert_eq!(events.len(), 4, "{json}");
    let first = events.iter().find(|e| e["kind"] == "exhaustion").unwrap();
    assert_eq!(first["exhausts_within"], "30m");
    assert_eq!(first["budget_drop_percent"], serde_json::Value::Null);
    let drop = events.iter().find(|e| e["kind"] == "budget_drop").unwrap();
    assert_eq!(drop["budget_drop_percent"], 20.0);
}

#[test]
fn replay_links_example_traces_through_the_trace_url_template() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let template = "https://tempo.example/trace/{trace_id}?span={span_id}";
    let yaml = format!("exemplars: {{ trace_url: \"{template}\" }}\n{BUDGET_ROWS}");
    let (text, report) = run_with(&yaml, &input, OutputFormat::Text);
    let firing = report
        .events
        .iter()
        .find(|e| e.state == AlertState::Firing)
        .unwrap();
    assert!(!firing.exemplars.is_empty(), "{text}");
    // The input fails spans 0-4 of each request: the examples are those, linked.
    for x in &firing.exemplars {
        assert!(x.bad);
        let span = u64::from_str_radix(&x.span_id_hex(), 16).unwrap();
        assert!((1..=5).contains(&span), "span {span} was not sent failing");
        let url = format!(
            "https://tempo.example/trace/{}?span={}",
            x.trace_id_hex(),
            x.span_id_hex()
        );
        assert!(
            text.lines()
                .any(|l| l == format!("    example trace {url} (0.010s)")),
            "{url} missing: {text}"
        );
    }

    let (json, _) = run_with(&yaml, &input, OutputFormat::Json);
    let event: serde_json::Value = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("event").cloned())
        .find(|e| e["state"] == "firing")
        .unwrap();
    let examples = event["example_traces"].as_array().unwrap();
    assert_eq!(examples.len(), firing.exemplars.len(), "{event}");
    for (v, x) in examples.iter().zip(&firing.exemplars) {
        assert_eq!(v["trace_id"], x.trace_id_hex());
        assert_eq!(v["span_id"], x.span_id_hex());
        assert_eq!(v["url"], x.link(template));
        assert_eq!(v["bad"], true);
    }

    // Without a template: the ids, no links.
    let (text, report) = run(&input, OutputFormat::Text);
    let x = report.events[0].exemplars[0];
    assert!(
        text.lines()
            .any(|l| l == format!("    example trace {} (0.010s)", x.trace_id_hex())),
        "{text}"
    );
    assert!(!text.contains("https://"), "{text}");
    let (json, _) = run(&input, OutputFormat::Json);
    assert!(json.contains("\"url\":null"), "{json}");
}
