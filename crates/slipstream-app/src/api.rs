//! The JSON API of the admin server: SLO status, recent events and silences.
//!
//! - `GET /api/v1/slos`: every SLO as of the last evaluation.
//! - `GET /api/v1/events`: the most recent burn-rate events, oldest first.
//! - `GET /api/v1/silences`: the silences and maintenance windows in force.
//! - `POST /api/v1/silences`: adds one; the body has the fields of a `slo.silences` entry of
//!   the config (`kind`, `slo`, `service`, `severity`, `starts_at`, `ends_at`, `comment`).
//!   Answers 201 with the silence and its `id`, 400 with every error (including a comment
//!   over `admin.silences.max_comment_size` or an end past `admin.silences.max_duration`), or
//!   409 when `admin.silences.max_count` silences are in force. A silence without `ends_at`
//!   ends `max_duration` after it starts.
//! - `DELETE /api/v1/silences/{id}`: removes one (204, or 404).
//! - `GET /api/v1/slos/{name}`: one SLO with its history (one point a minute, the last day)
//!   and its recent events.
//! - `GET /api/v1/series?sort=traffic|errors&limit=N&window=5m`: the top series by requests or
//!   by bad requests over the window.
//! - `GET /api/v1/state/services/{service}`: one service's state for a peer gateway, answered
//!   by [`crate::peers`] (with a sidecar token).
//!
//! Every write (`POST`, `PUT`, `PATCH`, `DELETE`) must pass [`Access::check_write`], before
//! its body is read: no cross-origin `Origin` and no `Sec-Fetch-Site: cross-site` (403), the
//! bearer token when `admin.auth` is set (401), and `Content-Type: application/json` (415).
//! A web page can therefore not write: a cross-site form cannot send JSON, and a cross-site
//! `fetch` with JSON names its origin. Without a token, a request with an `Origin` (a
//! browser's) must also be addressed to an IP address or `localhost`, so a page whose name
//! was rebound to this server (DNS rebinding, same-origin with it) cannot write either. Reads
//! need none of it.
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
    // Served by `crate::peers` to peer gateways.
    ("GET", "/api/v1/state/services/{service}"),
];

use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use slipstream_config::admin::{AdminConfig, MAX_SILENCE_NAME_SIZE, SilenceLimitsConfig};
use slipstream_config::slo::SilenceConfig;
use slipstream_core::telemetry::{Counter, names};
use slipstream_core::{Clock, Registry, UnixNanos};
use slipstream_receiver::ResponseBody;
use slipstream_slo::{AlertEvent, PolicyRow, RowKind, Silence, SilenceId, SloStatus};

use slipstream_step::publish::Live;

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
        "alerts": s.alerts.iter().map(|a| with_kind(json!({
            "severity": a.row.severity.as_str(),
            "long_window": window_label(a.row.long),
            "short_window": window_label(a.row.short),
            "factor": a.row.factor,
            "firing": a.firing,
            "since": time(a.since),
            "superseded": a.superseded,
            "notified": a.notified,
        }), &a.row)).collect::<Vec<_>>(),
    })
}

/// `v` with the kind of `row` and its parameter: `kind` (`burn_rate`, `exhaustion`,
/// `budget_drop`), `exhausts_within` and `budget_drop_percent` (`null` unless of that kind).
fn with_kind(mut v: Value, row: &PolicyRow) -> Value {
    let (within, percent) = match row.kind {
        RowKind::BurnRate => (None, None),
        RowKind::Exhaustion { within } => (Some(window_label(within)), None),
        RowKind::BudgetDrop { percent } => (None, Some(percent)),
    };
    v["kind"] = json!(row.kind.as_str());
    v["exhausts_within"] = json!(within);
    v["budget_drop_percent"] = json!(percent);
    v
}

/// Example requests shown per SLO: this many most recent bad ones, and as many slowest ones.
pub const API_EXEMPLARS: usize = 3;

/// An SLO's example requests as the API shows them: `bad` (most recent first) and `slow`
/// (slowest first), each with its ids, end time, latency, outcome and, with a trace URL
/// template, the link to its trace.
pub fn exemplars_json(mut found: Vec<slipstream_core::Exemplar>, trace_url: Option<&str>) -> Value {
    let one = |e: &slipstream_core::Exemplar| exemplar_json(e, trace_url);
    found.sort_by_key(|x| std::cmp::Reverse(x.end_unix_nanos));
    let bad: Vec<Value> = found
        .iter()
        .filter(|e| e.bad)
        .take(API_EXEMPLARS)
        .map(one)
        .collect();
    found.sort_by_key(|x| std::cmp::Reverse(x.duration_nanos));
    let slow: Vec<Value> = found.iter().take(API_EXEMPLARS).map(one).collect();
    json!({ "bad": bad, "slow": slow })
}

/// One example request as the API (and `replay --output json`) shows it: its ids, end time,
/// latency, outcome and, with a trace URL template, the link to its trace.
pub fn exemplar_json(e: &slipstream_core::Exemplar, trace_url: Option<&str>) -> Value {
    json!({
        "trace_id": e.trace_id_hex(),
        "span_id": e.span_id_hex(),
        "end": time(Some(e.end_unix_nanos)),
        "duration_seconds": e.duration_nanos as f64 / 1e9,
        "bad": e.bad,
        "url": trace_url.map(|t| e.link(t)),
    })
}

/// One alert event as the API (and `replay --output json`) shows it.
pub fn event_json(e: &AlertEvent) -> Value {
    let v = json!({
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
        "bad_requests_share": e.bad_requests_share,
    });
    with_kind(v, &e.row)
}

// === impl Access ===

/// Why a write was refused; the `reason` label of `slipstream_admin_refused_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An `Origin` other than the server's own, or `Sec-Fetch-Site: cross-site` (403).
    CrossOrigin,
    /// No accepted bearer token while `admin.auth` is set (401).
    Unauthenticated,
    /// Not `Content-Type: application/json` (415).
    ContentType,
    /// `admin.silences.max_count` silences are in force (409).
    TooManySilences,
    /// A silence that is malformed or over a size or duration limit (400).
    InvalidSilence,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::CrossOrigin,
        Refusal::Unauthenticated,
        Refusal::ContentType,
        Refusal::TooManySilences,
        Refusal::InvalidSilence,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::CrossOrigin => "cross_origin",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::ContentType => "content_type",
            Refusal::TooManySilences => "too_many_silences",
            Refusal::InvalidSilence => "invalid_silence",
        }
    }
}

/// Who may write through the API and how much: the bearer tokens of `admin.auth`, the limits
/// of `admin.silences`, the clock silences are measured against, and the refusal counters.
#[derive(Debug)]
pub struct Access {
    /// Accepted tokens; `None` when `admin.auth` is not set.
    tokens: Option<RwLock<Vec<Box<[u8]>>>>,
    limits: SilenceLimitsConfig,
    clock: Arc<dyn Clock>,
    refused: [Arc<Counter>; Refusal::ALL.len()],
}

impl Access {
    /// Reads the tokens of `admin.auth` (inline and from its file) and registers the counters.
    pub fn new(
        cfg: &AdminConfig,
        clock: Arc<dyn Clock>,
        registry: &Registry,
    ) -> Result<Access, String> {
        let tokens = cfg.tokens()?.map(|t| RwLock::new(token_bytes(t)));
        Ok(Access {
            tokens,
            limits: cfg.silences.clone(),
            clock,
            refused: Refusal::ALL.map(|r| registry.counter(&names::ADMIN_REFUSED, &[r.as_str()])),
        })
    }

    /// Reads the tokens of `admin.auth` again (SIGHUP). `Ok(false)` when authentication was
    /// off at start: turning it on or off takes a restart.
    pub fn reload_tokens(&self, cfg: &AdminConfig) -> Result<bool, String> {
        let (Some(lock), Some(new)) = (&self.tokens, cfg.tokens()?) else {
            return Ok(false);
        };
        *lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = token_bytes(new);
        Ok(true)
    }

    /// Counts a refusal.
    fn refuse(&self, why: Refusal) {
        self.refused[why as usize].inc();
    }

    /// Whether a write with these headers may go on, checked before its body is read; why
    /// not otherwise (counted; [`Refusal::response`] is the answer).
    pub fn check_write(&self, headers: &HeaderMap, authority: Option<&str>) -> Result<(), Refusal> {
        let refused = |why| {
            self.refuse(why);
            Err(why)
        };
        if is_cross_origin(headers, authority) {
            return refused(Refusal::CrossOrigin);
        }
        // DNS rebinding: a page of `evil.example`, resolved to this server, is same-origin
        // with it and sends its own name as Host. Without a token, a browser (it sends
        // `Origin`) writes only to an address or `localhost`, which no page can rebind.
        if self.tokens.is_none()
            && headers.contains_key(header::ORIGIN)
            && !authority.is_some_and(is_address_or_localhost)
        {
            return refused(Refusal::CrossOrigin);
        }
        if let Some(tokens) = &self.tokens {
            let tokens = tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !bearer_accepted(headers, &tokens) {
                return refused(Refusal::Unauthenticated);
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refused(Refusal::ContentType);
        }
        Ok(())
    }
}

impl Refusal {
    /// The answer to a write refused by [`Access::check_write`].
    pub fn response(self) -> Response<ResponseBody> {
        match self {
            Refusal::CrossOrigin => error(
                StatusCode::FORBIDDEN,
                "cross-origin write refused: the Origin is not this server (or Sec-Fetch-Site is cross-site)",
            ),
            Refusal::Unauthenticated => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "this write needs `Authorization: Bearer <token>` with a token of admin.auth",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                r
            }
            Refusal::ContentType => error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "writes need `Content-Type: application/json`",
            ),
            Refusal::TooManySilences => error(StatusCode::CONFLICT, "too many silences"),
            Refusal::InvalidSilence => error(StatusCode::BAD_REQUEST, "invalid silence"),
        }
    }
}

fn token_bytes(tokens: Vec<String>) -> Vec<Box<[u8]>> {
    tokens
        .into_iter()
        .map(|t| t.into_bytes().into_boxed_slice())
        .collect()
}

/// Whether `Authorization: Bearer <t>` carries one of `tokens` (compared in constant time).
fn bearer_accepted(headers: &HeaderMap, tokens: &[Box<[u8]>]) -> bool {
    slipstream_core::auth::bearer_accepted(
        headers
            .get(header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes),
        tokens,
    )
}

/// Whether a request comes from another origin than this server: `Sec-Fetch-Site:
/// cross-site`, an `Origin` of `null`, or one whose host and port are not those the request
/// was sent to (`authority`: the `Host` header, or the HTTP/2 `:authority`). A request without
/// `Origin` (curl, the CLI) is not cross-origin.
pub fn is_cross_origin(headers: &HeaderMap, authority: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some((scheme, rest)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return true; // `null`, or not a URL
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return true,
    };
    let Some(authority) = authority else {
        return true;
    };
    match (
        host_port(rest.trim_end_matches('/'), default_port),
        host_port(authority, default_port),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    }
}

/// Whether the host of `authority` is an IP address or `localhost`.
fn is_address_or_localhost(authority: &str) -> bool {
    host_port(authority, 80)
        .is_some_and(|(host, _)| host == "localhost" || host.parse::<std::net::IpAddr>().is_ok())
}

/// `host[:port]` (or `[v6][:port]`) as lower-case host and port.
fn host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The limits of `admin.silences` on one silence: sizes, and its end (filled in when absent).
/// Every problem, with its field path.
fn limit_silence(
    cfg: &mut SilenceConfig,
    limits: &SilenceLimitsConfig,
    now: std::time::SystemTime,
) -> Vec<String> {
    let mut errs = Vec::new();
    let max_comment = limits.max_comment_size.as_usize();
    if cfg.comment.len() > max_comment {
        errs.push(format!(
            "silence.comment: {} bytes, more than admin.silences.max_comment_size ({max_comment})",
            cfg.comment.len()
        ));
    }
    for (field, v) in [("slo", &cfg.slo), ("service", &cfg.service)] {
        if let Some(v) = v
            && v.len() > MAX_SILENCE_NAME_SIZE
        {
            errs.push(format!(
                "silence.{field}: {} bytes, more than {MAX_SILENCE_NAME_SIZE}",
                v.len()
            ));
        }
    }
    let from = cfg.starts_at.map_or(now, |s| s.max(now));
    let latest = from + limits.max_duration;
    match cfg.ends_at {
        None => cfg.ends_at = Some(latest),
        Some(end) if end > latest => errs.push(format!(
            "silence.ends_at: more than admin.silences.max_duration ({}) after the start",
            humantime::format_duration(limits.max_duration)
        )),
        Some(_) => {}
    }
    errs
}

/// Answers a request under `/api/v1/`; `None` when the path is not an API path. Writes are
/// checked with [`Access::check_write`] first.
pub async fn handle(
    live: &Live,
    access: &Access,
    req: http::Request<Incoming>,
) -> Option<Response<ResponseBody>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path.starts_with("/api/") && !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
    {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        if let Err(why) = access.check_write(req.headers(), authority.as_deref()) {
            return Some(why.response());
        }
    }
    let resp = match (method, path.as_str()) {
        (Method::GET, "/api/v1/slos") => {
            let p = live.published();
            let slos: Vec<Value> = live.with_evaluator(|ev| {
                p.slos
                    .slos
                    .iter()
                    .map(|s| {
                        let mut v = slo_json(s);
                        let found = ev.slo_exemplars(&p.series, s.id, 0);
                        v["exemplars"] = exemplars_json(found, ev.trace_url());
                        v
                    })
                    .collect()
            });
            json_response(
                StatusCode::OK,
                &json!({
                    "evaluated_at": time(Some(p.slos.at).filter(|t| *t > 0)),
                    "slos": slos,
                    "uncataloged_services": p.slos.uncataloged_services,
                    "services_over_limit": {
                        "count": p.slos.services_over_limit_count,
                        "names": p.slos.services_over_limit,
                    },
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
                Err(e) => {
                    access.refuse(Refusal::InvalidSilence);
                    return Some(error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
                }
            };
            let mut de = serde_json::Deserializer::from_slice(&body);
            let mut cfg: SilenceConfig = match serde_path_to_error::deserialize(&mut de) {
                Ok(c) => c,
                Err(e) => {
                    access.refuse(Refusal::InvalidSilence);
                    return Some(error(
                        StatusCode::BAD_REQUEST,
                        format!("{}: {}", e.path(), e.inner()),
                    ));
                }
            };
            let now = UNIX_EPOCH + Duration::from_nanos(access.clock.now_unix_nanos());
            let mut msgs: Vec<String> = cfg
                .errors("silence")
                .iter()
                .map(ToString::to_string)
                .collect();
            msgs.extend(limit_silence(&mut cfg, &access.limits, now));
            if !msgs.is_empty() {
                access.refuse(Refusal::InvalidSilence);
                return Some(json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": msgs.join("; "), "errors": msgs }),
                ));
            }
            let silence = Silence::from(&cfg);
            let max = access.limits.max_count;
            // Counted and added under one lock, so concurrent writes cannot pass the limit.
            let added = live.with_evaluator(|e| {
                let engine = e.engine_mut();
                (engine.silences().len() < max).then(|| engine.add_silence(silence.clone()))
            });
            match added {
                Some(id) => json_response(StatusCode::CREATED, &silence_json(id, &silence)),
                None => {
                    access.refuse(Refusal::TooManySilences);
                    error(
                        StatusCode::CONFLICT,
                        format!(
                            "{max} silences are in force (admin.silences.max_count): remove one, or wait for one to end"
                        ),
                    )
                }
            }
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
                "spans": w.spans,
                "sampled_share": w.sampled_share(),
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

#[cfg(test)]
mod tests;
