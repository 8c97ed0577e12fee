//! Endpoints found by DNS: a name with one address per endpoint (a headless Service).

/// A DNS name standing for several endpoints: the scheme, host and port to look up.
#[derive(Debug, Clone)]
pub(crate) struct DnsName {
    scheme: String,
    host: String,
    port: u16,
}

impl DnsName {
    /// Parses `scheme://name:port`; `field` names the config field in errors.
    pub(crate) fn parse(field: &str, url: &str) -> Result<DnsName, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{field} `{url}`: {e}"))?;
        let (Some(scheme), Some(host), Some(port)) = (uri.scheme_str(), uri.host(), uri.port_u16())
        else {
            return Err(format!("{field} `{url}`: expected scheme://name:port"));
        };
        Ok(DnsName {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// Every address the name has, as endpoint URLs.
    pub(crate) async fn lookup(&self) -> Result<Vec<String>, String> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot look up {}: {e}", self.host))?;
        let found: Vec<String> = addrs.map(|a| format!("{}://{a}", self.scheme)).collect();
        if found.is_empty() {
            return Err(format!("{} has no addresses", self.host));
        }
        Ok(found)
    }
}
