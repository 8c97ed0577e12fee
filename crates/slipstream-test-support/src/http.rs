//! Plain HTTP clients for the admin server and the downstreams tests start: an async GET over
//! hyper, a blocking HTTP/1.0 GET and POST over a bare socket for tests without a runtime,
//! self-metrics read from `/metrics` text, and gzip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;

/// A plain HTTP/1.1 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether `GET http://{addr}{path}` answers 2xx within a second (a readiness probe).
pub async fn answers(addr: SocketAddr, path: &str) -> bool {
    tokio::time::timeout(Duration::from_secs(1), async {
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Full<Bytes>>()
            .get(format!("http://{addr}{path}").parse().unwrap())
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Reads one self-metric from the admin server's `/metrics`: the sum of every series of
/// `name` whose labels include all of `labels` (`key="value"` strings).
pub async fn self_metric(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    metric_in(&http_get(admin, "/metrics").await.1, name, labels)
}

/// The sum of every series of `name` in the Prometheus text `text` whose labels include all
/// of `labels` (`key="value"` strings); 0 when there is none.
pub fn metric_in(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The answer (status line, headers and body) to an HTTP/1.0 request over a fresh
/// connection, read until the server closes it, resets it or is silent for 10 s; `None` when
/// the connection fails or nothing came back. A server may answer before it read the whole
/// body (a refusal) and close: what it sent is kept.
pub fn blocking_request(addr: SocketAddr, head: &str, body: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut buf = Vec::new();
    let mut chunk = [0; 8192];
    while let Ok(n @ 1..) = s.read(&mut chunk) {
        buf.extend_from_slice(&chunk[..n]);
    }
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

/// The whole answer to `GET path` over HTTP/1.0, without a runtime.
pub fn blocking_get_text(addr: SocketAddr, path: &str) -> Option<String> {
    blocking_request(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n"),
        b"",
    )
}

/// The status of `GET path` over HTTP/1.0, without a runtime.
pub fn blocking_get(addr: SocketAddr, path: &str) -> Option<u16> {
    status_of(&blocking_get_text(addr, path)?)
}

/// The status of an HTTP/1.0 `POST path` of `body` with `content_type`, without a runtime.
pub fn blocking_post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Option<u16> {
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    status_of(&blocking_request(addr, &head, body)?)
}

/// A self-metric read from `/metrics` without a runtime (see [`metric_in`]); `None` when the
/// admin server does not answer.
pub fn blocking_self_metric(admin: SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    Some(metric_in(
        &blocking_get_text(admin, "/metrics")?,
        name,
        labels,
    ))
}

/// The status code of an HTTP answer's status line.
fn status_of(answer: &str) -> Option<u16> {
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Decompresses gzip.
pub fn gunzip(data: &[u8]) -> Bytes {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    Bytes::from(out)
}

/// Compresses with gzip, at the default level: tests build decompression bombs with it, which
/// must stay small (zlib-rs's fastest level packs a long run half as tightly).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
