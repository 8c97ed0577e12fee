use super::*;

#[test]
fn empty_document_is_all_defaults() {
    let c = Config::from_yaml("# nothing\n").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(
        c.receivers.otlp.grpc.as_ref().unwrap().endpoint,
        "0.0.0.0:4317"
    );
    assert_eq!(c.admin.endpoint.as_deref(), Some("127.0.0.1:8888"));
}

#[test]
fn defaults_round_trip_through_yaml() {
    let c = Config::default();
    let back = Config::from_yaml(&c.to_yaml()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let err = Config::from_yaml("receivers:\n  otlp:\n    grpc:\n      endpont: 0.0.0.0:1\n")
        .unwrap_err();
    assert_eq!(err.errors.len(), 1);
    let e = &err.errors[0];
    assert_eq!(e.path, "receivers.otlp.grpc.endpont");
    assert!(
        e.message.contains("unknown field `endpont`"),
        "{}",
        e.message
    );
}

#[test]
fn validation_reports_every_error_at_once() {
    let yaml = "receivers:\n  otlp:\n    grpc:\n      endpoint: nowhere\n    http:\n      endpoint: 'x:y'\nforward:\n  endpoint: localhost:4317\n  concurrency: 0\n";
    let err = Config::from_yaml(yaml).unwrap_err();
    let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "receivers.otlp.grpc.endpoint",
            "receivers.otlp.http.endpoint",
            "forward.endpoint",
            "forward.concurrency"
        ]
    );
    let shown = LoadError {
        file: Some("a.yaml".into()),
        ..err
    }
    .to_string();
    assert!(shown.starts_with("a.yaml: 4 errors"), "{shown}");
    assert!(
        shown.contains("a.yaml: forward.endpoint: `localhost:4317` is not a URL"),
        "{shown}"
    );
}

#[test]
fn sizes_and_durations_parse_with_units() {
    let c = Config::from_yaml(
        "receivers:\n  otlp:\n    max_decompressed_size: 8MiB\n    grpc:\n      max_recv_msg_size: 1048576\nforward:\n  timeout: 1m 30s\n",
    )
    .unwrap();
    assert_eq!(c.receivers.otlp.max_decompressed_size, ByteSize::mib(8));
    assert_eq!(
        c.receivers.otlp.grpc.unwrap().max_recv_msg_size,
        ByteSize::mib(1)
    );
    assert_eq!(c.forward.timeout, std::time::Duration::from_secs(90));
    let err = Config::from_yaml("receivers:\n  otlp:\n    max_decompressed_size: 8 parsecs\n")
        .unwrap_err();
    assert_eq!(err.errors[0].path, "receivers.otlp.max_decompressed_size");
    assert!(
        err.errors[0].message.contains("unknown size unit"),
        "{}",
        err.errors[0].message
    );
}

#[test]
fn byte_size_display_round_trips() {
    for s in ["4MiB", "512KiB", "1GiB", "100B"] {
        assert_eq!(ByteSize::parse(s).unwrap().to_string(), s);
    }
    assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
    assert!(ByteSize::parse("99999999999999GiB").is_err());
}

#[test]
fn env_substitution() {
    let look = |k: &str| match k {
        "HOST" => Some("collector".to_owned()),
        _ => None,
    };
    assert_eq!(
        substitute_env("a: ${env:HOST}:4317", look).unwrap(),
        "a: collector:4317"
    );
    assert_eq!(
        substitute_env("a: ${env:PORT:-4318}", look).unwrap(),
        "a: 4318"
    );
    assert_eq!(
        substitute_env("a: $$HOME and ${other}", look).unwrap(),
        "a: $HOME and ${other}"
    );
    let errs = substitute_env("${env:NOPE} ${env:1BAD}", look).unwrap_err();
    assert_eq!(errs.len(), 2);
    assert!(errs[0].message.contains("NOPE is not set"));
}

#[test]
fn the_example_configs_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1, "no example configs in {}", dir.display());
}

/// Every field path of the document, from the defaults serialized to YAML.
fn field_paths(value: &serde_yaml::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_yaml::Value::Mapping(m) = value {
        for (k, v) in m {
            let key = k.as_str().unwrap();
            let path = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            out.push(path.clone());
            field_paths(v, &path, out);
        }
    }
}

#[test]
fn reference_documents_every_field() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let value = serde_yaml::to_value(Config::default()).unwrap();
    let mut paths = Vec::new();
    field_paths(&value, "", &mut paths);
    let sections = [
        "log",
        "receivers",
        "receivers.otlp",
        "shutdown",
        "forward.queue",
        "forward.retry",
        "admin",
        "admin.silences",
        "aggregator",
        "slo",
        "exporters",
        "exporters.prometheus",
        "exporters.stdout",
        "state",
        "memory",
    ];
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !sections.contains(&p.as_str()))
        .filter(|p| !doc.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document: {missing:?}"
    );
}

#[test]
fn the_aggregates_exporter_parses_with_defaults_and_mistakes_name_their_fields() {
    let c = Config::from_yaml(
        "exporters:\n  aggregates:\n    endpoints: [http://gw-0:4318, http://gw-1:4318]\n",
    )
    .unwrap();
    let a = c.exporters.aggregates.unwrap();
    assert_eq!(a.endpoints.len(), 2);
    assert_eq!(a.interval, exporters::DEFAULT_AGGREGATES_INTERVAL);
    assert_eq!(
        a.max_request_size,
        exporters::DEFAULT_AGGREGATES_MAX_REQUEST_SIZE
    );
    assert!(a.gzip);
    assert_eq!(a.instance, None);
    assert_eq!(
        a.delivery().queue_size,
        exporters::DEFAULT_EXPORT_QUEUE_SIZE
    );

    let yaml = "exporters:\n  aggregates:\n    endpoints: [gw-0:4318, http://gw:4318, http://gw:4318]\n    instance: ' '\n    interval: 0s\n    max_request_size: 1KiB\n    queue_size: 0\n    tls: {}\n";
    let err = Config::from_yaml(yaml).unwrap_err();
    let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "exporters.aggregates.endpoints[0]",
            "exporters.aggregates.tls",
            "exporters.aggregates.tls",
            "exporters.aggregates.endpoints[2]",
            "exporters.aggregates.instance",
            "exporters.aggregates.interval",
            "exporters.aggregates.max_request_size",
            "exporters.aggregates.queue_size",
        ],
        "{err}"
    );
    let empty = Config::from_yaml("exporters:\n  aggregates: {}\n").unwrap_err();
    assert_eq!(empty.errors[0].path, "exporters.aggregates.endpoints");
    let unknown =
        Config::from_yaml("exporters:\n  aggregates:\n    endpoint: http://gw:4318\n").unwrap_err();
    assert_eq!(unknown.errors[0].path, "exporters.aggregates.endpoint");
    assert_eq!(a.replicas, exporters::DEFAULT_AGGREGATES_REPLICAS);
    let none = Config::from_yaml(
        "exporters:\n  aggregates:\n    endpoints: [http://gw:4318]\n    replicas: 0\n",
    )
    .unwrap_err();
    assert_eq!(none.errors[0].path, "exporters.aggregates.replicas");
    // More replicas than gateways is allowed: each gateway gets every service.
    Config::from_yaml(
        "exporters:\n  aggregates:\n    endpoints: [http://gw:4318]\n    replicas: 3\n",
    )
    .unwrap();
}

#[test]
fn the_replica_label_defaults_to_replica_and_checks_its_name() {
    let c = Config::from_yaml("exporters:\n  replica_label: {}\n").unwrap();
    let r = c.exporters.replica_label.unwrap();
    assert_eq!(r.name, exporters::DEFAULT_REPLICA_LABEL_NAME);
    assert_eq!(r.value, None);
    assert_eq!(Config::default().exporters.replica_label, None);
    let c =
        Config::from_yaml("exporters:\n  replica_label: {name: pod, value: gateway-0}\n").unwrap();
    assert_eq!(
        c.exporters.replica_label.unwrap().value.as_deref(),
        Some("gateway-0")
    );
    for bad in ["'1pod'", "__name__", "pod-name", "''"] {
        let err = Config::from_yaml(&format!("exporters:\n  replica_label: {{name: {bad}}}\n"))
            .unwrap_err();
        assert_eq!(err.errors[0].path, "exporters.replica_label.name", "{bad}");
    }
    let err = Config::from_yaml("exporters:\n  replica_label: {value: ' '}\n").unwrap_err();
    assert_eq!(err.errors[0].path, "exporters.replica_label.value");
}

// === environment values are scalars ===

#[test]
fn an_environment_value_cannot_add_keys_or_items() {
    let hostile = "x\"]\nadmin: {endpoint: 0.0.0.0:9999}\n#";
    let look = |k: &str| (k == "T").then(|| hostile.to_owned());
    for yaml in [
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [\"${env:T}\"]\n",
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [${env:T}]\n",
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens:\n        - ${env:T}\n",
        "receivers:\n  otlp:\n    auth:\n      bearer_tokens:\n        - '${env:T}'\n",
    ] {
        match Config::from_yaml_with_env(yaml, look) {
            // The token is one string, refused for its newline: nothing else changed.
            Err(e) => {
                assert!(
                    e.errors
                        .iter()
                        .all(|e| e.path == "receivers.otlp.auth.bearer_tokens[0]"),
                    "{yaml}: {e}"
                );
            }
            Ok(c) => panic!("{yaml}: accepted {:?}", c.receivers.otlp.auth),
        }
    }
    // A value that reads as a YAML mapping stays the string it is.
    let look = |_: &str| Some("{endpoint: 0.0.0.0:1}".to_owned());
    let c = Config::from_yaml_with_env(
        "exporters:\n  webhook:\n    url: http://hooks:80\n    secret: ${env:S}\n",
        look,
    )
    .unwrap();
    let secret = c.exporters.webhook.unwrap().secret;
    assert_eq!(secret.as_deref(), Some("{endpoint: 0.0.0.0:1}"));
    assert_eq!(c.admin, AdminConfig::default());
}

#[test]
fn environment_values_keep_their_documented_meaning() {
    let look = |k: &str| match k {
        "HOST" => Some("collector".to_owned()),
        "N" => Some("3".to_owned()),
        "TOKEN" => Some("a#b c".to_owned()),
        _ => None,
    };
    let c = Config::from_yaml_with_env(
        "forward:\n  endpoint: http://${env:HOST}:4317\n  concurrency: ${env:N}\n  headers:\n    authorization: Bearer ${env:TOKEN}\n    x-plain: ${env:TOKEN}\n    x-quoted: \"${env:N}\"\n",
        look,
    )
    .unwrap();
    assert_eq!(c.forward.endpoint.as_deref(), Some("http://collector:4317"));
    assert_eq!(c.forward.concurrency, 3);
    assert_eq!(c.forward.headers["authorization"], "Bearer a#b c");
    assert_eq!(c.forward.headers["x-plain"], "a#b c");
    assert_eq!(c.forward.headers["x-quoted"], "3");
    // The default `null` of the example configs turns forwarding off.
    let c = Config::from_yaml_with_env("forward:\n  endpoint: ${env:UNSET:-null}\n", look).unwrap();
    assert_eq!(c.forward.endpoint, None);
    // `$$` is a literal `$`, with or without references in the document.
    for yaml in [
        "forward:\n  endpoint: http://${env:HOST}:4317\n  headers:\n    x: a$$b\n",
        "forward:\n  endpoint: http://collector:4317\n  headers:\n    x: a$$b\n",
    ] {
        let c = Config::from_yaml_with_env(yaml, look).unwrap();
        assert_eq!(c.forward.headers["x"], "a$b", "{yaml}");
    }
    // Errors still name their field.
    let err =
        Config::from_yaml_with_env("forward:\n  concurrency: ${env:HOST}\n", look).unwrap_err();
    assert_eq!(err.errors[0].path, "forward.concurrency", "{err}");
}

// === the file ===

#[test]
fn only_a_regular_file_under_the_cap_is_read() {
    let started = std::time::Instant::now();
    let err = Config::load(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let dir = std::env::temp_dir().join(format!("slipstream-config-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = Config::load(&dir).unwrap_err();
    assert!(err.to_string().contains("a directory"), "{err}");
    let big = dir.join("big.yaml");
    let mut text = "# padding\n".repeat((MAX_CONFIG_FILE_SIZE as usize) / 10);
    text.push_str("mode: sidecar\n");
    std::fs::write(&big, &text).unwrap();
    let err = Config::load(&big).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let ok = dir.join("ok.yaml");
    std::fs::write(&ok, "mode: sidecar\n").unwrap();
    assert_eq!(Config::load(&ok).unwrap().mode, Mode::Sidecar);
    std::fs::remove_dir_all(&dir).unwrap();
}

// === redaction ===

#[test]
fn printed_configs_show_no_secret() {
    let yaml = "receivers:\n  otlp:\n    auth:\n      bearer_tokens: [otlp-token-1]\nadmin:\n  auth:\n    bearer_tokens: [admin-token-2]\nforward:\n  endpoint: https://fwd-user:fwd-pass@collector:4317\n  headers:\n    authorization: Bearer header-token-3\n    x-api-key: key-4\n    x-tenant: acme\nexporters:\n  webhook:\n    url: https://hooks.example.com/x\n    secret: webhook-secret-5\n";
    let c = Config::from_yaml(yaml).unwrap();
    let printed = c.to_yaml_redacted();
    for secret in [
        "otlp-token-1",
        "admin-token-2",
        "fwd-user",
        "fwd-pass",
        "header-token-3",
        "key-4",
        "webhook-secret-5",
    ] {
        assert!(!printed.contains(secret), "{secret} in\n{printed}");
    }
    assert!(
        printed.contains("https://<redacted>@collector:4317"),
        "{printed}"
    );
    assert!(printed.contains("acme"), "{printed}");
    assert!(printed.contains("https://hooks.example.com/x"), "{printed}");
    // Nothing else changed: the defaults print as they are.
    let d = Config::default();
    assert_eq!(d.to_yaml_redacted(), d.to_yaml());
}

#[test]
fn url_userinfo_is_redacted_wherever_it_stands() {
    use crate::redact::redact_urls;
    assert_eq!(
        redact_urls("[\"http://a:b@h:1/x\", \"https://h2\"]"),
        "[\"http://<redacted>@h:1/x\", \"https://h2\"]"
    );
    assert_eq!(redact_urls("grpc://u@h"), "grpc://<redacted>@h");
    assert!(matches!(
        redact_urls("http://h:4317"),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn admin_limits_validate_with_their_paths() {
    let err = Config::from_yaml(
        "admin:\n  auth: {}\n  silences:\n    max_count: 0\n    max_duration: 1s\n",
    )
    .unwrap_err();
    let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "admin.auth",
            "admin.silences.max_count",
            "admin.silences.max_duration"
        ]
    );
    let c = Config::default();
    assert_eq!(c.admin.silences.max_count, admin::DEFAULT_MAX_SILENCES);
    assert_eq!(c.admin.tokens(), Ok(None));
}

#[test]
fn histogram_boundaries_parse_as_durations_or_seconds_and_must_ascend() {
    let c = Config::from_yaml(
        "exporters:\n  prometheus:\n    histogram:\n      boundaries: [5ms, 0.1, 2, 2.5s]\n    native_histograms: false\n",
    )
    .unwrap();
    let p = &c.exporters.prometheus;
    assert_eq!(
        p.histogram.boundaries,
        [
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(2),
            std::time::Duration::from_millis(2500),
        ]
    );
    assert!(!p.native_histograms);
    assert_eq!(
        p.histogram.edges_ns(),
        [4_980_735, 99_614_719, 1_996_488_703, 2_516_582_399]
    );
    // The defaults: every edge at most 1/128 from the boundary it stands for.
    let d = exporters::HistogramExportConfig::default();
    for (b, e) in d.boundaries.iter().zip(d.edges_ns()) {
        let b = b.as_nanos() as f64;
        assert!((e as f64 - b).abs() <= b / 128.0, "{b} -> {e}");
    }
    let err = Config::from_yaml(
        "exporters:\n  remote_write:\n    endpoint: http://p:9090/api/v1/write\n    histogram:\n      boundaries: [10ms, 0s, 100ms, 100.1ms, 50ms]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("exporters.remote_write.histogram.boundaries[1]"),
        "{err}"
    );
    assert!(
        err.contains("exporters.remote_write.histogram.boundaries[3]"),
        "{err}"
    );
    assert!(
        err.contains("exporters.remote_write.histogram.boundaries[4]"),
        "{err}"
    );
    assert!(
        !err.contains("exporters.remote_write.histogram.boundaries[2]"),
        "{err}"
    );
}
