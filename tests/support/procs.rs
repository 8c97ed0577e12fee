//! Real Prometheus and Alertmanager processes for the exporter tests (Debian packages
//! `prometheus` and `prometheus-alertmanager`, installed by `scripts/test-deps.sh`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http_get};

fn binary(path: &'static str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/test-deps.sh (it installs the Debian packages \
         `prometheus` and `prometheus-alertmanager`)"
    );
    path
}

/// A child process killed when dropped, with its scratch directory.
#[derive(Debug)]
struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(addr: SocketAddr, what: &str) {
    let start = Instant::now();
    loop {
        let ok = crate::answers(addr, "/-/ready").await;
        if ok {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} on {addr} not ready after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server with the remote-write receiver on, scraping the given targets.
#[derive(Debug)]
pub struct Prometheus {
    /// Where it listens.
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second, as
    /// job `slipstream`.
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        Self::start_with(targets, &[]).await
    }

    /// As [`Prometheus::start`], with extra command-line arguments (e.g.
    /// `--enable-feature=native-histograms`).
    pub async fn start_with(targets: &[SocketAddr], args: &[&str]) -> Prometheus {
        let bin = binary("/usr/bin/prometheus");
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: slipstream\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            addr,
            _proc: Proc { child, _dir: dir },
        };
        wait_ready(addr, "prometheus").await;
        p
    }

    /// The remote-write URL.
    pub fn remote_write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Runs an instant query; returns each result's labels and value.
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(promql)),
        )
        .await;
        assert_eq!(status, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `promql` until `check` accepts its results, for at most `within`.
    pub async fn wait_for(
        &self,
        promql: &str,
        within: Duration,
        check: impl Fn(&[(serde_json::Value, f64)]) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        let start = Instant::now();
        loop {
            let r = self.query(promql).await;
            if check(&r) {
                return r;
            }
            assert!(
                start.elapsed() < within,
                "{promql}: still {r:?} after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// An Alertmanager with clustering off and a null receiver.
#[derive(Debug)]
pub struct Alertmanager {
    /// Where it listens.
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Alertmanager {
    /// Starts Alertmanager on `port` (a free one when `None`).
    pub async fn start(port: Option<u16>) -> Alertmanager {
        let bin = binary("/usr/bin/prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config_path,
            "route:\n  receiver: 'null'\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", port.unwrap_or_else(free_port))
            .parse()
            .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let a = Alertmanager {
            addr,
            _proc: Proc { child, _dir: dir },
        };
        wait_ready(addr, "alertmanager").await;
        a
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`), active and not.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.addr, "/api/v2/alerts").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
    }
}
