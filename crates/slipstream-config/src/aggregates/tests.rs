use crate::Config;

fn errors(yaml: &str) -> Vec<(String, String)> {
    match Config::from_yaml(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn off_by_default_with_the_stated_limits() {
    let c = Config::from_yaml("# nothing\n").unwrap();
    let a = &c.receivers.otlp.aggregates;
    assert!(!a.enabled);
    assert!(a.senders.is_empty());
    assert_eq!(a.max_requests_per_slot, 10_000_000);
    assert_eq!(a.max_series_per_request, 10_000);
}

#[test]
fn enabled_needs_a_token_and_a_sender() {
    let errs = errors("receivers:\n  otlp:\n    aggregates:\n      enabled: true\n");
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.auth",
            "receivers.otlp.aggregates.senders"
        ],
        "{errs:?}"
    );
    assert!(errs[0].1.contains("token of their own"), "{errs:?}");
}

#[test]
fn a_complete_section_is_taken() {
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      enabled: true\n      auth:\n        bearer_tokens: [s1decar]\n      senders: ['sidecar-*']\n      max_requests_per_slot: 1000\n";
    let c = Config::from_yaml(yaml).unwrap();
    let a = &c.receivers.otlp.aggregates;
    assert_eq!(a.tokens(None).unwrap(), ["s1decar"]);
    assert_eq!(a.senders, ["sidecar-*"]);
    assert_eq!(a.max_requests_per_slot, 1000);
}

#[test]
fn an_otlp_token_cannot_be_a_sidecar_token() {
    let yaml = "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [shared]\n    aggregates:\n      enabled: true\n      auth:\n        bearer_tokens: [shared]\n      senders: ['*']\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "receivers.otlp.aggregates.auth.bearer_tokens[0]");

    // Through a file too, when the tokens are read.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# sidecars\nown\nshared\n").unwrap();
    let yaml = format!(
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [shared]\n    aggregates:\n      enabled: true\n      auth:\n        bearer_tokens_file: {}\n      senders: ['*']\n",
        file.display()
    );
    let c = Config::from_yaml(&yaml).unwrap();
    let a = &c.receivers.otlp.aggregates;
    let e = a.tokens(c.receivers.otlp.auth.as_ref()).unwrap_err();
    assert!(e.contains("also a token of receivers.otlp.auth"), "{e}");
    std::fs::write(&file, "own\n").unwrap();
    assert_eq!(a.tokens(c.receivers.otlp.auth.as_ref()).unwrap(), ["own"]);
    std::fs::write(&file, "# none\n").unwrap();
    let e = a.tokens(None).unwrap_err();
    assert!(e.contains("no bearer token"), "{e}");
}

#[test]
fn limits_and_patterns_are_checked() {
    let yaml = "receivers:\n  otlp:\n    http: null\n    aggregates:\n      enabled: true\n      auth:\n        bearer_tokens: ['a b']\n      senders: ['']\n      max_requests_per_slot: 0\n      max_series_per_request: 0\n";
    let errs = errors(yaml);
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.auth.bearer_tokens[0]",
            "receivers.otlp.aggregates.senders[0]",
            "receivers.otlp.aggregates.max_requests_per_slot",
            "receivers.otlp.aggregates.max_series_per_request",
            "receivers.otlp.aggregates.enabled",
        ],
        "{errs:?}"
    );
}

#[test]
fn peers_are_off_by_default_and_need_urls_a_token_and_a_timeout() {
    let c = Config::from_yaml("# nothing\n").unwrap();
    let p = &c.receivers.otlp.aggregates.peers;
    assert!(p.endpoints.is_empty());
    assert_eq!(p.timeout, super::DEFAULT_PEERS_TIMEOUT);

    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        endpoints: ['gateway-1:8888', 'http://gateway-2:8888']\n        timeout: 0s\n";
    let paths: Vec<String> = errors(yaml).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.peers.endpoints[0]",
            "receivers.otlp.aggregates.peers.bearer_token",
            "receivers.otlp.aggregates.peers.timeout",
        ]
    );

    let yaml = "receivers:\n  otlp:\n    aggregates:\n      enabled: true\n      auth:\n        bearer_tokens: [s1decar]\n      senders: ['*']\n      peers:\n        endpoints: ['http://gateway-1:8888']\n        bearer_token: s1decar\n        timeout: 2s\n";
    let c = Config::from_yaml(yaml).unwrap();
    let p = &c.receivers.otlp.aggregates.peers;
    assert_eq!(p.token().unwrap(), "s1decar");
    assert_eq!(p.timeout, std::time::Duration::from_secs(2));
}

#[test]
fn peers_may_be_the_pods_of_the_gateways_statefulset_but_this_one() {
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        endpoints: ['http://other:8888']\n        statefulset: { name: slipstream-gateway, service: slipstream-gateway-headless, namespace: obs, replicas: 3, port: 8888 }\n        bearer_token: s1decar\n";
    let c = Config::from_yaml(yaml).unwrap();
    let p = &c.receivers.otlp.aggregates.peers;
    assert_eq!(
        p.urls(Some("slipstream-gateway-1")),
        [
            "http://other:8888",
            "http://slipstream-gateway-0.slipstream-gateway-headless.obs.svc:8888",
            "http://slipstream-gateway-2.slipstream-gateway-headless.obs.svc:8888",
        ]
    );
    assert_eq!(p.urls(None).len(), 4);

    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        statefulset: { name: Gateway, service: gw, replicas: 0, port: 8888 }\n";
    let paths: Vec<String> = errors(yaml).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.peers.statefulset.name",
            "receivers.otlp.aggregates.peers.statefulset.replicas",
            "receivers.otlp.aggregates.peers.bearer_token",
        ]
    );
}

#[test]
fn peers_may_be_found_by_dns() {
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        dns: http://slipstream-gateway-headless:8888\n        bearer_token: s1decar\n";
    let c = Config::from_yaml(yaml).unwrap();
    assert!(c.receivers.otlp.aggregates.peers.any());
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        dns: slipstream-gateway-headless\n";
    let paths: Vec<String> = errors(yaml).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.peers.dns",
            "receivers.otlp.aggregates.peers.bearer_token",
        ]
    );
}

#[test]
fn peers_know_the_replica_count_and_rank_as_the_sidecars_do() {
    use slipstream_core::route::Rendezvous;
    let c = Config::from_yaml("# nothing\n").unwrap();
    let p = &c.receivers.otlp.aggregates.peers;
    assert_eq!(p.replicas, super::DEFAULT_PEERS_REPLICAS);
    assert!(p.ranking(Some("slipstream-gateway-0")).is_none(), "off");

    // The StatefulSet form: ranked by pod name, this one its HOSTNAME.
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        statefulset: { name: slipstream-gateway, service: gw, replicas: 3, port: 8888 }\n        bearer_token: s1decar\n        replicas: 2\n";
    let c = Config::from_yaml(yaml).unwrap();
    let p = &c.receivers.otlp.aggregates.peers;
    let (route, me) = p.ranking(Some("slipstream-gateway-2")).unwrap();
    assert_eq!(me, 2);
    let pods = [
        "slipstream-gateway-0",
        "slipstream-gateway-1",
        "slipstream-gateway-2",
    ];
    assert_eq!(route, Rendezvous::new(&pods));
    assert!(p.ranking(Some("elsewhere")).is_none());

    // Listed: ranked as the sidecars rank the same URLs, in any order.
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        endpoints: ['http://10.0.0.2:8888']\n        bearer_token: s1decar\n        replicas: 1\n        members: ['http://10.0.0.2:4318', 'http://10.0.0.1:4318']\n        member: 'http://10.0.0.1:4318'\n";
    let c = Config::from_yaml(yaml).unwrap();
    let (route, me) = c.receivers.otlp.aggregates.peers.ranking(None).unwrap();
    assert_eq!(me, 0);
    assert_eq!(
        route,
        Rendezvous::for_endpoints(&["http://10.0.0.1:4318", "http://10.0.0.2:4318"])
    );

    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        replicas: 2\n        members: ['http://a:4318']\n        member: 'http://b:4318'\n";
    let paths: Vec<String> = errors(yaml).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.aggregates.peers.replicas",
            "receivers.otlp.aggregates.peers.member",
        ]
    );
    let yaml = "receivers:\n  otlp:\n    aggregates:\n      peers:\n        endpoints: ['http://a:8888']\n        bearer_token: s1decar\n        replicas: 2\n";
    let paths: Vec<String> = errors(yaml).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["receivers.otlp.aggregates.peers.members"]);
}
