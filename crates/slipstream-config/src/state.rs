//! `state`: where the SLO state (window rings, alert states, silences) is kept across restarts.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Errors;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "./data";
/// Default interval between snapshots.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(30);

/// `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the embedded state store; `null` keeps state in memory only (a restart
    /// starts every SLO afresh).
    pub dir: Option<PathBuf>,
    /// Interval between snapshots; one is also taken at shutdown. After `kill -9` at most this
    /// much is lost.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
        }
    }
}

impl StateConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            self.snapshot_interval >= Duration::from_secs(1),
            format!("{path}.snapshot_interval"),
            "expected at least 1s",
        );
        if let Some(d) = &self.dir {
            errs.check(
                !d.as_os_str().is_empty(),
                format!("{path}.dir"),
                "expected a directory (or null for no persistence)",
            );
        }
    }
}
