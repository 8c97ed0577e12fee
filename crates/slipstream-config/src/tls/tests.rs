use std::path::PathBuf;

use super::*;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A self-signed certificate for `localhost` and its key.
    fn cert(&self, prefix: &str) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (
            self.write(&format!("{prefix}.crt"), &c.cert.pem()),
            self.write(&format!("{prefix}.key"), &c.signing_key.serialize_pem()),
        )
    }
}

fn server(cert_file: PathBuf, key_file: PathBuf) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file,
        key_file,
        client_ca_file: None,
    }
}

#[test]
fn server_config_loads_a_certificate_and_key() {
    let f = Files::new();
    let (c, k) = f.cert("srv");
    let mut s = server(c.clone(), k);
    assert!(s.load("receivers.otlp.http.tls").is_ok());
    s.client_ca_file = Some(c);
    assert!(s.load("receivers.otlp.http.tls").is_ok(), "mutual TLS");
}

#[test]
fn a_missing_file_names_the_field_and_the_path() {
    let f = Files::new();
    let (_, k) = f.cert("srv");
    let missing = f.dir.path().join("nope.crt");
    let err = server(missing.clone(), k)
        .load("receivers.otlp.grpc.tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("receivers.otlp.grpc.tls.cert_file: cannot read"),
        "{err}"
    );
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_file_without_certificates_is_refused() {
    let f = Files::new();
    let (_, k) = f.cert("srv");
    let err = server(k.clone(), k)
        .load("receivers.otlp.http.tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("receivers.otlp.http.tls.cert_file:") && err.contains("CERTIFICATE"),
        "{err}"
    );
    let junk = f.write("junk.pem", "not pem at all\n");
    let err = load_certs("x.cert_file", &junk).unwrap_err().to_string();
    assert!(err.contains("expected at least one"), "{err}");
}

#[test]
fn a_file_without_a_key_is_refused() {
    let f = Files::new();
    let (c, _) = f.cert("srv");
    let err = server(c.clone(), c)
        .load("receivers.otlp.http.tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("receivers.otlp.http.tls.key_file:") && err.contains("private key"),
        "{err}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let f = Files::new();
    let (c, _) = f.cert("a");
    let (_, k) = f.cert("b");
    let err = server(c, k)
        .load("receivers.otlp.http.tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("receivers.otlp.http.tls.key_file: cannot use with cert_file"),
        "{err}"
    );
}

#[test]
fn a_bad_client_ca_names_its_field() {
    let f = Files::new();
    let (c, k) = f.cert("srv");
    let mut s = server(c, k.clone());
    s.client_ca_file = Some(k);
    let err = s.load("receivers.otlp.http.tls").unwrap_err().to_string();
    assert!(
        err.starts_with("receivers.otlp.http.tls.client_ca_file:"),
        "{err}"
    );
}

#[test]
fn client_config_defaults_to_built_in_roots() {
    assert!(ClientTlsConfig::default().load("forward.tls").is_ok());
    let insecure = ClientTlsConfig {
        insecure_skip_verify: true,
        ..ClientTlsConfig::default()
    };
    assert!(insecure.load("forward.tls").is_ok());
}

#[test]
fn client_config_loads_a_ca_and_a_client_certificate() {
    let f = Files::new();
    let (c, k) = f.cert("cli");
    let cfg = ClientTlsConfig {
        ca_file: Some(c.clone()),
        cert_file: Some(c.clone()),
        key_file: Some(k),
        insecure_skip_verify: false,
    };
    assert!(cfg.load("forward.tls").is_ok());
    let half = ClientTlsConfig {
        cert_file: Some(c),
        ..ClientTlsConfig::default()
    };
    let err = half.load("forward.tls").unwrap_err().to_string();
    assert!(err.starts_with("forward.tls:"), "{err}");
    let bad_ca = ClientTlsConfig {
        ca_file: Some(f.dir.path().join("missing-ca.pem")),
        ..ClientTlsConfig::default()
    };
    let err = bad_ca
        .load("exporters.webhook.tls")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("exporters.webhook.tls.ca_file: cannot read"),
        "{err}"
    );
}

#[test]
fn tls_sections_parse_without_reading_the_files() {
    let c = crate::Config::from_yaml(
        "receivers:\n  otlp:\n    http:\n      tls: { cert_file: /no/such.crt, key_file: /no/such.key, client_ca_file: /no/ca.crt }\nforward:\n  endpoint: https://collector:4317\n  tls: { ca_file: /no/ca.crt }\nexporters:\n  webhook:\n    url: https://hooks.example/x\n    tls: { insecure_skip_verify: true }\n",
    )
    .unwrap();
    let http_tls = c.receivers.otlp.http.unwrap().tls.unwrap();
    assert_eq!(http_tls.client_ca_file, Some(PathBuf::from("/no/ca.crt")));
    assert!(c.receivers.otlp.grpc.unwrap().tls.is_none());
    assert_eq!(
        c.forward.tls.unwrap().ca_file,
        Some(PathBuf::from("/no/ca.crt"))
    );
    assert!(
        c.exporters
            .webhook
            .unwrap()
            .tls
            .unwrap()
            .insecure_skip_verify
    );
}

#[test]
fn tls_mistakes_are_reported_with_their_field_paths() {
    let err = crate::Config::from_yaml(
        "receivers:\n  otlp:\n    grpc:\n      tls: { cert_file: /c.crt }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("receivers.otlp.grpc.tls") && err.contains("key_file"),
        "{err}"
    );
    let err = crate::Config::from_yaml(
        "forward:\n  endpoint: http://collector:4317\n  tls: { cert_file: /c.crt }\nexporters:\n  otlp_logs:\n    endpoint: http://collector:4317\n    tls: {}\n  alertmanager:\n    endpoints: [https://am:9093]\n    tls: { insecure_skip_verify: true, ca_file: /ca.crt }\n",
    )
    .unwrap_err()
    .to_string();
    for want in [
        "forward.tls:",
        "forward.tls.key_file",
        "exporters.otlp_logs.tls:",
        "exporters.alertmanager.tls.insecure_skip_verify",
    ] {
        assert!(err.contains(want), "{want} missing from: {err}");
    }
}
