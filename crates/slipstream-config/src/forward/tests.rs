use super::ForwardCompression;
use crate::Config;

#[test]
fn compression_takes_none_gzip_and_zstd_and_names_the_field_otherwise() {
    for (value, want) in [
        ("none", ForwardCompression::None),
        ("gzip", ForwardCompression::Gzip),
        ("zstd", ForwardCompression::Zstd),
    ] {
        let yaml = format!("forward:\n  compression: {value}\n");
        let c = Config::from_yaml(&yaml).unwrap();
        assert_eq!(c.forward.compression, want, "{value}");
    }
    let err = Config::from_yaml("forward:\n  compression: brotli\n").unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("forward.compression"), "{shown}");
    assert!(
        shown.contains("zstd"),
        "the accepted values are listed: {shown}"
    );
}

#[test]
fn a_statefulset_expands_to_its_pods_stable_names_in_ordinal_order() {
    let yaml = "forward:\n  routing:\n    replicas: 2\n    statefulset:\n      name: slipstream-gateway\n      service: slipstream-gateway-headless\n      namespace: observability\n      replicas: 3\n      port: 4317\n";
    let c = Config::from_yaml(yaml).unwrap();
    let r = c.forward.routing.unwrap();
    assert_eq!(r.replicas, 2);
    let pods = r.statefulset.unwrap().pods();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "slipstream-gateway-0",
            "slipstream-gateway-1",
            "slipstream-gateway-2"
        ]
    );
    assert_eq!(
        pods[2].url,
        "http://slipstream-gateway-2.slipstream-gateway-headless.observability.svc:4317"
    );
    // Without a namespace: the pod's own, through the DNS search path.
    let same_ns = super::StatefulSetConfig {
        name: "gw".into(),
        service: "gw-headless".into(),
        replicas: 1,
        port: 4318,
        scheme: "https".into(),
        ..Default::default()
    };
    assert_eq!(same_ns.pods()[0].url, "https://gw-0.gw-headless:4318");
    assert_eq!(
        super::RoutingConfig::default().replicas,
        super::DEFAULT_ROUTING_REPLICAS
    );
}

#[test]
fn routing_takes_one_source_and_a_statefulset_names_each_mistake() {
    let paths = |yaml: &str| -> Vec<String> {
        Config::from_yaml(yaml)
            .unwrap_err()
            .errors
            .iter()
            .map(|e| e.path.clone())
            .collect()
    };
    assert_eq!(
        paths(
            "forward:\n  routing:\n    endpoints: [http://a:4317]\n    statefulset: {name: gw, service: gw, replicas: 1, port: 4317}\n"
        ),
        ["forward.routing"]
    );
    assert_eq!(
        paths(
            "forward:\n  routing:\n    statefulset: {name: Gateway, service: '-gw', namespace: 'a.b', replicas: 0, port: 0, scheme: tcp}\n    replicas: 0\n"
        ),
        [
            "forward.routing.statefulset.name",
            "forward.routing.statefulset.service",
            "forward.routing.statefulset.namespace",
            "forward.routing.statefulset.replicas",
            "forward.routing.statefulset.port",
            "forward.routing.statefulset.scheme",
            "forward.routing.replicas",
        ]
    );
    // A pod name is a DNS label: at most 63 characters with its ordinal.
    let statefulset = |name: &str| {
        format!(
            "forward:\n  routing:\n    statefulset: {{name: {name}, service: gw, replicas: 10, port: 4317}}\n"
        )
    };
    Config::from_yaml(&statefulset(&"g".repeat(61))).unwrap();
    assert_eq!(
        paths(&statefulset(&"g".repeat(62))),
        ["forward.routing.statefulset.name"]
    );
    // TLS settings with plain http pods.
    assert_eq!(
        paths(
            "forward:\n  tls: {}\n  routing:\n    statefulset: {name: gw, service: gw, replicas: 1, port: 4317}\n"
        ),
        ["forward.tls"]
    );
}
