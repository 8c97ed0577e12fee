//! `memory`: the memory limit past which receivers refuse new requests (retryably).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ByteSize, Errors};

/// Default share of the cgroup memory limit used as the limit when none is set.
pub const DEFAULT_CGROUP_PERCENT: u8 = 80;
/// Default interval between two readings of the resident memory.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Default delay suggested to refused clients.
pub const DEFAULT_MEMORY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default share of the memory limit that requests in flight may reserve, in percent, when
/// `max_in_flight` is not set.
pub const DEFAULT_IN_FLIGHT_PERCENT: u8 = 25;
/// Default cap on the bytes requests in flight may reserve: `null`, that is
/// [`DEFAULT_IN_FLIGHT_PERCENT`] of the limit in force.
pub const DEFAULT_MAX_IN_FLIGHT: Option<ByteSize> = None;

/// `memory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Resident memory above which new requests are refused with a retryable answer (HTTP 503
    /// with Retry-After, gRPC UNAVAILABLE with RetryInfo) until it falls below 90% of it.
    /// `null` (the default) takes `cgroup_percent` of the container's cgroup memory limit, and
    /// no limit when there is none.
    pub limit: Option<ByteSize>,
    /// Share of the cgroup memory limit used when `limit` is null, in percent.
    pub cgroup_percent: u8,
    /// How often the resident memory is read.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Delay suggested to refused clients.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Cap on the memory that requests being read and decoded may hold at once: wire bytes,
    /// decompressed bytes, the span records of a scan, and a bound of a JSON body's decoded
    /// tree, each reserved before it is allocated (plus the bodies accepted since the last
    /// reading of the resident memory). A request that does not fit now is refused retryably
    /// (HTTP 503 / gRPC UNAVAILABLE, reason `memory_limit`); one that could never fit, with
    /// 413 / RESOURCE_EXHAUSTED. With it, the resident memory stays within `limit` plus this
    /// cap, however many requests arrive at once. `null` (the default) takes 25% of the limit
    /// in force. Applies only when a limit is in force.
    pub max_in_flight: Option<ByteSize>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit: None,
            cgroup_percent: DEFAULT_CGROUP_PERCENT,
            check_interval: DEFAULT_CHECK_INTERVAL,
            retry_after: DEFAULT_MEMORY_RETRY_AFTER,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl MemoryConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            (1..=100).contains(&self.cgroup_percent),
            format!("{path}.cgroup_percent"),
            "expected a percentage from 1 to 100",
        );
        errs.check(
            self.check_interval >= Duration::from_millis(10),
            format!("{path}.check_interval"),
            "expected at least 10ms",
        );
        if let Some(l) = self.limit {
            errs.check(
                l.0 >= 1 << 20,
                format!("{path}.limit"),
                "expected at least 1MiB",
            );
        }
        if let Some(m) = self.max_in_flight {
            errs.check(
                m.0 >= 1 << 20,
                format!("{path}.max_in_flight"),
                "expected at least 1MiB",
            );
        }
    }

    /// The in-flight cap for a memory limit of `limit` bytes: `max_in_flight`, or
    /// [`DEFAULT_IN_FLIGHT_PERCENT`] of the limit.
    pub fn in_flight_cap(&self, limit: u64) -> u64 {
        self.max_in_flight
            .map_or(limit / 100 * u64::from(DEFAULT_IN_FLIGHT_PERCENT), |m| m.0)
    }
}
