//! `aggregator`: streaming aggregation of spans into per-series SLIs.

use serde::{Deserialize, Serialize};

use crate::Errors;

/// `aggregator`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {}

impl AggregatorConfig {
    pub(crate) fn validate(&self, _path: &str, _errs: &mut Errors) {}
}
