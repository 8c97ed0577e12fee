//! `exporters`: where SLI series and burn-rate events go.
//!
//! Every exporter is off unless configured, except the Prometheus pull endpoint. Push
//! exporters share [`DeliveryConfig`]: a bounded queue, a timeout and retries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::forward::{ForwardProtocol, RetryConfig, StatefulSetConfig};
use crate::tls::{ClientTlsConfig, check_tls_scheme};
use crate::{ByteSize, Errors, check_socket_addr};

/// Default listen address of the Prometheus pull endpoint.
pub const DEFAULT_PROMETHEUS_ENDPOINT: &str = "0.0.0.0:8889";
/// Default upper bounds of the classic latency histogram buckets: Prometheus' default ladder,
/// 5 ms to 10 s. Each is exported as the nearest edge of slipstream's own buckets
/// ([`slipstream_core::export::nearest_latency_edge`]), e.g. 100 ms as `le="0.099614719"`.
pub const DEFAULT_HISTOGRAM_BOUNDARIES: [Duration; 11] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
/// Most classic histogram boundaries (each is one more series per histogram).
pub const MAX_HISTOGRAM_BOUNDARIES: usize = 100;
/// Default of `exporters.prometheus.native_histograms`: answer a protobuf scrape with native
/// histograms.
pub const DEFAULT_PROMETHEUS_NATIVE_HISTOGRAMS: bool = true;
/// Default of `exporters.remote_write.native_histograms`: classic `_bucket` series only.
pub const DEFAULT_REMOTE_WRITE_NATIVE_HISTOGRAMS: bool = false;
/// Default interval between pushes of SLI series (remote write, OTLP metrics).
pub const DEFAULT_PUSH_INTERVAL: Duration = Duration::from_secs(15);
/// Default interval at which firing alerts are re-sent to Alertmanager.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
/// Default number of batches (or events) a push exporter holds while its target is slow.
pub const DEFAULT_EXPORT_QUEUE_SIZE: usize = 1024;
/// Default time allowed for one push.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default header carrying the webhook signature.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Slipstream-Signature";
/// Default interval between shipments of partial aggregates to the gateways.
pub const DEFAULT_AGGREGATES_INTERVAL: Duration = Duration::from_secs(10);
/// Default largest request of partial aggregates (before compression); a larger shipment
/// is split.
pub const DEFAULT_AGGREGATES_MAX_REQUEST_SIZE: ByteSize = ByteSize::mib(4);
/// Default largest number of series in one request of partial aggregates (the gateway's
/// `receivers.otlp.aggregates.max_series_per_request` default).
pub const DEFAULT_AGGREGATES_MAX_SERIES_PER_REQUEST: usize = 10_000;
/// Default number of gateways each service's partial aggregates go to.
pub const DEFAULT_AGGREGATES_REPLICAS: usize = 1;
/// Default name of the label `exporters.replica_label` adds to pushed SLI series.
pub const DEFAULT_REPLICA_LABEL_NAME: &str = "replica";

/// `exporters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExportersConfig {
    /// SLI series on a Prometheus scrape endpoint.
    pub prometheus: PrometheusConfig,
    /// SLI series pushed with Prometheus remote write; `null` (default) is off.
    pub remote_write: Option<RemoteWriteConfig>,
    /// SLI series pushed as OTLP metrics; `null` (default) is off.
    pub otlp_metrics: Option<OtlpExportConfig>,
    /// Burn-rate events posted to Alertmanager; `null` (default) is off.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Burn-rate events posted as JSON to a webhook; `null` (default) is off.
    pub webhook: Option<WebhookConfig>,
    /// Burn-rate events sent as OTLP log records; `null` (default) is off.
    pub otlp_logs: Option<OtlpExportConfig>,
    /// Burn-rate events written to stdout as JSON lines.
    pub stdout: StdoutConfig,
    /// Two-tier mode: partial aggregates shipped to gateways; `null` (default) is off.
    pub aggregates: Option<AggregatesConfig>,
    /// A label naming this slipstream on the SLI series it pushes (remote write, OTLP
    /// metrics), so that the series of replicated gateways stay apart and Prometheus-side
    /// deduplication can drop it; `null` (default) adds none.
    pub replica_label: Option<ReplicaLabelConfig>,
}

/// `exporters.replica_label`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaLabelConfig {
    /// The label's name (Prometheus-safe: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`);
    /// it replaces a series label of the same name.
    pub name: String,
    /// Its value; `null` takes the `HOSTNAME` environment variable (the pod name on
    /// Kubernetes), else the host name.
    pub value: Option<String>,
}

impl Default for ReplicaLabelConfig {
    fn default() -> Self {
        ReplicaLabelConfig {
            name: DEFAULT_REPLICA_LABEL_NAME.to_owned(),
            value: None,
        }
    }
}

/// Metric names of the SLO series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetricNaming {
    /// `slipstream_slo_*` names.
    #[default]
    Slipstream,
    /// Sloth's recording-rule names (`slo:sli_error:ratio_rate5m`, ...) with `sloth_*` labels,
    /// besides the `slipstream_*` names, so Sloth's dashboards work unchanged.
    Sloth,
}

/// `exporters.prometheus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Listen address of the scrape endpoint (`/metrics`); `null` turns it off.
    pub endpoint: Option<String>,
    /// `slipstream` or `sloth` (adds Sloth-compatible series).
    pub naming: MetricNaming,
    /// The classic buckets of latency histograms.
    pub histogram: HistogramExportConfig,
    /// Answer a scraper that asks for the protobuf format
    /// (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily`, Prometheus
    /// with native histograms on) with native histograms, the classic buckets alongside;
    /// `false` answers it in the text format.
    pub native_histograms: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: Some(DEFAULT_PROMETHEUS_ENDPOINT.to_owned()),
            naming: MetricNaming::Slipstream,
            histogram: HistogramExportConfig::default(),
            native_histograms: DEFAULT_PROMETHEUS_NATIVE_HISTOGRAMS,
        }
    }
}

/// `exporters.prometheus.histogram` and `exporters.remote_write.histogram`: the classic
/// buckets of latency histograms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramExportConfig {
    /// Upper bounds of the classic buckets (`le`), ascending: durations (`5ms`, `2s`) or
    /// numbers of seconds (`0.005`). Every series writes every bound, then `+Inf`. Each is
    /// exported as the nearest edge of slipstream's own latency buckets (at most 1/128 away;
    /// 100ms is `le="0.099614719"`), where the counts are exact.
    #[serde(with = "boundaries_serde")]
    pub boundaries: Vec<Duration>,
}

impl Default for HistogramExportConfig {
    fn default() -> Self {
        HistogramExportConfig {
            boundaries: DEFAULT_HISTOGRAM_BOUNDARIES.to_vec(),
        }
    }
}

impl HistogramExportConfig {
    /// The boundaries as exported: each the nearest bucket edge, in nanoseconds, ascending.
    pub fn edges_ns(&self) -> Vec<u64> {
        self.boundaries
            .iter()
            .map(|b| {
                slipstream_core::export::nearest_latency_edge(
                    u64::try_from(b.as_nanos()).unwrap_or(u64::MAX),
                )
            })
            .collect()
    }

    fn validate(&self, path: &str, errs: &mut Errors) {
        let p = format!("{path}.boundaries");
        errs.check(
            self.boundaries.len() <= MAX_HISTOGRAM_BOUNDARIES,
            &p,
            format!("expected at most {MAX_HISTOGRAM_BOUNDARIES} boundaries"),
        );
        let edges = self.edges_ns();
        for (i, b) in self.boundaries.iter().enumerate() {
            errs.check(
                !b.is_zero(),
                format!("{p}[{i}]"),
                "expected a duration above 0",
            );
            if i > 0 && !b.is_zero() {
                errs.check(
                    edges[i] > edges[i - 1],
                    format!("{p}[{i}]"),
                    format!(
                        "`{}` is not above `{}` once both are rounded to the nearest bucket edge \
                         ({} ns and {} ns); expected ascending boundaries at least 1/64 apart",
                        humantime::format_duration(*b),
                        humantime::format_duration(self.boundaries[i - 1]),
                        edges[i],
                        edges[i - 1]
                    ),
                );
            }
        }
    }
}

/// A list of durations in YAML: each a duration string (`5ms`) or a number of seconds.
mod boundaries_serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    struct One(Duration);

    impl<'de> serde::Deserialize<'de> for One {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = One;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a duration such as 5ms or 2.5s as seconds (2.5)")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<One, E> {
                    Ok(One(Duration::from_secs(v)))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<One, E> {
                    u64::try_from(v)
                        .map(|v| One(Duration::from_secs(v)))
                        .map_err(|_| E::custom("a boundary cannot be negative"))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<One, E> {
                    Duration::try_from_secs_f64(v)
                        .map(One)
                        .map_err(|_| E::custom(format!("`{v}` is not a number of seconds above 0")))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<One, E> {
                    humantime::parse_duration(v)
                        .map(One)
                        .map_err(|e| E::custom(format!("`{v}` is not a duration ({e})")))
                }
            }
            d.deserialize_any(V)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of durations (5ms, 2s) or numbers of seconds")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Duration>, A::Error> {
                let mut out = Vec::new();
                while let Some(One(d)) = seq.next_element()? {
                    out.push(d);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// How a push exporter delivers: queue, timeout, headers, retries (the same fields in every
/// push exporter's section; [`RemoteWriteConfig::delivery`] and friends collect them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Batches (or events) held while the target is slow or down.
    pub queue_size: usize,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Extra headers on every request.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests.
    pub retry: RetryConfig,
    /// TLS of `https://` targets; `None` verifies them against the built-in roots.
    pub tls: Option<ClientTlsConfig>,
}

macro_rules! delivery_fields {
    ($($t:ty),*) => {$(
        impl $t {
            /// The queue, timeout, headers and retries of this exporter.
            pub fn delivery(&self) -> DeliveryConfig {
                DeliveryConfig {
                    queue_size: self.queue_size,
                    timeout: self.timeout,
                    headers: self.headers.clone(),
                    retry: self.retry.clone(),
                    tls: self.tls.clone(),
                }
            }
        }
    )*};
}
delivery_fields!(
    RemoteWriteConfig,
    OtlpExportConfig,
    AlertmanagerConfig,
    WebhookConfig,
    AggregatesConfig
);

/// `exporters.remote_write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// Remote-write URL, e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    /// Interval between pushes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// `slipstream` or `sloth` (adds Sloth-compatible series).
    pub naming: MetricNaming,
    /// The classic buckets of latency histograms (same fields as
    /// `exporters.prometheus.histogram`).
    pub histogram: HistogramExportConfig,
    /// Send latency histograms as native histogram samples (schema 8; the receiver needs
    /// native histograms on, e.g. Prometheus `--enable-feature=native-histograms`) instead of
    /// classic `_bucket`, `_sum` and `_count` series.
    pub native_histograms: bool,
    /// Batches (or events) held while the target is slow or down; past it the oldest is
    /// dropped and counted (`reason="queue_full"`). Ingestion never waits on an exporter.
    pub queue_size: usize,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra headers on every request, e.g. `authorization: Bearer ${env:TOKEN}`.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests (same fields as `forward.retry`).
    pub retry: RetryConfig,
    /// TLS of `https://` targets (same fields as `forward.tls`); `null` verifies them against
    /// the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            endpoint: String::new(),
            interval: DEFAULT_PUSH_INTERVAL,
            naming: MetricNaming::Slipstream,
            histogram: HistogramExportConfig::default(),
            native_histograms: DEFAULT_REMOTE_WRITE_NATIVE_HISTOGRAMS,
            queue_size: DEFAULT_EXPORT_QUEUE_SIZE,
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: BTreeMap::new(),
            retry: RetryConfig::default(),
            tls: None,
        }
    }
}

/// `exporters.otlp_metrics` and `exporters.otlp_logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExportConfig {
    /// OTLP endpoint: `http://host:4317` for gRPC, the base URL `http://host:4318` for HTTP.
    pub endpoint: String,
    /// `grpc` or `http` (protobuf).
    pub protocol: ForwardProtocol,
    /// Interval between pushes (metrics only; events are sent as they happen).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Batches (or events) held while the target is slow or down; past it the oldest is
    /// dropped and counted (`reason="queue_full"`). Ingestion never waits on an exporter.
    pub queue_size: usize,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra headers on every request, e.g. `authorization: Bearer ${env:TOKEN}`.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests (same fields as `forward.retry`).
    pub retry: RetryConfig,
    /// TLS of `https://` targets (same fields as `forward.tls`); `null` verifies them against
    /// the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for OtlpExportConfig {
    fn default() -> Self {
        OtlpExportConfig {
            endpoint: String::new(),
            protocol: ForwardProtocol::Grpc,
            interval: DEFAULT_PUSH_INTERVAL,
            queue_size: DEFAULT_EXPORT_QUEUE_SIZE,
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: BTreeMap::new(),
            retry: RetryConfig::default(),
            tls: None,
        }
    }
}

/// `exporters.alertmanager`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Alertmanager base URLs (`http://alertmanager:9093`); every alert goes to each of them,
    /// as Prometheus does.
    pub endpoints: Vec<String>,
    /// Firing alerts are re-sent this often so Alertmanager keeps them active.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Batches (or events) held while the target is slow or down; past it the oldest is
    /// dropped and counted (`reason="queue_full"`). Ingestion never waits on an exporter.
    pub queue_size: usize,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra headers on every request, e.g. `authorization: Bearer ${env:TOKEN}`.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests (same fields as `forward.retry`).
    pub retry: RetryConfig,
    /// TLS of `https://` targets (same fields as `forward.tls`); `null` verifies them against
    /// the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            endpoints: Vec::new(),
            resend_interval: DEFAULT_RESEND_INTERVAL,
            queue_size: DEFAULT_EXPORT_QUEUE_SIZE,
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: BTreeMap::new(),
            retry: RetryConfig::default(),
            tls: None,
        }
    }
}

/// `exporters.webhook`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// URL each event is POSTed to as JSON.
    pub url: String,
    /// When set, each body is signed with HMAC-SHA256 under this secret and the signature
    /// (`sha256=<hex>`) sent in `signature_header`.
    pub secret: Option<String>,
    /// Header carrying the signature.
    pub signature_header: String,
    /// Batches (or events) held while the target is slow or down; past it the oldest is
    /// dropped and counted (`reason="queue_full"`). Ingestion never waits on an exporter.
    pub queue_size: usize,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra headers on every request, e.g. `authorization: Bearer ${env:TOKEN}`.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests (same fields as `forward.retry`).
    pub retry: RetryConfig,
    /// TLS of `https://` targets (same fields as `forward.tls`); `null` verifies them against
    /// the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            secret: None,
            signature_header: DEFAULT_SIGNATURE_HEADER.to_owned(),
            queue_size: DEFAULT_EXPORT_QUEUE_SIZE,
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: BTreeMap::new(),
            retry: RetryConfig::default(),
            tls: None,
        }
    }
}

/// `exporters.aggregates`: two-tier mode, the sidecar side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatesConfig {
    /// OTLP/HTTP base URLs of the gateways (`http://gateway-0:4318`); each service's
    /// aggregates always go to the same one, chosen by rendezvous hashing of `service.name`
    /// over this list.
    pub endpoints: Vec<String>,
    /// Gateways each service's aggregates go to: the `replicas` ranked highest for its
    /// `service.name`, each computing the same SLOs and sending the same alerts (Alertmanager
    /// deduplicates them), so a service keeps being evaluated while one of them is down. With
    /// fewer gateways than `replicas`, every gateway gets every service.
    pub replicas: usize,
    /// Instead of `endpoints`: a URL whose host has one address per gateway (a headless
    /// Service, `http://slipstream-gateway-headless.observability.svc:4318`), looked up every
    /// `refresh_interval`; each address is a gateway `scheme://address:port`.
    pub dns: Option<String>,
    /// How often `dns` is looked up again; a failed lookup keeps the gateways.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Instead of `endpoints` or `dns`: the gateways are the pods of a StatefulSet, each
    /// reached at its stable DNS name and ranked by its pod name, so a gateway that restarts
    /// with a new address keeps its services. Scale by changing `statefulset.replicas` and
    /// reloading (SIGHUP).
    pub statefulset: Option<StatefulSetConfig>,
    /// This sender's name in the requests' header; `null` takes the `HOSTNAME` environment
    /// variable (the pod name on Kubernetes), else the host name.
    pub instance: Option<String>,
    /// Interval between shipments; what the aggregator gained meanwhile is shipped at once.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Largest request before compression; a larger shipment is split into several.
    pub max_request_size: ByteSize,
    /// Most series in one request; a shipment with more is split into several. At most the
    /// gateways' `receivers.otlp.aggregates.max_series_per_request`.
    pub max_series_per_request: usize,
    /// The bearer token sent to the gateways (`Authorization: Bearer <token>`), one of their
    /// `receivers.otlp.aggregates.auth` tokens, e.g. `${env:SLIPSTREAM_SIDECAR_TOKEN}`.
    pub bearer_token: Option<String>,
    /// Instead of `bearer_token`: a file holding it (surrounding whitespace ignored), e.g. a
    /// mounted Secret; read at start.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Requests held per gateway while it is slow or down; past it the oldest is dropped and
    /// counted (`reason="queue_full"`), and its counts never reach the gateway.
    pub queue_size: usize,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra headers on every request, e.g. `authorization: Bearer ${env:TOKEN}`.
    pub headers: BTreeMap<String, String>,
    /// Retries of failed requests (same fields as `forward.retry`).
    pub retry: RetryConfig,
    /// TLS of `https://` gateways (same fields as `forward.tls`); `null` verifies them against
    /// the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
}

impl AggregatesConfig {
    /// Whether `other` differs from this only in what a running exporter takes on reload:
    /// the gateways (`endpoints`, `dns`, `refresh_interval`, `statefulset`) and `replicas`.
    pub fn same_apart_from_gateways(&self, other: &AggregatesConfig) -> bool {
        let gateways_aside = |c: &AggregatesConfig| AggregatesConfig {
            endpoints: Vec::new(),
            replicas: DEFAULT_AGGREGATES_REPLICAS,
            dns: None,
            refresh_interval: crate::forward::DEFAULT_DNS_REFRESH_INTERVAL,
            statefulset: None,
            ..c.clone()
        };
        gateways_aside(self) == gateways_aside(other)
    }

    /// The bearer token to send: `bearer_token`, or the contents of `bearer_token_file`
    /// (trimmed); `None` when neither is set.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(t) = &self.bearer_token {
            return Ok(Some(t.clone()));
        }
        let Some(f) = &self.bearer_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(f).map_err(|e| {
            format!(
                "exporters.aggregates.bearer_token_file: cannot read {}: {e}",
                f.display()
            )
        })?;
        let t = text.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "exporters.aggregates.bearer_token_file: {} does not hold one token of visible ASCII characters",
                f.display()
            ));
        }
        Ok(Some(t.to_owned()))
    }
}

impl Default for AggregatesConfig {
    fn default() -> Self {
        AggregatesConfig {
            endpoints: Vec::new(),
            replicas: DEFAULT_AGGREGATES_REPLICAS,
            dns: None,
            statefulset: None,
            refresh_interval: crate::forward::DEFAULT_DNS_REFRESH_INTERVAL,
            instance: None,
            interval: DEFAULT_AGGREGATES_INTERVAL,
            max_request_size: DEFAULT_AGGREGATES_MAX_REQUEST_SIZE,
            max_series_per_request: DEFAULT_AGGREGATES_MAX_SERIES_PER_REQUEST,
            bearer_token: None,
            bearer_token_file: None,
            gzip: true,
            queue_size: DEFAULT_EXPORT_QUEUE_SIZE,
            timeout: DEFAULT_EXPORT_TIMEOUT,
            headers: BTreeMap::new(),
            retry: RetryConfig::default(),
            tls: None,
        }
    }
}

/// `exporters.stdout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    /// Write each burn-rate event to stdout as one JSON line.
    pub enabled: bool,
}

fn check_url(errs: &mut Errors, path: &str, url: &str) {
    errs.check(
        url.starts_with("http://") || url.starts_with("https://"),
        path,
        format!("`{url}` is not a URL (expected http://host:port/...)"),
    );
}

impl DeliveryConfig {
    fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            self.queue_size >= 1,
            format!("{path}.queue_size"),
            "expected at least 1",
        );
        errs.check(
            !self.timeout.is_zero(),
            format!("{path}.timeout"),
            "expected a duration above 0",
        );
        errs.check(
            !self.retry.initial_interval.is_zero()
                && self.retry.max_interval >= self.retry.initial_interval,
            format!("{path}.retry"),
            "expected initial_interval above 0 and max_interval at least initial_interval",
        );
        if let Some(t) = &self.tls {
            t.validate(&format!("{path}.tls"), errs);
        }
    }
}

impl ExportersConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        if let Some(r) = &self.replica_label {
            let mut chars = r.name.chars();
            errs.check(
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !r.name.starts_with("__"),
                format!("{path}.replica_label.name"),
                "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
            );
            if let Some(v) = &r.value {
                errs.check(
                    !v.trim().is_empty(),
                    format!("{path}.replica_label.value"),
                    "expected a value (or null for the host name)",
                );
            }
        }
        if let Some(e) = &self.prometheus.endpoint {
            check_socket_addr(errs, &format!("{path}.prometheus.endpoint"), e);
        }
        self.prometheus
            .histogram
            .validate(&format!("{path}.prometheus.histogram"), errs);
        if let Some(rw) = &self.remote_write {
            let p = format!("{path}.remote_write");
            check_url(errs, &format!("{p}.endpoint"), &rw.endpoint);
            check_tls_scheme(errs, &p, &rw.endpoint, rw.tls.as_ref());
            errs.check(
                !rw.interval.is_zero(),
                format!("{p}.interval"),
                "expected a duration above 0",
            );
            rw.histogram.validate(&format!("{p}.histogram"), errs);
            rw.delivery().validate(&p, errs);
        }
        for (name, otlp) in [
            ("otlp_metrics", &self.otlp_metrics),
            ("otlp_logs", &self.otlp_logs),
        ] {
            if let Some(o) = otlp {
                let p = format!("{path}.{name}");
                check_url(errs, &format!("{p}.endpoint"), &o.endpoint);
                check_tls_scheme(errs, &p, &o.endpoint, o.tls.as_ref());
                errs.check(
                    !o.interval.is_zero(),
                    format!("{p}.interval"),
                    "expected a duration above 0",
                );
                o.delivery().validate(&p, errs);
            }
        }
        if let Some(am) = &self.alertmanager {
            let p = format!("{path}.alertmanager");
            errs.check(
                !am.endpoints.is_empty(),
                format!("{p}.endpoints"),
                "expected at least one Alertmanager URL",
            );
            for (i, e) in am.endpoints.iter().enumerate() {
                check_url(errs, &format!("{p}.endpoints[{i}]"), e);
            }
            errs.check(
                !am.resend_interval.is_zero(),
                format!("{p}.resend_interval"),
                "expected a duration above 0",
            );
            am.delivery().validate(&p, errs);
        }
        if let Some(w) = &self.webhook {
            let p = format!("{path}.webhook");
            check_url(errs, &format!("{p}.url"), &w.url);
            check_tls_scheme(errs, &p, &w.url, w.tls.as_ref());
            if let Some(s) = &w.secret {
                errs.check(
                    !s.is_empty(),
                    format!("{p}.secret"),
                    "expected a non-empty secret (or null for unsigned bodies)",
                );
            }
            errs.check(
                !w.signature_header.is_empty(),
                format!("{p}.signature_header"),
                "expected a header name",
            );
            w.delivery().validate(&p, errs);
        }
        if let Some(a) = &self.aggregates {
            let p = format!("{path}.aggregates");
            let sources = usize::from(!a.endpoints.is_empty())
                + usize::from(a.dns.is_some())
                + usize::from(a.statefulset.is_some());
            errs.check(
                sources == 1,
                format!("{p}.endpoints"),
                "expected at least one gateway URL, or `dns` or `statefulset` instead (one of the three)",
            );
            if let Some(s) = &a.statefulset {
                s.validate(&format!("{p}.statefulset"), errs, &p, a.tls.as_ref());
            }
            if let Some(d) = &a.dns {
                check_url(errs, &format!("{p}.dns"), d);
                check_tls_scheme(errs, &p, d, a.tls.as_ref());
            }
            errs.check(
                a.replicas >= 1,
                format!("{p}.replicas"),
                "expected at least 1",
            );
            errs.check(
                !a.refresh_interval.is_zero(),
                format!("{p}.refresh_interval"),
                "expected a duration above 0",
            );
            for (i, e) in a.endpoints.iter().enumerate() {
                check_url(errs, &format!("{p}.endpoints[{i}]"), e);
                check_tls_scheme(errs, &p, e, a.tls.as_ref());
                errs.check(
                    !a.endpoints[..i].contains(e),
                    format!("{p}.endpoints[{i}]"),
                    format!("`{e}` is listed twice"),
                );
            }
            if let Some(name) = &a.instance {
                errs.check(
                    !name.trim().is_empty(),
                    format!("{p}.instance"),
                    "expected a name (or null for the host name)",
                );
            }
            errs.check(
                !a.interval.is_zero(),
                format!("{p}.interval"),
                "expected a duration above 0",
            );
            errs.check(
                a.max_request_size >= ByteSize::kib(64),
                format!("{p}.max_request_size"),
                "expected at least 64KiB",
            );
            errs.check(
                a.max_series_per_request > 0,
                format!("{p}.max_series_per_request"),
                "expected a number above 0",
            );
            errs.check(
                a.bearer_token.is_none() || a.bearer_token_file.is_none(),
                format!("{p}.bearer_token_file"),
                "expected bearer_token or bearer_token_file, not both",
            );
            if let Some(t) = &a.bearer_token {
                errs.check(
                    !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                    format!("{p}.bearer_token"),
                    "expected a non-empty token of visible ASCII characters",
                );
            }
            if a.bearer_token.is_some() || a.bearer_token_file.is_some() {
                errs.check(
                    !a.headers
                        .keys()
                        .any(|k| k.eq_ignore_ascii_case("authorization")),
                    format!("{p}.headers.authorization"),
                    "the bearer token is already sent: drop this header",
                );
            }
            a.delivery().validate(&p, errs);
        }
    }
}

#[cfg(test)]
mod tests;
