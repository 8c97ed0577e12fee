//! Connection deadlines and the connection cap, on real sockets with short deadlines.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::*;

/// Deadlines short enough for a test, long enough for a loaded machine to meet the other
/// steps.
fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_open: 64,
        handshake_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(300),
        min_body_rate: 1024,
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
    }
}

/// A server of the OTLP route whose handler reads the body (as the receivers do) and answers
/// 200 with its length, or 400 when it cannot be read.
struct Server {
    addr: SocketAddr,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(limits: ConnectionLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let (stop, shutdown) = watch::channel(false);
        let h: OtlpHandler = Arc::new(|req| {
            Box::pin(async move {
                use http_body_util::BodyExt as _;
                // Read as the receivers do: the whole body, through the connection's limits.
                let (status, text) = match req.into_body().collect().await {
                    Ok(b) => (StatusCode::OK, b.to_bytes().len().to_string()),
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                };
                let mut r = Response::new(ResponseBody::full(text));
                *r.status_mut() = status;
                r
            })
        });
        let task = tokio::spawn(serve(
            listener,
            Route::Otlp(h),
            shutdown,
            "test",
            None,
            limits,
            registry.clone(),
        ));
        Server {
            addr,
            registry,
            stop,
            task,
        }
    }

    fn closed(&self, reason: &str) -> i128 {
        self.registry
            .value(names::CONNECTIONS_CLOSED.name, &["test", reason])
            .unwrap_or(0)
    }

    fn open(&self) -> i128 {
        self.registry
            .value(names::OPEN_CONNECTIONS.name, &["test"])
            .unwrap_or(0)
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the listener stops")
            .unwrap();
    }
}

/// Reads until the server closes the connection (EOF or reset), within `within`; returns what
/// was read and when it closed. Panics, naming what was read, when it stays open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, Instant::now()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {within:?}; read so far: {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Waits until `f` holds, or panics after `within` naming `what` and the last value seen.
async fn eventually(what: &str, within: Duration, f: impl Fn() -> i128, want: i128) {
    let deadline = Instant::now() + within;
    loop {
        let got = f();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: expected {want}, still {got} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_handshake_deadline() {
    let server = Server::start(limits()).await;
    let start = Instant::now();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let (_, closed_at) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    let held = closed_at - start;
    assert!(
        held >= Duration::from_millis(250),
        "closed after {held:?}, before the deadline"
    );
    eventually(
        "connections closed for handshake_timeout",
        Duration::from_secs(2),
        || server.closed("handshake_timeout"),
        1,
    )
    .await;
    eventually(
        "open connections",
        Duration::from_secs(2),
        || server.open(),
        0,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_sends_only_the_preface_is_closed_at_the_header_deadline() {
    let server = Server::start(limits()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame, then nothing.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let start = Instant::now();
    let (seen, closed_at) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(
        closed_at - start >= Duration::from_millis(250),
        "closed after {:?}",
        closed_at - start
    );
    // The server's SETTINGS, its ack of ours, and a GOAWAY (type 7) before closing.
    assert!(
        seen.windows(2).any(|w| w == [0x07, 0x00]),
        "no GOAWAY frame among {} bytes",
        seen.len()
    );
    eventually(
        "connections closed for header_timeout",
        Duration::from_secs(2),
        || server.closed("header_timeout"),
        1,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_with_400_and_its_connection_closed() {
    let server = Server::start(limits()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\n",
    )
    .await
    .unwrap();
    let start = Instant::now();
    // One byte every 50 ms: 20 bytes/s against a minimum of 1 KiB/s after 300 ms.
    let (mut read, mut write) = conn.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let within = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(within, read.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "still open after {within:?}: {:?}",
                    String::from_utf8_lossy(&seen)
                )
            }) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let held = start.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 400"), "answered {text:?}");
    assert!(text.contains("too slowly"), "answered {text:?}");
    assert!(
        held >= Duration::from_millis(300) && held < Duration::from_secs(3),
        "cut after {held:?}"
    );
    eventually(
        "connections closed for body_timeout",
        Duration::from_secs(2),
        || server.closed("body_timeout"),
        1,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_at_a_good_rate_is_read_and_an_idle_connection_closed_after_it() {
    let server = Server::start(limits()).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-length: 4096\r\n\r\n")
        .await
        .unwrap();
    // 4 KiB in 8 pieces over ~400 ms: past the 300 ms grace, but above 1 KiB/s.
    for _ in 0..8 {
        conn.write_all(&[b'y'; 512]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = Instant::now();
    let (seen, closed_at) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "answered {text:?}");
    assert!(text.ends_with("4096"), "answered {text:?}");
    assert!(
        closed_at - answered >= Duration::from_millis(300),
        "closed {:?} after the answer",
        closed_at - answered
    );
    eventually(
        "connections closed for idle_timeout",
        Duration::from_secs(2),
        || server.closed("idle_timeout"),
        1,
    )
    .await;
    assert_eq!(server.closed("body_timeout"), 0);
    server.stop().await;
}

#[tokio::test]
async fn past_the_cap_new_connections_are_closed_at_once_and_counted() {
    let server = Server::start(ConnectionLimits {
        max_open: 2,
        handshake_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let _a = TcpStream::connect(server.addr).await.unwrap();
    let _b = TcpStream::connect(server.addr).await.unwrap();
    eventually(
        "open connections",
        Duration::from_secs(2),
        || server.open(),
        2,
    )
    .await;
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    read_until_closed(&mut c, Duration::from_secs(2)).await;
    assert!(start.elapsed() < Duration::from_secs(2));
    eventually(
        "connections closed over the limit",
        Duration::from_secs(2),
        || server.closed("over_limit"),
        1,
    )
    .await;
    assert_eq!(server.open(), 2);
    // A held connection that goes away makes room for a new one, which is served.
    drop(_a);
    eventually(
        "open connections",
        Duration::from_secs(2),
        || server.open(),
        1,
    )
    .await;
    let mut d = TcpStream::connect(server.addr).await.unwrap();
    d.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    )
    .await
    .unwrap();
    let (seen, _) = read_until_closed(&mut d, Duration::from_secs(5)).await;
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "answered {:?}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(server.closed("over_limit"), 1);
    server.stop().await;
}

/// A request body fed from a channel, one frame per message.
struct ChannelBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|d| d.map(|d| Ok(http_body::Frame::data(d))))
    }
}

#[tokio::test]
async fn a_trickled_http2_body_is_cut_and_its_connection_closed() {
    let server = Server::start(limits()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if tx.send(bytes::Bytes::from_static(b"x")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let start = Instant::now();
    let req = Request::post(format!("http://{}/v1/traces", server.addr))
        .body(ChannelBody(rx))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("answered or reset within 5 s");
    match answer {
        Ok(r) => assert_eq!(r.status(), StatusCode::BAD_REQUEST),
        Err(e) => assert!(e.is_canceled() || e.to_string().contains("stream"), "{e}"),
    }
    // The connection goes too (GOAWAY, then closed).
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the connection closed within 5 s")
        .unwrap()
        .ok();
    let held = start.elapsed();
    trickle.abort();
    assert!(held >= Duration::from_millis(300), "cut after {held:?}");
    eventually(
        "connections closed for body_timeout",
        Duration::from_secs(2),
        || server.closed("body_timeout"),
        1,
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn the_admin_servers_get_the_same_deadlines_and_their_own_cap() {
    assert_eq!(ConnectionLimits::admin().max_open, crate::ADMIN_MAX_OPEN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Registry::new();
    let (stop, shutdown) = watch::channel(false);
    let h: Handler = Arc::new(|_req| Box::pin(async { Response::new(ResponseBody::full("ok\n")) }));
    let task = tokio::spawn(serve_http_with(
        listener,
        h,
        shutdown,
        "admin",
        ConnectionLimits {
            max_open: 2,
            ..limits()
        },
        registry.clone(),
    ));
    let closed = |reason: &str| {
        registry
            .value(names::CONNECTIONS_CLOSED.name, &["admin", reason])
            .unwrap_or(0)
    };
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut held = TcpStream::connect(addr).await.unwrap();
    let mut refused = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut refused, Duration::from_secs(2)).await;
    eventually(
        "over the cap",
        Duration::from_secs(2),
        || closed("over_limit"),
        1,
    )
    .await;
    read_until_closed(&mut idle, Duration::from_secs(5)).await;
    read_until_closed(&mut held, Duration::from_secs(5)).await;
    eventually(
        "closed at the handshake deadline",
        Duration::from_secs(2),
        || closed("handshake_timeout"),
        2,
    )
    .await;
    // With the idle ones gone, a probe is answered.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (seen, _) = read_until_closed(&mut probe, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
        "{text:?}"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the listener stops")
        .unwrap();
}
