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
}
