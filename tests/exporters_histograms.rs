//! Latency histograms of two slipstreams add up in a real Prometheus: the 0.99 quantile of
//! their sum is within 1% of the exact 0.99 quantile of every span sent, from the classic
//! buckets (text scrape) and from the native histograms (protobuf scrape).
//!
//! Two slipstreams (two pods of one service) get different latency distributions. One
//! Prometheus scrapes both in the text format (classic `_bucket` series), a second one with
//! `--enable-feature=native-histograms` scrapes them in the protobuf format (native
//! histograms; Prometheus 2.42 then ingests the native histogram and not the classic buckets of
//! the same family).
//!
//! What each assertion claims, and why it is honest:
//!
//! - Classic counts are exact at every bound, and both pods write every bound: the summed
//!   `_bucket` counts equal the counts computed here from the values sent, and
//!   `histogram_quantile` of the raw sum equals (to 1e-9) Prometheus' linear interpolation
//!   over those exact counts. That is all a classic histogram can promise: between two bounds
//!   Prometheus assumes the values are spread evenly. So the traffic is spread evenly over whole
//!   classic buckets (each pod's values evenly spaced between two adjacent bounds), and only
//!   then is "within 1% of the exact quantile" a claim about slipstream's counts rather than
//!   about the shape of the traffic. Traffic bunched inside a bucket would be off by up to the
//!   bucket's width with exact counts.
//! - Native: each of slipstream's log-linear buckets lands whole in the schema-8 bucket holding
//!   its midpoint, so a quantile is off by at most half a log-linear bucket plus a schema-8
//!   bucket (1/128 + 0.27%), for any traffic.
//! - `rate()` extrapolates each pod's increase by its own factor (the time from its last scrape
//!   to the evaluation, over the sampled interval), so the sum weighs the pods slightly
//!   unevenly; both pods put a similar share of their traffic into the bucket holding the
//!   quantile, so that moves it by far less than the tolerance. The exact quantile of the
//!   `rate()` queries is over the spans sent after Prometheus' first sample (the increase
//!   `rate()` sees); the raw queries are over every span.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use slipstream_e2e::otlp::{export, kv, request, server_span};
use slipstream_e2e::procs::Prometheus;
use slipstream_e2e::{start, test_config};

/// The default bounds as exported: each the nearest edge of slipstream's buckets (ns).
const EDGES: [u64; 11] = [
    4_980_735,
    9_961_471,
    24_903_679,
    49_807_359,
    99_614_719,
    249_561_087,
    499_122_175,
    998_244_351,
    2_516_582_399,
    5_033_164_799,
    10_066_329_599,
];

const SELECTOR: &str = r#"{service_name="checkout"}"#;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` values evenly spaced over `(lo, hi]` nanoseconds, the last at `hi`.
fn evenly(lo: u64, hi: u64, n: u64) -> Vec<u64> {
    (1..=n).map(|k| lo + k * (hi - lo) / n).collect()
}

/// Server spans of `checkout` taking `latencies` (ns), ending a second ago, in requests of
/// at most 500 spans.
fn requests(latencies: &[u64]) -> Vec<ExportTraceServiceRequest> {
    let end = now_nanos() - 1_000_000_000;
    latencies
        .chunks(500)
        .enumerate()
        .map(|(c, chunk)| {
            let spans = chunk
                .iter()
                .enumerate()
                .map(|(i, &latency)| {
                    let id = (c * 500 + i) as u64 + 1;
                    let trace_id = [id.to_be_bytes(), [7; 8]].concat();
                    let span_id = id.to_be_bytes().to_vec();
                    server_span(trace_id, span_id, "GET /cart", end - latency, end)
                })
                .collect();
            request(vec![kv("service.name", "checkout")], spans)
        })
        .collect()
}

async fn send(app: &slipstream_app::app::App, latencies: &[u64]) {
    for req in requests(latencies) {
        export(app.http_addr.unwrap(), &req).await;
    }
    app.step().await;
}

/// The exact nearest-rank quantile `q` of `values` (ns).
fn exact_quantile(values: &[u64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1e9
}

/// What Prometheus' `histogram_quantile` computes from classic buckets with these exact
/// cumulative counts (linear interpolation within the bucket holding rank `q * total`).
fn classic_interpolation(values: &[u64], q: f64) -> f64 {
    let total = values.len() as f64;
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &e in &EDGES {
        let count = values.iter().filter(|&&v| v <= e).count() as f64;
        let upper = e as f64 / 1e9;
        if count >= rank {
            return lower.0 + (upper - lower.0) * (rank - lower.1) / (count - lower.1);
        }
        lower = (upper, count);
    }
    lower.0
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

/// Waits until `promql` on `prom` gives two results (one per pod) with these values, in
/// either order.
async fn wait_for_pods(prom: &Prometheus, promql: &str, want: [f64; 2]) {
    let mut w = want.to_vec();
    w.sort_by(f64::total_cmp);
    prom.wait_for(promql, Duration::from_secs(30), |got| {
        let mut values: Vec<f64> = got.iter().map(|r| r.1).collect();
        values.sort_by(f64::total_cmp);
        values == w
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quantile_of_two_slipstreams_summed_is_within_1_percent_classic_and_native() {
    let config = || {
        test_config(
            None,
            "aggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  templates: { availability: null, latency: null }\n",
        )
    };
    let (a, b) = (start(config()).await, start(config()).await);
    let targets: Vec<SocketAddr> = [&a, &b]
        .iter()
        .map(|app| app.prometheus_addr.unwrap())
        .collect();
    let classic = Prometheus::start(&targets).await;
    let native = Prometheus::start_with(&targets, &["--enable-feature=native-histograms"]).await;

    // Pod a: 3,000 spans evenly over the 25-50 ms bucket, 200 over 250-500 ms. Pod b: 2,000
    // over 50-100 ms, 300 over 250-500 ms. The 0.99 quantile lies in the 250-500 ms bucket,
    // which both pods fill evenly.
    let [_, _, e25, e50, e100, e250, e500, ..] = EDGES;
    let a_main: Vec<u64> = [evenly(e25, e50, 3000), evenly(e250, e500, 200)].concat();
    let b_main: Vec<u64> = [evenly(e50, e100, 2000), evenly(e250, e500, 300)].concat();
    // One span each first, so that Prometheus' first sample precedes the main traffic and
    // rate() sees all of it.
    let (a_first, b_first) = (30_000_000u64, 60_000_000u64);
    send(&a, &[a_first]).await;
    send(&b, &[b_first]).await;
    let count_classic = format!("slipstream_sli_latency_seconds_count{SELECTOR}");
    let count_native = format!("histogram_count(slipstream_sli_latency_seconds{SELECTOR})");
    wait_for_pods(&classic, &count_classic, [1.0, 1.0]).await;
    wait_for_pods(&native, &count_native, [1.0, 1.0]).await;

    send(&a, &a_main).await;
    send(&b, &b_main).await;
    let (na, nb) = (a_main.len() as f64 + 1.0, b_main.len() as f64 + 1.0);
    wait_for_pods(&classic, &count_classic, [na, nb]).await;
    wait_for_pods(&native, &count_native, [na, nb]).await;

    let main: Vec<u64> = [a_main.clone(), b_main.clone()].concat();
    let all: Vec<u64> = [main.clone(), vec![a_first, b_first]].concat();
    let exact_main = exact_quantile(&main, 0.99);
    let exact_all = exact_quantile(&all, 0.99);

    // Classic: both pods write every bound, and the summed counts are exact at each.
    let per_le = classic
        .query(&format!(
            "count by (le) (slipstream_sli_latency_seconds_bucket{SELECTOR})"
        ))
        .await;
    assert_eq!(per_le.len(), EDGES.len() + 1, "{per_le:?}");
    assert!(per_le.iter().all(|r| r.1 == 2.0), "{per_le:?}");
    let summed = classic
        .query(&format!(
            "sum by (le) (slipstream_sli_latency_seconds_bucket{SELECTOR})"
        ))
        .await;
    for &e in &EDGES {
        let le = e as f64 / 1e9;
        let got = summed
            .iter()
            .find(|r| r.0["le"].as_str().unwrap().parse::<f64>().unwrap() == le)
            .unwrap_or_else(|| panic!("no le={le} in {summed:?}"));
        let want = all.iter().filter(|&&v| v <= e).count() as f64;
        assert_eq!(got.1, want, "le={le}");
    }
    let raw = classic
        .query(&format!(
            "histogram_quantile(0.99, sum by (le) (slipstream_sli_latency_seconds_bucket{SELECTOR}))"
        ))
        .await[0]
        .1;
    let interpolated = classic_interpolation(&all, 0.99);
    assert!(within(raw, interpolated, 1e-9), "{raw} vs {interpolated}");
    assert!(within(raw, exact_all, 0.01), "{raw} vs exact {exact_all}");
    let rate = classic
        .query(&format!(
            "histogram_quantile(0.99, sum by (le) (rate(slipstream_sli_latency_seconds_bucket{SELECTOR}[5m])))"
        ))
        .await[0]
        .1;
    assert!(
        within(rate, exact_main, 0.01),
        "classic rate: {rate} vs exact {exact_main}"
    );

    // Native.
    let raw = native
        .query(&format!(
            "histogram_quantile(0.99, sum(slipstream_sli_latency_seconds{SELECTOR}))"
        ))
        .await[0]
        .1;
    assert!(
        within(raw, exact_all, 0.01),
        "native: {raw} vs exact {exact_all}"
    );
    let rate = native
        .query(&format!(
            "histogram_quantile(0.99, sum(rate(slipstream_sli_latency_seconds{SELECTOR}[5m])))"
        ))
        .await[0]
        .1;
    assert!(
        within(rate, exact_main, 0.01),
        "native rate: {rate} vs exact {exact_main}"
    );
    eprintln!(
        "p99 exact {exact_main:.6} s (all spans {exact_all:.6} s); classic raw {interpolated:.6}, native raw {raw:.6}, native rate {rate:.6}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_endpoint_writes_the_configured_bounds_and_offers_protobuf_as_configured() {
    const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,text/plain;version=0.0.4;q=0.5";
    let scrape = |app: &slipstream_app::app::App| {
        let addr = app.prometheus_addr.unwrap();
        async move {
            slipstream_e2e::raw::request_http(
                addr,
                "GET",
                "/metrics",
                &[("accept", PROTOBUF)],
                vec![],
            )
            .await
        }
    };
    let config = |native: bool| {
        let mut cfg = test_config(
            None,
            "aggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  templates: { availability: null, latency: null }\n",
        );
        cfg.exporters.prometheus.histogram.boundaries =
            vec![Duration::from_millis(20), Duration::from_millis(300)];
        cfg.exporters.prometheus.native_histograms = native;
        cfg
    };
    let plain = start(config(false)).await;
    send(&plain, &[19_922_943, 19_922_944, 299_000_000]).await;
    let r = scrape(&plain).await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("slipstream_sli_latency_seconds_bucket"))
        .collect();
    // 20 ms is the edge 19.922943 ms, 300 ms the edge 301.989887 ms.
    assert_eq!(buckets.len(), 3, "{text}");
    assert!(
        buckets[0].contains("le=\"0.019922943\"") && buckets[0].ends_with(" 1"),
        "{text}"
    );
    assert!(
        buckets[1].contains("le=\"0.301989887\"") && buckets[1].ends_with(" 3"),
        "{text}"
    );
    assert!(
        buckets[2].contains("le=\"+Inf\"") && buckets[2].ends_with(" 3"),
        "{text}"
    );
    plain.shutdown().await;

    let native = start(config(true)).await;
    send(&native, &[19_922_943]).await;
    let r = scrape(&native).await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        )
    );
    assert!(!r.body.is_empty());
    native.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_by_remote_write_give_the_quantile_within_1_percent() {
    let prom = Prometheus::start_with(&[], &["--enable-feature=native-histograms"]).await;
    let mut cfg = test_config(
        None,
        "aggregator:\n  tick_interval: 1s\nslo:\n  evaluation_interval: 1s\n  templates: { availability: null, latency: null }\n",
    );
    cfg.exporters.remote_write = Some(slipstream_config::exporters::RemoteWriteConfig {
        endpoint: prom.remote_write_url(),
        interval: Duration::from_millis(500),
        native_histograms: true,
        ..Default::default()
    });
    let app = start(cfg).await;
    // Latencies spread over 1 ms to 2 s, denser at the low end.
    let values: Vec<u64> = (1..=4000u64).map(|i| 1_000_000 + i * i * 125).collect();
    send(&app, &values).await;
    let count = format!("histogram_count(slipstream_sli_latency_seconds{SELECTOR})");
    prom.wait_for(&count, Duration::from_secs(30), |got| {
        got.first().is_some_and(|r| r.1 == values.len() as f64)
    })
    .await;
    // No classic series: native samples replace them.
    let classic = prom
        .query(&format!(
            "count(slipstream_sli_latency_seconds_bucket{SELECTOR})"
        ))
        .await;
    assert!(classic.is_empty(), "{classic:?}");
    for q in [0.5, 0.9, 0.99] {
        let got = prom
            .query(&format!(
                "histogram_quantile({q}, sum(slipstream_sli_latency_seconds{SELECTOR}))"
            ))
            .await[0]
            .1;
        let exact = exact_quantile(&values, q);
        assert!(within(got, exact, 0.01), "p{q}: {got} vs exact {exact}");
    }
    app.shutdown().await;
}
