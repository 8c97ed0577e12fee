//! The one error type of the exporters: why an exporter could not be built from its config
//! (or, for the endpoints found by DNS, why a lookup found none).
//!
//! Every message names the config field it is about, as the user wrote it
//! (`exporters.webhook.url`, `forward.routing.dns`), and what was expected.

/// Why an exporter could not start, or could not take new endpoints.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config field holds a value the exporter cannot use (a header that is not valid
    /// HTTP).
    #[error("{field}: {what}")]
    Field {
        /// The field path, e.g. `exporters.webhook.headers.x-team`.
        field: String,
        /// What is wrong with it.
        what: String,
    },
    /// A URL field the exporter cannot use.
    #[error("{field} `{url}`: {what}")]
    Url {
        /// The field path, e.g. `exporters.alertmanager.endpoints[1]`.
        field: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it, or what was expected.
        what: String,
    },
    /// A URL field without a host.
    #[error("{field} `{url}` has no host")]
    NoHost {
        /// The field path.
        field: String,
        /// The URL as configured.
        url: String,
    },
    /// A field the exporter needs is not set.
    #[error("{field} is not set")]
    Unset {
        /// The field path.
        field: &'static str,
    },
    /// A TLS file or setting the HTTP client cannot use; the message names the field and
    /// the file.
    #[error("{0}")]
    Tls(String),
    /// A credential that could not be read; the message names the field and the file.
    #[error("{0}")]
    Credentials(String),
    /// A DNS name standing for endpoints could not be looked up.
    #[error("cannot look up {host}: {cause}")]
    DnsLookup {
        /// The name looked up.
        host: String,
        /// The resolver's answer.
        cause: std::io::Error,
    },
    /// A DNS name standing for endpoints has no address.
    #[error("{host} has no addresses")]
    NoAddresses {
        /// The name looked up.
        host: String,
    },
    /// A body that does not decode (for tests and tools reading what an exporter sent).
    #[error("{format}: {detail}")]
    Decode {
        /// The layer that failed, e.g. `snappy` or `protobuf`.
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
}

impl Error {
    /// [`Error::Field`] for `field`, saying `what`.
    pub(crate) fn field(field: impl Into<String>, what: impl std::fmt::Display) -> Self {
        Error::Field {
            field: field.into(),
            what: what.to_string(),
        }
    }

    /// [`Error::Url`] for `url` in `field`, saying `what`.
    pub(crate) fn url(
        field: impl Into<String>,
        url: impl Into<String>,
        what: impl std::fmt::Display,
    ) -> Self {
        Error::Url {
            field: field.into(),
            url: url.into(),
            what: what.to_string(),
        }
    }
}
