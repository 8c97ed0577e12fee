//! Who may send partial aggregates, within which limits, and where they go: the
//! [`AggregatesIntake`] a gateway plugs into its [`crate::Pipeline`] with
//! [`crate::Pipeline::with_aggregates`]. The HTTP endpoint that takes them is
//! `http::aggregates`; this module holds only the intake's state and checks (the sidecars'
//! tokens, the sender patterns, the plausibility limits), so the pipeline can own one without
//! knowing the endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderValue, header};
use slipstream_config::aggregates::{
    AggregatesReceiverConfig, DEFAULT_MAX_REQUESTS_PER_SLOT, DEFAULT_MAX_SERIES_PER_REQUEST,
};
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::{AggregatesSink, MergeError, Merged};

/// Where a gateway's partial aggregates go, and who may send them within which limits:
/// plugged into the [`crate::Pipeline`] with [`crate::Pipeline::with_aggregates`].
pub struct AggregatesIntake {
    sink: Arc<dyn AggregatesSink>,
    /// The sidecars' tokens, replaced on reload.
    tokens: RwLock<Arc<Vec<Vec<u8>>>>,
    /// Glob patterns of accepted sender names.
    senders: Vec<Box<str>>,
    max_requests_per_slot: u64,
    max_series_per_request: usize,
}

impl std::fmt::Debug for AggregatesIntake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatesIntake")
            .field("senders", &self.senders)
            .field("max_requests_per_slot", &self.max_requests_per_slot)
            .field("max_series_per_request", &self.max_series_per_request)
            .finish_non_exhaustive()
    }
}

// === impl AggregatesIntake ===

impl AggregatesIntake {
    /// An intake handing shipments to `sink`, taking them only with one of `tokens` and from
    /// a sender matching one of `senders` (globs: `*` any run of characters, `?` one), with
    /// the default plausibility limits. No token or no sender pattern takes nothing.
    pub fn new(sink: Arc<dyn AggregatesSink>, tokens: Vec<String>, senders: Vec<String>) -> Self {
        AggregatesIntake {
            sink,
            tokens: RwLock::new(token_bytes(tokens)),
            senders: senders.into_iter().map(String::into_boxed_str).collect(),
            max_requests_per_slot: DEFAULT_MAX_REQUESTS_PER_SLOT,
            max_series_per_request: DEFAULT_MAX_SERIES_PER_REQUEST,
        }
    }

    /// An intake for `receivers.otlp.aggregates` as configured, with `tokens` read from it
    /// ([`AggregatesReceiverConfig::tokens`]).
    pub fn from_config(
        sink: Arc<dyn AggregatesSink>,
        cfg: &AggregatesReceiverConfig,
        tokens: Vec<String>,
    ) -> Self {
        AggregatesIntake::new(sink, tokens, cfg.senders.clone())
            .max_requests_per_slot(cfg.max_requests_per_slot)
            .max_series_per_request(cfg.max_series_per_request)
    }

    /// Most requests one shipment may add to one slot, summed over its series.
    #[must_use]
    pub fn max_requests_per_slot(mut self, n: u64) -> Self {
        self.max_requests_per_slot = n;
        self
    }

    /// Most series in one shipment.
    #[must_use]
    pub fn max_series_per_request(mut self, n: usize) -> Self {
        self.max_series_per_request = n;
        self
    }

    /// Replaces the accepted tokens (a reload); requests already authorized are unaffected.
    pub fn replace_tokens(&self, tokens: Vec<String>) {
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = token_bytes(tokens);
    }

    /// Whether the request carries one of the accepted tokens.
    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        slipstream_core::auth::bearer_accepted(
            headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
            &tokens,
        )
    }

    /// Hands a checked shipment to the sink (the aggregator).
    pub(crate) fn merge(&self, request: ExportAggregatesRequest) -> Result<Merged, MergeError> {
        self.sink.merge(request)
    }

    /// Whether `instance` matches one of the sender patterns.
    pub(crate) fn sender_allowed(&self, instance: &str) -> bool {
        self.senders
            .iter()
            .any(|p| glob_match(p.as_bytes(), instance.as_bytes()))
    }

    /// `Err` with what is wrong when `req` claims more than one sender could have seen.
    pub(crate) fn plausible(&self, req: &ExportAggregatesRequest) -> Result<(), String> {
        if req.series.len() > self.max_series_per_request {
            return Err(format!(
                "the shipment holds {} series, more than receivers.otlp.aggregates.max_series_per_request ({})",
                req.series.len(),
                self.max_series_per_request
            ));
        }
        let mut per_slot: BTreeMap<u64, u64> = BTreeMap::new();
        for slot in req.series.iter().flat_map(|s| &s.slots) {
            let sum = per_slot.entry(slot.start_unix_nanos).or_default();
            *sum = sum.saturating_add(slot.total);
            if *sum > self.max_requests_per_slot {
                return Err(format!(
                    "the slot starting at {} ns claims {} requests or more, more than receivers.otlp.aggregates.max_requests_per_slot ({})",
                    slot.start_unix_nanos, *sum, self.max_requests_per_slot
                ));
            }
        }
        Ok(())
    }
}

/// Whether `name` matches the glob `pattern`: `*` any run of bytes (empty too), `?` one byte,
/// anything else itself. Backtracks only to the last `*`, so it takes at most pattern length
/// times name length steps.
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn token_bytes(tokens: Vec<String>) -> Arc<Vec<Vec<u8>>> {
    Arc::new(tokens.into_iter().map(String::into_bytes).collect())
}
