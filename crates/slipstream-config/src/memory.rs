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
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit: None,
            cgroup_percent: DEFAULT_CGROUP_PERCENT,
            check_interval: DEFAULT_CHECK_INTERVAL,
            retry_after: DEFAULT_MEMORY_RETRY_AFTER,
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
    }
}
