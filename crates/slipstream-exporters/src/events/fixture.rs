//! Burn-rate events for the exporters' unit tests.

use std::collections::BTreeMap;
use std::time::Duration;

use slipstream_core::BurnRateEvent;
use slipstream_core::explain::ValueShare;
use slipstream_core::export::{EventState, ExampleTrace};

/// 2025-01-02T03:04:05Z in Unix nanoseconds.
pub(crate) const AT: u64 = 1_735_787_045_000_000_000;

/// A page-severity event of SLO `checkout-availability` on the 1h/5m row.
pub(crate) fn event(state: EventState) -> BurnRateEvent {
    let labels: BTreeMap<String, String> = [
        ("alertname", "SlipstreamBurnRate"),
        ("long_window", "1h"),
        ("owner", "payments"),
        ("service", "checkout"),
        ("severity", "page"),
        ("short_window", "5m"),
        ("slo", "checkout-availability"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let annotations = [
        ("summary", "checkout burns its error budget 20x"),
        ("runbook_url", "http://runbooks.example/checkout"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    BurnRateEvent {
        state,
        slo: "checkout-availability".to_owned(),
        service: "checkout".to_owned(),
        severity: "page".to_owned(),
        long_window: Duration::from_secs(3600),
        short_window: Duration::from_secs(300),
        factor: 14.4,
        objective: 0.999,
        long_burn_rate: Some(20.5),
        short_burn_rate: if state == EventState::Firing {
            Some(31.25)
        } else {
            None
        },
        budget_remaining: Some(0.75),
        versions: vec!["1.4.0".to_owned(), "1.5.0".to_owned()],
        newest_version: Some("1.5.0".to_owned()),
        newest_version_since: Some(AT - 600_000_000_000),
        repeat: false,
        at: AT,
        firing_since: AT - 120_000_000_000,
        labels,
        annotations,
        example_traces: Vec::new(),
        bad_requests_share: Vec::new(),
    }
}

/// [`event`] with two example requests and their `example_traces` annotation, linked as the
/// evaluator writes it with a trace URL template, and one value the bad requests share with
/// its `bad_requests_share` annotation.
pub(crate) fn event_with_example_traces(state: EventState) -> BurnRateEvent {
    let mut e = event(state);
    for n in [1u8, 2] {
        let x = slipstream_core::Exemplar::new(
            &[n; 16],
            &[n; 8],
            AT - u64::from(n),
            1_500_000_000,
            true,
        )
        .expect("valid ids");
        e.example_traces.push(ExampleTrace::linked(
            &x,
            Some("https://tempo.example/trace/{trace_id}"),
        ));
    }
    e.bad_requests_share = vec![ValueShare {
        attribute: "http.route".to_owned(),
        value: "/pay".to_owned(),
        bad_share: 0.92,
        all_share: 0.07,
        example: None,
    }];
    e.annotations.insert(
        "bad_requests_share".to_owned(),
        "http.route=/pay: 92% of bad, 7% of all".to_owned(),
    );
    e.annotations.insert(
        "example_traces".to_owned(),
        format!(
            "https://tempo.example/trace/{} (1.500s)\nhttps://tempo.example/trace/{} (1.500s)",
            "01".repeat(16),
            "02".repeat(16)
        ),
    );
    e
}

// === A recording HTTP server ===

/// One request the [`Recorder`] received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: bytes::Bytes,
    pub(crate) version: http::Version,
}

/// A local HTTP/1.1 and HTTP/2 (prior knowledge) server that records every request and
/// answers from a script of statuses, then 200 (gRPC requests get `grpc-status: 0`).
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub(crate) addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Recorder {
    pub(crate) async fn start(script: impl IntoIterator<Item = u16>) -> Recorder {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script).await
    }

    /// A recorder listening on `addr`.
    pub(crate) async fn start_on(
        addr: std::net::SocketAddr,
        script: impl IntoIterator<Item = u16>,
    ) -> Recorder {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let recorder = Recorder {
            addr: listener.local_addr().unwrap(),
            received: Default::default(),
            script: std::sync::Arc::new(std::sync::Mutex::new(script.into_iter().collect())),
        };
        let r = recorder.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let r = r.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let r = r.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let grpc = parts
                                .headers
                                .get(http::header::CONTENT_TYPE)
                                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                            r.received.lock().unwrap().push(Received {
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                                version: parts.version,
                            });
                            let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
                            let mut resp = http::Response::builder().status(status);
                            if grpc && status == 200 {
                                resp = resp
                                    .header("content-type", "application/grpc")
                                    .header("grpc-status", "0");
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
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
        recorder
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (at most 5 s) until `n` requests arrived, and returns them.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        let until = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < until,
                "timed out waiting for {n} requests; got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A delivery config with millisecond retries.
pub(crate) fn fast_retry() -> slipstream_config::forward::RetryConfig {
    slipstream_config::forward::RetryConfig {
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(20),
        max_elapsed_time: None,
    }
}
