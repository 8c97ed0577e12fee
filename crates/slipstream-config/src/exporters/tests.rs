use super::AggregatesConfig;
use crate::Config;
use crate::forward::StatefulSetConfig;

fn paths(yaml: &str) -> Vec<String> {
    Config::from_yaml(yaml)
        .unwrap_err()
        .errors
        .iter()
        .map(|e| e.path.clone())
        .collect()
}

#[test]
fn the_gateways_may_be_a_statefulset_and_only_one_source_is_taken() {
    let c = Config::from_yaml(
        "exporters:\n  aggregates:\n    replicas: 2\n    statefulset:\n      name: slipstream-gateway\n      service: slipstream-gateway-headless\n      namespace: observability\n      replicas: 3\n      port: 4318\n",
    )
    .unwrap();
    let a = c.exporters.aggregates.unwrap();
    let s = a.statefulset.unwrap();
    assert_eq!(s.scheme, crate::forward::DEFAULT_STATEFULSET_SCHEME);
    assert_eq!(
        s.pods()[0].url,
        "http://slipstream-gateway-0.slipstream-gateway-headless.observability.svc:4318"
    );

    assert_eq!(
        paths(
            "exporters:\n  aggregates:\n    dns: http://gw:4318\n    statefulset: {name: gw, service: gw, replicas: 1, port: 4318}\n"
        ),
        ["exporters.aggregates.endpoints"]
    );
    assert_eq!(
        paths(
            "exporters:\n  aggregates:\n    statefulset: {name: gw, service: gw, replicas: 0, port: 4318}\n"
        ),
        ["exporters.aggregates.statefulset.replicas"]
    );
    assert_eq!(
        paths(
            "exporters:\n  aggregates:\n    tls: {}\n    statefulset: {name: gw, service: gw, replicas: 1, port: 4318}\n"
        ),
        ["exporters.aggregates.tls"]
    );
}

#[test]
fn a_reload_can_take_the_gateways_and_replicas_but_nothing_else() {
    let base = AggregatesConfig {
        endpoints: vec!["http://gw-0:4318".into()],
        ..AggregatesConfig::default()
    };
    let scaled = AggregatesConfig {
        endpoints: Vec::new(),
        replicas: 2,
        statefulset: Some(StatefulSetConfig {
            name: "gw".into(),
            service: "gw".into(),
            replicas: 4,
            port: 4318,
            ..StatefulSetConfig::default()
        }),
        ..base.clone()
    };
    assert!(base.same_apart_from_gateways(&scaled));
    assert!(base.same_apart_from_gateways(&base));
    let other_token = AggregatesConfig {
        bearer_token: Some("t".into()),
        ..scaled.clone()
    };
    assert!(!base.same_apart_from_gateways(&other_token));
}
