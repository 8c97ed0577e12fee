//! Replicated gateways hand each other a service's state: a gateway that newly owns a service
//! (a scale-up, or a replacement without its state file) takes the windows, budgets and alert
//! states its peers computed before it evaluates the service, so it neither starts from a full
//! budget nor pages anew for an incident its peers already paged for.
//!
//! [`Peers`] stands between the partial-aggregates endpoint and the aggregator (it is the
//! intake's [`AggregatesSink`]) and does three things:
//!
//! - **Bookkeeping.** For every sender run (instance name and start time) and service it
//!   remembers the last sequence number taken with a series of that service. A sidecar numbers
//!   its shipments once and sends each one, the same bytes, to all R gateways of a service, so
//!   "run r up to sequence n" names exactly what a gateway counted for a service.
//! - **Serving** `GET /api/v1/state/services/{service}` on the admin server, to holders of a
//!   `receivers.otlp.aggregates.auth` token: the service's state in the persisted format
//!   ([`slipstream_slo::EngineState`]) with the sequences it holds. The accepted shipments are
//!   merged first, under the same lock that takes new ones, so the two agree.
//! - **Asking**, with `receivers.otlp.aggregates.peers` set (`endpoints`, `statefulset` or
//!   `dns`): the first shipment for a service this gateway holds nothing of (after its own
//!   restore) is answered 503 with `Retry-After`, and so is every shipment with that service,
//!   while the peers are asked, every 250 ms until an answer holds every shipment held back
//!   from each sender run still shipping the service (`pick`) or `peers.timeout` passes; the
//!   sidecars keep them queued. The answer is imported
//!   ([`slipstream_slo::SloEngine::import_service`]), and from then on a series of the
//!   service in a shipment the peer had counted (its run, at or below its sequence) is left
//!   out: the rest is new to both. Every peer saying it holds nothing: the service starts
//!   empty at once; no answer at all: it starts empty at the timeout.
//! - **Replacing stale data**: a service this gateway holds data of that is older than its
//!   `aggregator.retention` (it was away longer, or the service left its replicas and came
//!   back) is asked for the same way, and a peer's state replaces its own
//!   ([`slipstream_slo::SloEngine::forget_service`]); with no answer it goes on from its own.
//!
//! - **Handing off**, with `peers.replicas` set: a service this gateway no longer ranks among
//!   the top `replicas` of (ranked as the sidecars rank the gateways: `peers.statefulset`'s
//!   pod names or `peers.members`) is handed off, at start, at a reload and at its next
//!   shipment: its SLOs are still fed and evaluated, and kept for a peer that asks and for a
//!   later return, but no event of it is sent
//!   ([`slipstream_slo::SloEngine::hand_off`]), and the Alertmanager exporter lets its firing
//!   alerts go without posting them resolved: the gateways that rank it keep them active. A
//!   service ranked again is taken from a peer afresh, as a stale one is.
//!
//! Nothing here runs per span: one lock and a map lookup per series of a shipment.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::{Value, json};
use slipstream_config::aggregates::PeersConfig;
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::route::Rendezvous;
use slipstream_core::telemetry::Counter;
use slipstream_core::{AggregatesSink, Clock, MergeError, Merged, Registry, UnixNanos};
use slipstream_receiver::ResponseBody;
use slipstream_slo::EngineState;
use slipstream_step::publish::Live;

/// The admin path a peer serves a service's state under (the service follows, percent-encoded).
pub const STATE_PATH: &str = "/api/v1/state/services/";
/// Largest state answer read from a peer.
const MAX_ANSWER: usize = 64 << 20;
/// How long a sender run is remembered after its last shipment: the gateways' default
/// `aggregator.retention`, beyond which its shipments are refused as too old anyway.
const FORGET_RUN_AFTER: u64 = 3_600_000_000_000;
/// How long a sidecar is asked to wait before it sends a held-back shipment again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The config field of the peers found by DNS.
const DNS_FIELD: &str = "receivers.otlp.aggregates.peers.dns";
/// The header a gateway names itself with when it asks, so that asking itself (found by DNS)
/// gets a 404.
const ASKER: &str = "x-slipstream-peer";
/// How often the peers are asked again while no answer holds what was held back.
const ASK_AGAIN: Duration = Duration::from_millis(250);

/// A sender run: instance name and start time.
type Run = (String, UnixNanos);

/// What happened to one service's state transfer; the `outcome` label of
/// `slipstream_state_transfers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A peer's state was imported.
    Imported,
    /// Every peer answered and none holds the service: it starts empty.
    Empty,
    /// No peer answered within `peers.timeout`: it starts empty.
    Failed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Empty => "empty",
            Outcome::Failed => "failed",
        }
    }
}

/// What one sender run shipped: per service the last sequence taken with a series of it, and
/// when.
#[derive(Debug, Default)]
struct RunBook {
    at: UnixNanos,
    services: HashMap<String, (u64, UnixNanos)>,
}

/// What a peer's state holds of one sender run: its last sequence with the service, and how
/// long before the answer the peer took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    sequence: u64,
    age: u64,
}

#[derive(Debug, Default)]
struct Book {
    /// Per sender run: what it shipped.
    merged: HashMap<Run, RunBook>,
    /// Services this gateway holds state for (or decided to start empty).
    known: HashSet<String>,
    /// Services whose state is being asked for (their shipments are held back), with the
    /// first sequence held back from each sender run and when.
    asking: HashMap<String, HashMap<Run, (u64, UnixNanos)>>,
    /// Per imported service: when it was imported, and per sender run the last sequence the
    /// peer's state holds.
    counted: HashMap<String, (UnixNanos, HashMap<Run, u64>)>,
    /// When a shipment with each service was last taken.
    last_taken: HashMap<String, UnixNanos>,
    /// Services being asked for whose own data is stale: a peer's state replaces it.
    replacing: HashSet<String>,
    /// When runs not heard from were last forgotten.
    pruned: UnixNanos,
    /// Services handed off: this gateway no longer ranks among their replicas.
    handed_off: HashSet<String>,
}

/// How the sidecars rank the gateways (`peers.replicas` with `statefulset` or `members`).
#[derive(Debug, Clone)]
struct Ranking {
    route: Rendezvous,
    /// This gateway's index in `route`.
    me: usize,
    replicas: usize,
}

impl Ranking {
    fn of(cfg: &PeersConfig) -> Option<Ranking> {
        let own = std::env::var("HOSTNAME").ok();
        let ranking = cfg.ranking(own.as_deref());
        if ranking.is_none() && cfg.replicas > 0 {
            tracing::warn!(
                hostname = ?own,
                "receivers.otlp.aggregates.peers.replicas: this gateway is not among the ranked gateways (statefulset pods or member); it hands no service off"
            );
        }
        ranking.map(|(route, me)| Ranking {
            route,
            me,
            replicas: cfg.replicas,
        })
    }

    fn ranks(&self, service: &str) -> bool {
        self.route
            .pick_n(service.as_bytes(), self.replicas)
            .contains(&self.me)
    }
}

/// What lets go of a handed-off service's firing alerts (the event exporters).
type Forget = Box<dyn Fn(&str) -> usize + Send + Sync>;

/// The partial-aggregates sink of a gateway with replicated state (see the module docs).
pub struct Peers {
    inner: Arc<dyn AggregatesSink>,
    live: Arc<Live>,
    clock: Arc<dyn Clock>,
    book: Mutex<Book>,
    cfg: RwLock<PeersConfig>,
    /// The tokens a peer must present: the sidecars' (`receivers.otlp.aggregates.auth`).
    tokens: RwLock<Vec<String>>,
    client: slipstream_exporters::delivery::HttpClient,
    runtime: tokio::runtime::Handle,
    /// How old this gateway's data of a service may be before a peer's replaces it.
    stale_after: u64,
    /// This gateway's name in its own requests to peers ([`ASKER`]): its start time and
    /// process id.
    me: String,
    transfers: [Arc<Counter>; 3],
    served: Arc<Counter>,
    /// How the gateways rank services; `None`: nothing is handed off.
    ranking: RwLock<Option<Ranking>>,
    forget: OnceLock<Forget>,
    handoffs: Arc<Counter>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("peers", &self.cfg.read().map(|c| c.endpoints.clone()).ok())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Peers ===

impl Peers {
    /// A sink handing shipments to `inner` (the aggregator) and importing into / exporting
    /// from the engine of `live`; peers as `cfg` says, served to holders of `tokens`. Call it
    /// inside the runtime (transfers are spawned on it), after the state file was restored.
    pub fn new(
        inner: Arc<dyn AggregatesSink>,
        live: Arc<Live>,
        clock: Arc<dyn Clock>,
        cfg: &PeersConfig,
        tokens: Vec<String>,
        stale_after: Duration,
        registry: &Registry,
    ) -> anyhow::Result<Peers> {
        let client = slipstream_exporters::delivery::http_client(
            "receivers.otlp.aggregates.peers",
            cfg.timeout,
            None,
        )?;
        let transfer =
            |o: Outcome| registry.counter(&crate::state::names::TRANSFERS, &[o.as_str()]);
        let ranking = RwLock::new(Ranking::of(cfg));
        let peers = Peers {
            inner,
            live,
            clock,
            book: Mutex::new(Book::default()),
            cfg: RwLock::new(cfg.clone()),
            tokens: RwLock::new(tokens),
            client,
            runtime: tokio::runtime::Handle::current(),
            stale_after: u64::try_from(stale_after.as_nanos()).unwrap_or(u64::MAX),
            me: format!(
                "{:x}-{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
                std::process::id()
            ),
            transfers: [
                transfer(Outcome::Imported),
                transfer(Outcome::Empty),
                transfer(Outcome::Failed),
            ],
            served: registry.counter(&crate::state::names::TRANSFERS_SERVED, &[]),
            ranking,
            forget: OnceLock::new(),
            handoffs: registry.counter(&crate::state::names::HANDOFFS, &[]),
        };
        peers.hand_off_unranked();
        Ok(peers)
    }

    /// Sets what lets go of a handed-off service's firing alerts (once; later calls are
    /// ignored), and lets go of those of the services handed off so far.
    pub fn on_hand_off(&self, forget: impl Fn(&str) -> usize + Send + Sync + 'static) {
        if self.forget.set(Box::new(forget)).is_ok() {
            let handed: Vec<String> = lock(&self.book).handed_off.iter().cloned().collect();
            if let Some(f) = self.forget.get() {
                for s in handed {
                    f(&s);
                }
            }
        }
    }

    /// Whether this gateway ranks among the replicas of `service` (always, without a ranking).
    fn ranks(&self, service: &str) -> bool {
        self.ranking
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|r| r.ranks(service))
    }

    /// Hands `service` off (see the module docs); once per service until it is taken back.
    fn hand_off(&self, book: &mut Book, service: &str) {
        if !book.handed_off.insert(service.to_owned()) {
            return;
        }
        self.live
            .with_evaluator(|e| e.engine_mut().hand_off(service));
        let alerts = self.forget.get().map_or(0, |f| f(service));
        self.handoffs.inc();
        tracing::info!(
            service = %service,
            alerts_let_go = alerts,
            "hand-off: this gateway no longer ranks among the service's replicas; it sends no events for it"
        );
    }

    /// Hands off every service the engine holds that this gateway does not rank.
    fn hand_off_unranked(&self) {
        if self.ranking.read().map(|r| r.is_none()).unwrap_or(true) {
            return;
        }
        let services = self.live.with_evaluator(|e| e.engine().services());
        let mut book = lock(&self.book);
        for s in services.iter().filter(|s| !self.ranks(s)) {
            self.hand_off(&mut book, s);
        }
    }

    /// Takes new peers and tokens (a reload); transfers under way keep the old ones.
    pub fn reload(&self, cfg: &PeersConfig, tokens: Vec<String>) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg.clone();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
        *self.ranking.write().unwrap_or_else(|e| e.into_inner()) = Ranking::of(cfg);
        self.hand_off_unranked();
    }

    fn asks(&self) -> bool {
        self.cfg.read().map(|c| c.any()).unwrap_or(false)
    }

    /// The state of `service` with the sequences it holds, as served to a peer; `None` when
    /// this gateway holds nothing of it.
    pub fn export(&self, service: &str) -> Option<Value> {
        let book = lock(&self.book);
        // Every shipment taken so far is merged and fed to the engine before the state is
        // read; none is taken meanwhile (the book stays locked).
        self.live.step(false);
        let state = self
            .live
            .with_evaluator(|e| e.engine().export_service(service))?;
        let now = self.clock.now_unix_nanos();
        let mut counted: HashMap<&Run, Counted> = HashMap::new();
        for (run, book) in &book.merged {
            if let Some(&(sequence, at)) = book.services.get(service) {
                let age = now.saturating_sub(at);
                counted.insert(run, Counted { sequence, age });
            }
        }
        if let Some((at, runs)) = book.counted.get(service) {
            for (run, &sequence) in runs {
                let age = now.saturating_sub(*at);
                let e = counted.entry(run).or_insert(Counted { sequence, age });
                e.sequence = e.sequence.max(sequence);
            }
        }
        let counted: Vec<Value> = counted
            .into_iter()
            .map(|((instance, started), c)| {
                json!({
                    "instance": instance,
                    "started_unix_nanos": started,
                    "sequence": c.sequence,
                    "age_nanos": c.age,
                })
            })
            .collect();
        Some(json!({ "service": service, "state": state, "counted": counted }))
    }

    /// Answers `GET /api/v1/state/services/{service}`; `None` for any other path.
    pub fn handle(
        &self,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Response<ResponseBody>> {
        let encoded = path.strip_prefix(STATE_PATH)?;
        if method != http::Method::GET {
            return Some(answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "error": "use GET" }),
            ));
        }
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let given = headers
            .get(header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        if !slipstream_core::auth::bearer_accepted(given, &tokens) {
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "a service's state is served to holders of a receivers.otlp.aggregates.auth token" }),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return Some(r);
        }
        let service = percent_decode(encoded);
        if headers
            .get(ASKER)
            .is_some_and(|v| v.as_bytes() == self.me.as_bytes())
        {
            return Some(answer(
                StatusCode::NOT_FOUND,
                &json!({ "error": "this gateway is the one asking" }),
            ));
        }
        Some(match self.export(&service) {
            Some(v) => {
                self.served.inc();
                answer(StatusCode::OK, &v)
            }
            None => answer(
                StatusCode::NOT_FOUND,
                &json!({ "error": format!("no state for service `{service}`") }),
            ),
        })
    }

    /// Asks the peers for `service` until one answer holds every shipment this gateway held
    /// back (see [`pick`]) or `peers.timeout` passes, imports the best answer, and lets
    /// the service's shipments through.
    async fn ask(self: Arc<Self>, service: String) {
        let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone();
        let own = std::env::var("HOSTNAME").ok();
        let listed = cfg.urls(own.as_deref());
        let started = tokio::time::Instant::now();
        let deadline = started + cfg.timeout;
        let url = |base: &String| {
            format!(
                "{}{STATE_PATH}{}",
                base.trim_end_matches('/'),
                percent_encode(&service)
            )
        };
        let mut logged = false;
        let (outcome, best) = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Found by DNS: looked up again each round; a failed lookup counts as a peer
            // that did not answer.
            let mut peers = listed.clone();
            let mut unresolved = None;
            if let Some(d) = &cfg.dns {
                let found = match slipstream_exporters::DnsName::parse(DNS_FIELD, d) {
                    Ok(name) => name.lookup().await,
                    Err(e) => Err(e),
                };
                match found {
                    Ok(urls) => peers.extend(urls),
                    Err(e) => unresolved = Some(format!("{DNS_FIELD}: {e}")),
                }
            }
            let token = cfg.token();
            let asks = peers.iter().map(|base| {
                let (client, token, url) = (self.client.clone(), token.clone(), url(base));
                let me = self.me.clone();
                async move {
                    match tokio::time::timeout(left, fetch(&client, &url, &token?, &me)).await {
                        Ok(answer) => answer,
                        Err(_) => Err(format!("{url}: no answer in time")),
                    }
                }
            });
            let mut answers = join_all(asks).await;
            answers.extend(unresolved.map(Err));
            let failed = answers.iter().filter(|a| a.is_err()).count();
            if failed > 0 && !logged {
                logged = true;
                for e in answers.iter().filter_map(|a| a.as_ref().err()) {
                    tracing::warn!(service = %service, "state transfer: {e}");
                }
            }
            let found: Vec<Transfer> = answers
                .into_iter()
                .filter_map(|a| a.ok().flatten())
                .collect();
            let over = tokio::time::Instant::now() >= deadline;
            if found.is_empty() {
                if failed == 0 {
                    break (Outcome::Empty, None);
                }
                if over {
                    break (Outcome::Failed, None);
                }
            } else {
                let held = lock(&self.book)
                    .asking
                    .get(&service)
                    .cloned()
                    .unwrap_or_default();
                let now = self.clock.now_unix_nanos();
                let best = pick(&service, found, &held, now, cfg.timeout);
                if best.1 || over {
                    if !best.1 {
                        tracing::warn!(
                            service = %service,
                            "state transfer: no peer's state holds every shipment held back within receivers.otlp.aggregates.peers.timeout; taking the latest, which may miss some"
                        );
                    }
                    break (Outcome::Imported, Some(best.0));
                }
            }
            tokio::time::sleep(ASK_AGAIN.min(left)).await;
        };
        let this = self.clone();
        let done = tokio::task::spawn_blocking(move || this.take(&service, outcome, best)).await;
        if done.is_err() {
            tracing::error!("state transfer: importing panicked");
        }
    }

    /// Imports `transfer` (when there is one) for `service` and lets its shipments through.
    fn take(&self, service: &str, mut outcome: Outcome, mut transfer: Option<Transfer>) {
        // A peer of another build (a rolling upgrade) may save another layout: nothing of it
        // is taken, and this gateway's own data stays.
        if let Some(v) = transfer
            .as_ref()
            .map(|t| t.state.format_version())
            .filter(|v| *v != slipstream_slo::ENGINE_STATE_FORMAT)
        {
            tracing::warn!(
                service = %service,
                format = v,
                "state transfer: the peer's state has another format"
            );
            (outcome, transfer) = (Outcome::Failed, None);
        }
        let mut book = lock(&self.book);
        let replace = book.replacing.remove(service);
        if book.handed_off.contains(service) && self.ranks(service) {
            book.handed_off.remove(service);
            self.live
                .with_evaluator(|e| e.engine_mut().take_back(service));
            tracing::info!(service = %service, "hand-off: this gateway ranks the service again; it sends its events again");
        }
        match transfer {
            Some(t) => {
                let report = self.live.with_evaluator(|e| {
                    let engine = e.engine_mut();
                    if replace {
                        engine.forget_service(service);
                    }
                    engine.import_service(service, t.state)
                });
                tracing::info!(
                    service = %service,
                    imported = ?report.restored,
                    dropped = report.dropped.len(),
                    replaced = replace,
                    "state transfer: took the service's state from a peer"
                );
                let now = self.clock.now_unix_nanos();
                let runs = t
                    .counted
                    .into_iter()
                    .map(|(r, c)| (r, c.sequence))
                    .collect();
                book.counted.insert(service.to_owned(), (now, runs));
            }
            None if replace => tracing::warn!(
                service = %service,
                outcome = outcome.as_str(),
                "state transfer: no peer's state for the service; it goes on from this gateway's own, however old"
            ),
            None => tracing::warn!(
                service = %service,
                outcome = outcome.as_str(),
                "state transfer: no peer's state for the service; it starts empty"
            ),
        }
        self.transfers[outcome as usize].inc();
        book.asking.remove(service);
        book.known.insert(service.to_owned());
    }

    /// Whether every service of `services` may be merged now. Starts asking for those new to
    /// this gateway, and for those whose data here is older than `stale_after` (a peer's
    /// state will replace it); notes the first shipment held back from `run` (sequence
    /// `sequence`) for each service held.
    fn ready(
        self: &Arc<Self>,
        book: &mut Book,
        services: &[&str],
        run: &Run,
        sequence: u64,
    ) -> bool {
        let mut ready = true;
        let now = self.clock.now_unix_nanos();
        let stale = |t: UnixNanos| now.saturating_sub(t) > self.stale_after;
        for &s in services {
            if s.is_empty() {
                continue;
            }
            // Not ranked: merged (a peer may ask for it), its events not sent. Ranked again:
            // taken from a peer afresh, its own data being short of what went elsewhere.
            // (One whose state is being asked for stays held: what is merged meanwhile would
            // count twice once the peer's state is imported.)
            if !self.ranks(s) {
                self.hand_off(book, s);
                if !book.asking.contains_key(s) {
                    continue;
                }
            }
            if book.handed_off.contains(s) && !book.asking.contains_key(s) {
                book.known.remove(s);
                book.replacing.insert(s.to_owned());
            }
            if book.known.contains(s) {
                if !book.last_taken.get(s).is_some_and(|&t| stale(t)) {
                    continue;
                }
                book.known.remove(s);
                book.replacing.insert(s.to_owned());
            }
            if !book.asking.contains_key(s) {
                let returning = book.replacing.contains(s) && book.handed_off.contains(s);
                match self.live.with_evaluator(|e| e.engine().last_traffic(s)) {
                    _ if returning => {}
                    Some(t) if !stale(t) => {
                        book.known.insert(s.to_owned());
                        continue;
                    }
                    Some(_) => {
                        book.replacing.insert(s.to_owned());
                    }
                    None => {}
                }
                book.asking.insert(s.to_owned(), HashMap::new());
                self.runtime.spawn(self.clone().ask(s.to_owned()));
            }
            ready = false;
            if sequence > 0
                && let Some(held) = book.asking.get_mut(s)
                && !held.contains_key(run)
            {
                held.insert(run.clone(), (sequence, now));
            }
        }
        ready
    }
}

/// Of the peers' answers, the one to import, and whether it is complete: for every sender
/// run the peer took the service from within `recent` (one that may still be shipping it),
/// this gateway has held back a shipment of the run, and the answer holds everything the run
/// shipped before it. That is so when the peer counted that shipment too (it is one of the
/// service's gateways still: sequence at or above), or when the peer took nothing of the run
/// since this gateway held it back (it no longer gets the service; what the run shipped
/// before reached it first). Otherwise the answer seen latest.
fn pick(
    service: &str,
    found: Vec<Transfer>,
    held: &HashMap<Run, (u64, UnixNanos)>,
    now: UnixNanos,
    recent: Duration,
) -> (Transfer, bool) {
    let recent = u64::try_from(recent.as_nanos()).unwrap_or(u64::MAX);
    let complete = |t: &Transfer| {
        t.counted
            .iter()
            .filter(|(_, c)| c.age <= recent)
            .all(|(run, c)| {
                held.get(run).is_some_and(|&(first, at)| {
                    c.sequence >= first || c.age > now.saturating_sub(at)
                })
            })
    };
    let mut best: Option<(bool, UnixNanos, Transfer)> = None;
    for t in found {
        let key = (complete(&t), t.state.last_seen(service).unwrap_or(0));
        if best.as_ref().is_none_or(|(c, s, _)| key > (*c, *s)) {
            best = Some((key.0, key.1, t));
        }
    }
    let (c, _, t) = best.expect("at least one answer");
    (t, c)
}

/// A peer's answer.
#[derive(Debug)]
struct Transfer {
    state: EngineState,
    counted: HashMap<Run, Counted>,
}

/// `GET url` with the token; `Ok(None)` for a 404 (the peer holds nothing of the service).
async fn fetch(
    client: &slipstream_exporters::delivery::HttpClient,
    url: &str,
    token: &str,
    me: &str,
) -> Result<Option<Transfer>, String> {
    let req = http::Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(ASKER, me)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let mut v: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    let state: EngineState =
        serde_json::from_value(v["state"].take()).map_err(|e| format!("{url}: state: {e}"))?;
    let counted = v["counted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let run = (
                c["instance"].as_str()?.to_owned(),
                c["started_unix_nanos"].as_u64()?,
            );
            let counted = Counted {
                sequence: c["sequence"].as_u64()?,
                age: c["age_nanos"].as_u64().unwrap_or(u64::MAX),
            };
            Some((run, counted))
        })
        .collect();
    Ok(Some(Transfer { state, counted }))
}

/// Runs every future at once and waits for all.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in set.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn answer(status: StatusCode, v: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// `s` with every byte but the unreserved ones (RFC 3986) as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`percent_encode`] (a `%` not followed by two hex digits is itself).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// === impl AggregatesSink for Peers ===

/// The sink the intake holds: an `Arc<Peers>`, which transfers need to spawn themselves.
#[derive(Debug, Clone)]
pub struct PeersSink(pub Arc<Peers>);

impl AggregatesSink for PeersSink {
    fn merge(&self, mut request: ExportAggregatesRequest) -> Result<Merged, MergeError> {
        let peers = &self.0;
        let (run, sequence) = match &request.header {
            Some(h) => (
                (h.instance.clone(), h.instance_started_unix_nanos),
                h.sequence,
            ),
            None => return peers.inner.merge(request),
        };
        let mut services: Vec<String> = request
            .series
            .iter()
            .map(|s| s.service().to_owned())
            .collect();
        services.sort_unstable();
        services.dedup();
        let names: Vec<&str> = services.iter().map(String::as_str).collect();
        let mut book = lock(&peers.book);
        if peers.asks() && !peers.ready(&mut book, &names, &run, sequence) {
            return Err(MergeError::Busy(RETRY_AFTER));
        }
        if sequence > 0 && !book.counted.is_empty() {
            request.series.retain(|s| {
                book.counted
                    .get(s.service())
                    .and_then(|(_, runs)| runs.get(&run))
                    .is_none_or(|&n| sequence > n)
            });
        }
        let merged = peers.inner.merge(request)?;
        if merged == Merged::Accepted && sequence > 0 {
            let now = peers.clock.now_unix_nanos();
            let Book {
                merged: runs,
                last_taken,
                ..
            } = &mut *book;
            let b = runs.entry(run).or_default();
            b.at = now;
            for s in names.iter().filter(|s| !s.is_empty()) {
                match last_taken.get_mut(*s) {
                    Some(t) => *t = now,
                    None => {
                        last_taken.insert((*s).to_owned(), now);
                    }
                }
                match b.services.get_mut(*s) {
                    Some((n, at)) => {
                        *n = (*n).max(sequence);
                        *at = now;
                    }
                    None => {
                        b.services.insert((*s).to_owned(), (sequence, now));
                    }
                }
            }
            if now.saturating_sub(book.pruned) > FORGET_RUN_AFTER / 60 {
                let before = now.saturating_sub(FORGET_RUN_AFTER);
                book.merged.retain(|_, b| b.at >= before);
                // An hour after an import, what the peer had counted is too old to be sent.
                book.counted.retain(|_, (at, _)| *at >= before);
                book.pruned = now;
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests;
