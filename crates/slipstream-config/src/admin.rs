//! `admin`: the admin server (health, readiness, self-metrics, the JSON API) and the limits of
//! what its API may write.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::receiver::AuthConfig;
use crate::{ByteSize, Errors, check_socket_addr};

/// Default admin listen address: loopback only.
pub const DEFAULT_ADMIN_ENDPOINT: &str = "127.0.0.1:8888";
/// Default most silences in force at once (the config's and the API's together).
pub const DEFAULT_MAX_SILENCES: usize = 1_000;
/// Default largest `comment` of a silence created through the API.
pub const DEFAULT_MAX_SILENCE_COMMENT_SIZE: ByteSize = ByteSize::kib(1);
/// Default longest time a silence created through the API may stay in force.
pub const DEFAULT_MAX_SILENCE_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest `slo` or `service` name a silence created through the API may hold, in bytes.
pub const MAX_SILENCE_NAME_SIZE: usize = 256;

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address of `/healthz`, `/readyz`, `/metrics` and the JSON API under `/api/v1/`;
    /// `null` turns the server off.
    pub endpoint: Option<String>,
    /// Bearer-token authentication of the API's writes (`POST`, `PUT`, `DELETE` under
    /// `/api/v1/`); `null` (the default) accepts writes without a token. Reads, `/metrics`,
    /// `/healthz` and `/readyz` never need one.
    pub auth: Option<AuthConfig>,
    /// Limits on the silences the API creates.
    pub silences: SilenceLimitsConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            endpoint: Some(DEFAULT_ADMIN_ENDPOINT.to_owned()),
            auth: None,
            silences: SilenceLimitsConfig::default(),
        }
    }
}

/// `admin.silences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceLimitsConfig {
    /// Most silences in force at once, the config's included; the API refuses one more with
    /// 409. Expired silences stop counting at the next evaluation.
    pub max_count: usize,
    /// Largest `comment` of a silence created through the API; a longer one is refused (400).
    pub max_comment_size: ByteSize,
    /// Longest time a silence created through the API stays in force: one without `ends_at`
    /// ends this long after it starts (or after it was created, when it starts earlier), and
    /// one whose `ends_at` is further away is refused (400).
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
}

impl Default for SilenceLimitsConfig {
    fn default() -> Self {
        SilenceLimitsConfig {
            max_count: DEFAULT_MAX_SILENCES,
            max_comment_size: DEFAULT_MAX_SILENCE_COMMENT_SIZE,
            max_duration: DEFAULT_MAX_SILENCE_DURATION,
        }
    }
}

impl AdminConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        if let Some(e) = &self.endpoint {
            check_socket_addr(errs, &format!("{path}.endpoint"), e);
        }
        if let Some(a) = &self.auth {
            errs.check(
                !a.bearer_tokens.is_empty() || a.bearer_tokens_file.is_some(),
                format!("{path}.auth"),
                "expected bearer_tokens or bearer_tokens_file",
            );
            for (i, t) in a.bearer_tokens.iter().enumerate() {
                errs.check(
                    !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                    format!("{path}.auth.bearer_tokens[{i}]"),
                    "expected a non-empty token of visible ASCII characters",
                );
            }
        }
        let s = &self.silences;
        errs.check(
            s.max_count > 0,
            format!("{path}.silences.max_count"),
            "expected at least 1",
        );
        errs.check(
            s.max_duration >= Duration::from_secs(60),
            format!("{path}.silences.max_duration"),
            "expected at least 1m",
        );
    }

    /// The admin API's accepted tokens (inline and from the file), or why they cannot be read.
    pub fn tokens(&self) -> Result<Option<Vec<String>>, String> {
        match &self.auth {
            None => Ok(None),
            Some(a) => a.tokens().map(Some).map_err(|e| {
                format!(
                    "admin.auth: {}",
                    e.trim_start_matches("receivers.otlp.auth: ")
                )
            }),
        }
    }
}
