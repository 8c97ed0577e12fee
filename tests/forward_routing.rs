//! Forwarding by service over several endpoints: each service's spans reach exactly one
//! downstream, requests holding several services are split without losing or repeating a
//! span, adding an endpoint moves about 1/N of the services (and only to it), a DNS name
//! with several addresses routes over all of them, and with `replicas: 2` each span reaches
//! exactly its service's two highest-ranked downstreams, once each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slipstream_e2e::{
    Sink, eventually_async, otlp, raw, self_metric, spans_in, start, test_config,
};

const SERVICES: usize = 120;

fn service(i: usize) -> String {
    format!("svc-{i:03}")
}

/// One request holding a resource per service of `services`, two spans each, named after the
/// service and `tag`.
fn mixed_request(services: &[String], tag: &str) -> Vec<u8> {
    let mut req = ExportTraceServiceRequest::default();
    for s in services {
        let one = otlp::trace_request(s, 2, |j| format!("{s} {tag} {j}"));
        req.resource_spans.extend(
            ExportTraceServiceRequest::decode(&one[..])
                .unwrap()
                .resource_spans,
        );
    }
    req.encode_to_vec()
}

fn routing_config(endpoints: &[String]) -> slipstream_config::Config {
    replicated_config(endpoints, 1)
}

/// Routing over `endpoints`, each service to `replicas` of them.
fn replicated_config(endpoints: &[String], replicas: usize) -> slipstream_config::Config {
    let list = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    test_config(
        None,
        &format!(
            "forward:\n  protocol: grpc\n  routing:\n    endpoints: [{list}]\n    replicas: {replicas}\n  retry:\n    initial_interval: 50ms\n    max_interval: 200ms\n"
        ),
    )
}

/// Which sink got each service's spans (by sink index), and every (service, span) seen.
type Owners = BTreeMap<String, BTreeSet<usize>>;

fn owners(sinks: &[Sink]) -> (Owners, Vec<(String, String)>) {
    let mut owners: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut all = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        for (svc, span) in spans_in(&sink.received()) {
            owners.entry(svc.clone()).or_default().insert(i);
            all.push((svc, span));
        }
    }
    (owners, all)
}

async fn wait_spans(sinks: &[Sink], n: usize) {
    eventually_async(
        &format!("{n} spans at the sinks"),
        Duration::from_secs(30),
        || {
            let got: usize = sinks.iter().map(|s| spans_in(&s.received()).len()).sum();
            std::future::ready(if got >= n { Ok(()) } else { Err(got) })
        },
    )
    .await;
}

/// Sends every service once, in mixed requests of 6 services; returns the spans sent.
async fn send_all(http: std::net::SocketAddr, tag: &str) -> usize {
    let services: Vec<String> = (0..SERVICES).map(service).collect();
    for chunk in services.chunks(6) {
        let r = raw::post_traces(http, mixed_request(chunk, tag)).await;
        assert_eq!(r.status, 200);
    }
    SERVICES * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_goes_to_one_endpoint_and_adding_one_moves_about_a_quarter() {
    let sinks = vec![
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
    ];
    let urls: Vec<String> = sinks.iter().map(Sink::url).collect();
    let app = start(routing_config(&urls)).await;
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(admin, "slipstream_forward_endpoints", &[]).await,
        3.0
    );
    let sent = send_all(app.http_addr.unwrap(), "first").await;
    wait_spans(&sinks, sent).await;
    let (before, spans) = owners(&sinks);
    assert_eq!(spans.len(), sent, "no span lost or repeated by the split");
    assert_eq!(spans.iter().collect::<BTreeSet<_>>().len(), sent);
    assert_eq!(before.len(), SERVICES);
    for (svc, at) in &before {
        assert_eq!(at.len(), 1, "{svc} went to {at:?}");
    }
    let per_sink: Vec<usize> = (0..3)
        .map(|i| before.values().filter(|s| s.contains(&i)).count())
        .collect();
    assert!(
        per_sink.iter().all(|&n| n >= SERVICES / 6),
        "uneven: {per_sink:?}"
    );
    // The 20 mixed requests were split into parts per endpoint: counted from where each
    // request's services went (the forwarder may join parts waiting in a queue into one export).
    let services: Vec<String> = (0..SERVICES).map(service).collect();
    let parts: usize = services
        .chunks(6)
        .map(|chunk| {
            chunk
                .iter()
                .flat_map(|s| &before[s])
                .collect::<BTreeSet<_>>()
                .len()
        })
        .sum();
    assert!(parts > SERVICES / 6, "{parts} parts downstream");
    app.shutdown().await;

    // A fourth endpoint: services move only to it, about a quarter of them.
    let mut sinks = sinks;
    for s in &sinks {
        s.clear();
    }
    sinks.push(Sink::start().await);
    let urls: Vec<String> = sinks.iter().map(Sink::url).collect();
    let app = start(routing_config(&urls)).await;
    let sent = send_all(app.http_addr.unwrap(), "second").await;
    wait_spans(&sinks, sent).await;
    let (after, _) = owners(&sinks);
    let moved: Vec<&String> = after
        .iter()
        .filter(|(svc, at)| before[*svc] != **at)
        .map(|(svc, _)| svc)
        .collect();
    for svc in &moved {
        assert_eq!(
            after[*svc],
            BTreeSet::from([3]),
            "{svc} moved between two old endpoints"
        );
    }
    let share = moved.len() as f64 / SERVICES as f64;
    assert!((0.12..0.38).contains(&share), "moved share {share}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_routes_over_every_address_it_has() {
    // `gateways.slipstream.test` has two addresses (127.0.0.2 and 127.0.0.3, put in /etc/hosts
    // by scripts/test-deps.sh): a sink listens on each, on one port, like the pods behind a
    // headless Service.
    let mut addrs: Vec<std::net::IpAddr> = tokio::net::lookup_host(("gateways.slipstream.test", 0))
        .await
        .expect("gateways.slipstream.test resolves: run scripts/test-deps.sh")
        .map(|a| a.ip())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 2, "{addrs:?}: run scripts/test-deps.sh");
    // The first address takes a port of the system's choosing; the second binds the same
    // port (free there unless something else took it: then try another).
    let (port, sinks) = loop {
        let first = tokio::net::TcpListener::bind((addrs[0], 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let Ok(second) = tokio::net::TcpListener::bind((addrs[1], port)).await else {
            continue;
        };
        break (
            port,
            vec![Sink::start_on(first).await, Sink::start_on(second).await],
        );
    };
    let app = start(test_config(
        None,
        &format!(
            "forward:\n  protocol: grpc\n  routing:\n    dns: http://gateways.slipstream.test:{port}\n    refresh_interval: 1s\n"
        ),
    ))
    .await;
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(admin, "slipstream_forward_endpoints", &[]).await,
        addrs.len() as f64
    );
    let sent = send_all(app.http_addr.unwrap(), "dns").await;
    wait_spans(&sinks, sent).await;
    let (owners, spans) = owners(&sinks);
    assert_eq!(spans.len(), sent);
    assert!(owners.values().all(|at| at.len() == 1));
    assert_eq!(
        owners.values().flatten().collect::<BTreeSet<_>>().len(),
        addrs.len(),
        "every address got services"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_each_span_reaches_its_two_ranked_endpoints_once_each() {
    let sinks = vec![
        Sink::start().await,
        Sink::start().await,
        Sink::start().await,
    ];
    let urls: Vec<String> = sinks.iter().map(Sink::url).collect();
    let app = start(replicated_config(&urls, 2)).await;
    let sent = send_all(app.http_addr.unwrap(), "replicated").await;
    wait_spans(&sinks, 2 * sent).await;
    let ring = slipstream_core::route::Rendezvous::for_endpoints(&urls);
    let mut copies: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, sink) in sinks.iter().enumerate() {
        for span in spans_in(&sink.received()) {
            copies.entry(span).or_default().push(i);
        }
    }
    assert_eq!(copies.len(), sent, "every span arrived");
    for ((svc, span), mut at) in copies {
        at.sort_unstable();
        let mut want = ring.pick_n(svc.as_bytes(), 2);
        want.sort_unstable();
        assert_eq!(
            at, want,
            "{span} of {svc}: once at each of its two endpoints"
        );
    }
    // Every pair of the three endpoints replicates some services: mixed requests were split.
    let pairs: BTreeSet<Vec<usize>> = (0..SERVICES)
        .map(|i| {
            let mut p = ring.pick_n(service(i).as_bytes(), 2);
            p.sort_unstable();
            p
        })
        .collect();
    assert_eq!(pairs.len(), 3);
    app.shutdown().await;
}
