//! `forward`: the OTLP exporter that sends every accepted request downstream.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tls::{ClientTlsConfig, check_tls_scheme};
use crate::{ByteSize, Errors};

/// Default limit on the bytes waiting in the forward queue.
pub const DEFAULT_QUEUE_MAX_BYTES: ByteSize = ByteSize::mib(256);
/// Default time allowed for one export call downstream.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first retry delay.
pub const DEFAULT_INITIAL_INTERVAL: Duration = Duration::from_millis(200);
/// Default longest retry delay.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(30);
/// Default number of export calls in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default delay a refused client is asked to wait before retrying.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default limit of requests joined into one export: 2 MiB, half of gRPC's usual 4 MiB
/// message limit. Requests join only when they already wait in the queue, so under light
/// load each still goes alone.
pub const DEFAULT_MAX_BATCH_BYTES: ByteSize = ByteSize::mib(2);
/// The largest `max_batch_bytes`: the largest request a receiver takes by default.
pub const MAX_BATCH_BYTES_LIMIT: ByteSize = ByteSize::mib(64);

/// `forward`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Downstream OTLP endpoint: for gRPC `http://host:4317` (`https://` for TLS), for HTTP
    /// the base URL `http://host:4318` (the signal path `/v1/traces` etc. is appended).
    /// `null` turns forwarding off: spans are aggregated and then discarded (unless `routing`
    /// is set instead).
    pub endpoint: Option<String>,
    /// Several downstream endpoints, each resource (`service.name`) sent to one of them by
    /// consistent hashing, so each service's spans reach one place: a static list or a DNS
    /// name (a headless Service). Instead of `endpoint`.
    pub routing: Option<RoutingConfig>,
    /// TLS of an `https://` endpoint: trusted CA, client certificate; `null` (the default)
    /// verifies the downstream against the built-in Mozilla roots.
    pub tls: Option<ClientTlsConfig>,
    /// `grpc` or `http` (protobuf).
    pub protocol: ForwardProtocol,
    /// Extra headers (gRPC metadata) sent with every export, e.g. an authorization token.
    pub headers: BTreeMap<String, String>,
    /// `none`, `gzip` or `zstd` (OTLP/gRPC and OTLP/HTTP both allow zstd; the downstream
    /// must accept it). Requests that arrived compressed are forwarded decompressed and
    /// re-compressed only when this says so. Each request is compressed once, before its
    /// first attempt, at level 1 (gzip and zstd; `docs/benchmarks.md`, "Compression"). With
    /// `gzip`, a request that arrived as one gzip member and is forwarded whole is sent as
    /// those bytes, not compressed again.
    pub compression: ForwardCompression,
    /// Time allowed for one export call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Number of export calls in flight at once.
    pub concurrency: usize,
    /// Requests of one signal already waiting in the queue when an export call is free are
    /// joined into one export of up to this many bytes (uncompressed), each still counted as
    /// a request; 0 sends each request as it came. The downstream must take requests this
    /// large (4 MiB is gRPC's usual limit; the default is 2 MiB).
    pub max_batch_bytes: ByteSize,
    /// The bounded queue between the receivers and the exporter.
    pub queue: QueueConfig,
    /// Retries of failed exports.
    pub retry: RetryConfig,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            endpoint: None,
            routing: None,
            tls: None,
            protocol: ForwardProtocol::Grpc,
            headers: BTreeMap::new(),
            compression: ForwardCompression::None,
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            queue: QueueConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

/// Default interval between DNS lookups of `forward.routing.dns`.
pub const DEFAULT_DNS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// `forward.routing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// A static list of endpoint URLs (as `forward.endpoint`).
    pub endpoints: Vec<String>,
    /// A URL whose host is a DNS name with one address per endpoint, e.g.
    /// `http://slipstream-gateway-headless.observability.svc:4317`; each address found is an
    /// endpoint `scheme://address:port`. Instead of `endpoints`.
    pub dns: Option<String>,
    /// How often `dns` is looked up again; a failed lookup keeps the last endpoints.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Instead of `endpoints` or `dns`: the pods of a StatefulSet, each reached by its stable
    /// DNS name and ranked by its pod name, so a pod that restarts with a new address keeps
    /// its services.
    pub statefulset: Option<StatefulSetConfig>,
    /// Endpoints each service's spans go to: the `replicas` ranked highest for its
    /// `service.name`, each through its own queue. With fewer endpoints, every endpoint gets
    /// every service.
    pub replicas: usize,
}

/// Default number of endpoints each service's spans go to under `forward.routing`.
pub const DEFAULT_ROUTING_REPLICAS: usize = 1;

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            endpoints: Vec::new(),
            dns: None,
            refresh_interval: DEFAULT_DNS_REFRESH_INTERVAL,
            statefulset: None,
            replicas: DEFAULT_ROUTING_REPLICAS,
        }
    }
}

/// Default scheme of a StatefulSet's pods.
pub const DEFAULT_STATEFULSET_SCHEME: &str = "http";

/// `forward.routing.statefulset`, `exporters.aggregates.statefulset`: the pods of a
/// Kubernetes StatefulSet, `<name>-0` to `<name>-<replicas - 1>`. Each is reached at its
/// stable DNS name under the StatefulSet's headless Service,
/// `<scheme>://<name>-<i>.<service>.<namespace>.svc:<port>`, and ranked by its pod name
/// `<name>-<i>`: a pod that restarts keeps its name (and its services) even when its address
/// changes, and every process configured alike ranks the pods alike. Scaling the StatefulSet
/// means changing `replicas` here and reloading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatefulSetConfig {
    /// The StatefulSet's name (`metadata.name`), e.g. `slipstream-gateway`.
    pub name: String,
    /// Its headless Service (`spec.serviceName`), e.g. `slipstream-gateway-headless`.
    pub service: String,
    /// Its namespace; `null` for this pod's own (the names then resolve through the pod's
    /// DNS search path).
    pub namespace: Option<String>,
    /// Number of pods (the StatefulSet's `spec.replicas`).
    pub replicas: usize,
    /// Port of every pod: 4317 for OTLP/gRPC, 4318 for OTLP/HTTP.
    pub port: u16,
    /// `http`, or `https` for TLS.
    pub scheme: String,
}

impl Default for StatefulSetConfig {
    fn default() -> Self {
        StatefulSetConfig {
            name: String::new(),
            service: String::new(),
            namespace: None,
            replicas: 0,
            port: 0,
            scheme: DEFAULT_STATEFULSET_SCHEME.to_owned(),
        }
    }
}

/// One pod of a StatefulSet: its name (the rendezvous key) and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetPod {
    /// `<name>-<i>`.
    pub name: String,
    /// `<scheme>://<name>-<i>.<service>.<namespace>.svc:<port>`.
    pub url: String,
}

impl StatefulSetConfig {
    /// Every pod, in ordinal order.
    pub fn pods(&self) -> Vec<StatefulSetPod> {
        let domain = match &self.namespace {
            Some(ns) => format!("{}.{ns}.svc", self.service),
            None => self.service.clone(),
        };
        (0..self.replicas)
            .map(|i| {
                let name = format!("{}-{i}", self.name);
                let url = format!("{}://{name}.{domain}:{}", self.scheme, self.port);
                StatefulSetPod { name, url }
            })
            .collect()
    }

    /// Checks the fields under `path`; `tls` is the section's TLS settings and `section` the
    /// path they are under.
    pub(crate) fn validate(
        &self,
        path: &str,
        errs: &mut Errors,
        section: &str,
        tls: Option<&ClientTlsConfig>,
    ) {
        // A pod's name is a DNS label: the StatefulSet's name, a dash and the ordinal.
        let ordinal_len = self.replicas.saturating_sub(1).to_string().len();
        errs.check(
            is_dns_label(&self.name) && self.name.len() + 1 + ordinal_len <= 63,
            format!("{path}.name"),
            "expected a StatefulSet name (lowercase letters, digits and -, its pod names at most 63 characters)",
        );
        errs.check(
            is_dns_label(&self.service),
            format!("{path}.service"),
            "expected the name of its headless Service (lowercase letters, digits and -)",
        );
        if let Some(ns) = &self.namespace {
            errs.check(
                is_dns_label(ns),
                format!("{path}.namespace"),
                "expected a namespace name (lowercase letters, digits and -), or null",
            );
        }
        errs.check(
            self.replicas >= 1,
            format!("{path}.replicas"),
            "expected the number of pods, at least 1",
        );
        errs.check(
            self.port != 0,
            format!("{path}.port"),
            "expected the pods' port (4317 for OTLP/gRPC, 4318 for OTLP/HTTP)",
        );
        errs.check(
            self.scheme == "http" || self.scheme == "https",
            format!("{path}.scheme"),
            "expected http or https",
        );
        if let Some(pod) = self.pods().first() {
            check_tls_scheme(errs, section, &pod.url, tls);
        }
    }
}

/// Whether `s` is an RFC 1123 label, as Kubernetes names of Services, namespaces and pods are.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl ForwardConfig {
    /// Whether requests are forwarded anywhere.
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some() || self.routing.is_some()
    }
}

/// Downstream protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardProtocol {
    /// OTLP/gRPC.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// Compression of forwarded requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardCompression {
    /// Send as is.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd: smaller than gzip at level 1, for two thirds of its CPU.
    Zstd,
}

/// `forward.queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most bytes of requests waiting to be forwarded. When a new request would pass it, the
    /// receivers refuse it with a retryable answer (gRPC UNAVAILABLE with RetryInfo, HTTP 503
    /// with Retry-After): the client keeps it and retries, nothing is dropped.
    pub max_bytes: ByteSize,
    /// Delay suggested to refused clients (RetryInfo / Retry-After).
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Spill to disk: when the queue in memory is full, requests are appended to files under
    /// `spill.dir` (up to `spill.max_bytes`) instead of being refused, delivered once the
    /// downstream catches up, and kept across restarts. At shutdown, what the drain deadline
    /// leaves in memory is written there too. `null` (the default) keeps the queue in memory.
    pub spill: Option<SpillConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            retry_after: DEFAULT_RETRY_AFTER,
            spill: None,
        }
    }
}

/// Default directory of the forward queue's disk spill.
pub const DEFAULT_SPILL_DIR: &str = "./data/forward";
/// Default limit on the bytes the disk spill holds.
pub const DEFAULT_SPILL_MAX_BYTES: ByteSize = ByteSize::gib(2);

/// `forward.queue.spill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpillConfig {
    /// Directory of the spill files (created when missing). Each slipstream process needs its
    /// own.
    pub dir: std::path::PathBuf,
    /// Most bytes on disk. Past it, requests are refused with the retryable answer as when
    /// there is no spill.
    pub max_bytes: ByteSize,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            dir: DEFAULT_SPILL_DIR.into(),
            max_bytes: DEFAULT_SPILL_MAX_BYTES,
        }
    }
}

/// `forward.retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Delay before the first retry; it doubles up to `max_interval`, with jitter. A delay the
    /// downstream asks for (RetryInfo, Retry-After) is honoured when longer.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest delay between retries.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a request after retrying this long, counting it as dropped
    /// (`reason="retries_exhausted"`). `null` (the default) retries until the downstream
    /// accepts it, holding the queue and so pushing back on clients instead of losing data.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: DEFAULT_INITIAL_INTERVAL,
            max_interval: DEFAULT_MAX_INTERVAL,
            max_elapsed_time: None,
        }
    }
}

impl ForwardConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        let check_url = |errs: &mut Errors, field: String, e: &str| {
            errs.check(
                e.starts_with("http://") || e.starts_with("https://"),
                field,
                format!("`{e}` is not a URL (expected http://host:port)"),
            );
            check_tls_scheme(errs, path, e, self.tls.as_ref());
        };
        if let Some(e) = &self.endpoint {
            check_url(errs, format!("{path}.endpoint"), e);
        }
        if let Some(r) = &self.routing {
            let p = format!("{path}.routing");
            errs.check(
                self.endpoint.is_none(),
                format!("{path}.endpoint"),
                "set either endpoint or routing, not both",
            );
            let sources = usize::from(!r.endpoints.is_empty())
                + usize::from(r.dns.is_some())
                + usize::from(r.statefulset.is_some());
            errs.check(
                sources == 1,
                p.clone(),
                "set one of endpoints (a non-empty list), dns or statefulset",
            );
            if let Some(s) = &r.statefulset {
                s.validate(&format!("{p}.statefulset"), errs, path, self.tls.as_ref());
            }
            errs.check(
                r.replicas >= 1,
                format!("{p}.replicas"),
                "expected at least 1",
            );
            for (i, e) in r.endpoints.iter().enumerate() {
                check_url(errs, format!("{p}.endpoints[{i}]"), e);
            }
            let mut seen = std::collections::BTreeSet::new();
            for e in &r.endpoints {
                errs.check(
                    seen.insert(e.trim_end_matches('/')),
                    format!("{p}.endpoints"),
                    format!("`{e}` is listed twice"),
                );
            }
            if let Some(d) = &r.dns {
                check_url(errs, format!("{p}.dns"), d);
                let host_port = d.split_once("://").map_or("", |(_, rest)| rest);
                errs.check(
                    host_port
                        .trim_end_matches('/')
                        .rsplit_once(':')
                        .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok()),
                    format!("{p}.dns"),
                    format!("`{d}` needs a host name and a port"),
                );
            }
            errs.check(
                !r.refresh_interval.is_zero(),
                format!("{p}.refresh_interval"),
                "expected a duration above 0",
            );
        }
        if let Some(t) = &self.tls {
            t.validate(&format!("{path}.tls"), errs);
        }
        errs.check(
            self.concurrency >= 1,
            format!("{path}.concurrency"),
            "expected at least 1",
        );
        errs.check(
            self.max_batch_bytes.0 <= MAX_BATCH_BYTES_LIMIT.0,
            format!("{path}.max_batch_bytes"),
            format!("expected at most {MAX_BATCH_BYTES_LIMIT}"),
        );
        errs.check(
            !self.timeout.is_zero(),
            format!("{path}.timeout"),
            "expected a duration above 0",
        );
        errs.check(
            self.queue.max_bytes.0 > 0,
            format!("{path}.queue.max_bytes"),
            "expected a size above 0",
        );
        if let Some(spill) = &self.queue.spill {
            errs.check(
                spill.max_bytes.0 > 0,
                format!("{path}.queue.spill.max_bytes"),
                "expected a size above 0",
            );
            errs.check(
                !spill.dir.as_os_str().is_empty(),
                format!("{path}.queue.spill.dir"),
                "expected a directory",
            );
        }
        errs.check(
            !self.retry.initial_interval.is_zero(),
            format!("{path}.retry.initial_interval"),
            "expected a duration above 0",
        );
        errs.check(
            self.retry.max_interval >= self.retry.initial_interval,
            format!("{path}.retry.max_interval"),
            "expected at least retry.initial_interval",
        );
        for k in self.headers.keys() {
            errs.check(
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                format!("{path}.headers.{k}"),
                "expected a header name of letters, digits, - and _",
            );
        }
    }
}

#[cfg(test)]
mod tests;
