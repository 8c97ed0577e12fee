use std::time::Duration;

use bytes::Bytes;
use slipstream_core::{ForwardSink, Registry, Signal};

use super::ForwardQueue;
use super::counters::SpillReason;

fn body(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

#[test]
fn queue_refuses_with_retry_delay_once_full_and_frees_on_release() {
    let registry = Registry::new();
    let (q, mut rx) = ForwardQueue::new(100, Duration::from_secs(3), None, &registry);
    q.forward(Signal::Traces, body(60)).unwrap();
    q.forward(Signal::Logs, body(40)).unwrap();
    let refused = q.forward(Signal::Traces, body(1)).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(3));
    assert_eq!((q.bytes(), q.requests()), (100, 2));
    assert_eq!(
        registry.value("slipstream_forward_queue_bytes", &[]),
        Some(100)
    );
    let first = rx.try_recv().unwrap();
    assert_eq!((first.signal, first.body.len()), (Signal::Traces, 60));
    q.release(first.signal, first.body.len());
    assert_eq!(q.requests_of(Signal::Traces), 0);
    assert_eq!(q.requests_of(Signal::Logs), 1);
    q.forward(Signal::Metrics, body(60)).unwrap();
    assert_eq!(q.bytes(), 100);
}

#[test]
fn a_request_larger_than_the_queue_fits_only_when_it_is_empty() {
    let (q, _rx) = ForwardQueue::new(10, Duration::from_secs(1), None, &Registry::new());
    q.forward(Signal::Traces, body(50)).unwrap();
    assert!(q.forward(Signal::Traces, body(50)).is_err());
}

#[test]
fn the_early_look_refuses_what_queueing_would_refuse() {
    let (q, mut rx) = ForwardQueue::new(100, Duration::from_secs(3), None, &Registry::new());
    assert_eq!(
        q.would_refuse(Signal::Traces, 500),
        None,
        "an empty queue takes any size"
    );
    q.forward(Signal::Traces, body(60)).unwrap();
    assert_eq!(q.would_refuse(Signal::Traces, 40), None);
    let refused = q.would_refuse(Signal::Traces, 41).expect("over the limit");
    assert_eq!(refused.retry_after, Duration::from_secs(3));
    assert!(q.forward(Signal::Traces, body(41)).is_err());
    let first = rx.try_recv().unwrap();
    q.release(first.signal, first.body.len());
    assert_eq!(q.would_refuse(Signal::Traces, 41), None);
    q.close();
    assert!(q.would_refuse(Signal::Traces, 1).is_some());
}

#[test]
fn a_closed_queue_refuses_everything() {
    let (q, _rx) = ForwardQueue::new(1000, Duration::from_secs(1), None, &Registry::new());
    q.close();
    assert!(q.forward(Signal::Traces, body(1)).is_err());
    assert_eq!(q.requests(), 0);
}

mod spill {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::forward::spill::{AppendError, Spill};

    fn segments(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    }

    fn numbered(i: u32) -> Vec<u8> {
        let mut b = i.to_le_bytes().to_vec();
        b.resize(100, i as u8);
        b
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_files_go_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        // 109-byte records, segments sealed past 250 bytes: two records per segment.
        let spill = Spill::open_sized(dir.path(), 1 << 20, 250, &registry).unwrap();
        for i in 0..5 {
            spill
                .append(Signal::Traces, &numbered(i), SpillReason::QueueFull)
                .unwrap();
        }
        spill
            .append(Signal::Logs, b"log", SpillReason::QueueFull)
            .unwrap();
        assert_eq!(segments(dir.path()), 3);
        assert_eq!(spill.requests(), 6);
        let mut read = Vec::new();
        while let Some(r) = spill.next() {
            read.push(r);
        }
        let bodies: Vec<Vec<u8>> = read.iter().map(|r| r.body.to_vec()).collect();
        let mut expected: Vec<Vec<u8>> = (0..5).map(numbered).collect();
        expected.push(b"log".to_vec());
        assert_eq!(bodies, expected);
        assert_eq!(read[5].signal, Signal::Logs);
        // Acknowledged out of order: a segment goes when both its records are done.
        spill.ack(read[1].at);
        assert_eq!(segments(dir.path()), 3);
        spill.ack(read[0].at);
        assert_eq!(segments(dir.path()), 2);
        for r in &read[2..] {
            spill.ack(r.at);
        }
        // The segment being written goes too once all of it is delivered.
        assert_eq!(segments(dir.path()), 0);
        assert_eq!(spill.requests(), 0);
        assert_eq!(
            registry.value("slipstream_forward_spill_requests", &[]),
            Some(0)
        );
        assert_eq!(
            registry.value(
                "slipstream_forward_spilled_requests_total",
                &["traces", "queue_full"]
            ),
            Some(5)
        );
    }

    #[test]
    fn a_restart_resumes_after_the_delivered_prefix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spill = Spill::open(dir.path(), 1 << 20, &Registry::new()).unwrap();
            for i in 0..10 {
                spill
                    .append(Signal::Traces, &numbered(i), SpillReason::QueueFull)
                    .unwrap();
            }
            let read: Vec<_> = std::iter::from_fn(|| spill.next()).take(6).collect();
            // 0..3 delivered, 3 still in flight, 4 and 5 delivered.
            for i in [0, 1, 2, 4, 5] {
                spill.ack(read[i].at);
            }
            spill.persist();
        }
        let registry = Registry::new();
        let spill = Spill::open(dir.path(), 1 << 20, &registry).unwrap();
        assert_eq!(spill.requests(), 7);
        assert_eq!(
            registry.value("slipstream_forward_spill_requests", &[]),
            Some(7)
        );
        let again: Vec<Vec<u8>> = std::iter::from_fn(|| spill.next())
            .map(|r| r.body.to_vec())
            .collect();
        // At least once: from the first unacknowledged record on.
        assert_eq!(again, (3..10).map(numbered).collect::<Vec<_>>());
        // New appends after a restart go to a new segment, read after the old ones.
        spill
            .append(Signal::Traces, &numbered(10), SpillReason::QueueFull)
            .unwrap();
        assert_eq!(spill.next().unwrap().body.to_vec(), numbered(10));
    }

    #[test]
    fn a_damaged_record_ends_its_segment_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spill = Spill::open_sized(dir.path(), 1 << 20, 250, &Registry::new()).unwrap();
            for i in 0..4 {
                spill
                    .append(Signal::Traces, &numbered(i), SpillReason::QueueFull)
                    .unwrap();
            }
        }
        // Flip a byte in the first segment's second record.
        let first = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .min()
            .unwrap();
        let mut bytes = fs::read(&first).unwrap();
        bytes[109 + 50] ^= 0xff;
        fs::write(&first, bytes).unwrap();

        let registry = Registry::new();
        let spill = Spill::open_sized(dir.path(), 1 << 20, 250, &registry).unwrap();
        let bodies: Vec<Vec<u8>> = std::iter::from_fn(|| spill.next())
            .map(|r| r.body.to_vec())
            .collect();
        assert_eq!(bodies, vec![numbered(0), numbered(2), numbered(3)]);
        assert_eq!(
            registry.value(
                "slipstream_forward_dropped_requests_total",
                &["unknown", "spill_corrupt"]
            ),
            Some(1)
        );
    }

    #[test]
    fn the_spill_refuses_past_its_size_and_the_queue_then_refuses_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let spill = std::sync::Arc::new(Spill::open(dir.path(), 250, &registry).unwrap());
        assert!(matches!(
            spill.append(Signal::Traces, &[0; 300], SpillReason::QueueFull),
            Err(AppendError::Full)
        ));
        let (q, _rx) =
            ForwardQueue::new(100, Duration::from_secs(1), Some(spill.clone()), &registry);
        q.forward(Signal::Traces, body(100)).unwrap();
        // Memory is full: the next two go to disk, the third finds the spill full too.
        q.forward(Signal::Traces, body(100)).unwrap();
        q.forward(Signal::Traces, body(100)).unwrap();
        assert!(q.forward(Signal::Traces, body(100)).is_err());
        assert_eq!((q.requests(), q.spilled_requests()), (1, 2));
        assert_eq!(q.spilled_bytes(), 218);
        assert_eq!(
            registry.value("slipstream_forward_spill_capacity_bytes", &[]),
            Some(250)
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        assert!(Spill::open(&file, 1 << 20, &Registry::new()).is_err());
    }
}

mod router {
    use slipstream_config::ForwardConfig;
    use slipstream_core::route::Rendezvous;

    use super::*;
    use crate::forward::ForwardRouter;

    /// A logs request with one resource of `service` (routing reads every signal alike).
    pub(super) fn request(service: &str) -> Bytes {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use prost::Message;
        Bytes::from(
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(service.into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
        )
    }

    fn endpoint(i: u16) -> String {
        // Nothing listens there: requests stay queued.
        format!("http://127.0.0.1:{}", 9001 + i)
    }

    #[tokio::test]
    async fn endpoints_that_come_and_go_keep_the_others_and_drain_the_leavers() {
        let registry = Registry::new();
        let cfg = ForwardConfig {
            routing: Some(slipstream_config::forward::RoutingConfig {
                endpoints: vec![endpoint(0), endpoint(1)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let router = ForwardRouter::start(&cfg, &registry).await.unwrap();
        assert_eq!(router.endpoints(), [endpoint(0), endpoint(1)]);
        let services: Vec<String> = (0..60).map(|i| format!("svc-{i}")).collect();
        for s in &services {
            router.forward(Signal::Logs, request(s)).unwrap();
        }
        assert_eq!(router.queued_requests(), 60);
        let ring = Rendezvous::for_endpoints(&[endpoint(0), endpoint(1)]);
        let on_1 = services
            .iter()
            .filter(|s| ring.pick(s.as_bytes()) == Some(1))
            .count();
        assert!(on_1 > 10 && on_1 < 50, "{on_1}");
        for s in &services {
            let owner = router.owner(s).unwrap();
            assert_eq!(
                owner,
                [endpoint(0), endpoint(1)][ring.pick(s.as_bytes()).unwrap()]
            );
        }

        // Endpoint 1 leaves and 2 arrives: 0 keeps its lane and queue; 1 is drained away.
        router
            .set_endpoints(vec![endpoint(2), endpoint(0)])
            .unwrap();
        assert_eq!(router.endpoints(), [endpoint(0), endpoint(2)]);
        assert_eq!(registry.value("slipstream_forward_endpoints", &[]), Some(2));
        assert_eq!(router.queued_requests(), 60 - on_1, "lane 0 kept its queue");
        for s in &services {
            let owner = router.owner(s).unwrap();
            assert_ne!(owner, endpoint(1));
        }
        // Endpoint 1 comes back while its old lane still drains: it waits for the next update.
        router
            .set_endpoints(vec![endpoint(0), endpoint(1), endpoint(2)])
            .unwrap();
        assert_eq!(router.endpoints(), [endpoint(0), endpoint(2)]);

        let t = std::time::Instant::now();
        let report = router.shutdown(Duration::from_millis(100)).await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the shutdown deadline holds"
        );
        assert_eq!(
            report.undelivered, 60,
            "nothing listens: all dropped at the deadline"
        );
        assert_eq!(
            registry.value(
                "slipstream_forward_dropped_requests_total",
                &["logs", "shutdown"]
            ),
            Some(60)
        );
        assert!(router.forward(Signal::Logs, request("late")).is_err());
    }
}

mod compression {
    use std::io::Read;

    use slipstream_config::ForwardConfig;
    use slipstream_config::forward::{ForwardCompression, ForwardProtocol};

    use super::*;
    use crate::events::fixture::{Received, Recorder, fast_retry};
    use crate::forward::ForwardRouter;

    /// What a received request carries: its encoding header and its message decoded.
    fn decoded(protocol: ForwardProtocol, got: &Received) -> (Option<String>, Vec<u8>) {
        let (header, body) = match protocol {
            ForwardProtocol::Grpc => {
                let len = u32::from_be_bytes(got.body[1..5].try_into().unwrap()) as usize;
                assert_eq!(
                    len,
                    got.body.len() - 5,
                    "the prefix gives the message length"
                );
                ("grpc-encoding", got.body.slice(5..))
            }
            ForwardProtocol::Http => ("content-encoding", got.body.clone()),
        };
        let encoding = got
            .headers
            .get(header)
            .map(|v| v.to_str().unwrap().to_owned());
        if protocol == ForwardProtocol::Grpc {
            assert_eq!(got.body[0] == 1, encoding.is_some(), "the compressed flag");
        }
        let plain = match encoding.as_deref() {
            None => body.to_vec(),
            Some("gzip") => {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                plain
            }
            Some("zstd") => zstd::stream::decode_all(&body[..]).unwrap(),
            Some(other) => panic!("unexpected encoding {other}"),
        };
        (encoding, plain)
    }

    /// Forwards `sent` with `compression` over `protocol`; returns the request as it arrived
    /// (not the empty reachability probe), with its encoding and its message decoded.
    async fn forwarded(
        protocol: ForwardProtocol,
        compression: ForwardCompression,
        sent: &Bytes,
        member: Option<&Bytes>,
    ) -> (Received, Option<String>, Vec<u8>) {
        let downstream = Recorder::start([]).await;
        let cfg = ForwardConfig {
            endpoint: Some(downstream.url()),
            protocol,
            compression,
            retry: fast_retry(),
            ..Default::default()
        };
        let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
        match member {
            Some(m) => router.forward_gzipped(Signal::Traces, sent.clone(), m.clone()),
            None => router.forward(Signal::Traces, sent.clone()),
        }
        .unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(5);
        let found = loop {
            let found = downstream.received().into_iter().find_map(|r| {
                let (encoding, plain) = decoded(protocol, &r);
                (!plain.is_empty()).then_some((r, encoding, plain))
            });
            if let Some(found) = found {
                break found;
            }
            assert!(
                std::time::Instant::now() < until,
                "{protocol:?} {compression:?}: no forwarded request within 5 s; received {}",
                downstream.received().len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        router.shutdown(Duration::from_secs(1)).await;
        found
    }

    #[tokio::test]
    async fn each_compression_arrives_marked_and_decodes_to_the_request() {
        let sent = Bytes::from(
            (0..20_000u32)
                .flat_map(|i| (i % 97).to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        for protocol in [ForwardProtocol::Grpc, ForwardProtocol::Http] {
            for (compression, name) in [
                (ForwardCompression::None, None),
                (ForwardCompression::Gzip, Some("gzip")),
                (ForwardCompression::Zstd, Some("zstd")),
            ] {
                let what = format!("{protocol:?} {compression:?}");
                let (got, encoding, plain) = forwarded(protocol, compression, &sent, None).await;
                assert_eq!(encoding.as_deref(), name, "{what}");
                assert_eq!(plain, sent, "{what}");
                if name.is_some() {
                    assert!(
                        got.body.len() < sent.len() / 4,
                        "{what}: {}",
                        got.body.len()
                    );
                }
            }
        }
    }

    /// `plain` as one gzip member at the default level (not what the forwarder would make).
    fn member(plain: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, plain).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[tokio::test]
    async fn a_gzip_request_forwarded_whole_arrives_as_it_came_in() {
        let sent = Bytes::from(
            (0..20_000u32)
                .flat_map(|i| (i % 89).to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let came = member(&sent);
        for protocol in [ForwardProtocol::Grpc, ForwardProtocol::Http] {
            let (got, encoding, plain) =
                forwarded(protocol, ForwardCompression::Gzip, &sent, Some(&came)).await;
            assert_eq!(encoding.as_deref(), Some("gzip"), "{protocol:?}");
            assert_eq!(plain, sent, "{protocol:?}");
            let body = match protocol {
                ForwardProtocol::Grpc => got.body.slice(5..),
                ForwardProtocol::Http => got.body.clone(),
            };
            assert_eq!(body, came, "{protocol:?}: the member byte for byte");
            // Another export encoding compresses the body as before.
            for (compression, name) in [
                (ForwardCompression::None, None),
                (ForwardCompression::Zstd, Some("zstd")),
            ] {
                let (_, encoding, plain) =
                    forwarded(protocol, compression, &sent, Some(&came)).await;
                assert_eq!(encoding.as_deref(), name, "{protocol:?} {compression:?}");
                assert_eq!(plain, sent, "{protocol:?} {compression:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_request_split_by_routing_is_compressed_anew_per_part() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use prost::Message;
        use slipstream_core::route::Rendezvous;

        let downstreams = [Recorder::start([]).await, Recorder::start([]).await];
        let urls: Vec<String> = downstreams.iter().map(Recorder::url).collect();
        let ring = Rendezvous::for_endpoints(&urls);
        let of = |lane: usize| {
            (0..)
                .map(|i| format!("svc-{i}"))
                .find(|s| ring.pick(s.as_bytes()) == Some(lane))
                .unwrap()
        };
        let services = [of(0), of(1), of(0)];
        let parts: Vec<Bytes> = services.iter().map(|s| super::router::request(s)).collect();
        let whole = Bytes::from(parts.concat());
        let cfg = ForwardConfig {
            routing: Some(slipstream_config::forward::RoutingConfig {
                endpoints: urls.clone(),
                ..Default::default()
            }),
            protocol: ForwardProtocol::Http,
            compression: ForwardCompression::Gzip,
            retry: fast_retry(),
            ..Default::default()
        };
        let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
        router
            .forward_gzipped(Signal::Logs, whole.clone(), member(&whole))
            .unwrap();
        for (lane, want) in [
            [parts[0].clone(), parts[2].clone()].concat(),
            parts[1].to_vec(),
        ]
        .into_iter()
        .enumerate()
        {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            let got = loop {
                let got = downstreams[lane].received().into_iter().find_map(|r| {
                    let (encoding, plain) = decoded(ForwardProtocol::Http, &r);
                    (!plain.is_empty()).then_some((encoding, plain))
                });
                if let Some(got) = got {
                    break got;
                }
                assert!(std::time::Instant::now() < until, "lane {lane}: nothing");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            assert_eq!(got.0.as_deref(), Some("gzip"), "lane {lane}");
            assert_eq!(got.1, want, "lane {lane}: its resources, in order");
            let logs = ExportLogsServiceRequest::decode(&got.1[..]).unwrap();
            let expected = if lane == 0 { 2 } else { 1 };
            assert_eq!(logs.resource_logs.len(), expected, "lane {lane}");
        }
        router.shutdown(Duration::from_secs(1)).await;
    }
}

mod batch {
    use std::io::Read;

    use slipstream_config::ForwardConfig;
    use slipstream_config::forward::{ForwardCompression, ForwardProtocol};

    use super::*;
    use crate::events::fixture::{Received, Recorder, fast_retry};
    use crate::forward::ForwardRouter;

    /// Requests of distinct services, as the receivers would queue them.
    fn requests(n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|i| super::router::request(&format!("svc-{i}")))
            .collect()
    }

    fn config(downstream: &Recorder, compression: ForwardCompression) -> ForwardConfig {
        ForwardConfig {
            endpoint: Some(downstream.url()),
            protocol: ForwardProtocol::Http,
            compression,
            concurrency: 1,
            max_batch_bytes: slipstream_config::ByteSize::mib(2),
            retry: fast_retry(),
            ..Default::default()
        }
    }

    /// The exports that carried data (not the empty reachability probes), decoded.
    fn exports(downstream: &Recorder) -> Vec<(Received, Vec<u8>)> {
        downstream
            .received()
            .into_iter()
            .map(|r| {
                let plain = match r.headers.get("content-encoding") {
                    None => r.body.to_vec(),
                    Some(_) => {
                        let mut plain = Vec::new();
                        flate2::read::GzDecoder::new(&r.body[..])
                            .read_to_end(&mut plain)
                            .unwrap();
                        plain
                    }
                };
                (r, plain)
            })
            .filter(|(_, plain)| !plain.is_empty())
            .collect()
    }

    /// Waits until the router's queue is empty, then until `n` exports arrived.
    async fn delivered(router: &ForwardRouter, downstream: &Recorder, n: usize) {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while router.queued_requests() > 0 || exports(downstream).len() < n {
            assert!(
                std::time::Instant::now() < until,
                "queued {}, exports {}",
                router.queued_requests(),
                exports(downstream).len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn requests_waiting_together_go_as_one_export_counted_each() {
        for compression in [ForwardCompression::None, ForwardCompression::Gzip] {
            let downstream = Recorder::start([]).await;
            let registry = Registry::new();
            let router = ForwardRouter::start(&config(&downstream, compression), &registry)
                .await
                .unwrap();
            let sent = requests(5);
            // Queued without yielding (a current-thread runtime): all wait when the dispatcher
            // first looks, and one permit sends them.
            for r in &sent {
                router.forward(Signal::Logs, r.clone()).unwrap();
            }
            delivered(&router, &downstream, 1).await;
            let got = exports(&downstream);
            assert_eq!(got.len(), 1, "{compression:?}: one export");
            assert_eq!(got[0].1, sent.concat(), "{compression:?}: joined in order");
            assert_eq!(
                registry.value("slipstream_forward_sent_requests_total", &["logs"]),
                Some(5),
                "{compression:?}"
            );
            router.shutdown(Duration::from_secs(1)).await;
        }
    }

    #[tokio::test]
    async fn without_max_batch_bytes_each_request_goes_alone() {
        let downstream = Recorder::start([]).await;
        let cfg = ForwardConfig {
            max_batch_bytes: slipstream_config::ByteSize(0),
            ..config(&downstream, ForwardCompression::None)
        };
        let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
        let sent = requests(5);
        for r in &sent {
            router.forward(Signal::Logs, r.clone()).unwrap();
        }
        delivered(&router, &downstream, 5).await;
        let got: Vec<Vec<u8>> = exports(&downstream).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, sent, "one export per request, in order");
        router.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_batch_stops_at_max_batch_bytes() {
        let downstream = Recorder::start([]).await;
        let sent = requests(6);
        // Room for two requests per export.
        let cfg = ForwardConfig {
            max_batch_bytes: slipstream_config::ByteSize((sent[0].len() * 2) as u64),
            ..config(&downstream, ForwardCompression::None)
        };
        let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
        for r in &sent {
            router.forward(Signal::Logs, r.clone()).unwrap();
        }
        delivered(&router, &downstream, 3).await;
        let got: Vec<Vec<u8>> = exports(&downstream).into_iter().map(|(_, p)| p).collect();
        let pairs: Vec<Vec<u8>> = sent.chunks(2).map(<[Bytes]>::concat).collect();
        assert_eq!(got, pairs);
        router.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_retried_batch_is_sent_whole_again_and_counted_per_request() {
        let downstream = Recorder::start([503, 503]).await;
        let registry = Registry::new();
        let router =
            ForwardRouter::start(&config(&downstream, ForwardCompression::None), &registry)
                .await
                .unwrap();
        let sent = requests(4);
        for r in &sent {
            router.forward(Signal::Logs, r.clone()).unwrap();
        }
        delivered(&router, &downstream, 1).await;
        // The probe may have taken one 503: the batch failed once or twice, then got through.
        let got = exports(&downstream);
        assert!(matches!(got.len(), 2 | 3), "{}", got.len());
        for (_, plain) in &got {
            assert_eq!(*plain, sent.concat(), "the same batch each time");
        }
        let failures = (got.len() - 1) as i128;
        assert_eq!(
            registry.value("slipstream_forward_sent_requests_total", &["logs"]),
            Some(4)
        );
        assert_eq!(
            registry.value("slipstream_forward_retries_total", &["logs", "http_status"]),
            Some(4 * failures),
            "each request counts its retries"
        );
        assert_eq!(router.queued_requests(), 0);
        router.shutdown(Duration::from_secs(1)).await;
    }

    /// A downstream that holds each export until the test lets one through, and notes the
    /// most exports it held at once (the empty reachability probes, plain or zstd, are
    /// answered at once).
    struct Gate {
        url: String,
        open: std::sync::Arc<tokio::sync::Semaphore>,
        /// (held now, the most held at once, answered).
        seen: std::sync::Arc<std::sync::Mutex<(usize, usize, usize)>>,
    }

    async fn gate() -> Gate {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0, 0, 0)));
        let (o, s) = (open.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (o, s) = (o.clone(), s.clone());
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (o, s) = (o.clone(), s.clone());
                        async move {
                            let zstd = req.headers().contains_key(http::header::CONTENT_ENCODING);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let plain = if zstd {
                                zstd::decode_all(&body[..]).unwrap()
                            } else {
                                body.to_vec()
                            };
                            if !plain.is_empty() {
                                {
                                    let mut s = s.lock().unwrap();
                                    s.0 += 1;
                                    s.1 = s.1.max(s.0);
                                }
                                o.acquire().await.unwrap().forget();
                                let mut s = s.lock().unwrap();
                                s.0 -= 1;
                                s.2 += 1;
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::new()),
                            ))
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        Gate { url, open, seen }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_exports_are_in_flight_compressed_or_not() {
        for compression in [ForwardCompression::None, ForwardCompression::Zstd] {
            let downstream = gate().await;
            let cfg = ForwardConfig {
                endpoint: Some(downstream.url.clone()),
                protocol: ForwardProtocol::Http,
                compression,
                concurrency: 2,
                max_batch_bytes: slipstream_config::ByteSize(0),
                retry: fast_retry(),
                timeout: Duration::from_secs(30),
                ..Default::default()
            };
            let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
            for r in requests(6) {
                router.forward(Signal::Logs, r).unwrap();
            }
            // Let the exports through one at a time, each once two are held.
            for answered in 0..6 {
                let until = std::time::Instant::now() + Duration::from_secs(5);
                loop {
                    let (held, _, done) = *downstream.seen.lock().unwrap();
                    if done == answered && held == 2.min(6 - answered) {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < until,
                        "{compression:?}: {held} held, {done} answered; waited for {} held",
                        2.min(6 - answered)
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                downstream.open.add_permits(1);
            }
            let (_, most, _) = *downstream.seen.lock().unwrap();
            assert_eq!(
                most, 2,
                "{compression:?}: forward.concurrency exports at most"
            );
            router.shutdown(Duration::from_secs(5)).await;
        }
    }

    #[tokio::test]
    async fn a_request_sent_as_its_gzip_member_goes_alone() {
        let downstream = Recorder::start([]).await;
        let router = ForwardRouter::start(
            &config(&downstream, ForwardCompression::Gzip),
            &Registry::new(),
        )
        .await
        .unwrap();
        let sent = requests(3);
        let member = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut enc, &sent[1]).unwrap();
            Bytes::from(enc.finish().unwrap())
        };
        router.forward(Signal::Logs, sent[0].clone()).unwrap();
        router
            .forward_gzipped(Signal::Logs, sent[1].clone(), member.clone())
            .unwrap();
        router.forward(Signal::Logs, sent[2].clone()).unwrap();
        delivered(&router, &downstream, 3).await;
        let got = exports(&downstream);
        let plains: Vec<&[u8]> = got.iter().map(|(_, p)| &p[..]).collect();
        assert_eq!(plains, [&sent[0][..], &sent[1][..], &sent[2][..]]);
        assert_eq!(got[1].0.body, member, "the member as it arrived");
        router.shutdown(Duration::from_secs(1)).await;
    }
}
