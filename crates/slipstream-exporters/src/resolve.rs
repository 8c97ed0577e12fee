//! Endpoints found by DNS: a name with one address per endpoint (a headless Service).

use crate::Error;

/// A DNS name standing for several endpoints: the scheme, host and port to look up.
#[derive(Debug, Clone)]
pub struct DnsName {
    scheme: String,
    host: String,
    port: u16,
}

impl DnsName {
    /// Parses `scheme://name:port`; `field` names the config field in errors.
    pub fn parse(field: &str, url: &str) -> Result<DnsName, Error> {
        let uri: http::Uri = url.parse().map_err(|e| Error::url(field, url, e))?;
        let (Some(scheme), Some(host), Some(port)) = (uri.scheme_str(), uri.host(), uri.port_u16())
        else {
            return Err(Error::url(field, url, "expected scheme://name:port"));
        };
        Ok(DnsName {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// Every address the name has, as endpoint URLs.
    pub async fn lookup(&self) -> Result<Vec<String>, Error> {
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|cause| Error::DnsLookup {
                host: self.host.clone(),
                cause,
            })?;
        let found: Vec<String> = addrs.map(|a| format!("{}://{a}", self.scheme)).collect();
        if found.is_empty() {
            return Err(Error::NoAddresses {
                host: self.host.clone(),
            });
        }
        Ok(found)
    }
}

/// Looks `dns` up now and then every `every`, handing each answer to `apply` on the owner
/// while it lives; a failed lookup (or a refused answer) is logged under `field` and the
/// current endpoints stay.
pub(crate) fn follow<T: Send + Sync + 'static>(
    dns: DnsName,
    every: std::time::Duration,
    owner: std::sync::Weak<T>,
    field: &'static str,
    apply: fn(&T, Vec<String>) -> Result<(), Error>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let found = dns.lookup().await;
            let Some(owner) = owner.upgrade() else { return };
            if let Err(e) = found.and_then(|f| apply(&owner, f)) {
                tracing::warn!("{field}: {e}; keeping the current endpoints");
            }
            drop(owner);
            tokio::time::sleep(every).await;
        }
    })
}

/// Runs every future on its own task at once and waits for all; a task that failed gives
/// `R::default()`.
pub(crate) async fn join_spawned<F, R>(futures: impl IntoIterator<Item = F>) -> Vec<R>
where
    F: Future<Output = R> + Send + 'static,
    R: Default + Send + 'static,
{
    let tasks: Vec<tokio::task::JoinHandle<R>> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_default());
    }
    out
}
