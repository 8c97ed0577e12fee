//! `slipstream status`: the SLO table in the terminal, read from a running slipstream's admin
//! API (`GET /api/v1/slos`). Colour when stdout is a terminal, plain when piped, or the API's
//! JSON with `--output json`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// Fetches `path` from the admin server at `admin` (`host:port`) over plain HTTP/1.1.
pub fn get(admin: &str, path: &str) -> anyhow::Result<Value> {
    let addr = admin
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = TcpStream::connect(&addr).with_context(|| {
        format!("cannot reach the admin server at {addr} (is slipstream running? see --admin)")
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed answer from the admin server")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        anyhow::bail!("{path}: HTTP {status}: {}", body.trim());
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).with_context(|| format!("{path}: not JSON"))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", r * 100.0))
}

fn window<'a>(slo: &'a Value, w: &str) -> Option<&'a Value> {
    slo["windows"].as_array()?.iter().find(|x| x["window"] == w)
}

/// Renders the SLO table, sorted by budget burn (least budget left first).
pub fn table(slos: &Value, colour: bool) -> String {
    let mut rows: Vec<&Value> = slos["slos"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    rows.sort_by(|a, b| {
        let ka = a["budget_remaining"].as_f64().unwrap_or(f64::INFINITY);
        let kb = b["budget_remaining"].as_f64().unwrap_or(f64::INFINITY);
        ka.total_cmp(&kb)
            .then_with(|| a["name"].as_str().cmp(&b["name"].as_str()))
    });
    let paint = |code: &str, s: String| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s
        }
    };
    let mut out = format!(
        "{:<36} {:<20} {:>9} {:>9} {:>9} {:>12} {:>10}  {}\n",
        "SLO", "SERVICE", "OBJECTIVE", "SLI 1h", "BURN 1h", "BUDGET LEFT", "TO EXHAUST", "ALERTS"
    );
    for s in rows {
        let sli_1h = window(s, "1h")
            .and_then(|w| w["error_ratio"].as_f64())
            .map_or_else(|| "-".to_owned(), |r| format!("{:.3}%", (1.0 - r) * 100.0));
        let burn_1h = window(s, "1h")
            .and_then(|w| w["burn_rate"].as_f64())
            .map_or_else(|| "-".to_owned(), |b| format!("{b:.2}"));
        let tte = s["time_to_exhaustion_seconds"].as_f64().map_or_else(
            || "-".to_owned(),
            |t| humantime::format_duration(Duration::from_secs(t as u64)).to_string(),
        );
        let firing: Vec<String> = s["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["firing"].as_bool() == Some(true))
            .map(|a| {
                let severity = a["severity"].as_str().unwrap_or("");
                let long = a["long_window"].as_str().unwrap_or("");
                // Time-to-exhaustion and budget-drop rows by their parameter and window.
                if let Some(t) = a["exhausts_within"].as_str() {
                    format!("{severity} exhausts within {t} ({long})")
                } else if let Some(p) = a["budget_drop_percent"].as_f64() {
                    format!("{severity} {p}% of budget in {long}")
                } else {
                    format!(
                        "{severity} {long}/{}",
                        a["short_window"].as_str().unwrap_or("")
                    )
                }
            })
            .collect();
        let budget = pct(&s["budget_remaining"]);
        let budget = match s["budget_remaining"].as_f64() {
            Some(b) if b < 0.0 => paint("31", format!("{budget:>12}")),
            Some(b) if b < 0.25 => paint("33", format!("{budget:>12}")),
            Some(_) => paint("32", format!("{budget:>12}")),
            None => format!("{budget:>12}"),
        };
        let alerts = if firing.is_empty() {
            "-".to_owned()
        } else {
            paint("1;31", firing.join(", "))
        };
        out.push_str(&format!(
            "{:<36} {:<20} {:>9} {:>9} {:>9} {} {:>10}  {}\n",
            s["name"].as_str().unwrap_or(""),
            s["service"].as_str().unwrap_or(""),
            s["objective"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |o| format!("{}%", o * 100.0)),
            sli_1h,
            burn_1h,
            budget,
            tte,
            alerts
        ));
    }
    if let Some(u) = slos["uncataloged_services"].as_array()
        && !u.is_empty()
    {
        let names: Vec<&str> = u.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("\nnot in the catalog: {}\n", names.join(", ")));
    }
    out
}
