//! TLS settings: the receivers' certificate (and the client CA that turns on mutual TLS), and
//! the trust roots and client certificate of the clients that push to other services
//! (`forward` and the push exporters).
//!
//! The PEM files are read when slipstream starts ([`ServerTlsConfig::load`],
//! [`ClientTlsConfig::load`]), not when the document is parsed, so `slipstream validate` works
//! where the files are not mounted; a file that cannot be read or parsed is an error naming
//! the field and the path. Every config uses the `ring` crypto provider of rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::Errors;

/// Default for `insecure_skip_verify`: server certificates are verified.
pub const DEFAULT_INSECURE_SKIP_VERIFY: bool = false;

/// `receivers.otlp.grpc.tls`, `receivers.otlp.http.tls`: serve TLS with this certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM file of the server certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of the CA certificates client certificates are verified against; when set,
    /// every client must present a certificate issued by one of them (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `tls` of `forward` and of the push exporters: how the client verifies `https://` servers
/// and which certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM file of the CA certificates server certificates are verified against; `null` uses
    /// the Mozilla roots built into slipstream (`webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain presented for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate without verifying it (testing only: anyone on the path
    /// can read and change the traffic).
    pub insecure_skip_verify: bool,
}

impl Default for ClientTlsConfig {
    fn default() -> Self {
        ClientTlsConfig {
            ca_file: None,
            cert_file: None,
            key_file: None,
            insecure_skip_verify: DEFAULT_INSECURE_SKIP_VERIFY,
        }
    }
}

/// A TLS file that could not be used; the message names the field and the path.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{field}: cannot read {}: {source}", path.display())]
    Read {
        /// Field path, e.g. `receivers.otlp.http.tls.cert_file`.
        field: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the expected PEM content.
    #[error("{field}: {}: {detail}", path.display())]
    Pem {
        /// Field path.
        field: String,
        /// The file.
        path: PathBuf,
        /// What was expected or what is wrong.
        detail: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, a CA that
    /// is not usable).
    #[error("{field}: {detail}")]
    Invalid {
        /// Field path.
        field: String,
        /// rustls' reason.
        detail: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field: field.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file `path` (at least one).
pub fn load_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            field: field.to_owned(),
            path: path.to_owned(),
            detail: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            field: field.to_owned(),
            path: path.to_owned(),
            detail: "expected at least one PEM `CERTIFICATE` block".to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
pub fn load_key(field: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        field: field.to_owned(),
        path: path.to_owned(),
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "expected a PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
                    .to_owned()
            }
            e => format!("invalid PEM: {e}"),
        },
    })
}

fn load_roots(field: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(field, path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            field: field.to_owned(),
            path: path.to_owned(),
            detail: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn invalid(field: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        field: field.to_owned(),
        detail: e.to_string(),
    }
}

// === impl ServerTlsConfig ===

impl ServerTlsConfig {
    /// Reads the files and builds the server config; `field` is this section's path
    /// (`receivers.otlp.http.tls`). ALPN is left to the caller.
    pub fn load(&self, field: &str) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let certs = load_certs(&format!("{field}.cert_file"), &self.cert_file)?;
        let key = load_key(&format!("{field}.key_file"), &self.key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(field, e))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let f = format!("{field}.client_ca_file");
                let roots = load_roots(&f, ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid(&f, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        builder.with_single_cert(certs, key).map_err(|e| {
            invalid(
                &format!("{field}.key_file"),
                format!("cannot use with cert_file: {e}"),
            )
        })
    }
}

// === impl ClientTlsConfig ===

impl ClientTlsConfig {
    /// Reads the files and builds the client config; `field` is this section's path
    /// (`forward.tls`). ALPN is left to the caller.
    pub fn load(&self, field: &str) -> Result<rustls::ClientConfig, TlsError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(field, e))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(
                    provider.signature_verification_algorithms,
                )))
        } else {
            let roots = match &self.ca_file {
                Some(ca) => load_roots(&format!("{field}.ca_file"), ca)?,
                None => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
            };
            builder.with_root_certificates(roots)
        };
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let certs = load_certs(&format!("{field}.cert_file"), c)?;
                let key = load_key(&format!("{field}.key_file"), k)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    invalid(
                        &format!("{field}.key_file"),
                        format!("cannot use with cert_file: {e}"),
                    )
                })
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(invalid(
                field,
                "expected both cert_file and key_file, or neither",
            )),
        }
    }

    pub(crate) fn validate(&self, path: &str, errs: &mut Errors) {
        errs.check(
            self.cert_file.is_some() == self.key_file.is_some(),
            format!("{path}.key_file"),
            "expected both cert_file and key_file, or neither",
        );
        errs.check(
            !(self.insecure_skip_verify && self.ca_file.is_some()),
            format!("{path}.insecure_skip_verify"),
            "ca_file is unused when insecure_skip_verify is true; set one of them",
        );
    }
}

/// Checks that `tls`, when set, goes with an `https://` URL (a plain `http://` one would
/// silently ignore it); `path` is the section holding both.
pub(crate) fn check_tls_scheme(
    errs: &mut Errors,
    path: &str,
    url: &str,
    tls: Option<&ClientTlsConfig>,
) {
    if tls.is_some() {
        errs.check(
            !url.starts_with("http://"),
            format!("{path}.tls"),
            format!("is set but `{url}` is plain http://; use https://"),
        );
    }
}

/// Accepts every server certificate (`insecure_skip_verify`); handshake signatures are still
/// checked, so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct SkipVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
