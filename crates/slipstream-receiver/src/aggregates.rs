//! `POST /v1/slipstream/aggregates`: partial aggregates from a two-tier sidecar.
//!
//! The request goes through the OTLP/HTTP admission ([`crate::http::admit`]: bearer token,
//! memory gate, body size and bounded decompression, protobuf only), is decoded as an
//! [`ExportAggregatesRequest`] and handed to the [`AggregatesSink`] plugged into the
//! [`Pipeline`] (the aggregator), which checks it against its own slot width, histogram layout
//! and dimensions and queues it for its next tick. Answers:
//!
//! - `200`, empty body: taken (or a retry of a request already merged: not added again);
//! - `400` with a `google.rpc.Status`: not protobuf, not the schema, or incompatible with this
//!   aggregator (the message says which setting differs); the sender drops it;
//! - `503` with `Retry-After`: the aggregator's merge queue is full until its next tick, or
//!   slipstream is over its memory limit;
//! - `401`, `405`, `413`, `415` as for OTLP/HTTP.
//!
//! Every answer is counted: `slipstream_receiver_aggregates_requests_total{outcome}` and, for
//! refusals, `slipstream_receiver_aggregates_refused_total{reason}`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use prost::Message;
use slipstream_core::aggregates::ExportAggregatesRequest;
use slipstream_core::rpc::GrpcCode;
use slipstream_core::{MergeError, Merged};

use crate::body::ResponseBody;
use crate::http::{Admitted, Counting, Format, admit, status_response, with_type};
use crate::pipeline::Pipeline;

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
    let Some(sink) = pipeline.aggregates() else {
        return status_response(
            Format::Protobuf,
            StatusCode::NOT_FOUND,
            GrpcCode::Unimplemented,
            "this slipstream does not take partial aggregates",
            None,
        );
    };
    let counting = Counting {
        refused: &|reason| pipeline.count_aggregates_refused(reason),
        bytes: &|n| pipeline.count_aggregates_bytes(n),
    };
    let Admitted { body, .. } = match admit(pipeline, max_body, req, false, &counting).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let refuse = |reason: &'static str, status, code, message: &str, retry_after| {
        pipeline.count_aggregates_refused(reason);
        status_response(Format::Protobuf, status, code, message, retry_after)
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
    match sink.merge(request) {
        Ok(merged) => {
            pipeline.count_aggregates_answered(match merged {
                Merged::Accepted => "accepted",
                Merged::Duplicate => "duplicate",
            });
            with_type(Response::new(ResponseBody::empty()), Format::Protobuf)
        }
        Err(e @ (MergeError::Incompatible(_) | MergeError::Invalid(_))) => refuse(
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
