//! `receivers.otlp.aggregates`: two-tier mode, the gateway side.
//!
//! A gateway takes partial aggregates (`POST /v1/slipstream/aggregates` on the OTLP/HTTP port)
//! only when `enabled`, and then only from senders that prove they are sidecars: a bearer
//! token of this section's own list (never one of `receivers.otlp.auth`'s), a sender name
//! (`Header.instance`) matching one of `senders`, and a shipment within the plausibility
//! limits. A shipment merges counts straight into SLO state, so whoever can send one can move
//! an error budget; these settings decide who can.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Errors;
use crate::forward::StatefulSetConfig;
use crate::receiver::AuthConfig;

/// Default: partial aggregates are not taken.
pub const DEFAULT_AGGREGATES_ENABLED: bool = false;
/// Default largest number of requests one shipment may add to one slot, summed over its
/// series. A shipment carries what each slot gained since the sender's previous shipment
/// (every 10s by default), so 10,000,000 is a million requests a second from one sender, or
/// over a whole default 60s slot 166,000 a second: one to two orders of magnitude above what
/// the pods behind one sidecar serve, and five below the 2^40 a forged shipment would claim
/// to drown a page.
pub const DEFAULT_MAX_REQUESTS_PER_SLOT: u64 = 10_000_000;
/// Default largest number of series in one shipment (the sidecar's
/// `exporters.aggregates.max_series_per_request` has the same default).
pub const DEFAULT_MAX_SERIES_PER_REQUEST: usize = 10_000;

/// Default longest time a gateway holds a service new to it while it asks its peers for the
/// service's state. It waits until a peer's state holds every shipment it held back from each
/// sidecar still shipping the service, so it must cover the time the sidecars take to find the
/// new gateway: the sidecars' default DNS `refresh_interval` (30s) plus a shipment `interval`
/// (10s). A service no peer holds is not held (the peers say so at once); the sidecars keep
/// what is held back (their queues hold hours), and the service's other gateways go on
/// evaluating it meanwhile.
pub const DEFAULT_PEERS_TIMEOUT: Duration = Duration::from_secs(45);

/// Default `peers.replicas`: 0, this gateway does not know how many gateways replicate each
/// service, and never hands a service off.
pub const DEFAULT_PEERS_REPLICAS: usize = 0;

/// `receivers.otlp.aggregates.peers`: the other gateways, which a gateway asks for the state
/// of a service it newly owns (a scale-up, or a replacement without its state file) before it
/// evaluates the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// Admin base URLs of the other gateways (`http://slipstream-gateway-1.slipstream-gateway:8888`);
    /// each serves `GET /api/v1/state/services/{service}`. Without these and `statefulset`
    /// (the default), a service new to this gateway starts from empty windows and a full
    /// budget.
    pub endpoints: Vec<String>,
    /// Besides `endpoints`: the gateways are the pods of this StatefulSet (the gateways' own,
    /// the one the sidecars' `exporters.aggregates.statefulset` names, with `port` the admin
    /// port, 8888), each asked at its stable DNS name; this gateway's own pod (the `HOSTNAME`
    /// environment variable) is left out. Scale by changing `replicas` and reloading (SIGHUP).
    pub statefulset: Option<StatefulSetConfig>,
    /// Besides `endpoints`: a URL whose host has one address per gateway (a headless Service,
    /// `http://slipstream-gateway-headless.observability.svc:8888`, the admin port), looked
    /// up whenever a service is asked for; each address is a peer `scheme://address:port`
    /// (this gateway's own answers that it is itself).
    pub dns: Option<String>,
    /// The bearer token presented to the peers (`Authorization: Bearer <token>`): one of their
    /// `receivers.otlp.aggregates.auth` tokens. Required with `endpoints`.
    pub bearer_token: Option<String>,
    /// Instead of `bearer_token`: a file holding it (surrounding whitespace ignored); read
    /// whenever a peer is asked.
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Longest time a service new to this gateway is held (its shipments answered 503 with
    /// `Retry-After`, so the sidecars keep them) while the peers are asked for its state, until
    /// a peer's state holds every shipment held back from each sidecar still shipping it. At the
    /// end, the latest state a peer gave is taken; without any (no peer answered), the service
    /// starts empty, as without peers. Every sidecar must find this gateway within it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The sidecars' `exporters.aggregates.replicas`: how many gateways each service's
    /// shipments go to. Set, a gateway that no longer ranks among a service's `replicas`
    /// (ranked over `statefulset`'s pods, this one its `HOSTNAME`, or over `members`) hands
    /// the service off: it sends no more events for it and lets its firing alerts go without
    /// resolving them, while the gateways that rank it keep them active. 0 (the default):
    /// never hands off.
    pub replicas: usize,
    /// Without `statefulset`: the gateways as the sidecars' `exporters.aggregates.endpoints`
    /// list them (their OTLP/HTTP URLs, this gateway's included), ranked as the sidecars rank
    /// them. Used with `replicas` only.
    pub members: Vec<String>,
    /// This gateway's own entry in `members`.
    pub member: Option<String>,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            endpoints: Vec::new(),
            statefulset: None,
            dns: None,
            bearer_token: None,
            bearer_token_file: None,
            timeout: DEFAULT_PEERS_TIMEOUT,
            replicas: DEFAULT_PEERS_REPLICAS,
            members: Vec::new(),
            member: None,
        }
    }
}

impl PeersConfig {
    /// The admin base URLs of the peers: `endpoints`, then the pods of `statefulset` but the
    /// one named `own` (this gateway's pod name).
    pub fn urls(&self, own: Option<&str>) -> Vec<String> {
        let pods = self.statefulset.iter().flat_map(StatefulSetConfig::pods);
        self.endpoints
            .iter()
            .cloned()
            .chain(pods.filter(|p| own != Some(p.name.as_str())).map(|p| p.url))
            .collect()
    }

    /// The token to present: `bearer_token`, or the contents of `bearer_token_file` (trimmed).
    pub fn token(&self) -> Result<String, String> {
        let path = "receivers.otlp.aggregates.peers";
        if let Some(t) = &self.bearer_token {
            return Ok(t.clone());
        }
        let Some(f) = &self.bearer_token_file else {
            return Err(format!("{path}: no bearer_token configured"));
        };
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("{path}.bearer_token_file: cannot read {}: {e}", f.display()))?;
        let t = text.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{path}.bearer_token_file: {} does not hold one token of visible ASCII characters",
                f.display()
            ));
        }
        Ok(t.to_owned())
    }

    /// Whether any peer is configured.
    pub fn any(&self) -> bool {
        !self.endpoints.is_empty() || self.statefulset.is_some() || self.dns.is_some()
    }

    fn validate(&self, path: &str, errs: &mut Errors) {
        let url = |e: &str| {
            e.strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
        };
        for (i, e) in self.endpoints.iter().enumerate() {
            errs.check(
                url(e),
                format!("{path}.endpoints[{i}]"),
                format!(
                    "`{e}` is not a URL (expected the http://host:port of a peer's admin server)"
                ),
            );
        }
        if let Some(d) = &self.dns {
            errs.check(
                url(d)
                    && d.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok()),
                format!("{path}.dns"),
                format!("`{d}` is not a URL with a port (expected scheme://name:port)"),
            );
        }
        if let Some(t) = &self.bearer_token {
            errs.check(
                !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                format!("{path}.bearer_token"),
                "expected a non-empty token of visible ASCII characters",
            );
        }
        errs.check(
            !(self.bearer_token.is_some() && self.bearer_token_file.is_some()),
            format!("{path}.bearer_token_file"),
            "expected bearer_token or bearer_token_file, not both",
        );
        if let Some(s) = &self.statefulset {
            s.validate(&format!("{path}.statefulset"), errs, path, None);
        }
        errs.check(
            !self.any()
                || self.bearer_token.is_some()
                || self.bearer_token_file.is_some(),
            format!("{path}.bearer_token"),
            "expected bearer_token or bearer_token_file: a peer serves state only to a holder of one of its receivers.otlp.aggregates.auth tokens",
        );
        errs.check(
            !self.timeout.is_zero() && self.timeout <= Duration::from_secs(600),
            format!("{path}.timeout"),
            "expected a duration above 0 and at most 10m",
        );
        if self.replicas > 0 {
            errs.check(
                self.any(),
                format!("{path}.replicas"),
                "expected peers (endpoints, statefulset or dns) with replicas: a gateway that newly ranks a service takes it from them",
            );
            errs.check(
                self.statefulset.is_some() || !self.members.is_empty(),
                format!("{path}.members"),
                "expected the gateways as the sidecars list them (or a statefulset) with replicas",
            );
        }
        if let Some(m) = &self.member {
            errs.check(
                self.members.contains(m),
                format!("{path}.member"),
                format!("`{m}` is not one of members"),
            );
        }
        errs.check(
            self.members.is_empty() || self.statefulset.is_some() || self.member.is_some(),
            format!("{path}.member"),
            "expected this gateway's own entry in members",
        );
    }

    /// The gateways that rank services and this gateway's index among them, as the sidecars
    /// rank them: `statefulset`'s pod names with this one `own` (its pod name), else
    /// `members` with this one `member`. `None` when `replicas` is 0 or this gateway is not
    /// among them.
    pub fn ranking(
        &self,
        own: Option<&str>,
    ) -> Option<(slipstream_core::route::Rendezvous, usize)> {
        use slipstream_core::route::{Rendezvous, endpoint_keys};
        if self.replicas == 0 {
            return None;
        }
        if let Some(s) = &self.statefulset {
            let names: Vec<String> = s.pods().into_iter().map(|p| p.name).collect();
            let me = names.iter().position(|n| Some(n.as_str()) == own)?;
            return Some((Rendezvous::new(&names), me));
        }
        let mut urls = self.members.clone();
        urls.sort();
        urls.dedup();
        let me = urls.iter().position(|u| Some(u) == self.member.as_ref())?;
        Some((Rendezvous::new(&endpoint_keys(&urls)), me))
    }
}

/// `receivers.otlp.aggregates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatesReceiverConfig {
    /// Take partial aggregates from sidecars on `POST /v1/slipstream/aggregates` (OTLP/HTTP).
    /// Off (the default), the path answers 404 and counts the request (`reason="disabled"`).
    pub enabled: bool,
    /// The sidecars' bearer tokens (`Authorization: Bearer <token>`): `bearer_tokens` and/or
    /// `bearer_tokens_file` (one per line, read at start and on reload), as in
    /// `receivers.otlp.auth`. Required when `enabled`; a token of `receivers.otlp.auth` is
    /// never accepted here, and the same token in both lists is refused.
    pub auth: AuthConfig,
    /// Sender names (`instance` in a shipment's header: the sidecar's
    /// `exporters.aggregates.instance`, by default its pod name) taken, as glob patterns
    /// (`*` any run of characters, `?` one), e.g. `checkout-*`. Required when `enabled`; `*`
    /// takes any sender holding a token. A shipment from another name is refused (403).
    pub senders: Vec<String>,
    /// Most requests one shipment may add to one slot, summed over its series; a shipment
    /// claiming more is refused whole (400, `reason="implausible"`).
    pub max_requests_per_slot: u64,
    /// Most series in one shipment; a larger one is refused whole (400,
    /// `reason="implausible"`). Keep the sidecars' `exporters.aggregates.max_series_per_request`
    /// at or below it.
    pub max_series_per_request: usize,
    /// The other gateways, asked for the state of a service this one newly owns before it
    /// evaluates it; this gateway answers theirs (to holders of an `auth` token) on its admin
    /// server.
    pub peers: PeersConfig,
}

impl Default for AggregatesReceiverConfig {
    fn default() -> Self {
        AggregatesReceiverConfig {
            enabled: DEFAULT_AGGREGATES_ENABLED,
            auth: AuthConfig::default(),
            senders: Vec::new(),
            max_requests_per_slot: DEFAULT_MAX_REQUESTS_PER_SLOT,
            max_series_per_request: DEFAULT_MAX_SERIES_PER_REQUEST,
            peers: PeersConfig::default(),
        }
    }
}

impl AggregatesReceiverConfig {
    /// Every accepted sidecar token: the inline ones and the file's. Refused when there is
    /// none, or when one is also a token of the OTLP receivers (`otlp`, read the same way).
    pub fn tokens(&self, otlp: Option<&AuthConfig>) -> Result<Vec<String>, String> {
        let path = "receivers.otlp.aggregates.auth";
        let mut out: Vec<String> = self.auth.bearer_tokens.clone();
        if let Some(f) = &self.auth.bearer_tokens_file {
            let text = std::fs::read_to_string(f).map_err(|e| {
                format!(
                    "{path}: cannot read bearer_tokens_file {}: {e}",
                    f.display()
                )
            })?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        if out.is_empty() {
            return Err(format!("{path}: no bearer token configured"));
        }
        if let Some(otlp) = otlp {
            let theirs = otlp.tokens()?;
            if out.iter().any(|t| theirs.contains(t)) {
                return Err(format!(
                    "{path}: a sidecar token is also a token of receivers.otlp.auth; give the sidecars their own"
                ));
            }
        }
        Ok(out)
    }

    /// Checks the section at `path`; `otlp` is `receivers.otlp.auth` and `http_on` whether
    /// the OTLP/HTTP receiver runs.
    pub(crate) fn validate(
        &self,
        path: &str,
        otlp: Option<&AuthConfig>,
        http_on: bool,
        errs: &mut Errors,
    ) {
        let a = &self.auth;
        for (i, t) in a.bearer_tokens.iter().enumerate() {
            errs.check(
                !t.trim().is_empty() && t.bytes().all(|b| b.is_ascii_graphic()),
                format!("{path}.auth.bearer_tokens[{i}]"),
                "expected a non-empty token of visible ASCII characters",
            );
            errs.check(
                !otlp.is_some_and(|o| o.bearer_tokens.contains(t)),
                format!("{path}.auth.bearer_tokens[{i}]"),
                "this token is also in receivers.otlp.auth.bearer_tokens: give the sidecars their own",
            );
        }
        for (i, s) in self.senders.iter().enumerate() {
            errs.check(
                !s.trim().is_empty(),
                format!("{path}.senders[{i}]"),
                "expected a sender name or glob pattern",
            );
        }
        errs.check(
            self.max_requests_per_slot > 0,
            format!("{path}.max_requests_per_slot"),
            "expected a number above 0",
        );
        errs.check(
            self.max_series_per_request > 0,
            format!("{path}.max_series_per_request"),
            "expected a number above 0",
        );
        self.peers.validate(&format!("{path}.peers"), errs);
        if !self.enabled {
            return;
        }
        errs.check(
            !a.bearer_tokens.is_empty() || a.bearer_tokens_file.is_some(),
            format!("{path}.auth"),
            "expected bearer_tokens or bearer_tokens_file: partial aggregates are taken only from senders holding a token of their own",
        );
        errs.check(
            !self.senders.is_empty(),
            format!("{path}.senders"),
            "expected at least one sender name or pattern (`*` takes any sender holding a token)",
        );
        errs.check(
            http_on,
            format!("{path}.enabled"),
            "partial aggregates arrive on OTLP/HTTP: receivers.otlp.http must be on",
        );
    }
}

#[cfg(test)]
mod tests;
