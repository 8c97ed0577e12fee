//! `slo`: SLOs, the service catalog and alerting.

use serde::{Deserialize, Serialize};

use crate::Errors;

/// `slo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {}

impl SloConfig {
    pub(crate) fn validate(&self, _path: &str, _errs: &mut Errors) {}
}
