//! Shared helpers for the SLO engine's integration tests: an engine on a manual clock, and a
//! steady traffic generator.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use slipstream_config::Config;
use slipstream_core::{ManualClock, Registry};
use slipstream_slo::{AlertEvent, SloEngine, SloId};

/// 2023-11-15T00:00:00Z: a day (and month-independent hour) boundary.
pub const START: u64 = 1_700_006_400_000_000_000;
pub const SEC: u64 = 1_000_000_000;
pub const MIN: u64 = 60 * SEC;
pub const HOUR: u64 = 60 * MIN;

pub struct Harness {
    pub engine: SloEngine,
    pub clock: ManualClock,
    pub registry: Registry,
}

/// An engine for the `slo:` section in `yaml` (indented under `slo:`), clock at `START`.
pub fn harness(slo_yaml: &str) -> Harness {
    let doc = format!("slo:\n{slo_yaml}");
    let config = Config::from_yaml(&doc).unwrap_or_else(|e| panic!("{e}"));
    let clock = ManualClock::new(START);
    let registry = Registry::new();
    let engine = SloEngine::new(&config.slo, Arc::new(clock.clone()), &registry)
        .unwrap_or_else(|e| panic!("{e:?}"));
    Harness {
        engine,
        clock,
        registry,
    }
}

impl Harness {
    pub fn id(&self, name: &str) -> SloId {
        self.engine.id(name).expect("slo exists")
    }

    pub fn now(&self) -> u64 {
        use slipstream_core::Clock;
        self.clock.now_unix_nanos()
    }

    /// From the clock's time until `until`, every `step`: counts `bad` of `total` requests in
    /// the slot `[t, t + step)`, moves the clock to `t + step`, and ticks. Returns the events.
    pub fn run(
        &mut self,
        id: SloId,
        until: u64,
        step: u64,
        total: u64,
        bad: u64,
    ) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        let mut t = self.now();
        while t < until {
            self.engine.observe(id, t, total - bad, total);
            t += step;
            self.clock.set(t);
            events.extend(self.engine.tick());
        }
        events
    }

    /// Fills `[from, to)` with per-minute counts without ticking (history before a scenario);
    /// the clock ends at `to`.
    pub fn history(&mut self, id: SloId, from: u64, to: u64, per_minute: u64, bad_per_minute: u64) {
        self.clock.set(to);
        let mut t = from;
        while t < to {
            self.engine
                .observe(id, t, per_minute - bad_per_minute, per_minute);
            t += MIN;
        }
    }

    pub fn metric(&self, name: &str, labels: &[&str]) -> i128 {
        self.registry.value(name, labels).unwrap_or(0)
    }
}
