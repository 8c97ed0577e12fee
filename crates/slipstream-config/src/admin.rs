//! `admin`: the admin server (health, readiness, self-metrics).

use serde::{Deserialize, Serialize};

use crate::{Errors, check_socket_addr};

/// Default admin listen address: loopback only.
pub const DEFAULT_ADMIN_ENDPOINT: &str = "127.0.0.1:8888";

/// `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address of `/healthz`, `/readyz` and `/metrics`; `null` turns the server off.
    pub endpoint: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            endpoint: Some(DEFAULT_ADMIN_ENDPOINT.to_owned()),
        }
    }
}

impl AdminConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        if let Some(e) = &self.endpoint {
            check_socket_addr(errs, &format!("{path}.endpoint"), e);
        }
    }
}
