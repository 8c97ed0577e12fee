//! `POST /v1/slipstream/aggregates`: partial aggregates from a two-tier sidecar.
//!
//! A shipment merges counts straight into SLO state, so this path trusts nobody by default:
//! without an [`AggregatesIntake`] plugged into the [`Pipeline`] (the default,
//! `receivers.otlp.aggregates.enabled: false`) it answers 404. With one, a request is taken
//! only when, in this order:
//!
//! 1. it carries one of the intake's own bearer tokens (the sidecars', never the OTLP
//!    receivers' `receivers.otlp.auth` tokens): else `401`, `reason="unauthenticated"`;
//! 2. it passes the OTLP/HTTP admission ([`crate::http::admit`]: method, media type, memory
//!    gate, body size and bounded decompression, protobuf only) and decodes as an
//!    [`ExportAggregatesRequest`]: else `405`/`415`/`503`/`413`, or `400` `reason="invalid"`;
//! 3. its sender (`Header.instance`) matches one of the intake's sender patterns: else `403`,
//!    `reason="unknown_sender"`;
//! 4. it is plausible: at most `max_series_per_request` series, and no slot (summed over the
//!    shipment's series) claiming more than `max_requests_per_slot` requests: else `400`,
//!    `reason="implausible"`, the message naming the limit;
//! 5. the [`AggregatesSink`] (the aggregator) takes it: it checks the header against its own
//!    slot width, histogram layout and dimensions (`400`, `reason="incompatible"`), every
//!    series and slot against the schema (`bad <= total`, buckets adding up to `total`:
//!    `400`, `reason="invalid"`), every slot against its clock (no slot beyond its future
//!    skew or long before its retention: `400`, `reason="implausible"`), and queues it for
//!    its next tick (`503` with `Retry-After` while its merge queue is full).
//!
//! A refused request changes nothing: every check runs on the whole request before any of it
//! is queued. `200` (empty body) means taken, or a retry of a request already merged (not
//! added again). Every non-200 answer carries a `google.rpc.Status` saying why.
//!
//! Every answer is counted: `slipstream_receiver_aggregates_requests_total{outcome}` and, for
//! refusals, `slipstream_receiver_aggregates_refused_total{reason}` (`disabled` for the 404).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use prost::Message;
use slipstream_config::aggregates::{
    AggregatesReceiverConfig, DEFAULT_MAX_REQUESTS_PER_SLOT, DEFAULT_MAX_SERIES_PER_REQUEST,
};
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::rpc::GrpcCode;
use slipstream_core::{AggregatesSink, MergeError, Merged};

use crate::body::ResponseBody;
use crate::http::{Admitted, Counting, Format, admit, status_response, with_type};
use crate::pipeline::Pipeline;

/// Where a gateway's partial aggregates go, and who may send them within which limits:
/// plugged into the [`Pipeline`] with [`Pipeline::with_aggregates`].
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
    fn authorized(&self, headers: &HeaderMap) -> bool {
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

/// Handles one request on the partial-aggregates path.
pub(crate) async fn handle<B>(
    pipeline: &Pipeline,
    max_body: usize,
    req: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let refuse = |reason: &'static str, status, code, message: &str, retry_after| {
        pipeline.count_aggregates_refused(reason);
        status_response(Format::Protobuf, status, code, message, retry_after)
    };
    let Some(intake) = pipeline.aggregates() else {
        return refuse(
            "disabled",
            StatusCode::NOT_FOUND,
            GrpcCode::Unimplemented,
            "this slipstream does not take partial aggregates (receivers.otlp.aggregates.enabled is false)",
            None,
        );
    };
    if !intake.authorized(req.headers()) {
        let mut r = refuse(
            "unauthenticated",
            StatusCode::UNAUTHORIZED,
            GrpcCode::Unauthenticated,
            "unauthenticated: partial aggregates need Authorization: Bearer <token> with a sidecar token (receivers.otlp.aggregates.auth)",
            None,
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let counting = Counting {
        refused: &|reason| pipeline.count_aggregates_refused(reason),
        bytes: &|n| pipeline.count_aggregates_bytes(n),
    };
    let Admitted { body, .. } = match admit(pipeline, max_body, req, false, false, &counting).await
    {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let request = match ExportAggregatesRequest::decode(&body[..]) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                "invalid",
                StatusCode::BAD_REQUEST,
                GrpcCode::InvalidArgument,
                &format!("invalid ExportAggregatesRequest: {e}"),
                None,
            );
        }
    };
    let sender = request.header.as_ref().map_or("", |h| h.instance.as_str());
    if !intake.sender_allowed(sender) {
        let shown: String = sender.chars().take(128).collect();
        return refuse(
            "unknown_sender",
            StatusCode::FORBIDDEN,
            GrpcCode::PermissionDenied,
            &format!("sender {shown:?} is not one of receivers.otlp.aggregates.senders"),
            None,
        );
    }
    if let Err(why) = intake.plausible(&request) {
        return refuse(
            "implausible",
            StatusCode::BAD_REQUEST,
            GrpcCode::InvalidArgument,
            &format!("implausible partial aggregates: {why}"),
            None,
        );
    }
    match intake.sink.merge(request) {
        Ok(merged) => {
            pipeline.count_aggregates_answered(match merged {
                Merged::Accepted => "accepted",
                Merged::Duplicate => "duplicate",
            });
            with_type(Response::new(ResponseBody::empty()), Format::Protobuf)
        }
        Err(
            e @ (MergeError::Incompatible(_) | MergeError::Invalid(_) | MergeError::Implausible(_)),
        ) => refuse(
            e.reason(),
            StatusCode::BAD_REQUEST,
            GrpcCode::InvalidArgument,
            &e.to_string(),
            None,
        ),
        Err(e @ MergeError::Busy(d)) => refuse(
            e.reason(),
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            &e.to_string(),
            Some(d),
        ),
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

#[cfg(test)]
mod tests;
