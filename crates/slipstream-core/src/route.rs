//! Routing by service: which of several endpoints owns a service.
//!
//! [`Rendezvous`] is rendezvous (highest-random-weight) hashing: each endpoint scores every key
//! with a hash of the pair, and the key goes to the highest score. The choice depends on the
//! endpoints' names only, not on their order; adding an endpoint moves to it the keys it now
//! wins (about 1/N of them) and moves nothing else; removing one moves only its own keys. The
//! hash is fixed (FNV-1a, then a SplitMix64 finaliser), so every slipstream process, of any
//! version, routes a service to the same place.
//!
//! [`resources`] walks the top level of an OTLP export request (traces, metrics or logs: they
//! share the shape) and yields each `Resource*` entry's bytes with its `service.name`, so a
//! request can be split per owner without decoding or re-encoding anything. It reads the
//! protobuf with the shared [`crate::wire::Reader`].

use std::ops::Range;

use crate::wire::{I32, I64, LEN, Reader, VARINT};

/// Endpoints a key can be routed to, by rendezvous hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendezvous {
    seeds: Vec<u64>,
}

impl Rendezvous {
    /// Routes over `endpoints`, each named by a stable string (its address).
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Self {
        Rendezvous {
            seeds: endpoints
                .iter()
                .map(|e| mix(fnv1a(e.as_ref().as_bytes())))
                .collect(),
        }
    }

    /// Routes over endpoint URLs (`scheme://host:port/...`), naming each by its host when the
    /// hosts are all different, so that the same gateways listed on their OTLP/gRPC port
    /// (`forward.routing`) and on their OTLP/HTTP port (`exporters.aggregates`) rank every
    /// service the same way; by `host:port` when hosts repeat (several endpoints on one
    /// machine). Indexes follow the order of `urls`.
    pub fn for_endpoints<S: AsRef<str>>(urls: &[S]) -> Self {
        Rendezvous::new(&endpoint_keys(urls))
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// Index (into the list given to [`Rendezvous::new`]) of the endpoint owning `key`; `None`
    /// when there are no endpoints.
    pub fn pick(&self, key: &[u8]) -> Option<usize> {
        let k = fnv1a(key);
        let mut best: Option<(u64, usize)> = None;
        for (i, seed) in self.seeds.iter().enumerate() {
            let score = mix(k ^ seed);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Indexes of the `r` endpoints ranked highest for `key`, best first: the first is
    /// [`Rendezvous::pick`]'s, all are distinct, and fewer than `r` when there are fewer
    /// endpoints. Replicating a key to these keeps rendezvous hashing's properties: adding an
    /// endpoint puts it into the sets of the keys it now ranks among the top `r` (about `r/N` of
    /// them), each losing only its lowest-ranked endpoint; removing one changes only the sets
    /// that held it.
    pub fn pick_n(&self, key: &[u8], r: usize) -> Vec<usize> {
        let k = fnv1a(key);
        let mut scored: Vec<(u64, usize)> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| (mix(k ^ seed), i))
            .collect();
        // Highest score first; on a tie the lower index, as `pick` does.
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(r).map(|(_, i)| i).collect()
    }
}

/// The names [`Rendezvous::for_endpoints`] ranks `urls` by, in their order: each URL's host
/// when the hosts are all different, else each one's `host:port`. Give them with the URLs to
/// [`Rendezvous::new`] when some endpoints are named otherwise (e.g. by a stable pod name).
pub fn endpoint_keys<S: AsRef<str>>(urls: &[S]) -> Vec<String> {
    let (authorities, hosts): (Vec<String>, Vec<String>) =
        urls.iter().map(|u| endpoint_names(u.as_ref())).unzip();
    let distinct = hosts
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        == hosts.len();
    if distinct { hosts } else { authorities }
}

/// An endpoint URL's authority (`host:port`, as written) and host (an IPv6 address without
/// its brackets); the whole string for both when it is not a URI with an authority.
fn endpoint_names(url: &str) -> (String, String) {
    match url.parse::<http::Uri>() {
        Ok(uri) => match uri.authority() {
            Some(a) => (
                a.as_str().to_owned(),
                a.host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            ),
            None => (url.to_owned(), url.to_owned()),
        },
        Err(_) => (url.to_owned(), url.to_owned()),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One top-level entry of an export request: a `ResourceSpans`, `ResourceMetrics` or
/// `ResourceLogs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceEntry<'a> {
    /// The entry's bytes in the request, tag and length prefix included: concatenating the
    /// ranges of some entries gives a valid request holding just those entries.
    pub range: Range<usize>,
    /// The resource's `service.name` string value; empty when it has none.
    pub service: &'a [u8],
}

/// A request that is not valid protobuf at the top levels [`resources`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP request at byte {0}")]
pub struct Malformed(pub usize);

/// Every resource entry (field 1) of an OTLP export request, in order. Other top-level fields
/// are skipped.
pub fn resources(body: &[u8]) -> Result<Vec<ResourceEntry<'_>>, Malformed> {
    let mut out = Vec::new();
    let mut r = Reader::new(body);
    while !r.is_empty() {
        let start = r.offset();
        let (field, wire, value) = next_field(&mut r)?;
        if field == 1 && wire == LEN {
            let service = resource_service(value).unwrap_or(&[]);
            out.push(ResourceEntry {
                range: start..r.offset(),
                service,
            });
        }
    }
    Ok(out)
}

/// `service.name` of the `Resource` (field 1) inside one resource entry.
fn resource_service(entry: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(entry);
    while !r.is_empty() {
        let (field, wire, resource) = next_field(&mut r).ok()?;
        if field != 1 || wire != LEN {
            continue;
        }
        let mut attributes = Reader::new(resource);
        while !attributes.is_empty() {
            let (f, w, kv) = next_field(&mut attributes).ok()?;
            if f == 1
                && w == LEN
                && let Some(v) = service_name_value(kv)
            {
                return Some(v);
            }
        }
    }
    None
}

/// The string value of a `KeyValue` whose key is `service.name`.
fn service_name_value(kv: &[u8]) -> Option<&[u8]> {
    let (mut key, mut value) = (None, None);
    let mut r = Reader::new(kv);
    while !r.is_empty() {
        match next_field(&mut r).ok()? {
            (1, LEN, k) => key = Some(k),
            (2, LEN, v) => value = Some(v),
            _ => {}
        }
    }
    if key? != b"service.name" {
        return None;
    }
    let mut any = Reader::new(value?);
    while !any.is_empty() {
        if let (1, LEN, s) = next_field(&mut any).ok()? {
            return Some(s);
        }
    }
    None
}

/// Reads one field: its number, wire type and (for length-delimited fields) the value's bytes,
/// empty for other wire types; groups are malformed here. An error names where the field
/// starts.
fn next_field<'a>(r: &mut Reader<'a>) -> Result<(u32, u8, &'a [u8]), Malformed> {
    let at = r.offset();
    let malformed = |_| Malformed(at);
    let (field, wire) = r.key("an OTLP request").map_err(malformed)?;
    let value = match wire {
        LEN => r.bytes().map_err(malformed)?.0,
        VARINT | I64 | I32 => {
            r.skip_known(field, wire, wire, "an OTLP request", at)
                .map_err(malformed)?;
            &[]
        }
        _ => return Err(Malformed(at)),
    };
    Ok((field, wire, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:4317")).collect()
    }

    #[test]
    fn the_owner_depends_on_the_names_not_their_order() {
        let a = Rendezvous::new(&names(5));
        let mut reversed = names(5);
        reversed.reverse();
        let b = Rendezvous::new(&reversed);
        for s in 0..1000 {
            let key = format!("service-{s}");
            let ia = a.pick(key.as_bytes()).unwrap();
            let ib = b.pick(key.as_bytes()).unwrap();
            assert_eq!(names(5)[ia], reversed[ib]);
        }
        assert_eq!(Rendezvous::new::<&str>(&[]).pick(b"x"), None);
    }

    #[test]
    fn adding_an_endpoint_moves_about_one_nth_of_the_keys_and_only_to_it() {
        let before = Rendezvous::new(&names(4));
        let after = Rendezvous::new(&names(5));
        let keys = 20_000;
        let mut per_endpoint = [0usize; 5];
        let mut moved = 0;
        for s in 0..keys {
            let key = format!("svc-{s}");
            let (b, a) = (
                before.pick(key.as_bytes()).unwrap(),
                after.pick(key.as_bytes()).unwrap(),
            );
            per_endpoint[a] += 1;
            if a != b {
                moved += 1;
                assert_eq!(a, 4, "a key moved between two old endpoints");
            }
        }
        // 1/5 of the keys should move; allow sampling noise.
        let share = moved as f64 / keys as f64;
        assert!((0.18..0.22).contains(&share), "moved share {share}");
        for n in per_endpoint {
            let share = n as f64 / keys as f64;
            assert!((0.18..0.22).contains(&share), "uneven share {share}");
        }
    }

    #[test]
    fn pick_n_ranks_distinct_endpoints_led_by_the_owner() {
        let route = Rendezvous::new(&names(5));
        for s in 0..1000 {
            let key = format!("service-{s}");
            let top = route.pick_n(key.as_bytes(), 3);
            assert_eq!(top.len(), 3);
            assert_eq!(Some(top[0]), route.pick(key.as_bytes()));
            let distinct: std::collections::BTreeSet<_> = top.iter().collect();
            assert_eq!(distinct.len(), 3, "{top:?}");
            // Stable, and a prefix of any longer ranking.
            assert_eq!(route.pick_n(key.as_bytes(), 3), top);
            assert_eq!(route.pick_n(key.as_bytes(), 5)[..3], top[..]);
            assert_eq!(route.pick_n(key.as_bytes(), 1), [top[0]]);
        }
        // More replicas than endpoints: every endpoint, once.
        let mut all = route.pick_n(b"checkout", 9);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        assert!(route.pick_n(b"checkout", 0).is_empty());
        assert!(Rendezvous::new::<&str>(&[]).pick_n(b"x", 2).is_empty());
    }

    #[test]
    fn pick_n_depends_on_the_names_not_their_order() {
        let forward = names(6);
        let a = Rendezvous::new(&forward);
        let mut reversed = names(6);
        reversed.reverse();
        let b = Rendezvous::new(&reversed);
        for s in 0..500 {
            let key = format!("service-{s}");
            let na: Vec<&String> = a
                .pick_n(key.as_bytes(), 2)
                .into_iter()
                .map(|i| &forward[i])
                .collect();
            let nb: Vec<&String> = b
                .pick_n(key.as_bytes(), 2)
                .into_iter()
                .map(|i| &reversed[i])
                .collect();
            assert_eq!(na, nb);
        }
    }

    #[test]
    fn adding_an_endpoint_changes_a_replica_set_only_by_taking_its_last_place() {
        let r = 2;
        let before = Rendezvous::new(&names(4));
        let after = Rendezvous::new(&names(5));
        let keys = 20_000;
        let mut changed = 0;
        for s in 0..keys {
            let key = format!("svc-{s}");
            let (b, a) = (
                before.pick_n(key.as_bytes(), r),
                after.pick_n(key.as_bytes(), r),
            );
            if a == b {
                continue;
            }
            changed += 1;
            // The new endpoint joins the set; the old ones keep their order, and only the
            // lowest-ranked one leaves.
            assert!(a.contains(&4), "{b:?} -> {a:?} without the new endpoint");
            let kept: Vec<usize> = a.iter().copied().filter(|&i| i != 4).collect();
            assert_eq!(kept, b[..r - 1], "{b:?} -> {a:?}");
        }
        // The new endpoint ranks among the top 2 of 5 for about 2/5 of the keys.
        let share = changed as f64 / keys as f64;
        assert!((0.37..0.43).contains(&share), "changed share {share}");
    }

    #[test]
    fn endpoints_are_named_by_host_so_grpc_and_http_lists_agree() {
        let grpc = [
            "http://gw-0.gw:4317",
            "http://gw-1.gw:4317",
            "http://[fd00::2]:4317",
        ];
        let http = [
            "https://gw-0.gw:4318/",
            "https://gw-1.gw:4318",
            "http://[fd00::2]:4318",
        ];
        let (a, b) = (
            Rendezvous::for_endpoints(&grpc),
            Rendezvous::for_endpoints(&http),
        );
        for s in 0..500 {
            let key = format!("service-{s}");
            assert_eq!(a.pick(key.as_bytes()), b.pick(key.as_bytes()));
        }
        // One host, several ports: the ports tell them apart.
        let local = Rendezvous::for_endpoints(&["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        let picks: std::collections::BTreeSet<_> = (0..100)
            .map(|s| local.pick(format!("s{s}").as_bytes()))
            .collect();
        assert_eq!(picks.len(), 2);
    }

    #[test]
    fn ranked_by_address_a_pod_with_a_new_address_moves_services() {
        // Pod gw-1 restarts and gets a new address.
        let (before, after) = (
            [
                "http://10.0.0.1:4318",
                "http://10.0.0.2:4318",
                "http://10.0.0.3:4318",
            ],
            [
                "http://10.0.0.1:4318",
                "http://10.0.0.9:4318",
                "http://10.0.0.3:4318",
            ],
        );
        assert_eq!(
            endpoint_keys(&before),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "what for_endpoints ranks by"
        );
        let sets = |ring: &Rendezvous| -> Vec<Vec<usize>> {
            (0..300)
                .map(|s| ring.pick_n(format!("service-{s}").as_bytes(), 2))
                .collect()
        };
        let by_address = (
            sets(&Rendezvous::for_endpoints(&before)),
            sets(&Rendezvous::for_endpoints(&after)),
        );
        let moved = by_address
            .0
            .iter()
            .zip(&by_address.1)
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved > 100, "ranked by address, {moved} of 300 sets change");
        // Ranked by pod name, the addresses take no part.
        let pods = ["gw-0", "gw-1", "gw-2"];
        assert_eq!(
            Rendezvous::new(&pods),
            Rendezvous::new(&pods.map(String::from))
        );
    }

    /// The authority and host as they were cut out of a URL by hand before `http::Uri` did it:
    /// the names must stay the same, or services would move between gateways on upgrade.
    fn names_by_hand(u: &str) -> (String, String) {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        };
        (
            authority.to_owned(),
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
    }

    #[test]
    fn endpoint_names_are_those_cut_by_hand_before() {
        for url in [
            "http://gw-0.gw:4317",
            "https://gw-0.gw:4318/",
            "https://gw-1.gw:4318/v1/slipstream/aggregates",
            "http://[fd00::2]:4317",
            "http://[fd00::2]",
            "http://127.0.0.1:1",
            "http://127.0.0.1",
            "https://gateway.example.com",
            "https://gateway.example.com?x=1",
            "gw-2.gw:4317",
        ] {
            assert_eq!(endpoint_names(url), names_by_hand(url), "{url}");
        }
        // Where the hand-written cut was wrong: user information is not part of the host.
        assert_eq!(
            endpoint_names("http://user@gw:4317/"),
            ("user@gw:4317".to_owned(), "gw".to_owned())
        );
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Req {
        #[prost(message, repeated, tag = "1")]
        resources: Vec<Entry>,
        #[prost(string, tag = "2")]
        other: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Entry {
        #[prost(message, optional, tag = "1")]
        resource: Option<Resource>,
        #[prost(bytes = "vec", tag = "2")]
        spans: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Resource {
        #[prost(message, repeated, tag = "1")]
        attributes: Vec<Kv>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Kv {
        #[prost(string, tag = "1")]
        key: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        string: String,
    }

    fn entry(service: Option<&str>, spans: &[u8]) -> Entry {
        let mut attributes = vec![Kv {
            key: "host.name".into(),
            value: Some(Any { string: "h".into() }),
        }];
        if let Some(s) = service {
            attributes.push(Kv {
                key: "service.name".into(),
                value: Some(Any { string: s.into() }),
            });
        }
        Entry {
            resource: Some(Resource { attributes }),
            spans: spans.to_vec(),
        }
    }

    #[test]
    fn resources_split_a_request_into_valid_requests_per_service() {
        let req = Req {
            resources: vec![
                entry(Some("checkout"), b"one"),
                entry(None, b"two"),
                entry(Some("cart"), b"three"),
            ],
            other: "kept out".into(),
        };
        let body = req.encode_to_vec();
        let entries = resources(&body).unwrap();
        let services: Vec<&[u8]> = entries.iter().map(|e| e.service).collect();
        assert_eq!(services, [&b"checkout"[..], b"", b"cart"]);
        // Any subset of the ranges is a request holding exactly those entries.
        let mut part = Vec::new();
        part.extend_from_slice(&body[entries[2].range.clone()]);
        part.extend_from_slice(&body[entries[0].range.clone()]);
        let decoded = Req::decode(&part[..]).unwrap();
        assert_eq!(
            decoded.resources,
            vec![req.resources[2].clone(), req.resources[0].clone()]
        );
    }

    #[test]
    fn truncated_requests_are_refused() {
        let body = Req {
            resources: vec![entry(Some("checkout"), b"spans")],
            other: String::new(),
        }
        .encode_to_vec();
        for cut in 1..body.len() {
            assert!(resources(&body[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(resources(&[]).unwrap(), Vec::new());
    }
}
