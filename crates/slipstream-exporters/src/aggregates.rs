//! Partial aggregates shipped to gateways: the sidecar side of two-tier mode.
//!
//! After each aggregator tick the binary hands [`AggregatesExporter::add`] what the aggregator
//! gained (per series and slot: requests, bad requests, latency buckets; versions first seen),
//! as the messages of [`slipstream_core::aggregates`]. The exporter sums them per series and
//! slot in an outbox, and every `interval` ships the outbox:
//!
//! - each series goes to the gateway that owns its service: rendezvous hashing of
//!   `service.name` over the gateways ([`Rendezvous`]), so a service's aggregates, from every
//!   sidecar, meet on one gateway; with `replicas: R`, to the R gateways ranked highest
//!   ([`Rendezvous::pick_n`]), which all get the same series (series with the same set of
//!   gateways are packed and encoded once, and the bytes queued to each of them);
//! - the gateways are `endpoints` (each ranked by its host, [`endpoint_keys`]), the
//!   addresses of a `dns` name (ranked by address), or the pods of a `statefulset`, each
//!   reached at its stable DNS name and ranked by its pod name, so that a gateway that
//!   restarts with a new address keeps its services; [`AggregatesExporter::reload`] takes a
//!   new set (a scaled StatefulSet) without a restart, keeping the queues of the gateways that
//!   stay;
//! - per gateway, the series are packed into requests of at most `max_request_size` bytes
//!   and `max_series_per_request` series (a series larger than that is cut between its
//!   slots); each request carries the header
//!   (the aggregator's slot width, histogram layout and dimensions, this sender's instance
//!   name and start time) with a sequence number that increases with every request, so a
//!   gateway ignores a retry of a request it already merged;
//! - the protobuf body, gzip-compressed unless `gzip: false`, is `POST`ed to
//!   `{endpoint}/v1/slipstream/aggregates` through that gateway's own [`crate::delivery`]
//!   queue, with `Authorization: Bearer <token>` when `bearer_token` (or `bearer_token_file`)
//!   is set: retries with backoff (a 503 from a busy gateway honours its `Retry-After`); a
//!   400 (incompatible, invalid or implausible), 401 (no or a wrong token) or 403 (a sender
//!   name the gateway does not list) is dropped at once, never retried; a full queue drops
//!   its oldest request. Every failure and drop is counted under `exporter="aggregates"`.
//!
//! What a dropped request held never reaches the gateway: the SLIs there miss those counts.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, header};
use prost::Message;
use slipstream_config::exporters::AggregatesConfig;
use slipstream_core::aggregates::{
    ExportAggregatesRequest, HTTP_PATH, Header, Series, Slot, Value, Version,
};
use slipstream_core::route::{Rendezvous, endpoint_keys};
use slipstream_core::{Exemplars, Registry};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::Error;
use crate::delivery::{self, Delivery, DeliveryQueue};
use crate::resolve::DnsName;

/// The `exporter` label value of the delivery metrics.
pub const EXPORTER: &str = "aggregates";
/// `Content-Type` of the requests.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// What one slot gained since the last shipment.
#[derive(Debug, Default)]
struct SlotSum {
    total: u64,
    bad: u64,
    buckets: BTreeMap<u32, u64>,
    /// Requests above each latency threshold that every part of the sum counted (a threshold
    /// one part lacks is left out: the gateway estimates it for the slot).
    above: BTreeMap<u64, u64>,
    spans: u64,
    sampled_spans: u64,
    /// The example requests of every part, within the bound of one set.
    exemplars: Exemplars,
}

/// What one series gained since the last shipment.
#[derive(Debug)]
struct Pending {
    key: Vec<Value>,
    overflow: i32,
    slots: BTreeMap<u64, SlotSum>,
    /// First and last seen, by version.
    versions: BTreeMap<String, (u64, u64)>,
}

/// Series waiting for the next shipment, by their key and overflow kind (encoded).
#[derive(Debug, Default)]
struct Outbox {
    series: BTreeMap<Vec<u8>, Pending>,
}

impl Outbox {
    fn add(&mut self, series: Vec<Series>) {
        for s in series {
            let id = Series {
                key: s.key,
                overflow: s.overflow,
                ..Series::default()
            };
            let p = self
                .series
                .entry(id.encode_to_vec())
                .or_insert_with(|| Pending {
                    key: id.key,
                    overflow: id.overflow,
                    slots: BTreeMap::new(),
                    versions: BTreeMap::new(),
                });
            for slot in s.slots {
                let sum = p.slots.entry(slot.start_unix_nanos).or_default();
                let above = slot
                    .latency_thresholds_nanos
                    .iter()
                    .copied()
                    .zip(slot.above_threshold.iter().copied());
                if sum.total == 0 {
                    sum.above = above.collect();
                } else {
                    let part: BTreeMap<u64, u64> = above.collect();
                    sum.above.retain(|t, _| part.contains_key(t));
                    for (t, n) in &mut sum.above {
                        *n += part[t];
                    }
                }
                sum.total += slot.total;
                sum.spans += if slot.spans == 0 {
                    slot.total
                } else {
                    slot.spans
                };
                sum.sampled_spans += slot.sampled_spans;
                sum.bad += slot.bad;
                for (b, n) in slot.bucket_indexes.into_iter().zip(slot.bucket_counts) {
                    *sum.buckets.entry(b).or_default() += n;
                }
                for e in slot.exemplars.iter().filter_map(|e| e.to_exemplar()) {
                    sum.exemplars.offer(e);
                }
            }
            for v in s.versions {
                let seen = (v.first_seen_unix_nanos, v.last_seen_unix_nanos);
                let at = p.versions.entry(v.version).or_insert(seen);
                *at = (at.0.min(seen.0), at.1.max(seen.1));
            }
        }
    }

    /// Empties the outbox into one message per series.
    fn take(&mut self) -> Vec<Series> {
        std::mem::take(&mut self.series)
            .into_values()
            .map(|p| Series {
                key: p.key,
                overflow: p.overflow,
                slots: p
                    .slots
                    .into_iter()
                    .map(|(start, s)| {
                        let (bucket_indexes, bucket_counts) = s.buckets.into_iter().unzip();
                        let (latency_thresholds_nanos, above_threshold) =
                            s.above.into_iter().unzip();
                        Slot {
                            start_unix_nanos: start,
                            total: s.total,
                            bad: s.bad,
                            bucket_indexes,
                            bucket_counts,
                            latency_thresholds_nanos,
                            above_threshold,
                            // 0 when each span counted once (what older senders send).
                            spans: if s.spans == s.total && s.sampled_spans == 0 {
                                0
                            } else {
                                s.spans
                            },
                            sampled_spans: s.sampled_spans,
                            exemplars: s.exemplars.iter().map(Into::into).collect(),
                        }
                    })
                    .collect(),
                versions: p
                    .versions
                    .into_iter()
                    .map(
                        |(version, (first_seen_unix_nanos, last_seen_unix_nanos))| Version {
                            version,
                            first_seen_unix_nanos,
                            last_seen_unix_nanos,
                        },
                    )
                    .collect(),
            })
            .collect()
    }
}

/// One gateway: the name it is ranked by, and its URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Member {
    /// The rendezvous key: the same for this gateway on every sidecar.
    key: String,
    url: String,
}

impl Member {
    /// Gateways named as [`Rendezvous::for_endpoints`] names URLs.
    fn from_urls(mut urls: Vec<String>) -> Vec<Member> {
        urls.sort();
        urls.dedup();
        endpoint_keys(&urls)
            .into_iter()
            .zip(urls)
            .map(|(key, url)| Member { key, url })
            .collect()
    }
}

/// The gateways shipments go to, and how services map to them.
#[derive(Debug, Default)]
struct Gateways {
    /// Sorted by URL.
    members: Vec<Member>,
    route: Rendezvous,
    queues: Vec<DeliveryQueue<Bytes>>,
}

/// Starts the delivery queue of the gateway at an endpoint URL.
type MakeQueue = Box<dyn Fn(&str) -> Result<Delivery<Bytes>, Error> + Send + Sync>;

/// How to start a gateway's delivery queue.
struct QueueMaker {
    make: MakeQueue,
    /// Time a gateway that left the DNS answer gets to take what is queued for it.
    retire_deadline: Duration,
}

impl std::fmt::Debug for QueueMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMaker").finish_non_exhaustive()
    }
}

/// What the exporter and its timer share.
#[derive(Debug)]
struct Shared {
    outbox: Mutex<Outbox>,
    gateways: std::sync::RwLock<Arc<Gateways>>,
    /// The delivery queues by endpoint (their owners, for shutdown).
    deliveries: Mutex<BTreeMap<String, Delivery<Bytes>>>,
    /// Queues of gateways that left, being drained.
    retired: Mutex<Vec<JoinHandle<usize>>>,
    maker: QueueMaker,
    header: Header,
    sequence: AtomicU64,
    max_request: usize,
    max_series: usize,
    gzip: bool,
    /// Gateways each series goes to.
    replicas: AtomicUsize,
}

/// The running exporter of partial aggregates.
#[derive(Debug)]
pub struct AggregatesExporter {
    shared: Arc<Shared>,
    timer: JoinHandle<()>,
    /// Follows `dns`, when the gateways are found there.
    resolver: Mutex<Option<JoinHandle<()>>>,
    /// The `dns` and `refresh_interval` the resolver follows.
    following: Mutex<Option<(String, Duration)>>,
}

impl AggregatesExporter {
    /// Starts one delivery queue per gateway and the shipment timer on the current tokio
    /// runtime. `header` is the aggregator's (slot width, histogram layout, dimensions); the
    /// instance name, start time and sequence are filled in here. Fails on a URL, header or
    /// TLS file the exporter cannot use.
    pub fn start(
        cfg: &AggregatesConfig,
        header: Header,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let section = "exporters.aggregates";
        let mut headers = delivery::header_map(section, &cfg.headers)?;
        if let Some(token) = cfg.token().map_err(Error::Credentials)? {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| Error::field(format!("{section}.bearer_token"), e))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        if cfg.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if cfg.dns.is_some() {
            // The TLS files are read now, not at the first lookup.
            delivery::http_client(section, cfg.timeout, cfg.tls.as_ref())?;
        }
        let (delivery_cfg, registry) = (cfg.delivery(), registry.clone());
        let maker = QueueMaker {
            make: Box::new(move |endpoint: &str| {
                let posts = delivery::EndpointPosts {
                    exporter: EXPORTER,
                    section,
                    path: HTTP_PATH,
                    content_type: CONTENT_TYPE,
                    headers: headers.clone(),
                };
                let mut queues = delivery::endpoint_queues(
                    posts,
                    &[endpoint.to_owned()],
                    &delivery_cfg,
                    &registry,
                    Bytes::clone,
                )?;
                Ok(queues.pop().expect("one endpoint, one queue"))
            }),
            retire_deadline: cfg.timeout,
        };
        let header = Header {
            instance: cfg.instance.clone().unwrap_or_else(host_name),
            instance_started_unix_nanos: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            sequence: 0,
            ..header
        };
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            gateways: std::sync::RwLock::default(),
            deliveries: Mutex::default(),
            retired: Mutex::default(),
            maker,
            header,
            sequence: AtomicU64::new(0),
            max_request: usize::try_from(cfg.max_request_size.0).unwrap_or(usize::MAX),
            max_series: cfg.max_series_per_request.max(1),
            gzip: cfg.gzip,
            replicas: AtomicUsize::new(cfg.replicas.max(1)),
        });
        let timer = tokio::spawn(ship_every(shared.clone(), cfg.interval));
        let exporter = AggregatesExporter {
            shared,
            timer,
            resolver: Mutex::default(),
            following: Mutex::default(),
        };
        exporter.reload(cfg)?;
        Ok(exporter)
    }

    /// Ships to the gateways `cfg` names from now on, each series to `cfg.replicas` of them:
    /// `endpoints`, the pods of `statefulset` (a scaled StatefulSet), or the addresses of `dns`
    /// (looked up every `refresh_interval`). Queues of gateways that stay are kept, new ones
    /// started, those of gateways that left are delivered in the background for at most
    /// `timeout`. The rest of `cfg` is the one the exporter started with (see
    /// [`AggregatesConfig::same_apart_from_gateways`]). A URL or DNS name the exporter cannot
    /// use fails, and the gateways in use stay.
    pub fn reload(&self, cfg: &AggregatesConfig) -> Result<(), Error> {
        let field = "exporters.aggregates.dns";
        let dns = cfg
            .dns
            .as_ref()
            .map(|url| DnsName::parse(field, url))
            .transpose()?;
        let replicas = cfg.replicas.max(1);
        let mut following = lock(&self.following);
        let wanted = cfg.dns.clone().map(|d| (d, cfg.refresh_interval));
        if dns.is_none() || *following != wanted {
            if let Some(r) = lock(&self.resolver).take() {
                r.abort();
            }
            *following = None;
        }
        self.shared.replicas.store(replicas, Ordering::Relaxed);
        let members = match &cfg.statefulset {
            Some(s) => s
                .pods()
                .into_iter()
                .map(|p| Member {
                    key: p.name,
                    url: p.url,
                })
                .collect(),
            None => Member::from_urls(cfg.endpoints.clone()),
        };
        match dns {
            None => {
                if replicas > members.len() {
                    tracing::warn!(
                        replicas,
                        gateways = members.len(),
                        "exporters.aggregates.replicas is above the number of gateways: every gateway gets every service"
                    );
                }
                self.shared.set_members(members)?;
            }
            Some(dns) if following.is_none() => {
                *lock(&self.resolver) = Some(crate::resolve::follow(
                    dns,
                    cfg.refresh_interval,
                    Arc::downgrade(&self.shared),
                    field,
                    Shared::set_gateways,
                ));
                *following = wanted;
            }
            // The same name, followed already.
            Some(_) => {}
        }
        Ok(())
    }

    /// Adds what the aggregator gained in one tick to the next shipment; never waits.
    pub fn add(&self, series: Vec<Series>) {
        if !series.is_empty() {
            lock(&self.shared.outbox).add(series);
        }
    }

    /// Ships the outbox now (the timer does it every `interval`).
    pub fn ship(&self) {
        self.shared.ship();
    }

    /// The header every request carries (its sequence aside).
    pub fn header(&self) -> &Header {
        &self.shared.header
    }

    /// Ships what the outbox holds, then delivers what the queues hold within `deadline`;
    /// returns how many requests were dropped.
    pub async fn shutdown(self, deadline: Duration) -> usize {
        if let Some(r) = lock(&self.resolver).take() {
            r.abort();
        }
        self.timer.abort();
        let _ = self.timer.await;
        self.shared.ship();
        let queues: Vec<Delivery<Bytes>> = std::mem::take(&mut *lock(&self.shared.deliveries))
            .into_values()
            .collect();
        let retired = std::mem::take(&mut *lock(&self.shared.retired));
        let mut dropped: usize =
            crate::resolve::join_spawned(queues.into_iter().map(|q| q.shutdown(deadline)))
                .await
                .into_iter()
                .sum();
        for r in retired {
            dropped += r.await.unwrap_or(0);
        }
        dropped
    }
}

crate::lifecycle::exporter!(AggregatesExporter, EXPORTER);

impl Shared {
    fn gateways(&self) -> Arc<Gateways> {
        self.gateways
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Ships to the gateways at `endpoints` (a DNS answer), each ranked by its address.
    fn set_gateways(&self, endpoints: Vec<String>) -> Result<(), Error> {
        self.set_members(Member::from_urls(endpoints))
    }

    /// Ships to `members` from now on: queues of gateways still listed are kept, new ones
    /// started, the others drained in the background for `retire_deadline`.
    fn set_members(&self, mut members: Vec<Member>) -> Result<(), Error> {
        members.sort_by(|a, b| a.url.cmp(&b.url).then_with(|| a.key.cmp(&b.key)));
        members.dedup_by(|a, b| a.url == b.url);
        if self.gateways().members == members {
            return Ok(());
        }
        let mut deliveries = lock(&self.deliveries);
        for m in &members {
            if !deliveries.contains_key(&m.url) {
                let queue = (self.maker.make)(&m.url)?;
                deliveries.insert(m.url.clone(), queue);
            }
        }
        let leaving: Vec<String> = deliveries
            .keys()
            .filter(|k| !members.iter().any(|m| &m.url == *k))
            .cloned()
            .collect();
        let gateways = Gateways {
            route: Rendezvous::new(&members.iter().map(|m| &m.key).collect::<Vec<_>>()),
            queues: members.iter().map(|m| deliveries[&m.url].queue()).collect(),
            members,
        };
        tracing::info!(
            gateways = ?gateways.members.iter().map(|m| (&m.key, &m.url)).collect::<Vec<_>>(),
            "aggregates: gateways"
        );
        *self
            .gateways
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(gateways);
        for e in leaving {
            if let Some(d) = deliveries.remove(&e) {
                tracing::info!(gateway = %e, "aggregates: gateway left; delivering what is queued for it");
                lock(&self.retired).push(tokio::spawn(d.shutdown(self.maker.retire_deadline)));
            }
        }
        Ok(())
    }

    /// Takes the outbox, routes each series to its `replicas` gateways and queues the
    /// requests: one set of requests per set of gateways, queued to each of them. With no
    /// gateway known yet (the first DNS lookup), the outbox waits.
    fn ship(&self) {
        let gateways = self.gateways();
        if gateways.queues.is_empty() {
            return;
        }
        let series = lock(&self.outbox).take();
        if series.is_empty() {
            return;
        }
        let replicas = self.replicas.load(Ordering::Relaxed);
        let mut per_owners: BTreeMap<Vec<usize>, Vec<Series>> = BTreeMap::new();
        for s in series {
            let mut owners = gateways.route.pick_n(s.service().as_bytes(), replicas);
            if owners.is_empty() {
                continue;
            }
            owners.sort_unstable();
            per_owners.entry(owners).or_default().push(s);
        }
        for (owners, series) in per_owners {
            for batch in pack(series, self.max_request, self.max_series) {
                let body = self.encode(batch);
                for &i in &owners {
                    gateways.queues[i].push(body.clone());
                }
            }
        }
    }

    /// One request's body: the header with the next sequence number, and `series`.
    fn encode(&self, series: Vec<Series>) -> Bytes {
        let request = ExportAggregatesRequest {
            header: Some(Header {
                sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
                ..self.header.clone()
            }),
            series,
        };
        let raw = request.encode_to_vec();
        if !self.gzip {
            return Bytes::from(raw);
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&raw).expect("writing to memory");
        Bytes::from(gz.finish().expect("writing to memory"))
    }
}

/// Packs `series` into batches whose encoded size stays within `max` bytes (the header
/// aside) and which hold at most `max_series` series, cutting a series larger than `max`
/// between its slots.
fn pack(series: Vec<Series>, max: usize, max_series: usize) -> Vec<Vec<Series>> {
    let mut out: Vec<Vec<Series>> = Vec::new();
    let mut batch: Vec<Series> = Vec::new();
    let mut size = 0;
    let mut push = |s: Series, batch: &mut Vec<Series>, size: &mut usize| {
        let n = s.encoded_len() + 8;
        if (*size + n > max || batch.len() >= max_series) && !batch.is_empty() {
            out.push(std::mem::take(batch));
            *size = 0;
        }
        *size += n;
        batch.push(s);
    };
    for s in series {
        if s.encoded_len() + 8 <= max || s.slots.len() <= 1 {
            push(s, &mut batch, &mut size);
            continue;
        }
        // Too large for one request: one message per slot, the versions with the first.
        let mut versions = s.versions;
        for slot in s.slots {
            let part = Series {
                key: s.key.clone(),
                overflow: s.overflow,
                slots: vec![slot],
                versions: std::mem::take(&mut versions),
            };
            push(part, &mut batch, &mut size);
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

async fn ship_every(shared: Arc<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing gathered yet
    loop {
        tick.tick().await;
        shared.ship();
    }
}

/// The host name: `HOSTNAME` (set by Kubernetes to the pod name), else the kernel's.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "slipstream".to_owned())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
