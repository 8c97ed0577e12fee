//! `POST /v1/slipstream/aggregates`: partial aggregates from a two-tier sidecar.
//!
//! A shipment merges counts straight into SLO state, so this path trusts nobody by default:
//! without an [`AggregatesIntake`](crate::AggregatesIntake) plugged into the [`Pipeline`] (the default,
//! `receivers.otlp.aggregates.enabled: false`) it answers 404. With one, a request is taken
//! only when, in this order:
//!
//! 1. it carries one of the intake's own bearer tokens (the sidecars', never the OTLP
//!    receivers' `receivers.otlp.auth` tokens): else `401`, `reason="unauthenticated"`;
//! 2. it passes the OTLP/HTTP admission ([`super::admit`]: method, media type, memory
//!    gate, body size and bounded decompression, protobuf only) and decodes as an
//!    [`ExportAggregatesRequest`]: else `405`/`415`/`503`/`413`, or `400` `reason="invalid"`;
//! 3. its sender (`Header.instance`) matches one of the intake's sender patterns: else `403`,
//!    `reason="unknown_sender"`;
//! 4. it is plausible: at most `max_series_per_request` series, and no slot (summed over the
//!    shipment's series) claiming more than `max_requests_per_slot` requests: else `400`,
//!    `reason="implausible"`, the message naming the limit;
//! 5. the [`AggregatesSink`](slipstream_core::AggregatesSink) (the aggregator) takes it: it checks the header against its own
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

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use prost::Message;
use slipstream_core::MergeError;
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::rpc::GrpcCode;

use super::admit::{Admitted, Counting, Format, admit, status_response, with_type};
use crate::body::ResponseBody;
use crate::pipeline::Pipeline;
use crate::refusal::Refusal;

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
    let refuse = |reason: Refusal, status, code, message: &str, retry_after| {
        pipeline.count_aggregates_refused(reason);
        status_response(Format::Protobuf, status, code, message, retry_after)
    };
    let Some(intake) = pipeline.aggregates() else {
        return refuse(
            Refusal::Disabled,
            StatusCode::NOT_FOUND,
            GrpcCode::Unimplemented,
            "this slipstream does not take partial aggregates (receivers.otlp.aggregates.enabled is false)",
            None,
        );
    };
    if !intake.authorized(req.headers()) {
        let mut r = refuse(
            Refusal::Unauthenticated,
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
                Refusal::Invalid,
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
            Refusal::UnknownSender,
            StatusCode::FORBIDDEN,
            GrpcCode::PermissionDenied,
            &format!("sender {shown:?} is not one of receivers.otlp.aggregates.senders"),
            None,
        );
    }
    if let Err(why) = intake.plausible(&request) {
        return refuse(
            Refusal::Implausible,
            StatusCode::BAD_REQUEST,
            GrpcCode::InvalidArgument,
            &format!("implausible partial aggregates: {why}"),
            None,
        );
    }
    match intake.merge(request) {
        Ok(merged) => {
            pipeline.count_aggregates_answered(merged);
            with_type(Response::new(ResponseBody::empty()), Format::Protobuf)
        }
        Err(
            e @ (MergeError::Incompatible(_) | MergeError::Invalid(_) | MergeError::Implausible(_)),
        ) => refuse(
            Refusal::of_merge(&e),
            StatusCode::BAD_REQUEST,
            GrpcCode::InvalidArgument,
            &e.to_string(),
            None,
        ),
        Err(e @ MergeError::Busy(d)) => refuse(
            Refusal::of_merge(&e),
            StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unavailable,
            &e.to_string(),
            Some(d),
        ),
    }
}

#[cfg(test)]
mod tests;
