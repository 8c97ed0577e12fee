//! `slipstream replay`: backtesting. Recorded traces go through the same scanner, aggregator
//! and SLO engine as live traffic, on a clock driven by the spans' end times, and the alert
//! events come out with the times they would have fired.
//!
//! Input formats:
//! - OTLP JSON lines: one `ExportTraceServiceRequest` in OTLP/JSON per line, as the OTel
//!   Collector's file exporter writes them (lines of other signals hold no spans and are
//!   skipped).
//! - Length-prefixed protobuf: each record a 4-byte big-endian length, then that many bytes of
//!   a protobuf `ExportTraceServiceRequest`.
//!
//! The clock: before the spans of a request are recorded, the clock moves to the latest end
//! time among them that is not further ahead of it than `aggregator.max_future_skew`,
//! running an evaluation at each multiple of `slo.evaluation_interval` it passes, exactly as
//! the live pipeline evaluates on its interval. So the clock stands where the live pipeline's
//! would have when the request arrived, and a span further ahead (a client with a wrong
//! clock) is clamped to now and counted, as live, instead of moving the clock: one span
//! hours ahead must not make the next hours of traffic late. A request whose spans all end
//! earlier than the clock is recorded as late traffic, as live.
//!
//! A request that is ahead as a whole (most of its spans past the skew) is held until the
//! next one: when that one is ahead too, the recording skipped ahead (a gap in the traffic)
//! and the clock follows; otherwise the held request was an outlier, recorded at the clock as
//! it stands (its spans clamped and counted). The first request sets the clock from its own
//! spans (the median end time and the skew above it).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use slipstream_aggregator::Aggregator;
use slipstream_config::Config;
use slipstream_core::{Clock, ManualClock, ObservationSink, Registry, SpanRecord};
use slipstream_receiver::scanner::scan_traces;
use slipstream_slo::{AlertEvent, SloEngine, SloSnapshot};

use slipstream_step::evaluate::Evaluator;
use slipstream_step::publish::Live;

#[cfg(test)]
mod tests;

/// How the input file is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Decide from the first byte: `{` means JSON lines, anything else protobuf.
    Auto,
    /// OTLP JSON lines.
    Json,
    /// Length-prefixed protobuf.
    Protobuf,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text for people.
    Text,
    /// One JSON object per line (`{"event": ...}` and `{"slos": ...}`).
    Json,
}

/// What `replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The configuration (SLOs, aggregator, catalog).
    pub config: Config,
    /// The recorded traces.
    pub input: PathBuf,
    /// Input framing.
    pub format: InputFormat,
    /// Output format.
    pub output: OutputFormat,
    /// Also print the SLO table every this much event time.
    pub every: Option<Duration>,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What a replay found.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Every alert event, in order.
    pub events: Vec<AlertEvent>,
    /// The SLOs at the end of the input.
    pub slos: Arc<SloSnapshot>,
    /// Requests read.
    pub requests: u64,
    /// Spans read.
    pub spans: u64,
    /// Records that could not be decoded (skipped, with a warning).
    pub invalid: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// Spans ending too far ahead of the clock, clamped to it (`max_future_skew`).
    pub clamped_future: u64,
    /// Spans ending before the aggregator's retention, dropped as late.
    pub dropped_late: u64,
}

/// The replay machinery: the same components as `run`, minus the network.
struct Replayer {
    clock: ManualClock,
    aggregator: Arc<Aggregator>,
    live: Live,
    interval: u64,
    /// `aggregator.max_future_skew`, nanoseconds.
    skew: u64,
    /// A request ahead of the clock as a whole, until the next one says whether it was an
    /// outlier or the recording skipped ahead.
    held: Option<Bytes>,
    next_evaluation: Option<u64>,
    events: Vec<AlertEvent>,
    every: Option<u64>,
    next_print: Option<u64>,
    output: OutputFormat,
    /// `exemplars.trace_url`: what example traces link to.
    trace_url: Option<String>,
    out: Box<dyn Write>,
}

impl Replayer {
    fn new(opts: &ReplayOptions, out: Box<dyn Write>) -> anyhow::Result<Self> {
        let clock = ManualClock::new(0);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let registry = Registry::new();
        let aggregator = Arc::new(Aggregator::new(
            &opts.config.aggregator,
            shared.clone(),
            &registry,
        ));
        aggregator.set_latency_thresholds(slipstream_step::evaluate::latency_thresholds(
            &opts.config.slo,
        ));
        let engine = SloEngine::new(&opts.config.slo, shared.clone(), &registry)
            .map_err(|e| anyhow::anyhow!("invalid slo section: {e:?}"))?;
        let interval = u64::try_from(engine.evaluation_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        // Example traces link to their traces as in the live events.
        let trace_url = opts.config.exemplars.trace_url.clone();
        let mut evaluator = Evaluator::new(aggregator.clone(), engine, shared.clone());
        evaluator.set_trace_url(trace_url.clone());
        let live = Live::new(
            evaluator,
            opts.config.slo.catalog.clone(),
            &*shared,
            Vec::new(),
        );
        Ok(Replayer {
            clock,
            aggregator,
            live,
            interval,
            skew: u64::try_from(opts.config.aggregator.max_future_skew.as_nanos())
                .unwrap_or(u64::MAX),
            held: None,
            next_evaluation: None,
            events: Vec::new(),
            every: opts.every.map(|d| (d.as_nanos() as u64).max(1)),
            next_print: None,
            output: opts.output,
            trace_url,
            out,
        })
    }

    /// Moves the clock to `t`, evaluating at every interval boundary on the way.
    fn advance_to(&mut self, t: u64) -> anyhow::Result<()> {
        let next = *self
            .next_evaluation
            .get_or_insert((t / self.interval + 1) * self.interval);
        if self.next_print.is_none()
            && let Some(e) = self.every
        {
            self.next_print = Some((t / e + 1) * e);
        }
        let mut next = next;
        while next <= t {
            self.clock.set(next);
            self.evaluate(false)?;
            next += self.interval;
        }
        self.next_evaluation = Some(next);
        if t > self.clock.now_unix_nanos() {
            self.clock.set(t);
        }
        Ok(())
    }

    fn evaluate(&mut self, force: bool) -> anyhow::Result<()> {
        let step = self.live.step(force);
        for e in &step.events {
            print_event(&mut self.out, self.output, e, self.trace_url.as_deref())?;
        }
        self.events.extend(step.events);
        let now = self.clock.now_unix_nanos();
        if let (Some(p), Some(every)) = (self.next_print, self.every)
            && now >= p
        {
            print_slos(&mut self.out, self.output, &self.live.published().slos)?;
            self.next_print = Some((now / every + 1) * every);
        }
        Ok(())
    }

    /// Records one request (see the module docs for how it moves the clock); returns its
    /// number of spans.
    fn record(&mut self, body: &Bytes) -> anyhow::Result<u64> {
        let spans = scan(body, &self.aggregator)?;
        let n = spans.len() as u64;
        let started = self.next_evaluation.is_some();
        let ahead = started
            && median_end(&spans)
                .is_some_and(|m| m > self.clock.now_unix_nanos().saturating_add(self.skew));
        match self.held.take() {
            Some(held) => {
                let held_spans = scan(&held, &self.aggregator)?;
                if ahead {
                    // Two requests in a row past the skew: the traffic skipped ahead.
                    if let Some(t) = clock_for(&held_spans, None, self.skew) {
                        self.advance_to(t)?;
                    }
                }
                self.aggregator.record(&held_spans);
                self.record_spans(&spans)?;
            }
            None if ahead => self.held = Some(body.clone()),
            None => self.record_spans(&spans)?,
        }
        Ok(n)
    }

    /// Moves the clock for `spans` (never by a span further ahead than the skew) and records
    /// them.
    fn record_spans(&mut self, spans: &[SpanRecord<'_>]) -> anyhow::Result<()> {
        let now = self
            .next_evaluation
            .is_some()
            .then(|| self.clock.now_unix_nanos());
        if let Some(t) = clock_for(spans, now, self.skew) {
            self.advance_to(t)?;
        }
        self.aggregator.record(spans);
        Ok(())
    }

    fn finish(mut self, mut report: ReplayReport) -> anyhow::Result<ReplayReport> {
        // A request still held was an outlier: nothing came after it.
        if let Some(held) = self.held.take() {
            let spans = scan(&held, &self.aggregator)?;
            self.aggregator.record(&spans);
        }
        // One last evaluation at the next boundary, so the last spans count.
        if let Some(next) = self.next_evaluation {
            self.clock.set(next);
            self.evaluate(true)?;
        }
        let published = self.live.published();
        report.slos = published.slos.clone();
        let totals = published.series.totals();
        report.clamped_future = totals.clamped_future;
        report.dropped_late = totals.dropped_late;
        print_slos(&mut self.out, self.output, &report.slos)?;
        self.out.flush()?;
        report.events = self.events;
        Ok(report)
    }
}

/// The spans of a request body.
fn scan<'a>(body: &'a [u8], aggregator: &Aggregator) -> anyhow::Result<Vec<SpanRecord<'a>>> {
    let mut spans: Vec<SpanRecord<'_>> = Vec::with_capacity((body.len() / 256).max(4));
    scan_traces(body, aggregator.scan_spec(), &mut spans).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(spans)
}

/// The median end time of `spans` (the upper one of an even count).
fn median_end(spans: &[SpanRecord<'_>]) -> Option<u64> {
    if spans.is_empty() {
        return None;
    }
    let mut ends: Vec<u64> = spans.iter().map(|s| s.end_unix_nano).collect();
    let mid = ends.len() / 2;
    Some(*ends.select_nth_unstable(mid).1)
}

/// Where the clock goes for a request of `spans`: the latest end time at most `skew` ahead
/// of `now` (before the first request, of the request's median end time). `None` when no
/// span qualifies.
fn clock_for(spans: &[SpanRecord<'_>], now: Option<u64>, skew: u64) -> Option<u64> {
    let base = match now {
        Some(now) => now,
        None => median_end(spans)?,
    };
    let limit = base.saturating_add(skew);
    spans
        .iter()
        .map(|s| s.end_unix_nano)
        .filter(|&e| e <= limit)
        .max()
}

/// Prints one event: in JSON, the API's event object with its `example_traces` (each linked
/// through `trace_url`); in text, a line, then what the bad requests share and the example
/// traces as the live events' annotations name them.
fn print_event(
    out: &mut dyn Write,
    format: OutputFormat,
    e: &AlertEvent,
    trace_url: Option<&str>,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            let mut event = slipstream_app::api::event_json(e);
            if !e.exemplars.is_empty() {
                event["example_traces"] = e
                    .exemplars
                    .iter()
                    .map(|x| slipstream_app::api::exemplar_json(x, trace_url))
                    .collect();
            }
            writeln!(out, "{}", serde_json::json!({ "event": event }))
        }
        OutputFormat::Text => {
            let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
            let at = slipstream_app::api::time(Some(e.at));
            let versions = match &e.newest_version {
                Some((v, since)) => format!(
                    "  versions {} (newest {v} since {})",
                    e.versions.join(","),
                    slipstream_app::api::time(Some(*since))
                        .as_str()
                        .unwrap_or("-")
                ),
                None => String::new(),
            };
            // Time-to-exhaustion and budget-drop rows name their parameter.
            let kind: String = e
                .row
                .kind_labels()
                .iter()
                .map(|(k, v)| format!(" {k}={v}"))
                .collect();
            writeln!(
                out,
                "{}  {:<8} {:<6} {}{}  {}/{} burn {}/{} (factor {:.2})  budget left {}{}",
                at.as_str().unwrap_or("-"),
                e.state.as_str().to_uppercase(),
                e.severity.as_str(),
                e.slo,
                kind,
                slipstream_core::export::format_duration(e.row.long),
                slipstream_core::export::format_duration(e.row.short),
                rate(e.long_burn_rate),
                rate(e.short_burn_rate),
                e.row.factor,
                e.budget_remaining
                    .map_or_else(|| "-".to_owned(), |b| format!("{:.1}%", b * 100.0)),
                versions
            )?;
            if !e.bad_requests_share.is_empty() {
                writeln!(
                    out,
                    "    bad requests share {}",
                    slipstream_core::explain::render_shares(&e.bad_requests_share)
                )?;
            }
            let examples = e
                .annotations
                .get(slipstream_step::evaluate::EXEMPLARS_ANNOTATION);
            for line in examples.into_iter().flat_map(|a| a.lines()) {
                writeln!(out, "    example trace {line}")?;
            }
            Ok(())
        }
    }
}

fn print_slos(
    out: &mut dyn Write,
    format: OutputFormat,
    slos: &SloSnapshot,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => {
            let all: Vec<_> = slos
                .slos
                .iter()
                .map(slipstream_app::api::slo_json)
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::json!({ "at": slipstream_app::api::time(Some(slos.at)), "slos": all })
            )
        }
        OutputFormat::Text => {
            let at = slipstream_app::api::time(Some(slos.at));
            writeln!(out, "SLOs at {}", at.as_str().unwrap_or("-"))?;
            writeln!(
                out,
                "  {:<36} {:<14} {:>9} {:>10} {:>10} {:>10} {:>12} {:>8}",
                "slo",
                "service",
                "objective",
                "err 5m",
                "err 1h",
                "err 1d",
                "budget left",
                "firing"
            )?;
            for s in &slos.slos {
                let ratio = |w: u64| {
                    s.window(Duration::from_secs(w))
                        .and_then(|w| w.error_ratio)
                        .map_or_else(|| "-".to_owned(), |r| format!("{:.4}%", r * 100.0))
                };
                let firing: Vec<&str> = s
                    .alerts
                    .iter()
                    .filter(|a| a.firing)
                    .map(|a| a.row.severity.as_str())
                    .collect();
                writeln!(
                    out,
                    "  {:<36} {:<14} {:>8}% {:>10} {:>10} {:>10} {:>12} {:>8}",
                    s.name,
                    s.service,
                    s.objective * 100.0,
                    ratio(300),
                    ratio(3600),
                    ratio(86_400),
                    s.budget_remaining
                        .map_or_else(|| "-".to_owned(), |b| format!("{:.2}%", b * 100.0)),
                    if firing.is_empty() {
                        "-".to_owned()
                    } else {
                        firing.join(",")
                    }
                )?;
            }
            Ok(())
        }
    }
}

/// A decoded record: the protobuf request body (or why it could not be decoded) and the bytes
/// it took in the file.
type Record = (Result<Bytes, String>, u64);

/// Lines of OTLP JSON handed to a decoding thread at once.
const JSON_CHUNK: usize = 16;

/// Reads records (protobuf request bodies) from the input, in file order. JSON lines are
/// decoded on every core (the costly part of a JSON replay), in chunks whose results are
/// collected in order.
enum Records {
    Json(
        crossbeam_channel::Receiver<crossbeam_channel::Receiver<Vec<Record>>>,
        std::vec::IntoIter<Record>,
    ),
    Protobuf(BufReader<std::fs::File>),
}

impl Records {
    fn open(path: &Path, format: InputFormat) -> anyhow::Result<(Records, u64)> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut r = BufReader::with_capacity(1 << 20, file);
        let format = match format {
            InputFormat::Auto => {
                let head = r.fill_buf()?;
                match head.iter().find(|b| !b.is_ascii_whitespace()) {
                    Some(b'{') => InputFormat::Json,
                    _ => InputFormat::Protobuf,
                }
            }
            f => f,
        };
        Ok((
            match format {
                InputFormat::Json => Records::Json(spawn_json_decoders(r), Vec::new().into_iter()),
                _ => Records::Protobuf(r),
            },
            len,
        ))
    }

    /// The next record; `None` at the end.
    fn next(&mut self) -> anyhow::Result<Option<Record>> {
        match self {
            Records::Json(chunks, current) => loop {
                if let Some(r) = current.next() {
                    return Ok(Some(r));
                }
                let Ok(chunk) = chunks.recv() else {
                    return Ok(None);
                };
                let records = chunk
                    .recv()
                    .map_err(|_| anyhow::anyhow!("a JSON decoding thread failed"))?;
                if let Some((Err(e), 0)) = records.first()
                    && records.len() == 1
                {
                    anyhow::bail!("cannot read the input: {e}");
                }
                *current = records.into_iter();
            },
            Records::Protobuf(r) => Ok(slipstream_receiver::records::read_length_prefixed(r)?.map(
                |buf| {
                    let n = buf.len() as u64 + 4;
                    (Ok(Bytes::from(buf)), n)
                },
            )),
        }
    }
}

/// Decodes one line of OTLP JSON (an `ExportTraceServiceRequest`) into protobuf bytes that
/// hold what the span scanner reads ([`slipstream_receiver::records::json`]).
pub fn decode_json_line(line: &[u8]) -> Result<Bytes, String> {
    let mut out = Vec::new();
    slipstream_receiver::records::json::to_protobuf(line, &mut out).map_err(|e| e.to_string())?;
    Ok(Bytes::from(out))
}

/// Starts a reader thread and one decoding thread per core; returns, in file order, one
/// receiver per chunk of lines.
fn spawn_json_decoders(
    mut reader: BufReader<std::fs::File>,
) -> crossbeam_channel::Receiver<crossbeam_channel::Receiver<Vec<Record>>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<(
        Vec<Vec<u8>>,
        crossbeam_channel::Sender<Vec<Record>>,
    )>(workers * 2);
    let (order_tx, order_rx) = crossbeam_channel::bounded(workers * 4);
    for _ in 0..workers {
        let jobs = jobs_rx.clone();
        std::thread::spawn(move || {
            for (lines, done) in jobs {
                let records = lines
                    .iter()
                    .map(|l| (decode_json_line(l), l.len() as u64))
                    .collect();
                let _ = done.send(records);
            }
        });
    }
    std::thread::spawn(move || {
        // Lines are read as bytes (the decoder checks that they are UTF-8) into buffers sized
        // from the line before, so that long lines are not grown by doubling.
        let mut last = 0;
        loop {
            let mut lines = Vec::with_capacity(JSON_CHUNK);
            let mut failed = None;
            while lines.len() < JSON_CHUNK {
                let mut line = Vec::with_capacity(last + last / 8 + 64);
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) if line.iter().all(u8::is_ascii_whitespace) => {}
                    Ok(n) => {
                        last = n;
                        lines.push(line);
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            if let Some(e) = failed {
                let _ = tx.send(vec![(Err(e), 0)]);
                let _ = order_tx.send(rx);
                return;
            }
            if lines.is_empty() {
                return;
            }
            if order_tx.send(rx).is_err() || jobs_tx.send((lines, tx)).is_err() {
                return;
            }
        }
    });
    order_rx
}

/// Runs a replay, printing events and SLO tables to `out`.
pub fn replay(opts: &ReplayOptions, out: Box<dyn Write>) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let (mut records, len) = Records::open(&opts.input, opts.format)?;
    let mut replayer = Replayer::new(opts, out)?;
    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(len),
            indicatif::ProgressDrawTarget::stderr_with_hz(5),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = ReplayReport::default();
    let mut n = 0u64;
    while let Some((body, size)) = records.next()? {
        n += 1;
        match body {
            Ok(body) => match replayer.record(&body) {
                Ok(k) => {
                    report.requests += 1;
                    report.spans += k;
                }
                Err(e) => {
                    report.invalid += 1;
                    tracing::warn!("record {n}: invalid ExportTraceServiceRequest, skipped: {e}");
                }
            },
            Err(e) => {
                report.invalid += 1;
                tracing::warn!("record {n}: skipped: {e}");
            }
        }
        bar.inc(size);
        if n.is_multiple_of(256) {
            bar.set_message(format!("{} spans", report.spans));
        }
    }
    bar.finish_and_clear();
    let mut report = replayer.finish(report)?;
    report.elapsed = started.elapsed();
    Ok(report)
}
