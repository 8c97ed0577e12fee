//! Two tiers as separate processes on loopback: three sidecars ship partial aggregates to two
//! gateways (each service to the gateway rendezvous hashing picks), a reference slipstream
//! gets every span directly, and the gateways together show what the reference shows: the
//! same series with the same request and error totals and latency quantiles, each on exactly
//! one gateway, the same SLO windows, budgets and burn rates, and the same burn-rate alerts.
//! The gateways take partial aggregates only from the sidecars: their own token, their names
//! listed, plausible shipments; forged shipments leave a firing page as it was.
//!
//! Replicated: with three gateways at `replicas: 2` and a clustered pair of real
//! Alertmanagers, a gateway killed with `kill -9` leaves its pages active (once each) through
//! its peer, and once restarted catches up from the sidecars' queues to the reference's SLOs.
//! A gateway that no longer ranks among a paging service's replicas (scaled from two to
//! three) hands it off: the page stays active in Alertmanager throughout, and the gateway
//! neither posts it resolved nor re-sends it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde_json::Value;
use slipstream_core::route::Rendezvous;
use slipstream_e2e::eventually_async;
use slipstream_e2e::node::{Node, NodeConfig};
use slipstream_e2e::otlp::{self, export, kv};

const SEC: u64 = 1_000_000_000;

/// Short intervals everywhere, so that a span reaches a gateway's SLOs within about a second.
const COMMON: &str = "aggregator:\n  tick_interval: 200ms\nslo:\n  evaluation_interval: 1s\n";

/// The sidecars' token, which the gateways take on the partial-aggregates path only.
const SIDECAR_TOKEN: &str = "s1decar-t0ken";

/// What a gateway adds under `receivers.otlp`: partial aggregates from the sidecars.
fn gateway_receiver() -> String {
    format!(
        "aggregates:\n  enabled: true\n  auth:\n    bearer_tokens: [{SIDECAR_TOKEN}]\n  senders: ['sidecar-*']\n"
    )
}

/// What a service's traffic looks like.
#[derive(Debug, Clone, Copy)]
struct Role {
    name: &'static str,
    spans: usize,
    /// Out of every 10 requests, how many fail.
    failing_per_10: usize,
    /// Out of every 10 requests, how many take longer than the latency SLO's 1 s.
    slow_per_10: usize,
}

const ROLES: [Role; 6] = [
    // Fails 30% of the time: every availability alert row fires.
    Role {
        name: "cart",
        spans: 300,
        failing_per_10: 3,
        slow_per_10: 0,
    },
    // Half of it is slow: every latency alert row fires.
    Role {
        name: "auth",
        spans: 240,
        failing_per_10: 0,
        slow_per_10: 5,
    },
    Role {
        name: "search",
        spans: 360,
        failing_per_10: 0,
        slow_per_10: 0,
    },
    Role {
        name: "pay",
        spans: 90,
        failing_per_10: 0,
        slow_per_10: 0,
    },
    Role {
        name: "catalog",
        spans: 150,
        failing_per_10: 0,
        slow_per_10: 0,
    },
    Role {
        name: "shipping",
        spans: 120,
        failing_per_10: 0,
        slow_per_10: 0,
    },
];

/// Where a span is sent besides the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum To {
    Sidecar(usize),
    /// Straight to the gateway owning the service, as a Collector's load-balancing exporter
    /// in front of the gateways would send it.
    Gateway,
}

/// The spans of one service, each with where it goes: spread over the three sidecars (and,
/// for `search`, partly straight to its gateway), ending over the last two minutes, with
/// latencies from 4 ms to 3 s.
fn traffic(role: Role, now: u64) -> Vec<(To, Span)> {
    let first = now - 120 * SEC;
    (0..role.spans)
        .map(|i| {
            let end = first + (i as u64 * 119 * SEC) / role.spans as u64;
            let slow = i % 10 < role.slow_per_10;
            let ms = if slow {
                1_100 + (i as u64 * 37) % 1_900
            } else {
                4 + (i as u64 * 53) % 900
            };
            let span = Span {
                trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "GET /".into(),
                kind: 2,
                start_time_unix_nano: end - ms * 1_000_000,
                end_time_unix_nano: end,
                status: (i % 10 >= 10 - role.failing_per_10).then(|| Status {
                    code: 2,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let to = if role.name == "search" && i % 4 == 3 {
                To::Gateway
            } else {
                To::Sidecar(i % 3)
            };
            (to, span)
        })
        .collect()
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let resource = vec![
        kv("service.name", service),
        kv("service.version", "1.4.2"),
        kv("deployment.environment", "prod"),
    ];
    otlp::request(resource, spans)
}

/// Two running gateways whose ports route `cart` and `auth` (the two services that alert) to
/// different gateways, and at least two services to each; with their URLs. The ports are the
/// system's choice, so gateways are started until a pair routes so.
async fn gateways() -> (Vec<Node>, Vec<String>) {
    loop {
        let mut gateways = Vec::new();
        for i in 0..2 {
            let cfg = Node::config(COMMON, "").with_receiver(&gateway_receiver());
            gateways.push(Node::start(&format!("gateway-{i}"), cfg).await);
        }
        let urls: Vec<String> = gateways
            .iter()
            .map(|g| format!("http://{}", g.http))
            .collect();
        let route = Rendezvous::for_endpoints(&urls);
        let owner = |s: &str| route.pick(s.as_bytes()).unwrap();
        let owned = |g: usize| ROLES.iter().filter(|r| owner(r.name) == g).count();
        if owner("cart") != owner("auth") && owned(0) >= 2 && owned(1) >= 2 {
            return (gateways, urls);
        }
    }
}

fn sidecar_config(i: usize, gateways: &[String]) -> NodeConfig {
    let exporters = format!(
        "  aggregates:\n    endpoints: [{}]\n    instance: sidecar-{i}\n    bearer_token: {SIDECAR_TOKEN}\n    interval: 300ms\n    retry:\n      initial_interval: 50ms\n      max_interval: 200ms\n",
        gateways.join(", ")
    );
    Node::config(&format!("mode: sidecar\n{COMMON}"), &exporters)
}

/// The rows of `GET /api/v1/series` over the last hour, by their labels.
async fn series(node: &Node) -> BTreeMap<String, Value> {
    node.api("/api/v1/series?window=1h&limit=1000").await["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["labels"].to_string(), row.clone()))
        .collect()
}

/// An SLO of `GET /api/v1/slos` without what depends on when it was evaluated.
/// An SLO without what may differ between the tiers: when an alert started (by up to a
/// shipment interval) and the example requests. Examples are a bounded sample chosen per
/// aggregator tick, so which of a slot's bad or slow requests a gateway keeps depends on how
/// the sidecars' ticks split the traffic; the tests check that they cross, not which.
fn comparable_slo(slo: &Value) -> Value {
    let mut v = slo.clone();
    for a in v["alerts"].as_array_mut().unwrap() {
        a.as_object_mut().unwrap().remove("since");
    }
    v.as_object_mut().unwrap().remove("exemplars");
    v
}

async fn slos(node: &Node) -> BTreeMap<String, Value> {
    node.api("/api/v1/slos").await["slos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_owned(), comparable_slo(s)))
        .collect()
}

/// `(service, slo, severity, state, long window)` of every burn-rate event.
async fn events(node: &Node) -> BTreeSet<(String, String, String, String, String)> {
    node.api("/api/v1/events").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (
                s("service"),
                s("slo"),
                s("severity"),
                s("state"),
                s("long_window"),
            )
        })
        .collect()
}

/// What [`converge`] compares.
#[derive(Debug, Clone, Copy)]
enum Reading {
    Series,
    Slos,
}

async fn read(node: &Node, what: Reading) -> BTreeMap<String, Value> {
    match what {
        Reading::Series => series(node).await,
        Reading::Slos => slos(node).await,
    }
}

/// Reads `what` on the reference and on each gateway until the reference's reading is
/// `complete` and the gateways' readings together equal it, each key on one gateway only, for
/// at most `within`; returns the last readings.
async fn converge(
    reference: &Node,
    gateways: &[Node],
    within: Duration,
    what: Reading,
    complete: impl Fn(&BTreeMap<String, Value>) -> bool,
) -> (BTreeMap<String, Value>, Vec<BTreeMap<String, Value>>) {
    let complete = &complete;
    eventually_async(
        &format!("{what:?}: the gateways to match the reference"),
        within,
        || async move {
            let want = read(reference, what).await;
            let mut got = Vec::new();
            for g in gateways {
                got.push(read(g, what).await);
            }
            let mut union: BTreeMap<String, Value> = BTreeMap::new();
            let mut overlap = false;
            for m in &got {
                for (k, v) in m {
                    overlap |= union.insert(k.clone(), v.clone()).is_some();
                }
            }
            if complete(&want) && !overlap && union == want {
                Ok((want, got))
            } else {
                Err(format!("reference: {want:#?}\ngateways: {got:#?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_and_two_gateways_equal_one_slipstream_fed_every_span() {
    let (gateways, gateway_urls) = gateways().await;
    let route = Rendezvous::for_endpoints(&gateway_urls);
    let owner = |s: &str| route.pick(s.as_bytes()).unwrap();
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let cfg = sidecar_config(i, &gateway_urls);
        sidecars.push(Node::start(&format!("sidecar-{i}"), cfg).await);
    }
    let reference = Node::start("reference", Node::config(COMMON, "")).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut sent = 0usize;
    let mut via_sidecars = 0usize;
    for role in ROLES {
        let spans = traffic(role, now);
        sent += spans.len();
        let mut by_target: BTreeMap<To, Vec<Span>> = BTreeMap::new();
        for (to, span) in &spans {
            by_target.entry(*to).or_default().push(span.clone());
        }
        for (to, spans) in by_target {
            let addr = match to {
                To::Sidecar(i) => {
                    via_sidecars += spans.len();
                    sidecars[i].http
                }
                To::Gateway => gateways[owner(role.name)].http,
            };
            // In requests of 50, as an SDK's batches would come.
            for chunk in spans.chunks(50) {
                export(addr, &request(role.name, chunk.to_vec())).await;
            }
        }
        let all: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
        export(reference.http, &request(role.name, all)).await;
    }

    // Series: the same rows, totals, errors and latency quantiles; each on one gateway only.
    let total = |rows: &BTreeMap<String, Value>| -> u64 {
        rows.values().map(|r| r["total"].as_u64().unwrap()).sum()
    };
    let (want, got) = converge(
        &reference,
        &gateways,
        Duration::from_secs(30),
        Reading::Series,
        |rows| total(rows) == sent as u64,
    )
    .await;
    assert_eq!(want.len(), ROLES.len(), "{want:#?}");
    for (g, rows) in got.iter().enumerate() {
        for row in rows.values() {
            let service = row["labels"]["service.name"].as_str().unwrap();
            assert_eq!(owner(service), g, "{service} is on gateway {g}");
        }
    }
    let cart = want
        .values()
        .find(|r| r["labels"]["service.name"] == "cart");
    assert_eq!(cart.unwrap()["bad"], 90);

    // SLOs (one availability and one latency SLO per service, from the templates): the same
    // windows, totals, budgets, burn rates and alert states.
    let period_total = |slos: &BTreeMap<String, Value>| -> u64 {
        slos.values()
            .map(|s| s["period_total"].as_f64().unwrap_or(0.0) as u64)
            .sum()
    };
    let (want, got) = converge(
        &reference,
        &gateways,
        Duration::from_secs(15),
        Reading::Slos,
        |slos| period_total(slos) == 2 * sent as u64,
    )
    .await;
    assert_eq!(want.len(), 2 * ROLES.len(), "{:#?}", want.keys());
    for (g, slos) in got.iter().enumerate() {
        for slo in slos.values() {
            assert_eq!(owner(slo["service"].as_str().unwrap()), g);
        }
    }
    let firing = |name: &str| {
        want[name]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["firing"] == true)
    };
    assert!(firing("cart-availability") && firing("auth-latency"));
    assert!(!firing("search-availability") && !firing("cart-latency"));

    // The sidecars' example requests crossed with their counts: the gateway owning `cart`
    // names bad requests of its failing SLO.
    let cart = &gateways[owner("cart")];
    let bad_examples = cart.api("/api/v1/slos").await["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cart-availability")
        .map(|s| s["exemplars"]["bad"].as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    assert!(
        bad_examples > 0,
        "no example bad requests reached the gateway"
    );

    // The same burn-rate alerts fired (when may differ by a shipment interval).
    let want_events = events(&reference).await;
    let mut got_events = BTreeSet::new();
    for g in &gateways {
        got_events.extend(events(g).await);
    }
    assert_eq!(got_events, want_events);
    let pages: BTreeSet<&str> = want_events
        .iter()
        .filter(|e| e.2 == "page" && e.3 == "firing")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(pages, BTreeSet::from(["auth-latency", "cart-availability"]));

    // Everything shipped was merged, nothing refused, nothing dropped.
    let mut merged = 0.0;
    for g in &gateways {
        merged += g
            .metric("slipstream_aggregator_merged_observations_total", &[])
            .await;
        assert_eq!(
            g.metric("slipstream_receiver_aggregates_refused_total", &[])
                .await,
            0.0
        );
    }
    assert_eq!(merged, via_sidecars as f64);
    for s in &sidecars {
        assert_eq!(
            s.metric(
                "slipstream_exporter_dropped_total",
                &["exporter=\"aggregates\""]
            )
            .await,
            0.0
        );
        assert!(
            s.metric(
                "slipstream_exporter_sent_total",
                &["exporter=\"aggregates\""]
            )
            .await
                >= 1.0
        );
    }
}

/// The gateway side alone, in this process: the partial-aggregates path takes the sidecars'
/// token (not the OTLP receivers'), then the same admission as OTLP/HTTP, refuses what it
/// cannot merge with a reason, merges the rest as spans would be, and a retried request only
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregates_endpoint_refuses_what_it_cannot_merge_and_merges_the_rest_once() {
    use prost::Message;
    use slipstream_core::aggregates::{
        ExportAggregatesRequest, HTTP_PATH, Overflow, Series, Slot, value,
    };
    use slipstream_core::rpc::RpcStatus;
    use slipstream_e2e::raw::{post_http, request_http};

    let mut cfg = slipstream_e2e::test_config(None, "");
    cfg.receivers.otlp.auth = Some(slipstream_config::receiver::AuthConfig {
        bearer_tokens: vec!["t0ken".into()],
        bearer_tokens_file: None,
    });
    cfg.receivers.otlp.aggregates = sidecars_only();
    let app = slipstream_app::app::App::start_with(
        cfg,
        std::sync::Arc::new(slipstream_core::SystemClock),
        false,
    )
    .await
    .unwrap();
    let (http, admin) = (app.http_addr.unwrap(), app.admin_addr.unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut header = app.aggregator.aggregates_header();
    header.instance = "sidecar-x".into();
    header.instance_started_unix_nanos = now;
    header.sequence = 1;
    let string = |s: &str| slipstream_core::aggregates::Value {
        value: Some(value::Value::StringValue(s.into())),
    };
    let good = ExportAggregatesRequest {
        header: Some(header.clone()),
        series: vec![Series {
            key: vec![string("cart"), string("prod")],
            overflow: Overflow::None as i32,
            slots: vec![Slot {
                start_unix_nanos: now / (60 * SEC) * 60 * SEC,
                total: 3,
                bad: 1,
                bucket_indexes: vec![900, 1000],
                bucket_counts: vec![2, 1],
                ..Slot::default()
            }],
            versions: vec![],
        }],
    };
    let auth = ("authorization", "Bearer s1decar-t0ken");
    let pb = ("content-type", "application/x-protobuf");
    let post = |headers: Vec<(&'static str, &'static str)>, body: Vec<u8>| async move {
        post_http(http, HTTP_PATH, &headers, body).await
    };
    let refused = |reason: &str| {
        let label = format!("reason=\"{reason}\"");
        async move {
            slipstream_e2e::self_metric(
                admin,
                "slipstream_receiver_aggregates_refused_total",
                &[&label],
            )
            .await
        }
    };

    let r = post(vec![pb], good.encode_to_vec()).await;
    assert_eq!(r.status, 401);
    let r = post(
        vec![("authorization", "Bearer t0ken"), pb],
        good.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 401, "an OTLP token is not a sidecar's");
    assert_eq!(refused("unauthenticated").await, 2.0);
    let r = post(
        vec![auth, ("content-type", "application/json")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = request_http(http, "GET", HTTP_PATH, &[auth], Vec::new()).await;
    assert_eq!(r.status, 405);

    let r = post(vec![auth, pb], b"\xff\xff\xff not protobuf".to_vec()).await;
    assert_eq!(r.status, 400);
    let status = RpcStatus::decode(&r.body[..]).unwrap();
    assert!(
        status.message.contains("invalid ExportAggregatesRequest"),
        "{status:?}"
    );

    let mut other = good.clone();
    other.header.as_mut().unwrap().slot_width_nanos = 10 * SEC;
    let r = post(vec![auth, pb], other.encode_to_vec()).await;
    assert_eq!(r.status, 400);
    let status = RpcStatus::decode(&r.body[..]).unwrap();
    assert!(
        status.message.contains("aggregator.slot_width"),
        "{status:?}"
    );
    assert_eq!(refused("incompatible").await, 1.0);

    let mut bad_sum = good.clone();
    bad_sum.series[0].slots[0].total = 4;
    let r = post(vec![auth, pb], bad_sum.encode_to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(refused("invalid").await, 2.0);

    // Taken, gzip-compressed; the same request again (a retry) is not merged twice.
    let body = slipstream_e2e::gzip(&good.encode_to_vec());
    for _ in 0..2 {
        let r = post(vec![auth, pb, ("content-encoding", "gzip")], body.clone()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    app.step().await;
    let (_, rows) = slipstream_e2e::http_get(admin, "/api/v1/series?window=1h").await;
    let rows: Value = serde_json::from_str(&rows).unwrap();
    let cart = &rows["series"][0];
    assert_eq!(cart["labels"]["service.name"], "cart");
    assert_eq!(cart["labels"]["deployment.environment"], "prod");
    assert_eq!(
        (cart["total"].as_u64(), cart["bad"].as_u64()),
        (Some(3), Some(1))
    );
    let outcomes = |o: &str| {
        let label = format!("outcome=\"{o}\"");
        async move {
            slipstream_e2e::self_metric(
                admin,
                "slipstream_receiver_aggregates_requests_total",
                &[&label],
            )
            .await
        }
    };
    assert_eq!(outcomes("accepted").await, 1.0);
    assert_eq!(outcomes("duplicate").await, 1.0);
    assert_eq!(outcomes("refused").await, 7.0);
    app.shutdown().await;
}

/// `receivers.otlp.aggregates` taking the sidecars (`sidecar-*`) holding [`SIDECAR_TOKEN`].
fn sidecars_only() -> slipstream_config::aggregates::AggregatesReceiverConfig {
    slipstream_config::aggregates::AggregatesReceiverConfig {
        enabled: true,
        auth: slipstream_config::receiver::AuthConfig {
            bearer_tokens: vec![SIDECAR_TOKEN.into()],
            bearer_tokens_file: None,
        },
        senders: vec!["sidecar-*".into()],
        ..Default::default()
    }
}

/// A gateway on a manual clock with `checkout`'s availability page firing after ten minutes of
/// total failure: shipments without a token, with an OTLP receiver token, from an unlisted
/// sender, claiming 2^40 requests in the current slot, or claiming a slot a day ahead are each
/// refused with their status and reason, and leave the page firing, the budget, totals and
/// series as they were. A shipment from a sidecar is still taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_shipments_are_refused_and_a_firing_page_stays_firing() {
    use prost::Message;
    use slipstream_core::ManualClock;
    use slipstream_core::aggregates::{
        ExportAggregatesRequest, HTTP_PATH, Overflow, Series, Slot, value,
    };
    use slipstream_core::rpc::RpcStatus;
    use slipstream_e2e::otlp::{Minute, scenario};
    use slipstream_e2e::raw::post_http;

    const MIN: u64 = 60 * SEC;
    // 2026-03-01T00:00:00Z.
    const START: u64 = 1_772_323_200_000_000_000;
    let slo = "slo:\n  evaluation_interval: 1m\n  templates: { availability: null, latency: null }\n  objectives:\n    - name: checkout-availability\n      service: checkout\n      sli: { kind: availability }\n      objective: 99.9\n";
    let mut cfg = slipstream_e2e::test_config(None, slo);
    cfg.receivers.otlp.auth = Some(slipstream_config::receiver::AuthConfig {
        bearer_tokens: vec!["otlp-t0ken".into()],
        bearer_tokens_file: None,
    });
    cfg.receivers.otlp.aggregates = sidecars_only();
    let clock = ManualClock::new(START);
    let app = slipstream_app::app::App::start_with(cfg, std::sync::Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let (http, admin) = (app.http_addr.unwrap(), app.admin_addr.unwrap());

    // 50 minutes of traffic, the last ten failing entirely.
    let minutes = (0..50).map(|m| Minute {
        error_share: if m >= 40 { 1.0 } else { 0.0 },
        version: "1.0.0",
    });
    for (m, req) in scenario("checkout", START, 60, minutes).iter().enumerate() {
        clock.set(START + m as u64 * MIN + MIN - SEC);
        let r = post_http(
            http,
            "/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("authorization", "Bearer otlp-t0ken"),
            ],
            req.encode_to_vec(),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        clock.set(START + (m as u64 + 1) * MIN);
        app.step().await;
    }
    let now = START + 50 * MIN;
    let state = || async {
        let (_, body) = slipstream_e2e::http_get(admin, "/api/v1/slos").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let slo = v["slos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "checkout-availability")
            .unwrap()
            .clone();
        let pages: Vec<bool> = slo["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["severity"] == "page")
            .map(|a| a["firing"].as_bool().unwrap())
            .collect();
        let (_, body) = slipstream_e2e::http_get(admin, "/api/v1/series?window=1h").await;
        let series: Value = serde_json::from_str(&body).unwrap();
        (
            pages,
            slo["budget_remaining"].clone(),
            slo["period_total"].clone(),
            series["series"].clone(),
        )
    };
    let before = state().await;
    assert!(before.0.iter().all(|f| *f), "every page fires: {before:?}");
    assert!(before.1.as_f64().unwrap() < 0.0, "{before:?}");
    assert_eq!(before.2, 3000.0);

    let mut header = app.aggregator.aggregates_header();
    header.instance = "sidecar-1".into();
    header.instance_started_unix_nanos = START;
    let claim = |instance: &str, sequence: u64, start: u64, total: u64| {
        let mut header = header.clone();
        header.instance = instance.into();
        header.sequence = sequence;
        ExportAggregatesRequest {
            header: Some(header),
            series: vec![Series {
                key: vec![
                    slipstream_core::aggregates::Value {
                        value: Some(value::Value::StringValue("checkout".into())),
                    },
                    slipstream_core::aggregates::Value { value: None },
                ],
                overflow: Overflow::None as i32,
                slots: vec![Slot {
                    start_unix_nanos: start,
                    total,
                    bad: 0,
                    bucket_indexes: vec![900],
                    bucket_counts: vec![total],
                    ..Slot::default()
                }],
                versions: vec![],
            }],
        }
        .encode_to_vec()
    };
    let current_slot = now / MIN * MIN;
    let pb = ("content-type", "application/x-protobuf");
    let sidecar = ("authorization", "Bearer s1decar-t0ken");
    let otlp = ("authorization", "Bearer otlp-t0ken");
    let forged = [
        (
            vec![pb],
            claim("sidecar-1", 1, current_slot, 1 << 40),
            401,
            "unauthenticated",
        ),
        (
            vec![pb, otlp],
            claim("sidecar-1", 2, current_slot, 1 << 40),
            401,
            "unauthenticated",
        ),
        (
            vec![pb, sidecar],
            claim("intruder", 3, current_slot, 1 << 40),
            403,
            "unknown_sender",
        ),
        (
            vec![pb, sidecar],
            claim("sidecar-1", 4, current_slot, 1 << 40),
            400,
            "implausible",
        ),
        (
            vec![pb, sidecar],
            claim("sidecar-1", 5, current_slot + 1440 * MIN, 1_000),
            400,
            "implausible",
        ),
    ];
    let refused = |reason: &'static str| async move {
        slipstream_e2e::self_metric(
            admin,
            "slipstream_receiver_aggregates_refused_total",
            &[&format!("reason=\"{reason}\"")],
        )
        .await
    };
    for (i, (headers, body, status, reason)) in forged.into_iter().enumerate() {
        let counted = refused(reason).await;
        let r = post_http(http, HTTP_PATH, &headers, body).await;
        assert_eq!(r.status, status, "shipment {i}: {:?}", r.body);
        assert_eq!(refused(reason).await, counted + 1.0, "shipment {i}");
        let message = RpcStatus::decode(&r.body[..]).unwrap().message;
        let names = match i {
            1 => "receivers.otlp.aggregates.auth",
            2 => "\"intruder\"",
            3 => "max_requests_per_slot (10000000)",
            4 => "aggregator.max_future_skew",
            _ => "",
        };
        assert!(message.contains(names), "shipment {i}: {message}");
    }

    // The next evaluations see nothing of them.
    clock.set(now + SEC);
    app.step().await;
    assert_eq!(state().await, before);
    assert_eq!(
        slipstream_e2e::self_metric(
            admin,
            "slipstream_aggregator_merged_observations_total",
            &[]
        )
        .await,
        0.0
    );

    // A sidecar's plausible shipment is taken: the path works for those it is meant for.
    let r = post_http(
        http,
        HTTP_PATH,
        &[pb, sidecar],
        claim("sidecar-1", 6, current_slot, 7),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    clock.set(now + 2 * SEC);
    app.step().await;
    let after = state().await;
    assert_eq!(after.2, 3007.0, "{after:?}");
    app.shutdown().await;
}

/// The sidecar tokens come from a file that a reload (SIGHUP) reads again: after the file
/// changes and the config is reloaded, the old token gets 401 and the new one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_sidecar_token_file() {
    use prost::Message;
    use slipstream_core::aggregates::{ExportAggregatesRequest, HTTP_PATH};
    use slipstream_e2e::raw::post_http;

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("sidecar-tokens");
    std::fs::write(&tokens, "# sidecars\nfirst-t0ken\n").unwrap();
    let mut cfg = slipstream_e2e::test_config(None, "");
    cfg.receivers.otlp.aggregates = sidecars_only();
    cfg.receivers.otlp.aggregates.auth = slipstream_config::receiver::AuthConfig {
        bearer_tokens: Vec::new(),
        bearer_tokens_file: Some(tokens.clone()),
    };
    let path = dir.path().join("slipstream.yaml");
    std::fs::write(&path, cfg.to_yaml()).unwrap();
    let app = slipstream_app::app::App::start_with(
        cfg,
        std::sync::Arc::new(slipstream_core::SystemClock),
        false,
    )
    .await
    .unwrap();
    let http = app.http_addr.unwrap();
    let mut header = app.aggregator.aggregates_header();
    header.instance = "sidecar-1".into();
    let mut sequence = 0;
    let mut post = |token: &'static str| {
        sequence += 1;
        header.sequence = sequence;
        let body = ExportAggregatesRequest {
            header: Some(header.clone()),
            series: vec![],
        }
        .encode_to_vec();
        async move {
            let auth = format!("Bearer {token}");
            post_http(
                http,
                HTTP_PATH,
                &[
                    ("content-type", "application/x-protobuf"),
                    ("authorization", auth.as_str()),
                ],
                body,
            )
            .await
            .status
        }
    };
    assert_eq!(post("first-t0ken").await, 200);
    assert_eq!(post("second-t0ken").await, 401);
    std::fs::write(&tokens, "second-t0ken\n").unwrap();
    app.reload(&path);
    assert_eq!(post("first-t0ken").await, 401);
    assert_eq!(post("second-t0ken").await, 200);
    app.shutdown().await;
}

/// A gateway in this process taking the sidecars' shipments, asking the gateways whose
/// admin servers are at `peers` (with a 10 s timeout) for a new service's state; on the system
/// clock, its steps driven by the test.
async fn gateway_in_process(peers: &[std::net::SocketAddr]) -> slipstream_app::app::App {
    let mut cfg = slipstream_e2e::test_config(None, "");
    cfg.receivers.otlp.aggregates = sidecars_only();
    if !peers.is_empty() {
        let p = &mut cfg.receivers.otlp.aggregates.peers;
        p.endpoints = peers.iter().map(|a| format!("http://{a}")).collect();
        p.bearer_token = Some(SIDECAR_TOKEN.into());
        p.timeout = Duration::from_secs(10);
    }
    slipstream_app::app::App::start_with(
        cfg,
        std::sync::Arc::new(slipstream_core::SystemClock),
        false,
    )
    .await
    .unwrap()
}

/// One sidecar run's shipments to in-process gateways.
struct Shipments {
    header: slipstream_core::aggregates::Header,
    /// The start of the current minute's slot.
    minute: u64,
}

impl Shipments {
    fn new(gateway: &slipstream_app::app::App) -> Shipments {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Shipments::at(gateway, now)
    }

    /// Shipments of a run started at `now`, into the slots around it.
    fn at(gateway: &slipstream_app::app::App, now: u64) -> Shipments {
        let mut header = gateway.aggregator.aggregates_header();
        header.instance = "sidecar-1".into();
        header.instance_started_unix_nanos = now;
        Shipments {
            header,
            minute: now / (60 * SEC) * 60 * SEC,
        }
    }

    /// Shipment `sequence` of `service`: `total` requests (`bad` failing) in the slot starting
    /// `ago` minutes before the current one.
    fn shipment(&self, service: &str, sequence: u64, ago: u64, total: u64, bad: u64) -> Vec<u8> {
        use prost::Message;
        use slipstream_core::aggregates::{ExportAggregatesRequest, Overflow, Series, Slot, value};
        let mut header = self.header.clone();
        header.sequence = sequence;
        let string = |s: &str| slipstream_core::aggregates::Value {
            value: Some(value::Value::StringValue(s.into())),
        };
        ExportAggregatesRequest {
            header: Some(header),
            series: vec![Series {
                key: vec![string(service), string("prod")],
                overflow: Overflow::None as i32,
                slots: vec![Slot {
                    start_unix_nanos: self.minute - ago * 60 * SEC,
                    total,
                    bad,
                    bucket_indexes: vec![900],
                    bucket_counts: vec![total],
                    ..Slot::default()
                }],
                versions: vec![],
            }],
        }
        .encode_to_vec()
    }
}

/// Posts a shipment with the sidecar token; the status.
async fn post_shipment(to: std::net::SocketAddr, body: Vec<u8>) -> u16 {
    slipstream_e2e::raw::post_http(
        to,
        slipstream_core::aggregates::HTTP_PATH,
        &[
            ("content-type", "application/x-protobuf"),
            ("authorization", "Bearer s1decar-t0ken"),
        ],
        body,
    )
    .await
    .status
}

/// `slipstream_state_transfers_total{outcome}` of an in-process gateway.
async fn transfers(app: &slipstream_app::app::App, outcome: &str) -> f64 {
    let label = format!("outcome=\"{outcome}\"");
    slipstream_e2e::self_metric(
        app.admin_addr.unwrap(),
        "slipstream_state_transfers_total",
        &[&label],
    )
    .await
}

/// A peer that is down (its port refuses connections) while another holds the service: the
/// state comes from the one that answers. Every peer down: the service is held for
/// `peers.timeout`, then starts empty, counted as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_is_passed_over_and_with_every_peer_down_the_service_starts_empty() {
    let down = slipstream_e2e::process::HeldPort::hold();
    let a = gateway_in_process(&[]).await;
    let b = gateway_in_process(&[down.addr(), a.admin_addr.unwrap()]).await;
    let sidecar = Shipments::new(&a);
    let (a_http, b_http) = (a.http_addr.unwrap(), b.http_addr.unwrap());
    assert_eq!(
        post_shipment(a_http, sidecar.shipment("cart", 1, 1, 100, 50)).await,
        200
    );
    let second = sidecar.shipment("cart", 2, 0, 10, 0);
    assert_eq!(post_shipment(a_http, second.clone()).await, 200);
    assert_eq!(post_shipment(b_http, second.clone()).await, 503);
    eventually_async("b to take cart from a", Duration::from_secs(10), || {
        let second = second.clone();
        async move { post_shipment(b_http, second).await == 200 }
    })
    .await;
    assert_eq!(transfers(&b, "imported").await, 1.0);
    assert_eq!(transfers(&b, "failed").await, 0.0);

    // Only the peer that is down: held until the timeout, then empty.
    let mut cfg = slipstream_e2e::test_config(None, "");
    cfg.receivers.otlp.aggregates = sidecars_only();
    let p = &mut cfg.receivers.otlp.aggregates.peers;
    p.endpoints = vec![format!("http://{}", down.addr())];
    p.bearer_token = Some(SIDECAR_TOKEN.into());
    p.timeout = Duration::from_secs(1);
    let c = slipstream_app::app::App::start_with(
        cfg,
        std::sync::Arc::new(slipstream_core::SystemClock),
        false,
    )
    .await
    .unwrap();
    let c_http = c.http_addr.unwrap();
    let third = sidecar.shipment("cart", 3, 0, 7, 0);
    let held = std::time::Instant::now();
    assert_eq!(post_shipment(c_http, third.clone()).await, 503);
    eventually_async("c to start cart empty", Duration::from_secs(10), || {
        let third = third.clone();
        async move { post_shipment(c_http, third).await == 200 }
    })
    .await;
    assert!(
        held.elapsed() >= Duration::from_secs(1),
        "held for the timeout"
    );
    assert_eq!(transfers(&c, "failed").await, 1.0);
    c.step().await;
    let (_, body) = slipstream_e2e::http_get(c.admin_addr.unwrap(), "/api/v1/slos").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let cart = v["slos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cart-availability")
        .cloned()
        .unwrap_or_default();
    assert_eq!(cart["period_total"], 7.0, "{cart:#}");
}

/// Peers found by DNS (`localhost` at the peer's admin port): the state is taken from the
/// addresses the name has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_found_by_dns_hand_over_the_state() {
    let a = gateway_in_process(&[]).await;
    let mut cfg = slipstream_e2e::test_config(None, "");
    cfg.receivers.otlp.aggregates = sidecars_only();
    let p = &mut cfg.receivers.otlp.aggregates.peers;
    p.dns = Some(format!("http://localhost:{}", a.admin_addr.unwrap().port()));
    p.bearer_token = Some(SIDECAR_TOKEN.into());
    p.timeout = Duration::from_secs(10);
    let b = slipstream_app::app::App::start_with(
        cfg,
        std::sync::Arc::new(slipstream_core::SystemClock),
        false,
    )
    .await
    .unwrap();
    let sidecar = Shipments::new(&a);
    let (a_http, b_http) = (a.http_addr.unwrap(), b.http_addr.unwrap());
    assert_eq!(
        post_shipment(a_http, sidecar.shipment("cart", 1, 1, 100, 50)).await,
        200
    );
    let second = sidecar.shipment("cart", 2, 0, 10, 0);
    assert_eq!(post_shipment(a_http, second.clone()).await, 200);
    assert_eq!(post_shipment(b_http, second.clone()).await, 503);
    eventually_async("b to take cart from a", Duration::from_secs(10), || {
        let second = second.clone();
        async move { post_shipment(b_http, second).await == 200 }
    })
    .await;
    assert_eq!(transfers(&b, "imported").await, 1.0);
}

/// A gateway whose data of a service is older than its aggregator's retention (the service
/// left its replicas and came back two hours later, on a manual clock): the next shipment is
/// held back while a peer's state replaces its own, so the shipment it counted two hours ago
/// is not counted twice and those it never got are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_data_is_stale_takes_the_service_from_a_peer_again() {
    use slipstream_core::ManualClock;
    const MIN: u64 = 60 * SEC;
    // 2026-03-01T00:00:30Z.
    const START: u64 = 1_772_323_230_000_000_000;
    let clock = ManualClock::new(START);
    let start = |peers: Option<std::net::SocketAddr>| {
        let clock = clock.clone();
        async move {
            let mut cfg = slipstream_e2e::test_config(None, "");
            cfg.receivers.otlp.aggregates = sidecars_only();
            if let Some(admin) = peers {
                let p = &mut cfg.receivers.otlp.aggregates.peers;
                p.endpoints = vec![format!("http://{admin}")];
                p.bearer_token = Some(SIDECAR_TOKEN.into());
                p.timeout = Duration::from_secs(10);
            }
            slipstream_app::app::App::start_with(cfg, std::sync::Arc::new(clock), false)
                .await
                .unwrap()
        }
    };
    let a = start(None).await;
    let b = start(a.admin_addr).await;
    let (a_http, b_http) = (a.http_addr.unwrap(), b.http_addr.unwrap());
    let taken = |to: std::net::SocketAddr, body: Vec<u8>| async move {
        eventually_async("the shipment taken", Duration::from_secs(10), || {
            let body = body.clone();
            async move { post_shipment(to, body).await == 200 }
        })
        .await;
    };

    // Both gateways get shipment 1; `b` takes `cart` from `a` for it.
    let early = Shipments::at(&a, START);
    let first = early.shipment("cart", 1, 0, 100, 40);
    taken(a_http, first.clone()).await;
    a.step().await;
    taken(b_http, first).await;
    b.step().await;
    assert_eq!(transfers(&b, "imported").await, 1.0);

    // Two hours on, `cart` is back on `b`: meanwhile only `a` got shipment 2.
    clock.set(START + 120 * MIN);
    let late = Shipments::at(&a, START + 120 * MIN);
    let second = Shipments {
        header: early.header.clone(),
        minute: late.minute,
    };
    taken(a_http, second.shipment("cart", 2, 1, 50, 0)).await;
    let third = second.shipment("cart", 3, 0, 10, 0);
    taken(a_http, third.clone()).await;
    a.step().await;
    assert_eq!(post_shipment(b_http, third.clone()).await, 503, "held back");
    taken(b_http, third).await;
    assert_eq!(transfers(&b, "imported").await, 2.0);

    let cart = |app: &slipstream_app::app::App| {
        let admin = app.admin_addr.unwrap();
        async move {
            let (_, body) = slipstream_e2e::http_get(admin, "/api/v1/slos").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            v["slos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "cart-availability")
                .map(comparable_slo)
        }
    };
    a.step().await;
    b.step().await;
    let (x, y) = (cart(&a).await, cart(&b).await);
    assert_eq!(
        x.as_ref().map(|x| x["period_total"].clone()),
        Some(Value::from(160.0))
    );
    assert_eq!(x, y);
}

/// Two gateways in this process, on the system clock with steps driven by the test: `a`
/// took a sidecar's shipments 1 and 2 of `cart` (half of them failing); `b`, which knows `a`
/// as its peer, gets `cart` from shipment 3 on, which the sidecar sends to both. `b` holds
/// shipment 3 back (503) while it takes `cart`'s state from `a`, then takes it again without
/// counting it (the state it took holds it), and counts shipment 4: both show the same SLO,
/// every request once. A service no peer holds starts empty; the state is served only with a
/// sidecar token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_new_to_a_service_takes_its_state_from_a_peer_and_counts_each_shipment_once() {
    let a = gateway_in_process(&[]).await;
    let b = gateway_in_process(&[a.admin_addr.unwrap()]).await;
    let sidecar = Shipments::new(&a);
    let shipment = |service: &str, sequence: u64, ago: u64, total: u64, bad: u64| {
        sidecar.shipment(service, sequence, ago, total, bad)
    };
    let post = post_shipment;
    let (a_http, b_http) = (a.http_addr.unwrap(), b.http_addr.unwrap());
    assert_eq!(post(a_http, shipment("cart", 1, 2, 100, 50)).await, 200);
    assert_eq!(post(a_http, shipment("cart", 2, 1, 100, 50)).await, 200);
    a.step().await;

    // The state is served to sidecar-token holders only.
    let path = "/api/v1/state/services/cart";
    let (status, _) = slipstream_e2e::http_get(a.admin_addr.unwrap(), path).await;
    assert_eq!(status, 401);

    // Shipment 3 goes to both; `b` holds it back until it has `cart`'s state, then takes it
    // without adding it again.
    let third = shipment("cart", 3, 0, 10, 0);
    assert_eq!(post(a_http, third.clone()).await, 200);
    assert_eq!(post(b_http, third.clone()).await, 503, "held back");
    eventually_async(
        "b to take shipment 3 once it has cart's state",
        Duration::from_secs(10),
        || {
            let third = third.clone();
            async move { post(b_http, third).await == 200 }
        },
    )
    .await;
    let fourth = shipment("cart", 4, 0, 20, 0);
    assert_eq!(post(a_http, fourth.clone()).await, 200);
    assert_eq!(post(b_http, fourth).await, 200);

    let cart = |app: &slipstream_app::app::App| {
        let admin = app.admin_addr.unwrap();
        async move {
            let (_, body) = slipstream_e2e::http_get(admin, "/api/v1/slos").await;
            let v: Value = serde_json::from_str(&body).unwrap();
            v["slos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "cart-availability")
                .map(comparable_slo)
        }
    };
    let (a, b) = (&a, &b);
    eventually_async(
        "b's cart SLO to equal a's, every request counted once",
        Duration::from_secs(10),
        || async move {
            a.step().await;
            b.step().await;
            let (x, y) = (cart(a).await, cart(b).await);
            let total = x.as_ref().map(|x| x["period_total"].clone());
            if x.is_some() && x == y && total == Some(Value::from(230.0)) {
                Ok(())
            } else {
                Err(format!("a: {x:#?}\nb: {y:#?}"))
            }
        },
    )
    .await;
    assert_eq!(transfers(b, "imported").await, 1.0);
    assert_eq!(
        slipstream_e2e::self_metric(
            a.admin_addr.unwrap(),
            "slipstream_state_transfers_served_total",
            &[]
        )
        .await,
        1.0
    );

    // A service no peer holds starts empty once the peer says so.
    let fresh = shipment("fresh", 5, 0, 7, 0);
    eventually_async(
        "b to take a service no peer holds",
        Duration::from_secs(10),
        || {
            let fresh = fresh.clone();
            async move { post(b_http, fresh).await == 200 }
        },
    )
    .await;
    assert_eq!(transfers(b, "empty").await, 1.0);
}

// === replicated gateways ===

/// A gateway run as its own process that can be killed with `kill -9` and started again on
/// the same OTLP/HTTP port and state directory, as a StatefulSet pod comes back.
struct Gateway {
    name: String,
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    dir: tempfile::TempDir,
    alertmanagers: String,
    /// Lines of `receivers.otlp.aggregates` naming its peers (empty: none).
    peers: String,
    proc: Option<slipstream_e2e::process::Slipstream>,
}

impl Gateway {
    async fn start(name: &str, alertmanagers: &[String]) -> Gateway {
        Self::start_with_peers(name, alertmanagers, &[]).await
    }

    /// A gateway that asks the gateways whose admin servers are at `peers` for the state of
    /// a service new to it.
    async fn start_with_peers(name: &str, alertmanagers: &[String], peers: &[String]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let alertmanagers = alertmanagers.join(", ");
        let peers = if peers.is_empty() {
            String::new()
        } else {
            format!(
                "  peers:\n    endpoints: [{}]\n    bearer_token: {SIDECAR_TOKEN}\n    timeout: 20s\n",
                peers.join(", ")
            )
        };
        let (proc, http, admin) = Self::run(&dir, "127.0.0.1:0", &alertmanagers, &peers).await;
        Gateway {
            name: name.to_owned(),
            http,
            admin,
            dir,
            alertmanagers,
            peers,
            proc: Some(proc),
        }
    }

    /// Starts the process on `http` (`host:port`), its state under `dir`; returns it with its
    /// OTLP/HTTP and admin addresses.
    async fn run(
        dir: &tempfile::TempDir,
        http: &str,
        alertmanagers: &str,
        peers: &str,
    ) -> (
        slipstream_e2e::process::Slipstream,
        std::net::SocketAddr,
        std::net::SocketAddr,
    ) {
        let path = Self::write_config(dir, http, alertmanagers, peers);
        let proc = slipstream_e2e::process::Slipstream::start(&path).await;
        let (http, admin) = (proc.ready.otlp_http(), proc.admin);
        (proc, http, admin)
    }

    /// Writes the config file under `dir`; returns its path.
    fn write_config(
        dir: &tempfile::TempDir,
        http: &str,
        alertmanagers: &str,
        peers: &str,
    ) -> std::path::PathBuf {
        let receiver: String = (gateway_receiver() + peers)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let yaml = format!(
            "receivers:\n  otlp:\n    grpc: null\n    http:\n      endpoint: {http}\n{receiver}admin:\n  endpoint: 127.0.0.1:0\nstate:\n  dir: {}\n  snapshot_interval: 1s\nexporters:\n  prometheus:\n    endpoint: null\n  alertmanager:\n    endpoints: [{alertmanagers}]\n    resend_interval: 1s\n    retry:\n      initial_interval: 50ms\n      max_interval: 200ms\n{COMMON}",
            dir.path().join("state").display()
        );
        let path = dir.path().join("slipstream.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Takes `peers` (lines of `receivers.otlp.aggregates`) from now on: the config rewritten
    /// on its port, then SIGHUP.
    fn reload(&mut self, peers: String) {
        self.peers = peers;
        Self::write_config(
            &self.dir,
            &self.http.to_string(),
            &self.alertmanagers,
            &self.peers,
        );
        let pid = self.proc.as_ref().expect("running").pid();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "SIGHUP to {}", self.name);
    }

    fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `kill -9`: what it merged since its last snapshot is lost.
    fn kill9(&mut self) {
        self.proc.take().expect("running").kill9();
    }

    /// Starts it again on its port, from its state file.
    async fn restart(&mut self) {
        assert!(self.proc.is_none(), "{} is running", self.name);
        let (proc, http, admin) = Self::run(
            &self.dir,
            &self.http.to_string(),
            &self.alertmanagers,
            &self.peers,
        )
        .await;
        assert_eq!(http, self.http);
        self.admin = admin;
        self.proc = Some(proc);
    }

    async fn api(&self, path: &str) -> Value {
        let (status, body) = slipstream_e2e::http_get(self.admin, path).await;
        assert_eq!(status, 200, "{}: {path}: {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    async fn metric(&self, name: &str) -> f64 {
        slipstream_e2e::self_metric(self.admin, name, &[]).await
    }
}

/// An Alertmanager of a two-member cluster on loopback, with a null receiver.
struct ClusteredAlertmanager {
    addr: std::net::SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for ClusteredAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ClusteredAlertmanager {
    /// Starts one on ports of its own choosing (web and gossip), joining `peer` (another
    /// member's gossip address) when given; waits until it answers.
    async fn start(peer: Option<&str>) -> ClusteredAlertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let log = dir.path().join("alertmanager.log");
        let mut cmd = std::process::Command::new(
            std::env::var("ALERTMANAGER_BIN").unwrap_or_else(|_| "prometheus-alertmanager".into()),
        );
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--cluster.listen-address=127.0.0.1:0")
            .arg("--cluster.settle-timeout=1s")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(p) = peer {
            cmd.arg(format!("--cluster.peer={p}"));
        }
        let child = cmd.spawn().expect("prometheus-alertmanager on PATH");
        let log = &log;
        let addr: std::net::SocketAddr = eventually_async(
            "Alertmanager to say where it listens",
            Duration::from_secs(20),
            || async move {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.lines()
                    .find(|l| l.contains("msg=\"Listening on\""))
                    .and_then(|l| l.split("address=").nth(1))
                    .and_then(|a| a.trim().parse().ok())
                    .ok_or(text)
            },
        )
        .await;
        eventually_async(
            "Alertmanager ready",
            Duration::from_secs(20),
            || async move { slipstream_e2e::http_get(addr, "/-/ready").await.0 == 200 },
        )
        .await;
        ClusteredAlertmanager {
            addr,
            child,
            _dir: dir,
        }
    }

    async fn status(&self) -> Value {
        let (status, body) = slipstream_e2e::http_get(self.addr, "/api/v2/status").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// This member's gossip address, as the cluster knows it.
    async fn gossip_address(&self) -> String {
        let s = self.status().await;
        let name = s["cluster"]["name"].clone();
        s["cluster"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["address"].as_str())
            .unwrap()
            .to_owned()
    }

    /// The active alerts (`GET /api/v2/alerts?active=true&silenced=false&inhibited=false`).
    async fn active(&self) -> Vec<Value> {
        let (status, body) = slipstream_e2e::http_get(
            self.addr,
            "/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }
}

/// One round of steady load: per service a tenth of its [`ROLES`] spans (at least one),
/// ending in the last second, numbered from `round` so that no two rounds share a span id,
/// spread over the sidecars.
fn load_round(role: Role, round: usize, now: u64) -> Vec<(usize, Span)> {
    let n = (role.spans / 10).max(1);
    (0..n)
        .map(|j| {
            let i = round * n + j;
            let slow = i % 10 < role.slow_per_10;
            let ms = if slow {
                1_100 + (i as u64 * 37) % 1_900
            } else {
                4 + (i as u64 * 53) % 900
            };
            let end = now - SEC + (j as u64 * SEC) / n as u64;
            let span = Span {
                trace_id: (i as u128 + 1).to_be_bytes().to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "GET /".into(),
                kind: 2,
                start_time_unix_nano: end - ms * 1_000_000,
                end_time_unix_nano: end,
                status: (i % 10 >= 10 - role.failing_per_10).then(|| Status {
                    code: 2,
                    ..Default::default()
                }),
                ..Default::default()
            };
            (i % 3, span)
        })
        .collect()
}

/// Sends `rounds` rounds of load, from round `first`, to the sidecars and the reference;
/// returns how many spans went out.
async fn steady_load(
    sidecars: &[std::net::SocketAddr],
    reference: &Node,
    first: usize,
    rounds: usize,
) -> usize {
    let mut sent = 0;
    for round in first..first + rounds {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        for role in ROLES {
            let spans = load_round(role, round, now);
            sent += spans.len();
            let mut per_sidecar: BTreeMap<usize, Vec<Span>> = BTreeMap::new();
            for (i, s) in &spans {
                per_sidecar.entry(*i).or_default().push(s.clone());
            }
            for (i, spans) in per_sidecar {
                export(sidecars[i], &request(role.name, spans)).await;
            }
            let all: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
            export(reference.http, &request(role.name, all)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sent
}

/// The reference's SLOs of the services `gateway` ranks among its replicas, and the
/// gateway's own SLOs (those of the services in `left` aside: it ranked them before a
/// scale-up and holds what it had), once they are equal (and the reference holds `sent`
/// requests per SLO kind); fails after `within` showing both.
async fn gateway_matches_reference(
    reference: &Node,
    gateway: &Gateway,
    owns: &BTreeSet<&str>,
    left: &BTreeSet<&str>,
    sent: usize,
    within: Duration,
) {
    let what = format!("{}: its SLOs to equal the reference's", gateway.name);
    eventually_async(&what, within, || async move {
        let all = slos(reference).await;
        let complete = all
            .values()
            .map(|s| s["period_total"].as_f64().unwrap_or(0.0) as u64)
            .sum::<u64>()
            == 2 * sent as u64;
        let want: BTreeMap<String, Value> = all
            .into_iter()
            .filter(|(_, s)| owns.contains(s["service"].as_str().unwrap()))
            .map(|(name, s)| (name, comparable_slo(&s)))
            .collect();
        let got: BTreeMap<String, Value> = gateway.api("/api/v1/slos").await["slos"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !left.contains(s["service"].as_str().unwrap()))
            .map(|s| (s["name"].as_str().unwrap().to_owned(), comparable_slo(s)))
            .collect();
        if complete && got == want {
            Ok(())
        } else {
            Err(format!(
                "complete: {complete}\nreference: {want:#?}\ngateway: {got:#?}"
            ))
        }
    })
    .await;
}

/// The reference's firing pages as `(slo, long window, short window)`, from its SLOs.
async fn firing_pages(reference: &Node) -> BTreeSet<(String, String, String)> {
    let mut pages = BTreeSet::new();
    for slo in slos(reference).await.values() {
        for a in slo["alerts"].as_array().unwrap() {
            if a["firing"] == true && a["severity"] == "page" {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                pages.insert((s(&slo["name"]), s(&a["long_window"]), s(&a["short_window"])));
            }
        }
    }
    pages
}

/// Waits until each Alertmanager holds every page in `pages` active exactly once, and no
/// other page.
async fn pages_active_once(
    alertmanagers: &[ClusteredAlertmanager],
    pages: &BTreeSet<(String, String, String)>,
    within: Duration,
) {
    for am in alertmanagers {
        eventually_async(
            "every page of the reference active once in Alertmanager",
            within,
            || async move {
                let active = am.active().await;
                let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
                for a in &active {
                    let l = &a["labels"];
                    if l["severity"] != "page" {
                        continue;
                    }
                    let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                    *seen
                        .entry((s("slo"), s("long_window"), s("short_window")))
                        .or_default() += 1;
                }
                let want: BTreeMap<_, usize> = pages.iter().map(|p| (p.clone(), 1)).collect();
                if seen == want {
                    Ok(())
                } else {
                    Err(format!("want {want:?}\nactive {active:#?}"))
                }
            },
        )
        .await;
    }
}

/// Two Alertmanagers clustered on loopback, once they see each other; with their URLs.
async fn alertmanager_pair() -> ([ClusteredAlertmanager; 2], Vec<String>) {
    let first = ClusteredAlertmanager::start(None).await;
    let peer = first.gossip_address().await;
    let second = ClusteredAlertmanager::start(Some(&peer)).await;
    let alertmanagers = [first, second];
    eventually_async(
        "the Alertmanagers to form a cluster of two",
        Duration::from_secs(20),
        || async {
            alertmanagers[1].status().await["cluster"]["peers"]
                .as_array()
                .map(Vec::len)
                == Some(2)
        },
    )
    .await;
    let am_urls: Vec<String> = alertmanagers
        .iter()
        .map(|a| format!("http://{}", a.addr))
        .collect();
    (alertmanagers, am_urls)
}

/// The OTLP/HTTP addresses of `nodes`.
fn addrs(nodes: &[Node]) -> Vec<std::net::SocketAddr> {
    nodes.iter().map(|n| n.http).collect()
}

/// Three gateways at `replicas: 2`, three sidecars, a reference fed every span and a
/// clustered pair of real Alertmanagers, under steady load with two incidents (`cart` fails,
/// `auth` is slow). While one gateway owning `cart` is down (`kill -9`), its peer keeps the
/// pages active in Alertmanager, once each; the sidecars hold its shipments; restarted on its
/// port from its state file, it takes them and its SLOs equal the reference's again: windows,
/// budgets and alert states. The kill comes after its last snapshot holds everything it merged
/// (the load paused): what a gateway merged after its last snapshot is lost with it, and
/// only a peer's state (not the sidecars' queues, which saw it delivered) could give it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_and_restarted_catches_up_from_the_sidecars_queues() {
    let (alertmanagers, am_urls) = alertmanager_pair().await;

    let mut gateways = Vec::new();
    for i in 0..3 {
        gateways.push(Gateway::start(&format!("gateway-{i}"), &am_urls).await);
    }
    let urls: Vec<String> = gateways.iter().map(Gateway::url).collect();
    let owns = ranked_at_two(&urls);
    let mut sidecars = Vec::new();
    for i in 0..3 {
        let cfg = sidecar_config(i, &urls);
        let cfg = NodeConfig {
            yaml: cfg
                .yaml
                .replacen("  aggregates:\n", "  aggregates:\n    replicas: 2\n", 1),
        };
        sidecars.push(Node::start(&format!("sidecar-{i}"), cfg).await);
    }
    let reference = Node::start("reference", Node::config(COMMON, "")).await;

    // Steady load until both incidents page on the reference, and on every gateway that
    // owns them.
    let mut sent = steady_load(&addrs(&sidecars), &reference, 0, 10).await;
    for (g, gateway) in gateways.iter().enumerate() {
        gateway_matches_reference(
            &reference,
            gateway,
            &owns[g],
            &BTreeSet::new(),
            sent,
            Duration::from_secs(30),
        )
        .await;
    }
    let pages = firing_pages(&reference).await;
    let slos_paging: BTreeSet<&str> = pages.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        slos_paging,
        BTreeSet::from(["auth-latency", "cart-availability"])
    );
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;

    // The gateway ranked first for `cart` goes down once its state file holds all it merged.
    let victim = Rendezvous::for_endpoints(&urls).pick(b"cart").unwrap();
    let snapshots = gateways[victim]
        .metric("slipstream_state_snapshots_total")
        .await;
    eventually_async(
        "a snapshot after the last merge",
        Duration::from_secs(10),
        || async {
            gateways[victim]
                .metric("slipstream_state_snapshots_total")
                .await
                >= snapshots + 2.0
        },
    )
    .await;
    gateways[victim].kill9();

    // Away: the load goes on; its peers keep their SLOs equal to the reference's, and the
    // pages stay active, once each.
    sent += steady_load(&addrs(&sidecars), &reference, 10, 10).await;
    for (g, gateway) in gateways.iter().enumerate() {
        if g != victim {
            gateway_matches_reference(
                &reference,
                gateway,
                &owns[g],
                &BTreeSet::new(),
                sent,
                Duration::from_secs(30),
            )
            .await;
        }
    }
    let pages = firing_pages(&reference).await;
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;
    let queued: f64 = {
        let mut q = 0.0;
        for s in &sidecars {
            q += s
                .metric(
                    "slipstream_exporter_queue_length",
                    &["exporter=\"aggregates\""],
                )
                .await;
        }
        q
    };
    assert!(
        queued >= 1.0,
        "the sidecars hold the shipments of the gateway away"
    );

    // Back on its port from its state file: the queued shipments reach it, and its SLOs are
    // the reference's again; the other gateways' too.
    gateways[victim].restart().await;
    sent += steady_load(&addrs(&sidecars), &reference, 20, 3).await;
    for (g, gateway) in gateways.iter().enumerate() {
        gateway_matches_reference(
            &reference,
            gateway,
            &owns[g],
            &BTreeSet::new(),
            sent,
            Duration::from_secs(30),
        )
        .await;
    }
    let pages = firing_pages(&reference).await;
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;
    for s in &sidecars {
        assert_eq!(
            s.metric(
                "slipstream_exporter_dropped_total",
                &["exporter=\"aggregates\""]
            )
            .await,
            0.0,
            "{}",
            s.name
        );
    }
    for g in &gateways {
        assert_eq!(
            g.metric("slipstream_receiver_aggregates_refused_total")
                .await,
            0.0,
            "{}",
            g.name
        );
    }
}

/// Per gateway of `urls` (as the sidecars list them), the services of [`ROLES`] it ranks
/// among the two of at `replicas: 2`.
fn ranked_at_two(urls: &[String]) -> Vec<BTreeSet<&'static str>> {
    let route = Rendezvous::for_endpoints(urls);
    (0..urls.len())
        .map(|g| {
            ROLES
                .iter()
                .map(|r| r.name)
                .filter(|s| route.pick_n(s.as_bytes(), 2).contains(&g))
                .collect()
        })
        .collect()
}

/// Three sidecars at `replicas: 2` shipping to `urls`, with their OTLP/HTTP addresses, and a
/// reference fed every span.
async fn sidecars_and_reference(
    urls: &[String],
) -> (Vec<Sidecar>, Vec<std::net::SocketAddr>, Node) {
    let mut sidecars = Vec::new();
    for i in 0..3 {
        sidecars.push(Sidecar::start(i, urls).await);
    }
    let addrs = sidecars.iter().map(|s| s.http).collect();
    let reference = Node::start("reference", Node::config(COMMON, "")).await;
    (sidecars, addrs, reference)
}

/// A sidecar run as its own process at `replicas: 2`, whose gateways a reload (SIGHUP) of its
/// rewritten config file replaces.
struct Sidecar {
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    name: String,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    proc: slipstream_e2e::process::Slipstream,
}

impl Sidecar {
    async fn start(i: usize, gateways: &[String]) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipstream.yaml");
        std::fs::write(&path, Self::yaml(i, gateways)).unwrap();
        let proc = slipstream_e2e::process::Slipstream::start(&path).await;
        Sidecar {
            http: proc.ready.otlp_http(),
            admin: proc.admin,
            name: format!("sidecar-{i}"),
            path,
            _dir: dir,
            proc,
        }
    }

    fn yaml(i: usize, gateways: &[String]) -> String {
        sidecar_config(i, gateways).yaml.replacen(
            "  aggregates:\n",
            "  aggregates:\n    replicas: 2\n",
            1,
        )
    }

    /// Ships to `gateways` from now on: the config rewritten, then SIGHUP.
    fn reload(&self, i: usize, gateways: &[String]) {
        std::fs::write(&self.path, Self::yaml(i, gateways)).unwrap();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.proc.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "SIGHUP to {}", self.name);
    }

    async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        slipstream_e2e::self_metric(self.admin, name, labels).await
    }
}

/// Three gateways at `replicas: 2`, three sidecars, a reference fed every span and a
/// clustered pair of real Alertmanagers, under steady load with two incidents; then a fourth
/// gateway, which knows the other three as its peers, and the sidecars reloaded to ship to
/// all four. Each service the fourth now ranks among its two is held back there until it has
/// the service's state from a peer: windows, budgets and alert states. Under more load, every
/// gateway's SLOs of the services it ranks equal the reference's (nothing counted twice,
/// nothing missed), and every page is active once in each Alertmanager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_from_three_gateways_to_four_hands_the_new_one_its_services_state() {
    let (alertmanagers, am_urls) = alertmanager_pair().await;
    let mut gateways = Vec::new();
    for i in 0..3 {
        gateways.push(Gateway::start(&format!("gateway-{i}"), &am_urls).await);
    }
    let ranked = |gateways: &[Gateway]| {
        ranked_at_two(&gateways.iter().map(Gateway::url).collect::<Vec<_>>())
    };
    let before = ranked(&gateways);
    let urls: Vec<String> = gateways.iter().map(Gateway::url).collect();
    let (sidecars, sidecar_addrs, reference) = sidecars_and_reference(&urls).await;

    let none = BTreeSet::new();
    let mut sent = steady_load(&sidecar_addrs, &reference, 0, 10).await;
    for (g, gateway) in gateways.iter().enumerate() {
        let within = Duration::from_secs(30);
        gateway_matches_reference(&reference, gateway, &before[g], &none, sent, within).await;
    }
    let pages = firing_pages(&reference).await;
    let slos_paging: BTreeSet<&str> = pages.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        slos_paging,
        BTreeSet::from(["auth-latency", "cart-availability"])
    );
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;

    // A fourth gateway, its ports the system's choice: started until it ranks among the two
    // of a paging service, so that it must take a firing page's state.
    let peers: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{}", g.admin))
        .collect();
    let after = loop {
        gateways.push(Gateway::start_with_peers("gateway-3", &am_urls, &peers).await);
        let after = ranked(&gateways);
        if after[3].contains("cart") || after[3].contains("auth") {
            break after;
        }
        gateways.pop();
    };
    let urls: Vec<String> = gateways.iter().map(Gateway::url).collect();
    for (i, s) in sidecars.iter().enumerate() {
        s.reload(i, &urls);
    }
    sent += steady_load(&sidecar_addrs, &reference, 10, 10).await;
    for (g, gateway) in gateways.iter().enumerate() {
        let left: BTreeSet<&str> = before
            .get(g)
            .map(|b| b.difference(&after[g]).copied().collect())
            .unwrap_or_default();
        let within = Duration::from_secs(40);
        gateway_matches_reference(&reference, gateway, &after[g], &left, sent, within).await;
    }
    let pages = firing_pages(&reference).await;
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;

    // The new gateway took every service it ranks from a peer, and served none.
    let new = &gateways[3];
    let transfers = |outcome: &str| {
        let label = format!("outcome=\"{outcome}\"");
        async move {
            slipstream_e2e::self_metric(new.admin, "slipstream_state_transfers_total", &[&label])
                .await
        }
    };
    assert_eq!(transfers("imported").await, after[3].len() as f64);
    assert_eq!(transfers("failed").await + transfers("empty").await, 0.0);
    // Nothing was dropped or refused, but what the new gateway held back meanwhile.
    for s in &sidecars {
        let dropped = s
            .metric(
                "slipstream_exporter_dropped_total",
                &["exporter=\"aggregates\""],
            )
            .await;
        assert_eq!(dropped, 0.0, "{}", s.name);
    }
    for g in &gateways {
        let refused = g
            .metric("slipstream_receiver_aggregates_refused_total")
            .await;
        let busy = slipstream_e2e::self_metric(
            g.admin,
            "slipstream_receiver_aggregates_refused_total",
            &["reason=\"busy\""],
        )
        .await;
        assert_eq!(refused, busy, "{}", g.name);
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as the Alertmanager exporter writes
/// it (`2026-12-07T09:00:00.123Z`).
fn unix_seconds(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs: f64 = t[17..t.len() - 1].parse().unwrap();
    (days * 86_400 + n(11..13) * 3_600 + n(14..16) * 60) as f64 + secs
}

/// Two gateways at `replicas: 2` (each holds every service) paging for `cart` and `auth`,
/// then a third that ranks among the two of a paging service. The two old ones are reloaded
/// knowing the three and `peers.replicas: 2`, before the sidecars: the one that no longer
/// ranks a paging service hands it off. Polled all along, each page of the reference stays
/// active in both Alertmanagers; the handing-off gateway never posts such a page resolved and,
/// once it handed it off, stops re-sending it (the other replica and the new gateway, which
/// took the state from a peer, keep it active).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_ranking_a_paging_service_lets_go_without_resolving_it() {
    let (alertmanagers, am_urls) = alertmanager_pair().await;
    // Each gateway also posts to a recorder of its own, which shows what it sent.
    let mut recorders = Vec::new();
    let mut gateways = Vec::new();
    let start = |i: usize, peers: Vec<String>| {
        let am_urls = am_urls.clone();
        async move {
            let arrived: Arc<Mutex<Vec<f64>>> = Arc::default();
            let times = arrived.clone();
            let (addr, log) = slipstream_test_support::recorder::serve(move |_, _| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                times.lock().unwrap().push(now.as_secs_f64());
                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()))
            })
            .await;
            let mut urls = am_urls;
            urls.push(format!("http://{addr}"));
            let g = Gateway::start_with_peers(&format!("gateway-{i}"), &urls, &peers).await;
            (g, (log, arrived))
        }
    };
    for i in 0..2 {
        let (g, r) = start(i, Vec::new()).await;
        gateways.push(g);
        recorders.push(r);
    }
    let urls: Vec<String> = gateways.iter().map(Gateway::url).collect();
    let (sidecars, sidecar_addrs, reference) = sidecars_and_reference(&urls).await;
    let all: BTreeSet<&str> = ROLES.iter().map(|r| r.name).collect();
    let none = BTreeSet::new();
    let mut sent = steady_load(&sidecar_addrs, &reference, 0, 10).await;
    for g in &gateways {
        gateway_matches_reference(&reference, g, &all, &none, sent, Duration::from_secs(30)).await;
    }
    let pages = firing_pages(&reference).await;
    pages_active_once(&alertmanagers, &pages, Duration::from_secs(20)).await;

    // A third gateway, started until it ranks among the two of a paging service; it asks
    // the two old ones for the state of what it newly ranks.
    let admins: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://{}", g.admin))
        .collect();
    let (after, urls) = loop {
        let (g, r) = start(2, admins.clone()).await;
        let mut urls: Vec<String> = gateways.iter().map(Gateway::url).collect();
        urls.push(g.url());
        let after = ranked_at_two(&urls);
        if after[2].contains("cart") || after[2].contains("auth") {
            gateways.push(g);
            recorders.push(r);
            break (after, urls);
        }
    };
    let paging: BTreeSet<&str> = ["cart", "auth"].into();

    // Both Alertmanagers polled from here to the end: every page must stay active.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (stop, pages) = (stop.clone(), pages.clone());
        let ams: Vec<std::net::SocketAddr> = alertmanagers.iter().map(|a| a.addr).collect();
        tokio::spawn(async move {
            let (mut polls, mut gaps) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for am in &ams {
                    let (status, body) = slipstream_e2e::http_get(
                        *am,
                        "/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=true",
                    )
                    .await;
                    assert_eq!(status, 200, "{body}");
                    let active: Vec<Value> = serde_json::from_str(&body).unwrap();
                    let s = |l: &Value, k: &str| l[k].as_str().unwrap_or_default().to_owned();
                    let seen: BTreeSet<(String, String, String)> = active
                        .iter()
                        .map(|a| &a["labels"])
                        .map(|l| (s(l, "slo"), s(l, "long_window"), s(l, "short_window")))
                        .collect();
                    let missing: Vec<_> = pages.difference(&seen).cloned().collect();
                    if !missing.is_empty() {
                        gaps.push((am.to_string(), missing));
                    }
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (polls, gaps)
        })
    };

    // The old gateways learn the three and the replica count, before the sidecars: each
    // hands off what it no longer ranks (at once, the services it holds).
    let mut handing_off = Vec::new();
    for g in 0..2 {
        let others: Vec<String> = gateways
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != g)
            .map(|(_, o)| format!("http://{}", o.admin))
            .collect();
        gateways[g].reload(format!(
            "  peers:\n    endpoints: [{}]\n    bearer_token: {SIDECAR_TOKEN}\n    timeout: 20s\n    replicas: 2\n    members: [{}]\n    member: {}\n",
            others.join(", "),
            urls.join(", "),
            urls[g]
        ));
        let unranked: BTreeSet<&str> = all.difference(&after[g]).copied().collect();
        let gateway = &gateways[g];
        eventually_async(
            &format!("{}: to hand off {unranked:?}", gateway.name),
            Duration::from_secs(20),
            || async {
                let n = gateway.metric("slipstream_state_handoffs_total").await;
                (n == unranked.len() as f64).then_some(()).ok_or(n)
            },
        )
        .await;
        let posted = recorders[g].0.lock().unwrap().len();
        let let_go: BTreeSet<&str> = unranked.intersection(&paging).copied().collect();
        if !let_go.is_empty() {
            handing_off.push((g, let_go, posted));
        }
    }
    assert!(!handing_off.is_empty(), "an old gateway hands a page off");
    for (i, s) in sidecars.iter().enumerate() {
        s.reload(i, &urls);
    }
    sent += steady_load(&sidecar_addrs, &reference, 10, 10).await;
    gateway_matches_reference(
        &reference,
        &gateways[2],
        &after[2],
        &none,
        sent,
        Duration::from_secs(40),
    )
    .await;
    let pages_now = firing_pages(&reference).await;
    assert!(
        pages.is_subset(&pages_now),
        "the reference's pages went on firing"
    );
    pages_active_once(&alertmanagers, &pages_now, Duration::from_secs(20)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (polls, gaps) = poller.await.unwrap();
    assert!(polls > 10, "polled {polls} times");
    assert!(gaps.is_empty(), "pages not active at times: {gaps:#?}");

    // What each handing-off gateway posted: never a handed-off page resolved (a resolved
    // alert ends when it is sent; a firing one four re-send intervals later), and, a re-send
    // that was already queued aside, nothing of it after the hand-off.
    for (g, let_go, posted) in handing_off {
        let (log, arrived) = &recorders[g];
        let log = log.lock().unwrap().clone();
        let arrived = arrived.lock().unwrap().clone();
        let mut after_hand_off = 0;
        for (n, (post, at)) in log.iter().zip(&arrived).enumerate() {
            let alerts: Vec<Value> = serde_json::from_slice(&post.body).unwrap();
            for a in alerts
                .iter()
                .filter(|a| let_go.contains(a["labels"]["service"].as_str().unwrap_or("")))
            {
                let ends = unix_seconds(a["endsAt"].as_str().unwrap());
                assert!(
                    ends > at + 2.0,
                    "{} posted a resolved alert of a service it handed off: {a:#}",
                    gateways[g].name
                );
                if n > posted + 1 {
                    after_hand_off += 1;
                }
            }
        }
        assert_eq!(
            after_hand_off, 0,
            "{} re-sent alerts of {let_go:?} after handing them off",
            gateways[g].name
        );
    }
}
