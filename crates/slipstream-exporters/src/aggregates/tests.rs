use std::io::Read as _;
use std::time::Duration;

use prost::Message;
use slipstream_config::exporters::AggregatesConfig;
use slipstream_core::Registry;
use slipstream_core::aggregates::{
    ExportAggregatesRequest, HTTP_PATH, Header, Overflow, Series, Slot, Value, Version, value,
};
use slipstream_core::route::Rendezvous;

use super::{AggregatesExporter, Member, Outbox, pack};
use crate::events::fixture::{Received, Recorder, fast_retry};

fn header() -> Header {
    Header {
        slot_width_nanos: 60_000_000_000,
        histogram_layout: slipstream_core::aggregates::HISTOGRAM_LAYOUT.into(),
        histogram_max_value_nanos: 3_600_000_000_000,
        dimensions: vec!["service.name".into()],
        ..Header::default()
    }
}

fn config(endpoints: Vec<String>) -> AggregatesConfig {
    AggregatesConfig {
        endpoints,
        instance: Some("pod-a".into()),
        // The tests ship by hand.
        interval: Duration::from_secs(3600),
        retry: fast_retry(),
        ..AggregatesConfig::default()
    }
}

/// A slot as (start, total, bad, buckets).
type SlotSpec<'a> = (u64, u64, u64, &'a [(u32, u64)]);

fn series(service: &str, slots: &[SlotSpec<'_>]) -> Series {
    Series {
        key: vec![Value {
            value: Some(value::Value::StringValue(service.into())),
        }],
        overflow: Overflow::None as i32,
        slots: slots
            .iter()
            .map(|(start, total, bad, buckets)| Slot {
                start_unix_nanos: *start,
                total: *total,
                bad: *bad,
                bucket_indexes: buckets.iter().map(|b| b.0).collect(),
                bucket_counts: buckets.iter().map(|b| b.1).collect(),
                ..Slot::default()
            })
            .collect(),
        versions: Vec::new(),
    }
}

fn decode(r: &Received) -> ExportAggregatesRequest {
    let body = if r
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        r.body.to_vec()
    };
    ExportAggregatesRequest::decode(&body[..]).unwrap()
}

#[tokio::test]
async fn each_service_goes_to_the_gateway_that_owns_it() {
    let gateways = [Recorder::start([]).await, Recorder::start([]).await];
    let urls: Vec<String> = gateways.iter().map(Recorder::url).collect();
    let exporter =
        AggregatesExporter::start(&config(urls.clone()), header(), &Registry::new()).unwrap();
    let services: Vec<String> = (0..12).map(|i| format!("svc-{i}")).collect();
    exporter.add(
        services
            .iter()
            .map(|s| series(s, &[(60, 2, 1, &[(10, 2)])]))
            .collect(),
    );
    exporter.ship();
    let route = Rendezvous::for_endpoints(&urls);
    let mut seen = 0;
    let mut sequences = Vec::new();
    for (i, g) in gateways.iter().enumerate() {
        let owned: Vec<&String> = services
            .iter()
            .filter(|s| route.pick(s.as_bytes()) == Some(i))
            .collect();
        assert!(!owned.is_empty(), "12 services all on one of two gateways");
        let got = g.wait_for(1).await;
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(r.path, HTTP_PATH);
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert_eq!(r.headers["content-encoding"], "gzip");
        let req = decode(r);
        let h = req.header.unwrap();
        assert_eq!(h.instance, "pod-a");
        assert!(h.instance_started_unix_nanos > 0);
        assert_eq!(h.slot_width_nanos, 60_000_000_000);
        assert_eq!(h.dimensions, ["service.name"]);
        sequences.push(h.sequence);
        let mut names: Vec<&str> = req.series.iter().map(Series::service).collect();
        names.sort_unstable();
        let mut want: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        want.sort_unstable();
        assert_eq!(names, want);
        seen += names.len();
    }
    assert_eq!(seen, 12);
    sequences.sort_unstable();
    assert_eq!(sequences, [1, 2]);
    // Nothing new: nothing sent.
    exporter.ship();
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
    assert_eq!(
        gateways[0].received().len() + gateways[1].received().len(),
        2
    );
}

#[tokio::test]
async fn with_replicas_each_service_goes_to_its_highest_ranked_gateways() {
    let gateways = [
        Recorder::start([]).await,
        Recorder::start([]).await,
        Recorder::start([]).await,
    ];
    let urls: Vec<String> = gateways.iter().map(Recorder::url).collect();
    let cfg = AggregatesConfig {
        replicas: 2,
        ..config(urls.clone())
    };
    let exporter = AggregatesExporter::start(&cfg, header(), &Registry::new()).unwrap();
    let services: Vec<String> = (0..12).map(|i| format!("svc-{i}")).collect();
    exporter.add(
        services
            .iter()
            .map(|s| series(s, &[(60, 2, 1, &[(10, 2)])]))
            .collect(),
    );
    exporter.ship();
    let route = Rendezvous::for_endpoints(&urls);
    let mut copies = std::collections::BTreeMap::<String, usize>::new();
    for (i, g) in gateways.iter().enumerate() {
        let mut want: Vec<&str> = services
            .iter()
            .filter(|s| route.pick_n(s.as_bytes(), 2).contains(&i))
            .map(String::as_str)
            .collect();
        want.sort_unstable();
        // One request per pair of gateways holding the services that pair owns.
        let pairs: std::collections::BTreeSet<Vec<usize>> = services
            .iter()
            .map(|s| {
                let mut p = route.pick_n(s.as_bytes(), 2);
                p.sort_unstable();
                p
            })
            .filter(|p| p.contains(&i))
            .collect();
        let got = g.wait_for(pairs.len()).await;
        assert_eq!(got.len(), pairs.len());
        let mut names = Vec::new();
        let mut last_sequence = 0;
        for r in &got {
            let req = decode(r);
            let sequence = req.header.unwrap().sequence;
            assert!(sequence > last_sequence, "sequences rise per gateway");
            last_sequence = sequence;
            for s in &req.series {
                names.push(s.service().to_owned());
                *copies.entry(s.service().to_owned()).or_default() += 1;
                assert_eq!(s.slots[0].total, 2, "every replica gets the whole count");
            }
        }
        names.sort_unstable();
        assert_eq!(names, want, "gateway {i}");
    }
    assert_eq!(copies.len(), 12);
    assert!(copies.values().all(|&n| n == 2), "{copies:?}");
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);

    // More replicas than gateways: each gateway gets every service.
    let cfg = AggregatesConfig {
        replicas: 5,
        ..config(urls[..2].to_vec())
    };
    let exporter = AggregatesExporter::start(&cfg, header(), &Registry::new()).unwrap();
    let before: Vec<usize> = gateways.iter().map(|g| g.received().len()).collect();
    exporter.add(vec![series("checkout", &[(60, 1, 0, &[(10, 1)])])]);
    exporter.ship();
    for (g, n) in gateways[..2].iter().zip(&before) {
        let got = g.wait_for(n + 1).await;
        let req = decode(got.last().unwrap());
        assert_eq!(req.series.len(), 1);
        assert_eq!(req.series[0].service(), "checkout");
    }
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
    let after: Vec<usize> = gateways.iter().map(|g| g.received().len()).collect();
    assert_eq!(after, [before[0] + 1, before[1] + 1, before[2]]);
}

#[test]
fn the_outbox_sums_ticks_per_series_and_slot() {
    let mut outbox = Outbox::default();
    let mut a = series("cart", &[(60, 2, 1, &[(3, 1), (9, 1)])]);
    a.versions.push(Version {
        version: "1.1".into(),
        first_seen_unix_nanos: 70,
        last_seen_unix_nanos: 90,
    });
    let mut b = series(
        "cart",
        &[(60, 3, 0, &[(9, 2), (12, 1)]), (120, 1, 1, &[(4, 1)])],
    );
    b.versions.push(Version {
        version: "1.1".into(),
        first_seen_unix_nanos: 65,
        last_seen_unix_nanos: 80,
    });
    let mut overflow = series("cart", &[(60, 5, 0, &[(1, 5)])]);
    overflow.overflow = Overflow::Service as i32;
    outbox.add(vec![a, overflow.clone()]);
    outbox.add(vec![b]);
    let mut out = outbox.take();
    assert!(outbox.take().is_empty());
    out.sort_by_key(|s| s.overflow);
    assert_eq!(out.len(), 2);
    let mut want = series(
        "cart",
        &[
            (60, 5, 1, &[(3, 1), (9, 3), (12, 1)]),
            (120, 1, 1, &[(4, 1)]),
        ],
    );
    want.versions.push(Version {
        version: "1.1".into(),
        first_seen_unix_nanos: 65,
        last_seen_unix_nanos: 90,
    });
    assert_eq!(out[0], want);
    assert_eq!(out[1], overflow);
}

#[test]
fn large_shipments_are_cut_into_requests_within_the_limit() {
    let buckets: Vec<(u32, u64)> = (0..600).map(|b| (b * 5, 300)).collect();
    let slots: Vec<SlotSpec<'_>> = (0..40)
        .map(|i| (i * 60, 180_000, 1, &buckets[..]))
        .collect();
    let mut big = series("big", &slots);
    big.versions.push(Version {
        version: "2".into(),
        first_seen_unix_nanos: 5,
        last_seen_unix_nanos: 5,
    });
    let small: Vec<Series> = (0..50)
        .map(|i| series(&format!("s{i}"), &[(0, 1, 0, &[(1, 1)])]))
        .collect();
    let mut all = small.clone();
    all.push(big.clone());
    let max = 64 * 1024;
    let batches = pack(all, max, usize::MAX);
    assert!(batches.len() > 1);
    for b in &batches {
        let size: usize = b.iter().map(|s| s.encoded_len() + 8).sum();
        assert!(size <= max, "{size}");
    }
    let parts: Vec<&Series> = batches.iter().flatten().collect();
    let total: u64 = parts.iter().flat_map(|s| &s.slots).map(|s| s.total).sum();
    assert_eq!(total, 50 + 40 * 180_000);
    let versions: Vec<&Version> = parts.iter().flat_map(|s| &s.versions).collect();
    assert_eq!(versions, [&big.versions[0]]);
    assert!(pack(Vec::new(), max, usize::MAX).is_empty());
    // The series limit cuts too: 50 small series at most 16 a request.
    let by_count = pack(small.clone(), max, 16);
    let sizes: Vec<usize> = by_count.iter().map(Vec::len).collect();
    assert_eq!(sizes, [16, 16, 16, 2]);
    assert_eq!(by_count.concat(), small);
    assert_eq!(pack(small.clone(), max, usize::MAX), [small]);
}

#[tokio::test]
async fn the_token_is_sent_and_a_gateway_refusing_it_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  s1decar-t0ken\n").unwrap();
    // 401 (token not taken) and 403 (sender not listed): each dropped at once, counted.
    let gateway = Recorder::start([401, 403, 200]).await;
    let registry = Registry::new();
    let mut cfg = config(vec![gateway.url()]);
    cfg.bearer_token_file = Some(file);
    let exporter = AggregatesExporter::start(&cfg, header(), &registry).unwrap();
    for i in 0..3 {
        exporter.add(vec![series("cart", &[(i * 60, 1, 0, &[(1, 1)])])]);
        exporter.ship();
        gateway.wait_for(i as usize + 1).await;
    }
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
    let got = gateway.received();
    assert_eq!(got.len(), 3, "no request was retried");
    for r in &got {
        assert_eq!(r.headers["authorization"], "Bearer s1decar-t0ken");
    }
    let value = |name: &str, labels: &[&str]| registry.value(name, labels);
    assert_eq!(
        value(
            "slipstream_exporter_dropped_total",
            &["aggregates", "rejected"]
        ),
        Some(2)
    );
    assert_eq!(
        value("slipstream_exporter_sent_total", &["aggregates"]),
        Some(1)
    );

    // A token file that cannot be read stops the start, naming the field.
    cfg.bearer_token_file = Some(dir.path().join("missing"));
    let e = AggregatesExporter::start(&cfg, header(), &Registry::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("exporters.aggregates.bearer_token_file"), "{e}");
}

#[tokio::test]
async fn a_busy_gateway_is_retried_and_a_refusal_dropped_and_counted() {
    let gateway = Recorder::start([503, 200, 400]).await;
    let registry = Registry::new();
    let mut cfg = config(vec![gateway.url()]);
    cfg.gzip = false;
    let exporter = AggregatesExporter::start(&cfg, header(), &registry).unwrap();
    exporter.add(vec![series("cart", &[(0, 1, 0, &[(1, 1)])])]);
    exporter.ship();
    let got = gateway.wait_for(2).await;
    assert_eq!(got[0].body, got[1].body, "the retry sends the same request");
    assert!(got[0].headers.get("content-encoding").is_none());
    assert_eq!(decode(&got[1]).header.unwrap().sequence, 1);
    exporter.add(vec![series("cart", &[(0, 1, 0, &[(1, 1)])])]);
    exporter.ship();
    let got = gateway.wait_for(3).await;
    assert_eq!(decode(&got[2]).header.unwrap().sequence, 2);
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
    let value = |name: &str, labels: &[&str]| registry.value(name, labels);
    assert_eq!(
        value("slipstream_exporter_sent_total", &["aggregates"]),
        Some(1)
    );
    assert_eq!(
        value(
            "slipstream_exporter_failures_total",
            &["aggregates", "http_status"]
        ),
        Some(2)
    );
    assert_eq!(
        value(
            "slipstream_exporter_dropped_total",
            &["aggregates", "rejected"]
        ),
        Some(1)
    );
}

#[tokio::test]
async fn shutdown_ships_what_the_outbox_holds() {
    let gateway = Recorder::start([]).await;
    let exporter =
        AggregatesExporter::start(&config(vec![gateway.url()]), header(), &Registry::new())
            .unwrap();
    exporter.add(vec![series("cart", &[(0, 3, 0, &[(1, 3)])])]);
    assert_eq!(exporter.shutdown(Duration::from_secs(5)).await, 0);
    let got = gateway.received();
    assert_eq!(got.len(), 1);
    assert_eq!(decode(&got[0]).observations(), 3);
}

#[tokio::test]
async fn a_dns_name_ships_to_every_gateway_it_resolves_to() {
    // `gateways.slipstream.test` is 127.0.0.2 and 127.0.0.3 (scripts/test-deps.sh puts them in
    // /etc/hosts): one gateway on each, on one port, like pods behind a headless Service.
    let first = Recorder::start_on("127.0.0.2:0".parse().unwrap(), []).await;
    let port = first.addr.port();
    let second = Recorder::start_on(format!("127.0.0.3:{port}").parse().unwrap(), []).await;
    let cfg = AggregatesConfig {
        endpoints: Vec::new(),
        dns: Some(format!("http://gateways.slipstream.test:{port}")),
        ..config(Vec::new())
    };
    let exporter = AggregatesExporter::start(&cfg, header(), &Registry::new()).unwrap();
    let services: Vec<String> = (0..16).map(|i| format!("svc-{i}")).collect();
    exporter.add(
        services
            .iter()
            .map(|s| series(s, &[(60, 1, 0, &[(10, 1)])]))
            .collect(),
    );
    // Until the first lookup is done the outbox waits; then one shipment reaches both.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while first.received().is_empty() && second.received().is_empty() {
        assert!(std::time::Instant::now() < until, "nothing shipped");
        exporter.ship();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (a, b) = (first.wait_for(1).await, second.wait_for(1).await);
    let mut names: Vec<String> = a
        .iter()
        .chain(&b)
        .flat_map(|r| decode(r).series)
        .map(|s| s.service().to_owned())
        .collect();
    names.sort();
    let mut want = services.clone();
    want.sort();
    assert_eq!(names, want, "every service once, over both gateways");
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
}

#[test]
fn the_outbox_keeps_one_bounded_set_of_exemplars_per_slot() {
    let ex = |n: u8, dur: u64, bad: bool| slipstream_core::aggregates::Exemplar {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        end_unix_nanos: 60 + u64::from(n),
        duration_nanos: dur,
        bad,
    };
    let mut outbox = Outbox::default();
    for (tick, exemplars) in [
        vec![ex(1, 10, true), ex(2, 50, false)],
        // Sent again whole with two more: each request is kept once.
        vec![
            ex(1, 10, true),
            ex(2, 50, false),
            ex(3, 40, true),
            ex(4, 5, false),
        ],
        vec![ex(5, 1, true)],
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = series("cart", &[(60, 1 + tick as u64, 0, &[(3, 1 + tick as u64)])]);
        s.slots[0].exemplars = exemplars;
        outbox.add(vec![s]);
    }
    let shipped = outbox.take();
    let kept: Vec<(u8, bool)> = shipped[0].slots[0]
        .exemplars
        .iter()
        .map(|e| (e.trace_id[0], e.bad))
        .collect();
    // The two most recent bad (5, then 3), the two slowest (2, then 3 again: listed once).
    assert_eq!(kept, [(5, true), (3, true), (2, false)]);
}

/// The services each gateway got since `from[i]` requests, by gateway index.
fn services_at(gateways: &[&Recorder], from: &[usize]) -> Vec<Vec<String>> {
    gateways
        .iter()
        .zip(from)
        .map(|(g, &n)| {
            let mut names: Vec<String> = g.received()[n..]
                .iter()
                .flat_map(|r| decode(r).series)
                .map(|s| s.service().to_owned())
                .collect();
            names.sort();
            names
        })
        .collect()
}

#[tokio::test]
async fn a_gateway_that_changes_address_but_not_name_keeps_its_services() {
    let (a, b, c) = (
        Recorder::start([]).await,
        Recorder::start([]).await,
        Recorder::start([]).await,
    );
    // `gw-1` restarts on a new address (a StatefulSet pod's new IP): a new recorder.
    let b2 = Recorder::start([]).await;
    let exporter =
        AggregatesExporter::start(&config(vec![a.url()]), header(), &Registry::new()).unwrap();
    let member = |key: &str, g: &Recorder| Member {
        key: key.into(),
        url: g.url(),
    };
    let services: Vec<String> = (0..30).map(|i| format!("svc-{i}")).collect();
    let ship = |exporter: &AggregatesExporter| {
        exporter.add(
            services
                .iter()
                .map(|s| series(s, &[(60, 1, 0, &[(10, 1)])]))
                .collect(),
        );
        exporter.ship();
    };
    let wait_all = async |gateways: &[&Recorder], from: &[usize]| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = services_at(gateways, from);
            if got.iter().map(Vec::len).sum::<usize>() == services.len() {
                return got;
            }
            assert!(std::time::Instant::now() < until, "shipped so far: {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // Ships every service to gw-0, `gw1` and gw-2; what each got since `from`.
    let round = async |gw1: &Recorder, from: [usize; 3]| {
        let members = vec![member("gw-0", &a), member("gw-1", gw1), member("gw-2", &c)];
        exporter.shared.set_members(members).unwrap();
        ship(&exporter);
        wait_all(&[&a, gw1, &c], &from).await
    };
    let before = round(&b, [0, 0, 0]).await;
    assert!(before.iter().all(|s| !s.is_empty()), "{before:?}");
    let seen: Vec<usize> = [&a, &c].iter().map(|g| g.received().len()).collect();
    let after = round(&b2, [seen[0], 0, seen[1]]).await;
    assert_eq!(after, before, "every service stays with the same name");
    assert_eq!(exporter.shutdown(Duration::from_secs(1)).await, 0);
}

#[tokio::test]
async fn a_reload_takes_a_scaled_statefulset_or_new_endpoints_and_replicas() {
    let gateways = [
        Recorder::start([]).await,
        Recorder::start([]).await,
        Recorder::start([]).await,
    ];
    let urls: Vec<String> = gateways.iter().map(Recorder::url).collect();
    let cfg = config(urls[..2].to_vec());
    let exporter = AggregatesExporter::start(&cfg, header(), &Registry::new()).unwrap();
    let services: Vec<String> = (0..12).map(|i| format!("svc-{i}")).collect();
    // Scale up from two gateways to three, each service to two of them.
    let scaled = AggregatesConfig {
        endpoints: urls.clone(),
        replicas: 2,
        ..cfg.clone()
    };
    assert!(cfg.same_apart_from_gateways(&scaled));
    exporter.reload(&scaled).unwrap();
    exporter.add(
        services
            .iter()
            .map(|s| series(s, &[(60, 1, 0, &[(10, 1)])]))
            .collect(),
    );
    exporter.ship();
    let route = Rendezvous::for_endpoints(&urls);
    let refs: Vec<&Recorder> = gateways.iter().collect();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let want: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let mut w: Vec<String> = services
                .iter()
                .filter(|s| route.pick_n(s.as_bytes(), 2).contains(&i))
                .cloned()
                .collect();
            w.sort();
            w
        })
        .collect();
    loop {
        let got = services_at(&refs, &[0, 0, 0]);
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < until, "{got:?} != {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A StatefulSet: each pod at its stable name, ranked by its pod name; scaling it keeps
    // the queues of the pods that stay.
    let mut statefulset = slipstream_config::forward::StatefulSetConfig {
        name: "gw".into(),
        service: "gw-headless".into(),
        namespace: Some("observability".into()),
        replicas: 3,
        port: 4318,
        ..Default::default()
    };
    let sts = |s: &slipstream_config::forward::StatefulSetConfig| AggregatesConfig {
        endpoints: Vec::new(),
        statefulset: Some(s.clone()),
        ..cfg.clone()
    };
    exporter.reload(&sts(&statefulset)).unwrap();
    let members = exporter.shared.gateways().members.clone();
    let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["gw-0", "gw-1", "gw-2"]);
    assert_eq!(
        members[0].url,
        "http://gw-0.gw-headless.observability.svc:4318"
    );
    assert_eq!(
        exporter.shared.gateways().route,
        Rendezvous::new(&["gw-0", "gw-1", "gw-2"])
    );
    statefulset.replicas = 4;
    exporter.reload(&sts(&statefulset)).unwrap();
    let keys: Vec<String> = exporter
        .shared
        .gateways()
        .members
        .iter()
        .map(|m| m.key.clone())
        .collect();
    assert_eq!(keys, ["gw-0", "gw-1", "gw-2", "gw-3"]);
    assert_eq!(super::lock(&exporter.shared.deliveries).len(), 4);
    // A name that is no URL fails, and the gateways in use stay.
    let bad = AggregatesConfig {
        dns: Some("gateways:4318".into()),
        ..sts(&statefulset)
    };
    assert!(exporter.reload(&bad).is_err());
    assert_eq!(exporter.shared.gateways().members.len(), 4);
    // Nothing listens at the pods' names: what is queued for them is dropped at shutdown.
    exporter.shutdown(Duration::from_millis(100)).await;
}
