//! `receivers`: the OTLP gRPC and HTTP servers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::tls::ServerTlsConfig;
use crate::{ByteSize, Errors, check_socket_addr};

/// Default OTLP/gRPC listen address (the OTel Collector's).
pub const DEFAULT_GRPC_ENDPOINT: &str = "0.0.0.0:4317";
/// Default OTLP/HTTP listen address (the OTel Collector's).
pub const DEFAULT_HTTP_ENDPOINT: &str = "0.0.0.0:4318";
/// Default largest gRPC message accepted, compressed (the OTel Collector's 4 MiB).
pub const DEFAULT_GRPC_MAX_RECV_MSG_SIZE: ByteSize = ByteSize::mib(4);
/// Default largest HTTP request body accepted, compressed (the OTel Collector's 20 MiB).
pub const DEFAULT_HTTP_MAX_REQUEST_BODY_SIZE: ByteSize = ByteSize::mib(20);
/// Default largest size a body may reach once decompressed.
pub const DEFAULT_MAX_DECOMPRESSED_SIZE: ByteSize = ByteSize::mib(64);
/// Default largest number of spans one request may carry (0 = no limit).
pub const DEFAULT_MAX_SPANS_PER_REQUEST: usize = 0;
/// Default limit on attributes per span (0: none).
pub const DEFAULT_MAX_ATTRIBUTES_PER_SPAN: usize = 0;
/// Default limit on one attribute's encoded size (0: none).
pub const DEFAULT_MAX_ATTRIBUTE_SIZE: ByteSize = ByteSize(0);

/// `receivers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// The OTLP receiver.
    pub otlp: OtlpReceiverConfig,
}

/// `receivers.otlp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// OTLP over gRPC (trace, metrics and logs services); `null` turns it off.
    pub grpc: Option<GrpcReceiverConfig>,
    /// OTLP over HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`); `null` turns it off.
    pub http: Option<HttpReceiverConfig>,
    /// Largest size a request body may reach after gzip/zstd decompression; a larger one is
    /// refused (413 / RESOURCE_EXHAUSTED) however small it was on the wire.
    pub max_decompressed_size: ByteSize,
    /// Largest number of spans in one trace request; 0 means no limit. A larger request is
    /// refused as too large.
    pub max_spans_per_request: usize,
    /// Most attributes on one span; a request with a span over it is refused (400 /
    /// INVALID_ARGUMENT). 0 means no limit.
    pub max_attributes_per_span: usize,
    /// Largest attribute, key and value as encoded, on a span or resource; a request holding a
    /// larger one is refused (400 / INVALID_ARGUMENT). 0 means no limit.
    pub max_attribute_size: ByteSize,
    /// Bearer-token authentication of every request on both receivers; `null` (the default)
    /// accepts requests without a token.
    pub auth: Option<AuthConfig>,
    /// Partial aggregates from sidecars (two-tier mode, gateway side); off by default.
    pub aggregates: crate::aggregates::AggregatesReceiverConfig,
    /// Deadlines and the cap on open connections, for each of the two listeners.
    pub connections: ConnectionsConfig,
}

/// `receivers.otlp.auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted tokens (`Authorization: Bearer <token>`), e.g. `${env:OTLP_TOKEN}`.
    pub bearer_tokens: Vec<String>,
    /// A file of further accepted tokens, one per line (blank lines and `#` comments ignored),
    /// read at start and on reload.
    pub bearer_tokens_file: Option<std::path::PathBuf>,
}

impl AuthConfig {
    /// Every accepted token: the inline ones and the file's.
    pub fn tokens(&self) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = self.bearer_tokens.clone();
        if let Some(f) = &self.bearer_tokens_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read bearer_tokens_file {}: {e}", f.display()))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if out.is_empty() {
            return Err("receivers.otlp.auth: no bearer token configured".to_owned());
        }
        Ok(out)
    }
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc: Some(GrpcReceiverConfig::default()),
            http: Some(HttpReceiverConfig::default()),
            max_decompressed_size: DEFAULT_MAX_DECOMPRESSED_SIZE,
            max_spans_per_request: DEFAULT_MAX_SPANS_PER_REQUEST,
            max_attributes_per_span: DEFAULT_MAX_ATTRIBUTES_PER_SPAN,
            max_attribute_size: DEFAULT_MAX_ATTRIBUTE_SIZE,
            auth: None,
            aggregates: crate::aggregates::AggregatesReceiverConfig::default(),
            connections: ConnectionsConfig::default(),
        }
    }
}

// === connections ===

/// Default cap on open connections, per listener.
pub const DEFAULT_MAX_OPEN_CONNECTIONS: usize = 4096;
/// Default time a new connection has to send its first bytes (and finish a TLS handshake).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection has, once its first bytes arrived, to complete its first
/// request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection with no request in progress is kept open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a request body may take before it must keep up the minimum rate.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default slowest average rate, per second, a request body may arrive at after
/// `body_timeout`.
pub const DEFAULT_MIN_BODY_RATE: ByteSize = ByteSize::kib(1);
/// Default interval of HTTP/2 keep-alive pings.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default time an HTTP/2 keep-alive ping has to be answered before the connection is closed.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest accepted `max_open`.
pub const MAX_OPEN_CONNECTIONS_LIMIT: usize = 1 << 20;

/// `receivers.otlp.connections`: what a connection may hold, and for how long. Applies to
/// each of the gRPC and HTTP listeners separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most connections open at once on one listener; past it a new connection is accepted
    /// and closed at once (counted, `reason="over_limit"`). Brought down at start so that
    /// both listeners together stay below the process's open-file limit.
    pub max_open: usize,
    /// Time a new connection has to send its first bytes, or to complete its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a connection has, after its first bytes or handshake, to complete the headers of
    /// its first request (HTTP/2: the preface, settings and first HEADERS). A later
    /// request's headers count as idle time.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in progress (HTTP/1 keep-alive or a request's headers
    /// still arriving, HTTP/2 with no open stream) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time a request body may take before it must keep up `min_body_rate`; with
    /// `min_body_rate: 0` the deadline of the whole body.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Slowest average rate, in bytes per second, a request body may arrive at: a body is cut
    /// when it has taken longer than `body_timeout` plus its size at this rate (the request
    /// gets 400 and its connection is closed). 0 turns the rate off.
    pub min_body_rate: ByteSize,
    /// Interval of HTTP/2 keep-alive pings to the client.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Time a keep-alive ping has to be answered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_open: DEFAULT_MAX_OPEN_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            min_body_rate: DEFAULT_MIN_BODY_RATE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

impl ConnectionsConfig {
    fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            (1..=MAX_OPEN_CONNECTIONS_LIMIT).contains(&self.max_open),
            format!("{path}.max_open"),
            format!("expected a number from 1 to {MAX_OPEN_CONNECTIONS_LIMIT}"),
        );
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ] {
            errs.check(
                !d.is_zero(),
                format!("{path}.{name}"),
                "expected a duration above 0 (e.g. 10s)",
            );
        }
    }
}

/// `receivers.otlp.grpc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcReceiverConfig {
    /// Listen address, `host:port`.
    pub endpoint: String,
    /// Largest gRPC message accepted, as received (before decompression).
    pub max_recv_msg_size: ByteSize,
    /// Serve TLS (ALPN `h2`) with this certificate; `null` (the default) serves plain text.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for GrpcReceiverConfig {
    fn default() -> Self {
        GrpcReceiverConfig {
            endpoint: DEFAULT_GRPC_ENDPOINT.to_owned(),
            max_recv_msg_size: DEFAULT_GRPC_MAX_RECV_MSG_SIZE,
            tls: None,
        }
    }
}

/// `receivers.otlp.http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpReceiverConfig {
    /// Listen address, `host:port`.
    pub endpoint: String,
    /// Largest request body accepted, as received (before decompression).
    pub max_request_body_size: ByteSize,
    /// Serve TLS (ALPN `h2` and `http/1.1`) with this certificate; `null` (the default)
    /// serves plain text.
    pub tls: Option<ServerTlsConfig>,
}

impl Default for HttpReceiverConfig {
    fn default() -> Self {
        HttpReceiverConfig {
            endpoint: DEFAULT_HTTP_ENDPOINT.to_owned(),
            max_request_body_size: DEFAULT_HTTP_MAX_REQUEST_BODY_SIZE,
            tls: None,
        }
    }
}

impl ReceiversConfig {
    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        let o = &self.otlp;
        let p = format!("{path}.otlp");
        if let Some(g) = &o.grpc {
            check_socket_addr(errs, &format!("{p}.grpc.endpoint"), &g.endpoint);
            errs.check(
                g.max_recv_msg_size.0 > 0,
                format!("{p}.grpc.max_recv_msg_size"),
                "expected a size above 0",
            );
        }
        if let Some(h) = &o.http {
            check_socket_addr(errs, &format!("{p}.http.endpoint"), &h.endpoint);
            errs.check(
                h.max_request_body_size.0 > 0,
                format!("{p}.http.max_request_body_size"),
                "expected a size above 0",
            );
        }
        if let (Some(g), Some(h)) = (&o.grpc, &o.http) {
            // Port 0 asks the system for a free port, a different one for each listener.
            let any_port = |e: &str| {
                e.parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.port() == 0)
            };
            errs.check(
                g.endpoint != h.endpoint || any_port(&g.endpoint),
                format!("{p}.http.endpoint"),
                "the gRPC and HTTP receivers cannot share one address",
            );
        }
        errs.check(
            o.grpc.is_some() || o.http.is_some(),
            p.clone(),
            "expected at least one of grpc and http",
        );
        if let Some(a) = &o.auth {
            errs.check(
                !a.bearer_tokens.is_empty() || a.bearer_tokens_file.is_some(),
                format!("{p}.auth"),
                "expected bearer_tokens or bearer_tokens_file",
            );
            for (i, t) in a.bearer_tokens.iter().enumerate() {
                errs.check(
                    !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                    format!("{p}.auth.bearer_tokens[{i}]"),
                    "expected a non-empty token of visible ASCII characters",
                );
            }
        }
        let aggregates = format!("{p}.aggregates");
        o.aggregates
            .validate(&aggregates, o.auth.as_ref(), o.http.is_some(), errs);
        errs.check(
            o.max_decompressed_size.0 > 0,
            format!("{p}.max_decompressed_size"),
            "expected a size above 0",
        );
        o.connections.validate(&format!("{p}.connections"), errs);
    }
}
