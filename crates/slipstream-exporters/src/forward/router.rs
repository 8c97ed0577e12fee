//! Forwarding to one endpoint, or to several with each service routed to one of them.
//!
//! [`ForwardRouter`] is what the receivers push into. Each endpoint is a lane: its own
//! [`ForwardQueue`] (and disk spill under `<spill dir>/<endpoint>`) drained by its own
//! [`Forwarder`]. With one endpoint every request goes to its lane as is. With several, each
//! resource entry of a request (a `ResourceSpans`, `ResourceMetrics` or `ResourceLogs`) goes to
//! the lane that owns its `service.name` by rendezvous hashing
//! ([`slipstream_core::route::Rendezvous`]): a request whose resources all belong to one lane
//! is queued as it arrived, others are split into one request per lane by copying the
//! entries' bytes (nothing is decoded or re-encoded).
//!
//! With `routing.dns`, the name is looked up every `refresh_interval`; endpoints that appear
//! get a lane, and those that disappear stop taking requests and are drained in the background
//! (their spill stays on disk for when they come back). A failed lookup keeps the endpoints.
//! With `routing.statefulset`, the endpoints are the pods' stable DNS names, each ranked by its
//! pod name rather than its URL.
//!
//! With `routing.replicas: R` above 1, each resource entry goes to the R lanes ranked highest
//! for its service ([`Rendezvous::pick_n`]), each copy through that lane's own queue: a request
//! whose entries all have the same lanes is queued whole on each of them, others are split
//! into one request per lane holding the entries that lane replicates. A lane that refuses its
//! copy while another lane of every entry's set took it loses that copy (counted as dropped,
//! `reason="replica_refused"`) rather than making the client send the others again; only when
//! every lane of some entry refuses is the request refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use slipstream_config::ForwardConfig;
use slipstream_config::forward::RoutingConfig;
use slipstream_core::route::{Rendezvous, endpoint_keys, resources};
use slipstream_core::telemetry::{Counter, Gauge, names};
use slipstream_core::{Backpressure, ForwardSink, Registry, Signal};
use tokio::task::JoinHandle;

use super::client::{DrainReport, Forwarder, ForwarderHandle};
use super::counters::PerSignal;
use super::queue::ForwardQueue;
use crate::Error;
use crate::resolve::DnsName;

/// One endpoint's queue and exporter.
#[derive(Debug)]
struct Lane {
    endpoint: String,
    queue: Arc<ForwardQueue>,
    handle: Mutex<Option<ForwarderHandle>>,
}

/// The endpoints in use and how keys map to them.
#[derive(Debug, Default)]
struct Routes {
    ring: Rendezvous,
    /// What `ring` ranks each lane by, in the order of `lanes`.
    keys: Vec<String>,
    lanes: Vec<Arc<Lane>>,
}

/// The forward stage the receivers push into: one or several downstream endpoints.
#[derive(Debug)]
pub struct ForwardRouter {
    /// Read per request without a lock or a reference count (a snapshot swapped whole when
    /// the endpoints change).
    routes: ArcSwap<Routes>,
    cfg: ForwardConfig,
    registry: Registry,
    closed: AtomicBool,
    endpoints_gauge: Arc<Gauge>,
    /// Lanes that left the routes and are draining, by endpoint.
    retired: Mutex<Vec<(String, JoinHandle<DrainReport>)>>,
    /// Cuts the retired lanes' drains short (at shutdown).
    cut_retired: tokio::sync::watch::Sender<bool>,
    resolver: Mutex<Option<JoinHandle<()>>>,
    /// Lanes each resource entry goes to (`routing.replicas`, 1 without routing).
    replicas: usize,
    /// Copies a replica's lane refused while another lane took them (with `replicas` above 1).
    replica_refused: Option<PerSignal<Arc<Counter>>>,
}

impl ForwardRouter {
    /// Starts forwarding as `cfg` says (`endpoint`, or `routing`); the caller checks
    /// [`ForwardConfig::enabled`]. With `routing.dns`, the first lookup happens before this
    /// returns; until it finds an address, requests are refused with the retryable answer.
    pub async fn start(cfg: &ForwardConfig, registry: &Registry) -> Result<Arc<Self>, Error> {
        let replicas = cfg.routing.as_ref().map_or(1, |r| r.replicas.max(1));
        let router = Arc::new(ForwardRouter {
            routes: ArcSwap::from_pointee(Routes::default()),
            cfg: cfg.clone(),
            registry: registry.clone(),
            closed: AtomicBool::new(false),
            endpoints_gauge: registry.gauge(&names::FORWARD_ENDPOINTS, &[]),
            retired: Mutex::default(),
            cut_retired: tokio::sync::watch::channel(false).0,
            resolver: Mutex::default(),
            replicas,
            replica_refused: (replicas > 1).then(|| {
                PerSignal::new(|s| {
                    registry.counter(&names::DROPPED_REQUESTS, &[s.as_str(), REPLICA_REFUSED])
                })
            }),
        });
        match (&cfg.endpoint, &cfg.routing) {
            (Some(e), _) => router.set_endpoints(vec![e.clone()])?,
            (
                None,
                Some(RoutingConfig {
                    statefulset: Some(sts),
                    ..
                }),
            ) => {
                let pods: BTreeMap<String, String> =
                    sts.pods().into_iter().map(|p| (p.url, p.name)).collect();
                router.set_lanes(pods.keys().cloned().collect(), Some(&pods))?;
            }
            (
                None,
                Some(RoutingConfig {
                    dns: None,
                    endpoints,
                    ..
                }),
            ) => router.set_endpoints(endpoints.clone())?,
            (
                None,
                Some(RoutingConfig {
                    dns: Some(url),
                    refresh_interval,
                    ..
                }),
            ) => {
                let dns = DnsName::parse("forward.routing.dns", url)?;
                match dns.lookup().await {
                    Ok(found) => router.set_endpoints(found)?,
                    Err(e) => tracing::warn!("forward.routing.dns: {e}; looking up again"),
                }
                *router.resolver.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(crate::resolve::follow(
                        dns,
                        *refresh_interval,
                        Arc::downgrade(&router),
                        "forward.routing.dns",
                        ForwardRouter::set_endpoints,
                    ));
            }
            (None, None) => {
                return Err(Error::Unset {
                    field: "forward.endpoint",
                });
            }
        }
        Ok(router)
    }

    /// Routes over `endpoints` from now on, each ranked by its host (or `host:port`,
    /// [`endpoint_keys`]): lanes of endpoints still listed are kept, new ones started, and the
    /// others retired (drained in the background).
    pub(crate) fn set_endpoints(&self, endpoints: Vec<String>) -> Result<(), Error> {
        self.set_lanes(endpoints, None)
    }

    /// [`ForwardRouter::set_endpoints`], each endpoint ranked by its name in `names` when
    /// given (a StatefulSet pod's name, by URL).
    fn set_lanes(
        &self,
        mut endpoints: Vec<String>,
        names: Option<&BTreeMap<String, String>>,
    ) -> Result<(), Error> {
        endpoints.sort();
        endpoints.dedup();
        {
            // An endpoint that comes back while its old lane still drains (and holds its
            // spill directory) waits for the next update.
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.retain(|(_, h)| !h.is_finished());
            endpoints.retain(|e| !retired.iter().any(|(r, _)| r == e));
        }
        let keys = match names {
            Some(names) => endpoints.iter().map(|e| names[e].clone()).collect(),
            None => endpoint_keys(&endpoints),
        };
        let current = self.routes();
        if current
            .lanes
            .iter()
            .map(|l| &l.endpoint)
            .eq(endpoints.iter())
            && current.keys == keys
        {
            return Ok(());
        }
        let mut kept: BTreeMap<&str, Arc<Lane>> = current
            .lanes
            .iter()
            .map(|l| (l.endpoint.as_str(), l.clone()))
            .collect();
        let mut lanes = Vec::with_capacity(endpoints.len());
        for e in &endpoints {
            match kept.remove(e.as_str()) {
                Some(lane) => lanes.push(lane),
                None => lanes.push(Arc::new(self.lane(e)?)),
            }
        }
        let routes = Arc::new(Routes {
            ring: Rendezvous::new(&keys),
            keys,
            lanes,
        });
        self.routes.store(routes);
        self.endpoints_gauge.set(endpoints.len() as i64);
        tracing::info!(?endpoints, "forward endpoints");
        let deadline = self.cfg_drain_deadline();
        for (_, lane) in kept {
            if let Some(handle) = lane.handle.lock().unwrap_or_else(|e| e.into_inner()).take() {
                tracing::info!(endpoint = %lane.endpoint, "forward endpoint removed; draining it");
                let mut cut = self.cut_retired.subscribe();
                let drain = handle.shutdown_or(deadline, async move {
                    let _ = cut.wait_for(|c| *c).await;
                });
                self.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((lane.endpoint.clone(), tokio::spawn(drain)));
            }
        }
        Ok(())
    }

    fn cfg_drain_deadline(&self) -> Duration {
        // A retired endpoint is gone from DNS: give it as long as a retry cycle before its
        // queue moves to the spill (or is dropped without one).
        self.cfg.retry.max_interval.max(self.cfg.timeout)
    }

    fn lane(&self, endpoint: &str) -> Result<Lane, Error> {
        let mut cfg = self.cfg.clone();
        cfg.endpoint = Some(endpoint.to_owned());
        cfg.routing = None;
        if let Some(spill) = &mut cfg.queue.spill
            && self.cfg.routing.is_some()
        {
            spill.dir = spill.dir.join(dir_name(endpoint));
        }
        let (queue, handle) = Forwarder::start(&cfg, &self.registry)?;
        Ok(Lane {
            endpoint: endpoint.to_owned(),
            queue,
            handle: Mutex::new(Some(handle)),
        })
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// The endpoints in use, sorted.
    pub fn endpoints(&self) -> Vec<String> {
        self.routes()
            .lanes
            .iter()
            .map(|l| l.endpoint.clone())
            .collect()
    }

    /// The endpoint that owns `service`, when there is any.
    pub fn owner(&self, service: &str) -> Option<String> {
        let routes = self.routes();
        let i = routes.ring.pick(service.as_bytes())?;
        Some(routes.lanes[i].endpoint.clone())
    }

    /// Whether some endpoint answered recently (for readiness).
    pub fn is_reachable(&self) -> bool {
        self.routes().lanes.iter().any(|l| {
            l.handle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(ForwarderHandle::is_reachable)
        })
    }

    /// Requests waiting in memory over every endpoint.
    pub fn queued_requests(&self) -> usize {
        self.routes().lanes.iter().map(|l| l.queue.requests()).sum()
    }

    /// Stops taking requests and drains every endpoint within `deadline` (see
    /// [`ForwarderHandle::shutdown`]); returns the summed report.
    pub async fn shutdown(&self, deadline: Duration) -> DrainReport {
        self.closed.store(true, Ordering::Release);
        if let Some(r) = self
            .resolver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            r.abort();
        }
        let handles: Vec<ForwarderHandle> = self
            .routes()
            .lanes
            .iter()
            .filter_map(|l| l.handle.lock().unwrap_or_else(|e| e.into_inner()).take())
            .collect();
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        let cut = self.cut_retired.clone();
        let cutter = tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            let _ = cut.send(true);
        });
        let mut reports: Vec<DrainReport> =
            crate::resolve::join_spawned(handles.into_iter().map(|h| h.shutdown(deadline))).await;
        for (_, r) in retired {
            reports.push(r.await.unwrap_or_default());
        }
        cutter.abort();
        reports
            .into_iter()
            .fold(DrainReport::default(), |a, r| DrainReport {
                undelivered: a.undelivered + r.undelivered,
                spilled: a.spilled + r.spilled,
            })
    }
}

impl ForwardSink for ForwardRouter {
    fn forward(&self, signal: Signal, body: Bytes) -> Result<(), Backpressure> {
        self.route(signal, body, None)
    }

    fn forward_gzipped(
        &self,
        signal: Signal,
        body: Bytes,
        gzip: Bytes,
    ) -> Result<(), Backpressure> {
        self.route(signal, body, Some(gzip))
    }

    fn would_refuse(&self, signal: Signal, len: usize) -> Option<Backpressure> {
        let refuse = Some(Backpressure {
            retry_after: self.cfg.queue.retry_after,
        });
        if self.closed.load(Ordering::Acquire) {
            return refuse;
        }
        // With several lanes the request may be split; each lane decides when it is queued.
        match self.routes.load().lanes.as_slice() {
            [] => refuse,
            [lane] => lane.queue.would_refuse(signal, len),
            _ => None,
        }
    }
}

/// Queues `body` on `queue`, with the gzip member it arrived as when there is one.
fn put(
    queue: &ForwardQueue,
    signal: Signal,
    body: Bytes,
    gzip: Option<Bytes>,
) -> Result<(), Backpressure> {
    match gzip {
        Some(gzip) => queue.forward_gzipped(signal, body, gzip),
        None => queue.forward(signal, body),
    }
}

impl ForwardRouter {
    /// Queues a request on the lane that owns it, or splits it over several (a split part is
    /// compressed anew: `gzip` goes only with a request queued whole).
    fn route(&self, signal: Signal, body: Bytes, gzip: Option<Bytes>) -> Result<(), Backpressure> {
        let refuse = Backpressure {
            retry_after: self.cfg.queue.retry_after,
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(refuse);
        }
        let routes = self.routes.load();
        match routes.lanes.len() {
            0 => return Err(refuse),
            1 => return put(&routes.lanes[0].queue, signal, body, gzip),
            _ => {}
        }
        if self.replicas > 1 {
            return self.replicate(&routes, signal, body, gzip);
        }
        let lane_of = |service: &[u8]| routes.ring.pick(service).expect("there are lanes");
        let Ok(entries) = resources(&body) else {
            // Not valid at the top level (the receivers let through what they do not scan):
            // forwarded whole, for the downstream to judge.
            return put(&routes.lanes[lane_of(b"")].queue, signal, body, gzip);
        };
        let owners: Vec<usize> = entries.iter().map(|e| lane_of(e.service)).collect();
        let first = owners.first().copied().unwrap_or_else(|| lane_of(b""));
        if owners.iter().all(|&o| o == first) {
            return put(&routes.lanes[first].queue, signal, body, gzip);
        }
        // Split: one request per lane, entries in their original order. If a lane refuses,
        // the client retries the whole request and the lanes that took their part get it
        // twice (at least once, never lost).
        let mut result = Ok(());
        let mut lanes: Vec<usize> = owners.clone();
        lanes.sort_unstable();
        lanes.dedup();
        for lane in lanes {
            let mut part = Vec::with_capacity(body.len());
            for (entry, _) in entries.iter().zip(&owners).filter(|(_, o)| **o == lane) {
                part.extend_from_slice(&body[entry.range.clone()]);
            }
            if let Err(e) = routes.lanes[lane].queue.forward(signal, Bytes::from(part)) {
                result = Err(e);
            }
        }
        result
    }
}

// === impl ForwardRouter: replicas ===

/// The `reason` of a copy a replica's lane refused while another took it.
const REPLICA_REFUSED: &str = "replica_refused";

impl ForwardRouter {
    /// Queues each resource entry on the `replicas` lanes ranked highest for its service:
    /// whole on each lane when every entry has the same lanes, else one part per lane.
    fn replicate(
        &self,
        routes: &Routes,
        signal: Signal,
        body: Bytes,
        gzip: Option<Bytes>,
    ) -> Result<(), Backpressure> {
        let r = self.replicas.min(routes.lanes.len());
        let lanes_of = |service: &[u8]| {
            let mut lanes = routes.ring.pick_n(service, r);
            lanes.sort_unstable();
            lanes
        };
        let entries = resources(&body).unwrap_or_default();
        let sets: Vec<Vec<usize>> = entries.iter().map(|e| lanes_of(e.service)).collect();
        let whole = match sets.first() {
            // Not valid at the top level, or no entries: forwarded whole, for the downstream
            // to judge.
            None => Some(lanes_of(b"")),
            Some(first) if sets.iter().all(|s| s == first) => Some(first.clone()),
            Some(_) => None,
        };
        let mut refused = vec![false; routes.lanes.len()];
        let mut refusal = None;
        let mut queue = |lane: usize, result: Result<(), Backpressure>| {
            if let Err(e) = result {
                refused[lane] = true;
                refusal = Some(e);
            }
        };
        match whole {
            Some(lanes) => {
                for &lane in &lanes {
                    let q = &routes.lanes[lane].queue;
                    queue(lane, put(q, signal, body.clone(), gzip.clone()));
                }
                return self.settle(signal, std::slice::from_ref(&lanes), &refused, refusal);
            }
            None => {
                let mut lanes: Vec<usize> = sets.concat();
                lanes.sort_unstable();
                lanes.dedup();
                for lane in lanes {
                    let mut part = Vec::with_capacity(body.len());
                    for (entry, _) in entries.iter().zip(&sets).filter(|(_, s)| s.contains(&lane)) {
                        part.extend_from_slice(&body[entry.range.clone()]);
                    }
                    let q = &routes.lanes[lane].queue;
                    queue(lane, q.forward(signal, Bytes::from(part)));
                }
            }
        }
        self.settle(signal, &sets, &refused, refusal)
    }

    /// The answer to a request whose copies went to the lanes of `sets`: refused when every
    /// lane of some set refused (the client sends it again; lanes that took their copy get it
    /// twice, as with a split), else taken, each refused copy counted as dropped.
    fn settle(
        &self,
        signal: Signal,
        sets: &[Vec<usize>],
        refused: &[bool],
        refusal: Option<Backpressure>,
    ) -> Result<(), Backpressure> {
        let Some(refusal) = refusal else {
            return Ok(());
        };
        if sets.iter().any(|set| set.iter().all(|&l| refused[l])) {
            return Err(refusal);
        }
        let lost = refused.iter().filter(|&&r| r).count();
        if let Some(counters) = &self.replica_refused {
            counters.get(signal).add(lost as u64);
        }
        Ok(())
    }
}

/// A directory name for an endpoint's spill: its URL with every character that is not a
/// letter, digit, `.` or `-` replaced by `_`.
fn dir_name(endpoint: &str) -> String {
    endpoint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
