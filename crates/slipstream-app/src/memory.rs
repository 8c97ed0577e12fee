//! The memory monitor: reads the resident memory every `memory.check_interval` and closes the
//! receivers' [`MemoryGate`] above `memory.limit` (or a share of the cgroup limit), opening it
//! again below 90% of it.
//!
//! Between two readings, what requests read and decode is reserved on the gate's in-flight
//! budget (`memory.max_in_flight`, by default a quarter of the limit) before it is allocated,
//! and each reading gives back the bytes of accepted requests it now accounts for. So the
//! resident memory stays within the limit plus the in-flight cap: a reading above the limit
//! admits nothing new, and what is admitted between readings fits in the cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use slipstream_config::MemoryConfig;
use slipstream_core::Registry;
use slipstream_receiver::{InFlight, MemoryGate};
use tokio::sync::watch;

/// The self-metrics of the memory monitor, declared once.
pub mod names {
    use slipstream_core::metric;
    use slipstream_core::telemetry::MetricDesc;

    metric!(
        LIMIT,
        "slipstream_memory_limit_bytes",
        Gauge,
        [],
        "The memory limit in force (0: none); above it new requests are refused."
    );
    metric!(
        RSS,
        "slipstream_memory_resident_bytes",
        Gauge,
        [],
        "Resident memory of the process, as last read by the memory monitor."
    );
    metric!(
        OVER,
        "slipstream_memory_over_limit",
        Gauge,
        [],
        "1 while new requests are refused for memory, else 0."
    );
    metric!(
        IN_FLIGHT_LIMIT,
        "slipstream_memory_in_flight_limit_bytes",
        Gauge,
        [],
        "Cap on the memory requests being read and decoded may reserve (0: no memory limit)."
    );
    metric!(
        IN_FLIGHT,
        "slipstream_memory_in_flight_bytes",
        Gauge,
        [],
        "Memory reserved by requests being read and decoded, and by bodies accepted since the last reading, as of that reading."
    );

    /// Every metric of this module.
    pub const ALL: &[&MetricDesc] = &[&LIMIT, &RSS, &OVER, &IN_FLIGHT_LIMIT, &IN_FLIGHT];
}

/// The resident memory of this process, in bytes (`VmRSS`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The cgroup memory limit of this process (v2, then v1); `None` when unlimited.
pub fn cgroup_limit() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(text) = std::fs::read_to_string(path) {
            // "max" (v2) or a huge number (v1) mean no limit.
            return text.trim().parse::<u64>().ok().filter(|v| *v < (1 << 60));
        }
    }
    None
}

/// The limit `cfg` asks for: its own, or its share of the cgroup's; `None` for no limit.
pub fn limit(cfg: &MemoryConfig) -> Option<u64> {
    cfg.limit
        .map(|l| l.0)
        .or_else(|| cgroup_limit().map(|c| c / 100 * u64::from(cfg.cgroup_percent)))
}

/// Starts the monitor when a limit applies; returns the gate for the receivers.
pub fn start(
    cfg: &MemoryConfig,
    registry: &Registry,
    mut shutdown: watch::Receiver<bool>,
) -> Option<MemoryGate> {
    let limit_gauge = registry.gauge(&names::LIMIT, &[]);
    let cap_gauge = registry.gauge(&names::IN_FLIGHT_LIMIT, &[]);
    let Some(limit) = limit(cfg) else {
        limit_gauge.set(0);
        cap_gauge.set(0);
        return None;
    };
    limit_gauge.set(limit as i64);
    let cap = cfg.in_flight_cap(limit);
    cap_gauge.set(cap as i64);
    let (rss_gauge, over_gauge, in_flight_gauge) = (
        registry.gauge(&names::RSS, &[]),
        registry.gauge(&names::OVER, &[]),
        registry.gauge(&names::IN_FLIGHT, &[]),
    );
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let in_flight = Arc::new(InFlight::new(usize::try_from(cap).unwrap_or(usize::MAX)));
    let budget = in_flight.clone();
    let interval = cfg.check_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            in_flight_gauge.set(budget.held() as i64);
            // The bodies accepted so far are resident: the reading below accounts for them.
            budget.sampled();
            let Some(rss) = resident_bytes() else {
                continue;
            };
            rss_gauge.set(rss as i64);
            let was = flag.load(Ordering::Relaxed);
            let now = if was {
                rss >= limit / 10 * 9
            } else {
                rss > limit
            };
            if now {
                // Freed memory the allocator still holds counts as resident; hand it back,
                // or the limit could stay crossed with nothing left to free.
                crate::allocator::request_collect();
            }
            if now != was {
                flag.store(now, Ordering::Relaxed);
                over_gauge.set(i64::from(now));
                if now {
                    tracing::warn!(
                        rss,
                        limit,
                        "over the memory limit: refusing new requests until memory falls below 90% of it"
                    );
                } else {
                    tracing::info!(
                        rss,
                        limit,
                        "below the memory limit again: accepting requests"
                    );
                }
            }
        }
    });
    tracing::info!(limit, in_flight_cap = cap, "memory limit in force");
    Some(MemoryGate {
        over,
        retry_after: cfg.retry_after,
        in_flight,
    })
}
