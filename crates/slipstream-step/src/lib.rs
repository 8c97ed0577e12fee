//! The evaluation step: from the aggregator's shards to SLO state, SLI series and burn-rate
//! events.
//!
//! # Words
//!
//! - The *tick* is the interval steps run at: `aggregator.tick_interval` (5 s by default).
//!   The tick is a length of time, never the work done in it.
//! - A *step* is one run of **merge → feed → evaluate → publish**: merge the aggregator's
//!   shards into a new snapshot, feed the SLO engine what changed, evaluate the SLOs when due,
//!   publish the results and hand the events on ([`Live::step`]). `slipstream run` runs one
//!   step per tick on the [`StepThread`]; `slipstream replay` runs one each time its clock
//!   passes a multiple of `slo.evaluation_interval`.
//! - *Evaluate*, the third hop, recomputes burn rates, budgets and alert states only when
//!   `slo.evaluation_interval` (10 s by default) has passed since the last evaluation, or when
//!   the step is forced; a step that does not evaluate still merges, feeds and publishes.
//! - The self-metrics `slipstream_evaluation_steps_total` and
//!   `slipstream_evaluation_step_seconds_total` ([`publish::names`]) count these same steps:
//!   "evaluation step" in a metric name is a step. The names stay, for the dashboards that
//!   read them.
//! - [`Aggregator::tick`] and [`SloEngine::tick`] are the aggregator's and the SLO engine's
//!   own names for their part of a step: the merge and the evaluation.
//!
//! # The life of a span
//!
//! How a span that arrives on an OTLP port becomes an SLI series and a burn-rate event, hop
//! by hop, with the file that holds each.
//!
//! 1. **Receive** (`crates/slipstream-receiver`). The receiver's `server` module accepts the
//!    connection; its `grpc` module (OTLP/gRPC, framed on hyper's HTTP/2) or its `http` module
//!    (OTLP/HTTP, protobuf or JSON) reads the body within its size limit and decompresses it
//!    within its own (`body` module), under the admission checks: bearer token, memory
//!    budget, connection limits.
//! 2. **Scan** (the receiver's `pipeline` module, `Pipeline::export`, and its `scanner`
//!    module). The wire-format scanner walks the protobuf request in place, checks it, and
//!    writes one [`SpanRecord`] per span (service, dimensions, name, kind, status, times),
//!    without building the prost tree. A request that breaks a limit is refused whole.
//! 3. **Forward**, alongside. Before the spans are recorded, the pipeline offers the request's
//!    bytes, as they arrived, to the [`ForwardSink`] (`crates/slipstream-core/src/forward.rs`).
//!    The exporters' `forward` module (`crates/slipstream-exporters/src/forward/`: the router
//!    by service, a byte-bounded queue per endpoint with its disk spill, the OTLP client with
//!    retries) implements it and sends the bytes downstream untouched. A full queue refuses
//!    the request with OTLP's retryable answer, and the spans are not recorded either: the
//!    client sends them again. Nothing further down this list waits on the forward path.
//! 4. **Record** (`crates/slipstream-aggregator/src/shard.rs`). The pipeline hands the span
//!    records to the [`ObservationSink`] (`crates/slipstream-core/src/span.rs`), which the
//!    [`Aggregator`] implements (`crates/slipstream-aggregator/src/lib.rs`), on the worker
//!    thread that received the request. That worker's shard finds the span's series and
//!    counts the request, its outcome, its latency in a histogram and the latency thresholds
//!    it exceeds, in the event-time slot of the span's end. Nothing is shared per span.
//! 5. **Step, once per tick** ([`thread`], `crates/slipstream-step/src/thread.rs`). The
//!    application's tick loop (`crates/slipstream-app/src/app.rs`) asks the [`StepThread`]
//!    for a step; the step thread runs [`Live::step`] at a lower priority than the request
//!    workers.
//! 6. **Merge** ([`evaluate`], `crates/slipstream-step/src/evaluate.rs`). [`Evaluator::step`]
//!    calls [`Aggregator::tick`]: each shard's pending counts are swapped out and merged into
//!    the window store (`crates/slipstream-aggregator/src/store.rs`), together with the
//!    partial aggregates sidecars shipped (two-tier mode), and an immutable [`Snapshot`] is
//!    published (`crates/slipstream-aggregator/src/snapshot.rs`).
//! 7. **Feed** (still [`evaluate`]). The evaluator walks the new snapshot beside the previous
//!    one ([`Snapshot::changes_since`], `crates/slipstream-aggregator/src/changes.rs`: series
//!    and slots that did not change are the same `Arc` and are skipped) and hands the SLO
//!    engine (`crates/slipstream-slo/src/engine.rs`) what each changed slot gained, per SLO
//!    the series counts towards ([`SloEngine::observe`]). It also keeps each series' totals
//!    since start ([`SeriesTotals`]) and, for a sidecar, the same changes as partial
//!    aggregates.
//! 8. **Evaluate** (still [`evaluate`]), when the evaluation interval has passed.
//!    [`SloEngine::tick`] computes every SLO's error ratio and burn rate per window and its
//!    budget remaining, runs the alert state machine of each policy row, applies silences,
//!    and returns the alert events with a new [`SloSnapshot`].
//! 9. **Publish** ([`publish`], `crates/slipstream-step/src/publish.rs`). [`Live::step`]
//!    makes the step's results what readers see ([`Published`]), keeps each SLO's history,
//!    turns each alert event into a [`BurnRateEvent`] ([`series::burn_rate_event`]) and hands
//!    the events to the [`EventSink`]s, and a sidecar's partial aggregates to the
//!    [`AggregatesSink`]. The application's sinks (`crates/slipstream-app/src/sinks.rs`)
//!    pass them to the exporters' `events` module, which queues them for `alertmanager`,
//!    `webhook`, `otlp_logs` and `stdout`, and to the `aggregates` exporter, which ships them
//!    to the gateway that owns each service (`crates/slipstream-exporters/src/`).
//! 10. **SLI series** ([`series`], `crates/slipstream-step/src/series.rs`). When an exporter
//!     collects (a Prometheus scrape, a remote-write or OTLP-metrics push on its interval),
//!     [`Live::metrics`] builds the SLI series of the last step from what was published
//!     ([`series::build`], every family declared in [`series::SERIES`]). The exporters'
//!     `prometheus`, `remote_write` and `otlp_metrics` modules render and deliver them. Every
//!     exporter, of events, series or aggregates, follows one lifecycle, start, feed, drain,
//!     shut down (the exporters' `lifecycle` module), so a slow target never holds up a step.
//! 11. **Admin API** (`crates/slipstream-app/src/api.rs`). The status API and page read the
//!     same [`Published`] results, the SLO history ([`Live::history`]), the recent events
//!     and the silences through [`Live`]; a silence added there reaches the engine through
//!     [`Live::with_evaluator`], and the next evaluation applies it.
//!
//! The SLO state (windows, alert states, silences) is saved from the engine on its own
//! interval and restored at start by the application (`crates/slipstream-app/src/state.rs`).
//!
//! [`SpanRecord`]: slipstream_core::SpanRecord
//! [`ForwardSink`]: slipstream_core::ForwardSink
//! [`ObservationSink`]: slipstream_core::ObservationSink
//! [`Aggregator`]: slipstream_aggregator::Aggregator
//! [`Aggregator::tick`]: slipstream_aggregator::Aggregator::tick
//! [`Snapshot`]: slipstream_aggregator::Snapshot
//! [`Snapshot::changes_since`]: slipstream_aggregator::Snapshot::changes_since
//! [`SloEngine::observe`]: slipstream_slo::SloEngine::observe
//! [`SloEngine::tick`]: slipstream_slo::SloEngine::tick
//! [`SloSnapshot`]: slipstream_slo::SloSnapshot
//! [`BurnRateEvent`]: slipstream_core::export::BurnRateEvent
//! [`Live`]: publish::Live
//! [`Live::step`]: publish::Live::step
//! [`Live::metrics`]: publish::Live::metrics
//! [`Live::history`]: publish::Live::history
//! [`Live::with_evaluator`]: publish::Live::with_evaluator
//! [`Published`]: publish::Published
//! [`EventSink`]: publish::EventSink
//! [`AggregatesSink`]: publish::AggregatesSink
//! [`Evaluator::step`]: evaluate::Evaluator::step
//! [`SeriesTotals`]: evaluate::SeriesTotals
//! [`StepThread`]: thread::StepThread
#![forbid(unsafe_code)]

pub mod evaluate;
pub mod publish;
pub mod series;
pub mod thread;
