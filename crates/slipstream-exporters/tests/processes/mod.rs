//! What the tests against real servers (`alertmanager_real`, `remote_write_prometheus`)
//! share: waiting for a child process that listens on a port of its own choosing
//! (`--web.listen-address=127.0.0.1:0`) until it is ready, and a relay that stands in for a
//! server which starts after its client.

use std::net::SocketAddr;
use std::process::Child;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use slipstream_test_support::listening::listening;
use slipstream_test_support::{answers, eventually_async};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Waits for the one port `child` listens on, then until it answers `GET /-/ready`; returns
/// its address. Panics with `log()` if the child exits first.
pub(crate) async fn wait_ready(
    child: &mut Child,
    what: &str,
    log: impl Fn() -> String,
) -> SocketAddr {
    let pid = child.id();
    let addr = eventually_async(
        &format!("{what} listening"),
        Duration::from_secs(30),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{what} exited with {status}:\n{}", log());
            }
            let ports = listening(pid);
            std::future::ready(match ports[..] {
                [addr] => Ok(addr),
                _ => Err(format!("listening on {ports:?}")),
            })
        },
    )
    .await;
    eventually_async(
        &format!("{what} on {addr} ready"),
        Duration::from_secs(30),
        || answers(addr, "/-/ready"),
    )
    .await;
    addr
}

/// A TCP relay on a port of its own choosing, for a client started before its server: until
/// [`Relay::forward_to`] names the server, each connection is closed unanswered (to the
/// client, a server that cannot be reached); after, each is piped to the server.
pub(crate) struct Relay {
    /// Where the client connects.
    pub(crate) addr: SocketAddr,
    server: Arc<OnceLock<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server: Arc<OnceLock<SocketAddr>> = Arc::default();
        let to = server.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(&to) = to.get() else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, server, task }
    }

    /// Pipes every connection from now on to `server`.
    pub(crate) fn forward_to(&self, server: SocketAddr) {
        self.server
            .set(server)
            .expect("the relay forwards to one server");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
