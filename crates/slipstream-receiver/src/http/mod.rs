//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or JSON bodies
//! ([`otlp`]), and `POST /v1/slipstream/aggregates` ([`aggregates`]); both go through the same
//! admission ([`admit`]).
//!
//! Dependencies point one way: this module routes to the endpoints, the endpoints use the
//! admission, and the admission uses the pipeline and the body reader.

mod admit;
mod aggregates;
mod otlp;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;

use crate::body::ResponseBody;
use crate::pipeline::Pipeline;

/// Handles one request on the HTTP port.
pub(crate) async fn handle<B>(
    pipeline: &Pipeline,
    max_body: usize,
    req: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.uri().path() == slipstream_core::aggregates::HTTP_PATH {
        aggregates::handle(pipeline, max_body, req).await
    } else {
        otlp::handle(pipeline, max_body, req).await
    }
}
