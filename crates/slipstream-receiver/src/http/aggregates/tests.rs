use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use prost::Message;
use slipstream_core::aggregates::{
    ExportAggregatesRequest, HTTP_PATH, Header, Series, Slot, Value, value,
};
use slipstream_core::rpc::RpcStatus;
use slipstream_core::{AggregatesSink, MergeError, Merged, Registry, ScanSpec};

use crate::intake::{AggregatesIntake, glob_match};
use crate::pipeline::{Limits, Pipeline};

/// Records what reaches it; refuses with `refusal` when set.
#[derive(Default)]
struct Recorder {
    merged: Mutex<Vec<ExportAggregatesRequest>>,
    refusal: Mutex<Option<MergeError>>,
}

impl AggregatesSink for Recorder {
    fn merge(&self, request: ExportAggregatesRequest) -> Result<Merged, MergeError> {
        if let Some(e) = self.refusal.lock().unwrap().clone() {
            return Err(e);
        }
        self.merged.lock().unwrap().push(request);
        Ok(Merged::Accepted)
    }
}

fn pipeline(intake: Option<AggregatesIntake>) -> (Pipeline, Registry) {
    let registry = Registry::new();
    let limits = Limits {
        max_decompressed_size: 1 << 20,
        max_spans_per_request: 0,
        attributes: Default::default(),
    };
    let mut p = Pipeline::new(
        Arc::new(()),
        Arc::new(()),
        ScanSpec::default(),
        limits,
        registry.clone(),
    )
    // OTLP requests need this token; the aggregates path must not take it.
    .with_bearer_tokens(vec!["otlp-token".into()]);
    if let Some(i) = intake {
        p = p.with_aggregates(Arc::new(i));
    }
    (p, registry)
}

fn intake(sink: &Arc<Recorder>) -> AggregatesIntake {
    AggregatesIntake::new(
        sink.clone(),
        vec!["sidecar-token".into()],
        vec!["sidecar-*".into(), "edge-?".into()],
    )
    .max_requests_per_slot(1_000)
    .max_series_per_request(3)
}

fn series(service: &str, start: u64, total: u64) -> Series {
    Series {
        key: vec![Value {
            value: Some(value::Value::StringValue(service.into())),
        }],
        slots: vec![Slot {
            start_unix_nanos: start,
            total,
            bad: 0,
            bucket_indexes: vec![3],
            bucket_counts: vec![total],
            ..Slot::default()
        }],
        ..Series::default()
    }
}

fn shipment(instance: &str, series: Vec<Series>) -> ExportAggregatesRequest {
    ExportAggregatesRequest {
        header: Some(Header {
            instance: instance.into(),
            sequence: 1,
            ..Header::default()
        }),
        series,
    }
}

/// Posts `body` with `token` (if any); the status and the `google.rpc.Status` message.
async fn post(p: &Pipeline, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = Request::post(HTTP_PATH).header("content-type", "application/x-protobuf");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let r = crate::http::handle(p, 1 << 20, req).await;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let message = if body.is_empty() {
        String::new()
    } else {
        RpcStatus::decode(&body[..]).unwrap().message
    };
    (status, message)
}

fn refused(registry: &Registry, reason: &str) -> i128 {
    registry
        .value("slipstream_receiver_aggregates_refused_total", &[reason])
        .unwrap_or(0)
}

#[test]
fn globs_match_whole_names() {
    for (p, n) in [
        ("*", ""),
        ("*", "anything"),
        ("sidecar-*", "sidecar-"),
        ("sidecar-*", "sidecar-checkout-7f9c"),
        ("edge-?", "edge-1"),
        ("*-sidecar", "a-b-sidecar"),
        ("a*b*c", "axxbyyc"),
        ("a*b*c", "abcbc"),
        ("exact", "exact"),
    ] {
        assert!(glob_match(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
    }
    for (p, n) in [
        ("sidecar-*", "sidecar"),
        ("sidecar-*", "evil-sidecar-1"),
        ("edge-?", "edge-12"),
        ("edge-?", "edge-"),
        ("a*b*c", "axxbyy"),
        ("exact", "exact2"),
        ("", "x"),
    ] {
        assert!(!glob_match(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
    }
}

#[test]
fn plausibility_sums_a_slot_over_the_shipment_and_counts_series() {
    let i = intake(&Arc::default());
    let ok = shipment(
        "sidecar-1",
        vec![
            series("a", 60, 500),
            series("b", 60, 500),
            series("a", 120, 1_000),
        ],
    );
    assert_eq!(i.plausible(&ok), Ok(()));
    // 1,001 in the slot at 60, over two series.
    let over = shipment(
        "sidecar-1",
        vec![series("a", 60, 500), series("b", 60, 501)],
    );
    let e = i.plausible(&over).unwrap_err();
    assert!(e.contains("max_requests_per_slot (1000)"), "{e}");
    // One slot claiming 2^64 - 1 does not wrap around.
    let huge = shipment(
        "sidecar-1",
        vec![series("a", 60, u64::MAX), series("b", 60, u64::MAX)],
    );
    assert!(i.plausible(&huge).is_err());
    let many = shipment("sidecar-1", (0..4).map(|_| series("a", 60, 1)).collect());
    let e = i.plausible(&many).unwrap_err();
    assert!(e.contains("max_series_per_request (3)"), "{e}");
}

#[tokio::test]
async fn off_the_path_answers_404_counted() {
    let (p, registry) = pipeline(None);
    let body = shipment("sidecar-1", vec![series("a", 60, 1)]).encode_to_vec();
    let (status, message) = post(&p, Some("otlp-token"), body).await;
    assert_eq!(status, 404);
    assert!(message.contains("enabled is false"), "{message}");
    assert_eq!(refused(&registry, "disabled"), 1);
}

#[tokio::test]
async fn every_refusal_has_its_status_and_reason_and_reaches_no_sink() {
    let sink = Arc::new(Recorder::default());
    let (p, registry) = pipeline(Some(intake(&sink)));
    let good = shipment("sidecar-1", vec![series("a", 60, 10)]);

    let (status, _) = post(&p, None, good.encode_to_vec()).await;
    assert_eq!(status, 401);
    // A token of the OTLP receivers is not a sidecar's.
    let (status, message) = post(&p, Some("otlp-token"), good.encode_to_vec()).await;
    assert_eq!(status, 401);
    assert!(
        message.contains("receivers.otlp.aggregates.auth"),
        "{message}"
    );
    assert_eq!(refused(&registry, "unauthenticated"), 2);

    let stranger = shipment("attacker", good.series.clone());
    let (status, message) = post(&p, Some("sidecar-token"), stranger.encode_to_vec()).await;
    assert_eq!(status, 403);
    assert!(message.contains("\"attacker\""), "{message}");
    let headless = ExportAggregatesRequest {
        header: None,
        ..good.clone()
    };
    let (status, _) = post(&p, Some("sidecar-token"), headless.encode_to_vec()).await;
    assert_eq!(status, 403);
    assert_eq!(refused(&registry, "unknown_sender"), 2);

    let claim = shipment("sidecar-1", vec![series("a", 60, 1 << 40)]);
    let (status, message) = post(&p, Some("sidecar-token"), claim.encode_to_vec()).await;
    assert_eq!(status, 400);
    assert!(message.contains("max_requests_per_slot"), "{message}");
    assert_eq!(refused(&registry, "implausible"), 1);
    assert!(sink.merged.lock().unwrap().is_empty());

    // What the sink refuses as implausible is answered and counted the same way.
    *sink.refusal.lock().unwrap() = Some(MergeError::Implausible("too far ahead".into()));
    let (status, message) = post(&p, Some("sidecar-token"), good.encode_to_vec()).await;
    assert_eq!(status, 400);
    assert!(message.contains("too far ahead"), "{message}");
    assert_eq!(refused(&registry, "implausible"), 2);
    *sink.refusal.lock().unwrap() = None;

    let (status, _) = post(&p, Some("sidecar-token"), good.encode_to_vec()).await;
    assert_eq!(status, 200);
    assert_eq!(sink.merged.lock().unwrap().len(), 1);
    assert_eq!(
        registry.value(
            "slipstream_receiver_aggregates_requests_total",
            &["refused"]
        ),
        Some(6)
    );
}

#[tokio::test]
async fn reloaded_tokens_replace_the_old_ones() {
    let sink = Arc::new(Recorder::default());
    let i = Arc::new(intake(&sink));
    let (p, _) = pipeline(None);
    let p = p.with_aggregates(i.clone());
    let body = shipment("edge-1", vec![series("a", 60, 1)]).encode_to_vec();
    assert_eq!(post(&p, Some("sidecar-token"), body.clone()).await.0, 200);
    i.replace_tokens(vec!["rotated".into()]);
    assert_eq!(post(&p, Some("sidecar-token"), body.clone()).await.0, 401);
    assert_eq!(post(&p, Some("rotated"), body).await.0, 200);
}
