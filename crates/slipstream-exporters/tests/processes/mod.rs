//! What the tests against real servers (`alertmanager_real`, `remote_write_prometheus`)
//! share: waiting for a child process that listens on a port of its own choosing
//! (`--web.listen-address=127.0.0.1:0`) until it is ready, and a relay that stands in for a
//! server which starts after its client.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

pub(crate) use slipstream_test_support::listening::wait_ready;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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
