//! Exemplars against a real Prometheus (the Debian package, with
//! `--enable-feature=exemplar-storage`): it scrapes slipstream's SLI endpoint in OpenMetrics,
//! and its exemplar query API gives back the trace ids of the requests the test sent, the
//! failing ones on the errors counter.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::Status;
use slipstream_e2e::otlp::{export, kv, request, server_span};
use slipstream_e2e::procs::{Prometheus, urlencode};
use slipstream_e2e::{eventually_async, http_get, start, test_config};

const MS: u64 = 1_000_000;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The trace ids (hex) of the exemplars Prometheus stored for the series of `query` over the
/// last hour.
async fn exemplar_trace_ids(prom: &Prometheus, query: &str) -> Result<BTreeSet<String>, String> {
    let now = now_nanos() / 1_000_000_000;
    let path = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        urlencode(query),
        now - 3600,
        now + 3600
    );
    let (status, body) = http_get(prom.addr, &path).await;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
        .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_trace_ids_of_the_requests_sent() {
    let cfg = test_config(
        None,
        "aggregator:
  tick_interval: 1s
slo:
  evaluation_interval: 1s
",
    );
    let prom = Prometheus::start_with(&[], &["--enable-feature=exemplar-storage"]).await;
    let app = start(cfg).await;
    prom.set_targets(&[app.prometheus_addr.unwrap()]);

    // Three rounds of four requests, one of them failing; each round's failing request is
    // the most recent bad one when Prometheus next scrapes, so the errors counter carries it.
    let mut sent = BTreeSet::new();
    let mut failed = BTreeSet::new();
    for round in 0..3u8 {
        let end = now_nanos();
        let spans = (0..4u8)
            .map(|i| {
                let n = round * 4 + i + 1;
                let mut s = server_span(
                    vec![n; 16],
                    vec![n; 8],
                    "GET /cart",
                    end - 300 * MS - u64::from(i) * 50 * MS,
                    end - u64::from(3 - i) * MS,
                );
                if i == 2 {
                    s.status = Some(Status {
                        code: 2,
                        ..Default::default()
                    });
                    failed.insert(format!("{n:02x}").repeat(16));
                }
                sent.insert(format!("{n:02x}").repeat(16));
                s
            })
            .collect();
        export(
            app.http_addr.unwrap(),
            &request(vec![kv("service.name", "cart")], spans),
        )
        .await;
        app.step().await;
        let want = format!("{:02x}", round * 4 + 3).repeat(16);
        let what = format!("round {round}: the failing request's trace id on the errors counter");
        eventually_async(&what, Duration::from_secs(30), || {
            let (prom, want) = (&prom, want.clone());
            async move {
                let ids = exemplar_trace_ids(prom, "slipstream_sli_errors_total").await?;
                if ids.contains(&want) {
                    Ok(ids)
                } else {
                    Err(format!(
                        "{ids:?}; log: {}",
                        prom.log().lines().last().unwrap_or("")
                    ))
                }
            }
        })
        .await;
    }

    // Every exemplar Prometheus holds is a request the test sent; the errors counter's are
    // the failing ones, all three of them.
    let errors = exemplar_trace_ids(&prom, "slipstream_sli_errors_total")
        .await
        .unwrap();
    assert_eq!(errors, failed);
    let all = exemplar_trace_ids(&prom, r#"{__name__=~"slipstream_sli_.+"}"#)
        .await
        .unwrap();
    assert!(all.is_subset(&sent), "{all:?} not all in {sent:?}");
    assert!(all.len() > errors.len(), "{all:?}");
    // The latency histogram's buckets carry them too.
    let buckets = exemplar_trace_ids(&prom, "slipstream_sli_latency_seconds_bucket")
        .await
        .unwrap();
    assert!(!buckets.is_empty());
    assert!(buckets.is_subset(&sent));
}
