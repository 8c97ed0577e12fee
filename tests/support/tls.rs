//! Certificates for the TLS tests, made with rcgen: a CA, server and client certificates
//! issued by it, PEM files in a temporary directory, and rustls configs for test clients
//! and servers (ring provider).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// A test certificate authority.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> Pem {
        self.leaf(
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Pem {
        self.leaf(vec![name.to_owned()], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Pem {
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A temporary directory to write PEM files to.
#[derive(Debug)]
pub struct Files(tempfile::TempDir);

impl Files {
    /// An empty directory, removed on drop.
    pub fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    /// Writes `text` to `name` in the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A path in the directory that does not exist.
    pub fn missing(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

impl Default for Files {
    fn default() -> Self {
        Files::new()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server config serving `pem`, ALPN `h2` and `http/1.1`; client certificates
/// issued by `client_ca` required when given.
pub fn server_config(pem: &Pem, client_ca: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let certs = vec![CertificateDer::from_pem_slice(pem.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut c = builder.with_single_cert(certs, key).unwrap();
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(c)
}

/// A rustls client config trusting `ca_pem`, presenting `identity` when given.
pub fn client_config(ca_pem: &str, identity: Option<&Pem>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some(id) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// Opens a TLS connection to `addr` (as `localhost`) with `config`, sends an HTTP/1.1
/// `GET /v1/traces` and returns the answer's bytes; `Err` when the handshake or the
/// exchange fails (with TLS 1.3 a refused client certificate shows on the first read).
pub async fn tls_get(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<Vec<u8>> {
    tls_request(
        addr,
        config,
        b"GET /v1/traces HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
}

/// Like [`tls_get`], sending `request` (a whole HTTP/1.1 request with `Connection: close`).
pub async fn tls_request(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(request).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(out)
}

/// Sends a plain-text HTTP/1.1 request to `addr` and returns whatever comes back before the
/// connection closes (nothing HTTP when `addr` speaks TLS).
pub async fn plain_get(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(b"GET /v1/traces HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    out
}
