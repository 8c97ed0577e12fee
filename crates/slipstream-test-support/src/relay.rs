//! A TCP relay on a port of its own choosing, for a client that must be given an address
//! before its server has one (a Prometheus or Alertmanager started on port 0 after the
//! exporter that sends to it).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Until [`Relay::forward_to`] names the server, each connection is closed unanswered (to the
/// client, a server that cannot be reached); after, each is piped to the server. Stops when
/// dropped.
#[derive(Debug)]
pub struct Relay {
    /// Where the client connects.
    pub addr: SocketAddr,
    server: Arc<OnceLock<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a port of 127.0.0.1 chosen by the system.
    pub async fn start() -> Relay {
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
    pub fn forward_to(&self, server: SocketAddr) {
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
