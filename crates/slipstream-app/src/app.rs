//! The wiring: builds every component from the config and plugs them together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use slipstream_aggregator::Aggregator;
use slipstream_config::{Config, LogConfig, LogFormat, Mode};
use slipstream_core::{Clock, ForwardSink, ObservationSink, Registry, SystemClock};
use slipstream_exporters::aggregates::AggregatesExporter;
use slipstream_exporters::events::EventExporters;
use slipstream_exporters::{Exporter, ForwardRouter};
use slipstream_receiver::{Limits, Pipeline, Receivers, RunningReceivers};
use tokio::sync::watch;

use crate::admin::{self, Readiness};
use crate::sinks::{AggregatesExporterSink, EventExportersSink};
use crate::state::Persistence;
use slipstream_core::MetricsSource;
use slipstream_step::evaluate::Evaluator;
use slipstream_step::publish::{EventSink, Live};
use slipstream_step::thread::StepThread;

/// Sets up `tracing` from the config; `RUST_LOG` wins over `log.level` when set.
///
/// What a sender controls (a `service.name`, a span name) reaches the log, so neither format
/// lets it forge lines or drive the terminal: text logs escape every control character (`\n`,
/// `\r`, ESC and the other C0 and C1 controls) in the message and in every field
/// ([`text_fields`]); JSON logs are escaped by their encoder, and the C1 controls and DEL,
/// which it leaves, by [`Redacting`]. Both hide URL userinfo (`https://<redacted>@host`).
pub fn init_logging(cfg: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Redacting {
            inner: std::io::stderr,
            json: cfg.format == LogFormat::Json,
        });
    let _ = match cfg.format {
        LogFormat::Text => builder.fmt_fields(text_fields()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The field formatter of text logs: the message as it is and the other fields as
/// `name=value`, each with its control characters escaped ([`escape_controls`]).
pub fn text_fields()
-> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut tracing_subscriber::fmt::format::Writer<'_>,
         field: &tracing::field::Field,
         value: &dyn std::fmt::Debug| {
            let text = format!("{value:?}");
            let text = escape_controls(&text);
            if field.name() == "message" {
                w.write_str(&text)
            } else {
                write!(w, "{}={text}", field.name())
            }
        },
    )
    .delimited(" ")
}

/// `s` with every control character (C0, DEL, C1) written as an escape: `\n`, `\r`, `\t`,
/// else `\u{..}`; borrowed when there is none.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A log writer that hides the userinfo of every URL in what it writes
/// ([`slipstream_config::redact::redact_urls`]) and, for JSON logs, escapes the control
/// characters serde leaves as they are (DEL and C1, `\u0080`-`\u009f`: a terminal may act on
/// them). The formatter writes each event at once.
#[derive(Debug, Clone)]
pub struct Redacting<M> {
    /// Where the lines go.
    pub inner: M,
    /// The lines are JSON.
    pub json: bool,
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Redacting<M>
{
    type Writer = Redacting<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting {
            inner: self.inner.make_writer(),
            json: self.json,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(text) = std::str::from_utf8(buf) else {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        };
        let mut text = slipstream_config::redact::redact_urls(text);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        if self.json && body.chars().any(char::is_control) {
            // Inside a JSON document a control character can only stand in a string, where
            // `\u00XX` means the same; the line's own end stays.
            let mut out = String::with_capacity(text.len() + 8);
            for c in body.chars() {
                if c.is_control() {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push(c);
                }
            }
            if text.ends_with('\n') {
                out.push('\n');
            }
            text = std::borrow::Cow::Owned(out);
        }
        self.inner.write_all(text.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Runs slipstream until SIGTERM or SIGINT, then shuts down gracefully. SIGHUP re-reads the
/// config file at `path` (see [`App::reload`]). `on_ready` is called once, when every
/// listener is bound and before the first signal is awaited (the CLI's `--ready-file`); when
/// it fails, slipstream shuts down and returns its error.
pub fn run(
    cfg: Config,
    path: std::path::PathBuf,
    on_ready: impl FnOnce(&App) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let runtime = match cfg.mode {
        Mode::Gateway => tokio::runtime::Builder::new_multi_thread()
            .on_thread_park(crate::allocator::on_park)
            .enable_all()
            .build(),
        Mode::Sidecar => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_park(crate::allocator::on_park)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Listening before anything else starts, and for as long as the process runs: a
        // signal that arrives while a reload runs waits for the next `recv`, never lost.
        let mut signals = Signals::new()?;
        let app = App::start(cfg).await?;
        if let Err(e) = on_ready(&app) {
            app.shutdown().await;
            return Err(e);
        }
        loop {
            match signals.recv().await {
                Signal::Stop => break,
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading the config");
                    app.reload(&path);
                }
            }
        }
        tracing::info!("shutting down: no new requests; draining the forward queue");
        app.shutdown().await;
        Ok(())
    })
}

/// What a signal asks for.
enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signal streams, made once and kept: each remembers a signal delivered while nobody
/// was waiting on it.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal; a stop wins over a reload when both are pending.
    async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                biased;
                _ = self.term.recv() => Signal::Stop,
                _ = self.int.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}

/// A running slipstream.
#[derive(Debug)]
pub struct App {
    /// The self-metrics.
    pub registry: Registry,
    /// Where OTLP/gRPC listens.
    pub grpc_addr: Option<SocketAddr>,
    /// Where OTLP/HTTP listens.
    pub http_addr: Option<SocketAddr>,
    /// Where the admin server listens.
    pub admin_addr: Option<SocketAddr>,
    /// Where the SLI-series scrape endpoint listens.
    pub prometheus_addr: Option<SocketAddr>,
    /// The streaming aggregator: per-series SLIs.
    pub aggregator: Arc<Aggregator>,
    /// The SLO state: evaluator, published results, silences.
    pub live: Arc<Live>,
    ticker: tokio::task::JoinHandle<()>,
    cfg: Config,
    shutdown: watch::Sender<bool>,
    receivers: RunningReceivers,
    pipeline: Arc<Pipeline>,
    forwarder: Option<Arc<ForwardRouter>>,
    admin: Option<tokio::task::JoinHandle<()>>,
    admin_access: Arc<crate::api::Access>,
    /// Replicated gateways' state transfer (with `receivers.otlp.aggregates.enabled`).
    peers: Option<Arc<crate::peers::Peers>>,
    /// The partial-aggregates exporter (sidecar side), whose gateways a reload replaces.
    aggregates: Option<AggregatesExporterSink>,
    prometheus: Option<tokio::task::JoinHandle<()>>,
    persistence: Option<Arc<Persistence>>,
    snapshots: Option<tokio::task::JoinHandle<()>>,
    /// Every exporter but the forward one, drained together last at shutdown.
    exporters: Vec<Box<dyn Exporter>>,
}

impl App {
    /// Builds and starts every component; returns once all listeners are bound.
    pub async fn start(cfg: Config) -> anyhow::Result<App> {
        Self::start_with(cfg, Arc::new(SystemClock), true).await
    }

    /// [`App::start`] reading time from `clock`; with `background_ticks` false nothing is
    /// merged or evaluated until [`App::step`] is called (tests drive time themselves).
    pub async fn start_with(
        cfg: Config,
        clock: Arc<dyn Clock>,
        background_ticks: bool,
    ) -> anyhow::Result<App> {
        let registry = Registry::new();
        let (forward, forwarder): (Arc<dyn ForwardSink>, Option<Arc<ForwardRouter>>) =
            if cfg.forward.enabled() {
                let router = ForwardRouter::start(&cfg.forward, &registry).await?;
                (router.clone(), Some(router))
            } else {
                (Arc::new(()), None)
            };
        let aggregator = Arc::new(Aggregator::with_exemplars(
            &cfg.aggregator,
            clock.clone(),
            &registry,
            cfg.exemplars.enabled,
        ));
        aggregator.set_latency_thresholds(slipstream_step::evaluate::latency_thresholds(&cfg.slo));
        let engine =
            slipstream_slo::SloEngine::new(&cfg.slo, clock.clone(), &registry).map_err(|errs| {
                anyhow::anyhow!(
                    "invalid slo section: {}",
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        let events = EventExportersSink::new(EventExporters::start(&cfg.exporters, &registry)?);
        let sinks: Vec<Arc<dyn EventSink>> = vec![Arc::new(events.clone())];
        let handed_off_events = events.clone();
        let mut exporters: Vec<Box<dyn Exporter>> = vec![Box::new(events)];
        let mut evaluator = Evaluator::new(aggregator.clone(), engine, clock.clone());
        evaluator.set_trace_url(cfg.exemplars.trace_url.clone());
        let mut live =
            Live::new(evaluator, cfg.slo.catalog.clone(), &*clock, sinks).with_metrics(&registry);
        // Two-tier mode, sidecar side: what the aggregator gains goes to the gateways too.
        let mut aggregates = None;
        if let Some(c) = &cfg.exporters.aggregates {
            let exporter = AggregatesExporter::start(c, aggregator.aggregates_header(), &registry)?;
            let sink = AggregatesExporterSink::new(exporter);
            live = live.with_aggregates(Arc::new(sink.clone()));
            exporters.push(Box::new(sink.clone()));
            aggregates = Some(sink);
        }
        let live = Arc::new(live);
        let sink: Arc<dyn ObservationSink> = aggregator.clone();
        let limits = Limits {
            max_decompressed_size: cfg.receivers.otlp.max_decompressed_size.as_usize(),
            max_spans_per_request: cfg.receivers.otlp.max_spans_per_request,
            attributes: slipstream_receiver::scanner::AttributeLimits {
                max_per_span: cfg.receivers.otlp.max_attributes_per_span,
                max_size: cfg.receivers.otlp.max_attribute_size.as_usize(),
            },
        };
        let mut pipeline = Pipeline::new(
            forward,
            sink,
            aggregator.scan_spec().clone(),
            limits,
            registry.clone(),
        );
        // Two-tier mode, gateway side: partial aggregates only when turned on, and then only
        // from configured senders holding a sidecar token, within the plausibility limits.
        // Shipments pass through the peers' bookkeeping, which also asks the other gateways
        // for the state of a service new to this one.
        let aggregates_cfg = &cfg.receivers.otlp.aggregates;
        let mut peers = None;
        if aggregates_cfg.enabled {
            let tokens = aggregates_cfg
                .tokens(cfg.receivers.otlp.auth.as_ref())
                .map_err(anyhow::Error::msg)?;
            let p = Arc::new(crate::peers::Peers::new(
                aggregator.clone(),
                live.clone(),
                clock.clone(),
                &aggregates_cfg.peers,
                tokens.clone(),
                cfg.aggregator.retention,
                &registry,
            )?);
            p.on_hand_off(move |service| handed_off_events.forget_service(service));
            peers = Some(p.clone());
            pipeline = pipeline.with_aggregates(Arc::new(
                slipstream_receiver::AggregatesIntake::from_config(
                    Arc::new(crate::peers::PeersSink(p)),
                    aggregates_cfg,
                    tokens,
                ),
            ));
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut memory_over = None;
        if let Some(gate) = crate::memory::start(&cfg.memory, &registry, shutdown_rx.clone()) {
            memory_over = Some(gate.over.clone());
            pipeline = pipeline.with_memory_gate(gate);
        }
        if let Some(auth) = &cfg.receivers.otlp.auth {
            pipeline = pipeline.with_bearer_tokens(auth.tokens().map_err(anyhow::Error::msg)?);
        }
        let pipeline = Arc::new(pipeline);
        let receivers = Receivers::bind(&cfg.receivers.otlp, pipeline.clone()).await?;

        let listening = Arc::new(AtomicBool::new(false));
        let readiness = Readiness {
            listening: listening.clone(),
            downstream: forwarder.clone(),
            memory_over,
        };
        let admin_access = Arc::new(
            crate::api::Access::new(&cfg.admin, clock.clone(), &registry)
                .map_err(anyhow::Error::msg)?,
        );
        let (admin_addr, admin) = match &cfg.admin.endpoint {
            Some(ep) => {
                let (addr, task) = admin::start(
                    ep,
                    registry.clone(),
                    readiness,
                    live.clone(),
                    admin_access.clone(),
                    peers.clone(),
                    shutdown_rx.clone(),
                )
                .await?;
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        let source = |naming| -> Arc<dyn MetricsSource> {
            let live = live.clone();
            Arc::new(move || live.metrics(naming))
        };
        exporters.extend(slipstream_exporters::start_series_exporters(
            &cfg.exporters,
            &source,
            &registry,
        )?);
        let (prometheus_addr, prometheus) = match &cfg.exporters.prometheus.endpoint {
            Some(ep) => {
                let (addr, task) = admin::start_prometheus(
                    ep,
                    &cfg.exporters.prometheus,
                    live.clone(),
                    shutdown_rx.clone(),
                )
                .await?;
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        let persistence = Persistence::start(&cfg.state, &live, &registry).map(Arc::new);
        let ticker = tokio::spawn(tick_loop(
            live.clone(),
            aggregator.tick_interval(),
            background_ticks,
            shutdown_rx.clone(),
        ));
        let snapshots = persistence.clone().map(|p| {
            tokio::spawn(snapshot_loop(
                p,
                live.clone(),
                cfg.state.snapshot_interval,
                shutdown_rx.clone(),
            ))
        });
        let receivers = receivers.serve(shutdown_rx);
        listening.store(true, Ordering::Release);
        tracing::info!(
            grpc = ?receivers.grpc_addr,
            http = ?receivers.http_addr,
            admin = ?admin_addr,
            prometheus = ?prometheus_addr,
            forward = ?forwarder.as_ref().map(|f| f
                .endpoints()
                .iter()
                .map(|e| slipstream_config::redact::redact_urls(e).into_owned())
                .collect::<Vec<_>>()),
            "slipstream listening"
        );
        Ok(App {
            registry,
            grpc_addr: receivers.grpc_addr,
            http_addr: receivers.http_addr,
            admin_addr,
            prometheus_addr,
            aggregator,
            live,
            ticker,
            cfg,
            shutdown,
            receivers,
            pipeline,
            forwarder,
            admin,
            admin_access,
            peers,
            aggregates,
            prometheus,
            persistence,
            snapshots,
            exporters,
        })
    }

    /// Merges the shards and evaluates the SLOs now, whatever the interval; returns what the
    /// step produced (its events were also handed to the exporters).
    pub async fn step(&self) -> slipstream_step::evaluate::Step {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || live.step(true))
            .await
            .expect("evaluation step panicked")
    }

    /// Re-reads the config file at `path`: a valid new `slo` section is applied at once
    /// (unchanged SLOs keep their windows and alert states), and the receivers' TLS
    /// certificates, keys and client CAs are read again from their files (all or nothing; a
    /// certificate that cannot be used leaves the running one in place), and so are the bearer
    /// tokens (the OTLP receivers' and the sidecars'); a sidecar takes new gateways
    /// (`exporters.aggregates` `endpoints`, `dns`, `statefulset`, `replicas`) and a gateway
    /// new peers (`receivers.otlp.aggregates.peers`) at once. An invalid file is
    /// refused with its errors logged and the running config keeps working. Changes to other
    /// sections are logged as needing a restart.
    pub fn reload(&self, path: &std::path::Path) {
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("config reload refused, the running config stays: {e}");
                return;
            }
        };
        match self.live.reconfigure(&new.slo) {
            Ok(r) => tracing::info!(
                kept = r.kept.len(),
                added = ?r.added,
                removed = ?r.removed,
                reset = ?r.reset.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "config reloaded: SLOs applied"
            ),
            Err(errs) => {
                let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                tracing::error!(errors = ?msgs, "config reload refused, the running config stays");
                return;
            }
        }
        // Latency SLOs count exactly at thresholds the reload added from the next slot on.
        self.aggregator
            .set_latency_thresholds(slipstream_step::evaluate::latency_thresholds(&new.slo));
        match self.receivers.reload_tls(&new.receivers.otlp) {
            Ok(0) => {}
            Ok(listeners) => tracing::info!(
                listeners,
                "config reload: receiver TLS certificates re-read; new connections use them"
            ),
            Err(errors) => tracing::error!(
                ?errors,
                "config reload: receiver TLS certificates not reloaded; the running ones stay"
            ),
        }
        match self.admin_access.reload_tokens(&new.admin) {
            Ok(false) => {}
            Ok(true) => tracing::info!("config reload: admin API bearer tokens re-read"),
            Err(e) => tracing::error!(
                "config reload: admin API bearer tokens not reloaded, the running ones stay: {e}"
            ),
        }
        if let Some(auth) = &new.receivers.otlp.auth {
            match auth.tokens().and_then(|t| {
                self.pipeline
                    .replace_bearer_tokens(t)
                    .map_err(str::to_owned)
            }) {
                Ok(()) => tracing::info!("config reload: receiver bearer tokens re-read"),
                Err(e) => tracing::error!(
                    "config reload: bearer tokens not reloaded, the running ones stay: {e}"
                ),
            }
        }
        if let Some(intake) = self.pipeline.aggregates() {
            let otlp = new.receivers.otlp.auth.as_ref();
            match new.receivers.otlp.aggregates.tokens(otlp) {
                Ok(t) => {
                    if let Some(p) = &self.peers {
                        p.reload(&new.receivers.otlp.aggregates.peers, t.clone());
                    }
                    intake.replace_tokens(t);
                    tracing::info!(
                        "config reload: sidecar bearer tokens (partial aggregates) re-read"
                    );
                }
                Err(e) => tracing::error!(
                    "config reload: sidecar bearer tokens not reloaded, the running ones stay: {e}"
                ),
            }
        }
        // The sidecar's gateways (and how many of them get each service) change in place.
        let mut exporters = self.cfg.exporters.clone();
        if let (Some(sink), Some(old), Some(c)) = (
            &self.aggregates,
            &self.cfg.exporters.aggregates,
            &new.exporters.aggregates,
        ) && old.same_apart_from_gateways(c)
            && old != c
        {
            match sink.reload(c) {
                Ok(()) => {
                    exporters.aggregates = Some(c.clone());
                    tracing::info!("config reload: exporters.aggregates gateways taken");
                }
                Err(e) => tracing::error!(
                    "config reload: exporters.aggregates gateways not taken, the running ones stay: {e}"
                ),
            }
        }
        // So do a gateway's peers (with its sidecar tokens, above).
        let mut receivers = self.cfg.receivers.clone();
        if self.peers.is_some() {
            receivers.otlp.aggregates.peers = new.receivers.otlp.aggregates.peers.clone();
        }
        let mut restart = Vec::new();
        let old = &self.cfg;
        for (name, changed) in [
            ("mode", old.mode != new.mode),
            ("log", old.log != new.log),
            ("receivers", receivers != new.receivers),
            ("forward", old.forward != new.forward),
            ("admin", old.admin != new.admin),
            ("aggregator", old.aggregator != new.aggregator),
            ("exporters", exporters != new.exporters),
            ("state", old.state != new.state),
            ("shutdown", old.shutdown != new.shutdown),
        ] {
            if changed {
                restart.push(name);
            }
        }
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "config reload: these sections changed and take effect at the next restart");
        }
    }

    /// Saves the SLO state now (when `state.dir` is set); `Ok(false)` without persistence.
    pub async fn save_state(&self) -> anyhow::Result<bool> {
        let Some(p) = self.persistence.clone() else {
            return Ok(false);
        };
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || p.snapshot(&live)).await??;
        Ok(true)
    }

    /// Stops accepting, lets open requests finish, drains the forward queue within
    /// `shutdown.drain_timeout`, then stops the admin server.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.receivers.join().await;
        // The last requests are in the shards: merge them into a final snapshot.
        let _ = self.ticker.await;
        if let Some(f) = self.forwarder {
            let report = f.shutdown(self.cfg.shutdown.drain_timeout).await;
            if report.undelivered == 0 && report.spilled == 0 {
                tracing::info!("forward queue drained");
            }
        }
        // The final step is in: save the SLO state as of now.
        if let Some(t) = self.snapshots {
            let _ = t.await;
        }
        if let Some(p) = self.persistence {
            let live = self.live.clone();
            match tokio::task::spawn_blocking(move || p.snapshot(&live)).await {
                Ok(Ok(())) => tracing::info!("SLO state saved"),
                Ok(Err(e)) => tracing::error!("cannot save the SLO state at shutdown: {e}"),
                Err(_) => tracing::error!("saving the SLO state panicked"),
            }
        }
        // The final step published its events and series: deliver them.
        let drained =
            slipstream_exporters::shutdown_all(self.exporters, self.cfg.shutdown.drain_timeout)
                .await;
        if drained.iter().any(|(_, left)| *left > 0) {
            tracing::warn!(
                undelivered = ?drained,
                "exporters still held items at the drain deadline; counted as dropped"
            );
        }
        if let Some(a) = self.admin {
            let _ = a.await;
        }
        if let Some(p) = self.prometheus {
            let _ = p.await;
        }
    }
}

/// Merges the aggregator's shards on its tick interval (feeding and evaluating the SLOs when
/// due), and once more at shutdown, on the lower-priority step thread ([`StepThread`]).
async fn tick_loop(
    live: Arc<Live>,
    interval: std::time::Duration,
    background: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let steps = match StepThread::start(live.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "could not start the evaluation step thread; steps run on the blocking pool");
            None
        }
    };
    let step = async |force: bool| match &steps {
        Some(s) => {
            s.step(force).await;
        }
        None => {
            let l = live.clone();
            let _ = tokio::task::spawn_blocking(move || l.step(force)).await;
        }
    };
    let mut interval = tokio::time::interval(interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick(), if background => step(false).await,
            () = stopped(&mut shutdown) => break,
        }
    }
    step(true).await;
}

/// Saves the SLO state every `interval` until shutdown.
async fn snapshot_loop(
    p: Arc<Persistence>,
    live: Arc<Live>,
    interval: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing new to save yet
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (p, live) = (p.clone(), live.clone());
                match tokio::task::spawn_blocking(move || p.snapshot(&live)).await {
                    Ok(Err(e)) => tracing::error!("cannot save the SLO state: {e}"),
                    Err(_) => tracing::error!("saving the SLO state panicked"),
                    Ok(Ok(())) => {}
                }
            }
            () = stopped(&mut shutdown) => break,
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests;
