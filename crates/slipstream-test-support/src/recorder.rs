//! A recording HTTP server for testing a client: it serves HTTP/1.1 and HTTP/2 (prior
//! knowledge) on a port of its own choosing, answers each request as the test says, and keeps
//! every request it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::eventually_async;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Served {
    /// Path and query.
    pub uri: Uri,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Served {
    /// A header's value, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Every request so far, in arrival order.
pub type Log = Arc<Mutex<Vec<Served>>>;

/// Serves on a port of 127.0.0.1 chosen by the system; `respond(n, request)` answers the
/// `n`-th request (from 0). Every request is recorded in the returned log.
pub async fn serve<F>(respond: F) -> (SocketAddr, Log)
where
    F: Fn(usize, &Served) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let (respond, log2) = (Arc::new(respond), log.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (respond, log) = (respond.clone(), log2.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (respond, log) = (respond.clone(), log.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let served = Served {
                            uri: parts.uri,
                            headers: parts.headers,
                            body: body.collect().await?.to_bytes(),
                        };
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(served.clone());
                            log.len() - 1
                        };
                        Ok::<_, hyper::Error>(respond(n, &served))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, log)
}

/// A response with `status`, these headers and an empty or given body.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body.into())).unwrap()
}

/// Waits until the log holds at least `n` requests (at most 10 s); returns them.
pub async fn wait_for_requests(log: &Log, n: usize) -> Vec<Served> {
    eventually_async(&format!("{n} requests"), Duration::from_secs(10), || {
        let log = log.lock().unwrap();
        std::future::ready(if log.len() >= n {
            Ok(log.clone())
        } else {
            Err(format!("{} requests", log.len()))
        })
    })
    .await
}

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
