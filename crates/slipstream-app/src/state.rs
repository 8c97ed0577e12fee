//! Persistence of the SLO state across restarts (`state` config section): restore at start,
//! a snapshot every `state.snapshot_interval` and one at shutdown.
//!
//! A corrupt or incompatible store is logged, moved aside (`slipstream.redb.corrupt-<time>`)
//! and replaced by a fresh one; an unusable directory (unwritable, full, held by another
//! process) is logged and slipstream runs without persistence. Neither stops slipstream, so a
//! bad state file can never cause a crash loop. Every snapshot is counted by outcome.

use std::sync::Arc;

use slipstream_config::StateConfig;
use slipstream_core::Registry;
use slipstream_core::telemetry::{Counter, Gauge};
use slipstream_slo::EngineState;
use slipstream_state::{StateError, StateStore};

use slipstream_step::publish::Live;

/// The key the SLO engine's state is stored under.
pub const SLO_KEY: &str = "slo-engine";
/// How many dropped SLOs the restore's log line names.
const LOGGED_DROPS: usize = 10;

/// The self-metrics of persistence, declared once.
pub mod names {
    use slipstream_core::metric;
    use slipstream_core::telemetry::MetricDesc;

    metric!(
        SNAPSHOTS,
        "slipstream_state_snapshots_total",
        Counter,
        ["outcome"],
        "Snapshots of the SLO state to the state store, by outcome (ok, failed)."
    );
    metric!(
        SNAPSHOT_BYTES,
        "slipstream_state_snapshot_bytes",
        Gauge,
        [],
        "Size of the last snapshot of the SLO state."
    );
    metric!(
        RESTORED_SLOS,
        "slipstream_state_restored_slos",
        Gauge,
        [],
        "SLOs whose windows and alert states were restored at start."
    );

    metric!(
        TRANSFERS,
        "slipstream_state_transfers_total",
        Counter,
        ["outcome"],
        "Services new to this gateway whose state was asked of its peers, by outcome (imported, empty: no peer holds it, failed: no answer in time)."
    );
    metric!(
        TRANSFERS_SERVED,
        "slipstream_state_transfers_served_total",
        Counter,
        [],
        "Services' states served to peer gateways."
    );
    metric!(
        HANDOFFS,
        "slipstream_state_handoffs_total",
        Counter,
        [],
        "Services this gateway handed off because it no longer ranks among their replicas: no events sent for them, their firing alerts let go without a resolved post."
    );

    /// Every metric of this module.
    pub const ALL: &[&MetricDesc] = &[
        &SNAPSHOTS,
        &SNAPSHOT_BYTES,
        &RESTORED_SLOS,
        &TRANSFERS,
        &TRANSFERS_SERVED,
        &HANDOFFS,
    ];
}

/// The open store and its counters.
#[derive(Debug)]
pub struct Persistence {
    /// `None` after a failed save: the database refuses every write after an I/O error
    /// (a full disk), so the next snapshot opens the file again.
    store: std::sync::Mutex<Option<StateStore>>,
    dir: std::path::PathBuf,
    ok: Arc<Counter>,
    failed: Arc<Counter>,
    bytes: Arc<Gauge>,
}

fn open(cfg: &StateConfig) -> Option<StateStore> {
    let dir = cfg.dir.as_deref()?;
    match StateStore::open(dir) {
        Ok(s) => Some(s),
        Err(e) if e.is_bad_file() => {
            match StateStore::quarantine(dir) {
                Ok(moved) => tracing::error!(
                    "state store unusable ({e}); moved it to {} and starting with fresh SLO state",
                    moved.display()
                ),
                Err(q) => tracing::error!(
                    "state store unusable ({e}) and cannot be moved aside ({q}); running without persistence"
                ),
            }
            StateStore::open(dir)
                .map_err(|e| {
                    tracing::error!(
                        "cannot open a fresh state store: {e}; running without persistence"
                    )
                })
                .ok()
        }
        Err(e) => {
            tracing::error!(
                "cannot open the state store: {e}; running without persistence (SLO state will not survive a restart)"
            );
            None
        }
    }
}

impl Persistence {
    /// Opens the store of `cfg` (none when `state.dir` is null or unusable) and restores the
    /// SLO state saved in it into `live`.
    pub fn start(cfg: &StateConfig, live: &Live, registry: &Registry) -> Option<Persistence> {
        let store = open(cfg)?;
        let restored = registry.gauge(&names::RESTORED_SLOS, &[]);
        match store.load(SLO_KEY) {
            Ok(Some(bytes)) => match serde_json::from_slice::<EngineState>(&bytes) {
                Ok(state) => {
                    let report = live.with_evaluator(|e| e.engine_mut().restore_state(state));
                    restored.set(report.restored.len() as i64);
                    if let Some(v) = report.incompatible_format {
                        tracing::error!(
                            format = v,
                            "saved SLO state has an incompatible format; starting fresh"
                        );
                    } else {
                        // A state of many discovered services may drop thousands: the
                        // log line names the first few.
                        let dropped: Vec<String> = report
                            .dropped
                            .iter()
                            .take(LOGGED_DROPS)
                            .map(ToString::to_string)
                            .collect();
                        tracing::info!(
                            restored = report.restored.len(),
                            deferred = report.deferred.len(),
                            silences = report.silences,
                            dropped = report.dropped.len(),
                            first_dropped = ?dropped,
                            "SLO state restored from {}",
                            store.path().display()
                        );
                    }
                }
                Err(e) => tracing::error!(
                    "saved SLO state in {} cannot be read ({e}); starting fresh",
                    store.path().display()
                ),
            },
            Ok(None) => tracing::info!("no saved SLO state in {}", store.path().display()),
            Err(e) => tracing::error!("cannot read the saved SLO state: {e}; starting fresh"),
        }
        Some(Persistence {
            dir: store
                .path()
                .parent()
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
            store: std::sync::Mutex::new(Some(store)),
            ok: registry.counter(&names::SNAPSHOTS, &["ok"]),
            failed: registry.counter(&names::SNAPSHOTS, &["failed"]),
            bytes: registry.gauge(&names::SNAPSHOT_BYTES, &[]),
        })
    }

    /// Saves the SLO state of `live` now. Blocking I/O: call it off the async workers.
    pub fn snapshot(&self, live: &Live) -> Result<(), StateError> {
        let state = live.with_evaluator(|e| e.engine().export_state());
        let bytes = serde_json::to_vec(&state).expect("the SLO state serializes");
        let mut guard = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match StateStore::open(&self.dir) {
                Ok(s) => {
                    tracing::info!("state store {} reopened", s.path().display());
                    *guard = Some(s);
                }
                Err(e) => {
                    self.failed.inc();
                    return Err(e);
                }
            }
        }
        let store = guard.as_ref().expect("opened above");
        match store.save(SLO_KEY, &bytes) {
            Ok(()) => {
                self.ok.inc();
                self.bytes.set(bytes.len() as i64);
                Ok(())
            }
            Err(e) => {
                self.failed.inc();
                // Closed now, opened again (repaired if need be) at the next snapshot.
                *guard = None;
                Err(e)
            }
        }
    }
}
