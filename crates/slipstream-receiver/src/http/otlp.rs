//! The OTLP/HTTP endpoints: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with protobuf or
//! JSON bodies. After [`super::admit`], a JSON body is converted to protobuf once, and the
//! protobuf bytes go to the [`Pipeline`]; the answer is an empty `Export*ServiceResponse` in
//! the request's format, or the error as the OTLP/HTTP spec wants it.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use slipstream_core::Signal;

use super::admit::{
    Admitted, Counting, Format, admit, error_response, plain, signal_for_path, with_type,
};
use crate::body::ResponseBody;
use crate::pipeline::{ExportError, Pipeline, Reservation, Transport, json_to_protobuf_reserved};

/// Handles one request on an OTLP/HTTP path (any other path answers 404).
pub(crate) async fn handle<B>(
    pipeline: &Pipeline,
    max_body: usize,
    req: Request<B>,
) -> Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(signal) = signal_for_path(req.uri().path()) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs (and /v1/slipstream/aggregates for partial aggregates)",
        );
    };
    let counting = Counting {
        refused: &|reason| pipeline.count_refused(signal, Transport::Http, reason),
        bytes: &|n| pipeline.count_wire_bytes(signal, Transport::Http, n),
    };
    let Admitted {
        format,
        body,
        gzip,
        reservation,
    } = match admit(pipeline, max_body, req, true, true, &counting).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    // A protobuf body's gzip member is its encoding as it may be forwarded; a JSON body's is not.
    let (protobuf, gzip) = match format {
        Format::Protobuf => (body, gzip),
        Format::Json => match json_to_protobuf(signal, body, &reservation).await {
            Ok(b) => (b, None),
            Err(e) => {
                pipeline.count_refused(signal, Transport::Http, e.refusal());
                return error_response(format, &e);
            }
        },
    };
    match pipeline.export_reserved_gzip(signal, Transport::Http, protobuf, gzip, &reservation) {
        Ok(()) => {
            // An empty Export*ServiceResponse: zero bytes in protobuf, `{}` in JSON.
            let body = match format {
                Format::Protobuf => ResponseBody::empty(),
                Format::Json => ResponseBody::full("{}"),
            };
            with_type(Response::new(body), format)
        }
        Err(e) => error_response(format, &e),
    }
}

/// JSON bodies up to this size are converted on the async worker (about a millisecond of
/// decoding, `docs/benchmarks.md`, "Receiver: work handed to blocking threads"); larger ones on
/// a blocking thread.
const INLINE_JSON: usize = 256 << 10;

/// Converts an OTLP/JSON body to protobuf, with its memory reserved on `reservation`, on a
/// blocking thread when it is large.
async fn json_to_protobuf(
    signal: Signal,
    json: Bytes,
    reservation: &Reservation,
) -> Result<Bytes, ExportError> {
    if json.len() <= INLINE_JSON {
        return json_to_protobuf_reserved(signal, &json, Some(reservation));
    }
    let reservation = reservation.clone();
    tokio::task::spawn_blocking(move || {
        json_to_protobuf_reserved(signal, &json, Some(&reservation))
    })
    .await
    .map_err(|e| ExportError::Invalid(format!("JSON conversion failed: {e}")))?
}

#[cfg(test)]
mod tests;
