use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use slipstream_config::ByteSize;
use slipstream_config::ForwardConfig;
use slipstream_config::forward::{RoutingConfig, StatefulSetConfig};
use slipstream_core::route::Rendezvous;
use slipstream_core::{ForwardSink, Registry, Signal};

use super::ForwardRouter;

/// A logs request with one resource per service of `services`.
fn request(services: &[&str]) -> Bytes {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    let resource = |service: &str| ResourceLogs {
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
    };
    Bytes::from(
        ExportLogsServiceRequest {
            resource_logs: services.iter().map(|s| resource(s)).collect(),
        }
        .encode_to_vec(),
    )
}

fn endpoints() -> Vec<String> {
    // Nothing listens there: requests stay queued.
    (0..3)
        .map(|i| format!("http://127.0.0.1:{}", 9101 + i))
        .collect()
}

fn replicated(endpoints: Vec<String>, max_bytes: u64) -> ForwardConfig {
    let mut cfg = ForwardConfig {
        routing: Some(RoutingConfig {
            endpoints,
            replicas: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    cfg.queue.max_bytes = ByteSize(max_bytes);
    cfg
}

/// The first service `svc-<i>` whose two ranked lanes (sorted) are `want`.
fn service_on(ring: &Rendezvous, want: [usize; 2]) -> String {
    (0..1000)
        .map(|i| format!("svc-{i}"))
        .find(|s| {
            let mut set = ring.pick_n(s.as_bytes(), 2);
            set.sort_unstable();
            set == want
        })
        .expect("some service has every pair")
}

#[tokio::test]
async fn each_entry_is_queued_once_on_each_of_its_two_lanes() {
    let registry = Registry::new();
    let urls = endpoints();
    let router = ForwardRouter::start(&replicated(urls.clone(), 1 << 20), &registry)
        .await
        .unwrap();
    let ring = Rendezvous::for_endpoints(&urls);
    let (ab, bc) = (service_on(&ring, [0, 1]), service_on(&ring, [1, 2]));
    let lanes = router.routes();
    let queued = || -> Vec<usize> { lanes.lanes.iter().map(|l| l.queue.requests()).collect() };
    // One service: the request whole, on both its lanes.
    router.forward(Signal::Logs, request(&[&ab])).unwrap();
    assert_eq!(queued(), [1, 1, 0]);
    // Two services over three lanes: one part per lane, the shared lane's holding both.
    let mixed = request(&[&ab, &bc]);
    router.forward(Signal::Logs, mixed.clone()).unwrap();
    assert_eq!(queued(), [2, 2, 1]);
    let bytes: Vec<usize> = lanes.lanes.iter().map(|l| l.queue.bytes()).collect();
    let one = request(&[&ab]).len();
    assert_eq!(bytes, [2 * one, one + mixed.len(), mixed.len() - one]);
    router.shutdown(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn a_replica_that_refuses_loses_its_copy_and_only_all_refusing_refuses() {
    let registry = Registry::new();
    let urls = endpoints();
    // One request fills a lane: the next one it is given is refused.
    let router = ForwardRouter::start(&replicated(urls.clone(), 1), &registry)
        .await
        .unwrap();
    let ring = Rendezvous::for_endpoints(&urls);
    let (ab, ac) = (service_on(&ring, [0, 1]), service_on(&ring, [0, 2]));
    router.forward(Signal::Logs, request(&[&ab])).unwrap();
    // Lane 0 is full, lane 2 takes its copy: taken, lane 0's copy counted as lost.
    router.forward(Signal::Logs, request(&[&ac])).unwrap();
    let dropped = || {
        registry.value(
            "slipstream_forward_dropped_requests_total",
            &["logs", "replica_refused"],
        )
    };
    assert_eq!(dropped(), Some(1));
    // Both of its lanes full: refused, for the client to send again; nothing counted.
    assert!(router.forward(Signal::Logs, request(&[&ab])).is_err());
    // Split over three lanes, one entry with both of its lanes full: refused.
    assert!(router.forward(Signal::Logs, request(&[&ab, &ac])).is_err());
    assert_eq!(dropped(), Some(1));
    router.shutdown(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn statefulset_pods_are_ranked_by_pod_name() {
    let cfg = ForwardConfig {
        routing: Some(RoutingConfig {
            statefulset: Some(StatefulSetConfig {
                name: "gw".into(),
                service: "gw-headless".into(),
                namespace: Some("observability".into()),
                replicas: 3,
                port: 4317,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let router = ForwardRouter::start(&cfg, &Registry::new()).await.unwrap();
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://gw-{i}.gw-headless.observability.svc:4317"))
        .collect();
    assert_eq!(router.endpoints(), urls);
    let by_pod = Rendezvous::new(&["gw-0", "gw-1", "gw-2"]);
    let owners: BTreeMap<String, String> = (0..50)
        .map(|i| format!("svc-{i}"))
        .map(|s| {
            let owner = urls[by_pod.pick(s.as_bytes()).unwrap()].clone();
            (s, owner)
        })
        .collect();
    for (s, owner) in &owners {
        assert_eq!(router.owner(s).as_ref(), Some(owner), "{s}");
    }
    router.shutdown(Duration::from_millis(50)).await;
}
