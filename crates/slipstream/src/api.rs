//! The JSON API of the admin server: SLO status, recent events and silences.
//!
//! - `GET /api/v1/slos`: every SLO as of the last evaluation.
//! - `GET /api/v1/events`: the most recent burn-rate events, oldest first.
//! - `GET /api/v1/silences`: the silences and maintenance windows in force.
//! - `POST /api/v1/silences`: adds one; the body has the fields of a `slo.silences` entry of
//!   the config (`kind`, `slo`, `service`, `severity`, `starts_at`, `ends_at`, `comment`).
//!   Answers 201 with the silence and its `id`, or 400 with every error.
//! - `DELETE /api/v1/silences/{id}`: removes one (204, or 404).
//! - `GET /api/v1/slos/{name}`: one SLO with its history (one point a minute, the last day)
//!   and its recent events.
//! - `GET /api/v1/series?sort=traffic|errors&limit=N&window=5m`: the top series by requests or
//!   by bad requests over the window.
//!
//! `docs/openapi.yaml` documents all of it; a test checks it against the server.

/// Every route: (method, path pattern as in `docs/openapi.yaml`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/slos"),
    ("GET", "/api/v1/slos/{name}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/series"),
    ("GET", "/api/v1/silences"),
    ("POST", "/api/v1/silences"),
    ("DELETE", "/api/v1/silences/{id}"),
];

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use slipstream_config::slo::SilenceConfig;
use slipstream_core::UnixNanos;
use slipstream_receiver::ResponseBody;
use slipstream_slo::{AlertEvent, Silence, SilenceId, SloStatus};

use crate::live::Live;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

fn json_response(status: StatusCode, v: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(
        serde_json::to_vec_pretty(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<ResponseBody> {
    json_response(status, &json!({ "error": msg.into() }))
}

/// RFC 3339 UTC with seconds, or null.
pub fn time(t: Option<UnixNanos>) -> Value {
    match t {
        Some(t) => Value::String(
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(t)).to_string(),
        ),
        None => Value::Null,
    }
}

fn silence_json(id: SilenceId, s: &Silence) -> Value {
    json!({
        "id": id.0,
        "kind": s.kind.as_str(),
        "slo": s.slo,
        "service": s.service,
        "severity": s.severity.map(|v| v.as_str()),
        "starts_at": time(s.starts_at),
        "ends_at": time(s.ends_at),
        "comment": s.comment,
    })
}

fn window_label(d: Duration) -> String {
    slipstream_core::export::format_duration(d)
}

/// One SLO as the API shows it.
pub fn slo_json(s: &SloStatus) -> Value {
    json!({
        "name": s.name,
        "service": s.service,
        "sli": s.sli.kind(),
        "source": s.source.as_str(),
        "objective": s.objective,
        "period": match s.period {
            slipstream_slo::Period::Rolling(d) => window_label(d),
            slipstream_slo::Period::CalendarMonth => "calendar_month".to_owned(),
        },
        "labels": s.labels,
        "windows": s.windows.iter().map(|w| json!({
            "window": window_label(w.window),
            "total": w.counts.total,
            "bad": w.counts.bad,
            "error_ratio": w.error_ratio,
            "burn_rate": w.burn_rate,
        })).collect::<Vec<_>>(),
        "period_total": s.period_counts.total,
        "period_bad": s.period_counts.bad,
        "budget_remaining": s.budget_remaining,
        "current_burn_rate": s.current_burn_rate,
        "time_to_exhaustion_seconds": s.time_to_exhaustion.map(|d| d.as_secs_f64()),
        "alerts": s.alerts.iter().map(|a| json!({
            "severity": a.row.severity.as_str(),
            "long_window": window_label(a.row.long),
            "short_window": window_label(a.row.short),
            "factor": a.row.factor,
            "firing": a.firing,
            "since": time(a.since),
            "superseded": a.superseded,
            "notified": a.notified,
        })).collect::<Vec<_>>(),
    })
}

/// One alert event as the API (and `replay --output json`) shows it.
pub fn event_json(e: &AlertEvent) -> Value {
    json!({
        "at": time(Some(e.at)),
        "state": e.state.as_str(),
        "slo": e.slo,
        "service": e.service,
        "severity": e.severity.as_str(),
        "long_window": window_label(e.row.long),
        "short_window": window_label(e.row.short),
        "factor": e.row.factor,
        "long_burn_rate": e.long_burn_rate,
        "short_burn_rate": e.short_burn_rate,
        "budget_remaining": e.budget_remaining,
        "versions": e.versions,
        "newest_version": e.newest_version.as_ref().map(|(v, _)| v),
        "newest_version_since": time(e.newest_version.as_ref().map(|(_, t)| *t)),
        "firing_since": time(Some(e.firing_since)),
        "repeat": e.repeat,
        "superseded_by_page": e.superseded_by_page,
    })
}

/// Answers a request under `/api/v1/`; `None` when the path is not an API path.
pub async fn handle(live: &Live, req: http::Request<Incoming>) -> Option<Response<ResponseBody>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = match (method, path.as_str()) {
        (Method::GET, "/api/v1/slos") => {
            let p = live.published();
            json_response(
                StatusCode::OK,
                &json!({
                    "evaluated_at": time(Some(p.slos.at).filter(|t| *t > 0)),
                    "slos": p.slos.slos.iter().map(slo_json).collect::<Vec<_>>(),
                    "uncataloged_services": p.slos.uncataloged_services,
                }),
            )
        }
        (Method::GET, p) if p.starts_with("/api/v1/slos/") => {
            let name = percent_decode(&p["/api/v1/slos/".len()..]);
            let published = live.published();
            match published.slos.slo(&name) {
                Some(slo) => {
                    let mut v = slo_json(slo);
                    v["history"] = live
                        .history(&name)
                        .iter()
                        .map(|h| {
                            json!({
                                "at": time(Some(h.at)),
                                "budget_remaining": h.budget_remaining,
                                "windows": h.windows.iter().map(|(w, r, b)| json!({
                                    "window": window_label(*w),
                                    "error_ratio": r,
                                    "burn_rate": b,
                                })).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    v["events"] = live
                        .recent_events()
                        .iter()
                        .filter(|e| e.slo == name)
                        .map(event_json)
                        .collect();
                    json_response(StatusCode::OK, &v)
                }
                None => error(StatusCode::NOT_FOUND, format!("no SLO named `{name}`")),
            }
        }
        (Method::GET, "/api/v1/series") => match series_query(live, req.uri().query()) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (Method::GET, "/api/v1/events") => {
            let events: Vec<Value> = live.recent_events().iter().map(event_json).collect();
            json_response(StatusCode::OK, &json!({ "events": events }))
        }
        (Method::GET, "/api/v1/silences") => {
            let all: Vec<Value> = live
                .silences()
                .iter()
                .map(|(id, s)| silence_json(*id, s))
                .collect();
            json_response(StatusCode::OK, &json!({ "silences": all }))
        }
        (Method::POST, "/api/v1/silences") => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Some(error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())),
            };
            let mut de = serde_json::Deserializer::from_slice(&body);
            let cfg: SilenceConfig = match serde_path_to_error::deserialize(&mut de) {
                Ok(c) => c,
                Err(e) => {
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        format!("{}: {}", e.path(), e.inner()),
                    ));
                }
            };
            let errs = cfg.errors("silence");
            if !errs.is_empty() {
                let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                return Some(json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": msgs.join("; "), "errors": msgs }),
                ));
            }
            let silence = Silence::from(&cfg);
            let id = live.add_silence(silence.clone());
            json_response(StatusCode::CREATED, &silence_json(id, &silence))
        }
        (Method::DELETE, p) if p.starts_with("/api/v1/silences/") => {
            match p["/api/v1/silences/".len()..].parse::<u64>() {
                Ok(id) if live.remove_silence(SilenceId(id)) => {
                    let mut r = Response::new(ResponseBody::empty());
                    *r.status_mut() = StatusCode::NO_CONTENT;
                    r
                }
                _ => error(StatusCode::NOT_FOUND, format!("no silence {p}")),
            }
        }
        (_, p) if p.starts_with("/api/v1/") => error(
            StatusCode::NOT_FOUND,
            "unknown API path or method: see /api/v1/slos, /api/v1/events, /api/v1/silences",
        ),
        _ => return None,
    };
    Some(resp)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn series_query(live: &Live, query: Option<&str>) -> Result<Value, String> {
    let (mut sort, mut limit, mut window) =
        ("traffic".to_owned(), 20usize, Duration::from_secs(300));
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sort" if v == "traffic" || v == "errors" => sort = v.to_owned(),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("limit: expected 1 to 1000")?;
            }
            "window" => {
                window = humantime::parse_duration(v).map_err(|e| format!("window: {e}"))?;
            }
            _ => {
                return Err(format!(
                    "unknown parameter `{pair}` (sort=traffic|errors, limit, window)"
                ));
            }
        }
    }
    let p = live.published();
    let mut rows: Vec<(u64, u64, Value)> = p
        .series
        .series()
        .iter()
        .map(|s| {
            let w = p.series.window(s, window);
            let labels: serde_json::Map<String, Value> = s
                .labels()
                .iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            let quantiles = w.quantiles().map(|q| {
                json!({
                    "p50": q[0].as_secs_f64(), "p90": q[1].as_secs_f64(), "p95": q[2].as_secs_f64(),
                    "p99": q[3].as_secs_f64(), "p999": q[4].as_secs_f64(),
                })
            });
            let row = json!({
                "labels": labels,
                "total": w.total,
                "bad": w.bad,
                "error_ratio": w.error_ratio(),
                "latency_seconds": quantiles,
            });
            (w.total, w.bad, row)
        })
        .filter(|(t, _, _)| *t > 0)
        .collect();
    if sort == "errors" {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    } else {
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    }
    rows.truncate(limit);
    Ok(json!({
        "window": window_label(window),
        "sort": sort,
        "series": rows.into_iter().map(|r| r.2).collect::<Vec<_>>(),
    }))
}
