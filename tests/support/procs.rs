//! Real Prometheus and Alertmanager processes for the exporter tests (Debian packages
//! `prometheus` and `prometheus-alertmanager`, installed by `scripts/test-deps.sh`). Each
//! listens on a port of its own choosing (`127.0.0.1:0`), found from `/proc` once it is
//! bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use slipstream_test_support::listening::wait_ready;

use crate::{eventually_async, http_get};

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

/// Writes the scrape targets file that Prometheus watches (written whole, then renamed).
fn write_targets(path: &Path, targets: &[SocketAddr]) {
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let doc = serde_json::json!([{ "targets": targets }]);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, doc.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
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
    targets: PathBuf,
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
        let targets_path = dir.path().join("targets.json");
        write_targets(&targets_path, targets);
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: slipstream\n    scrape_interval: 1s\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            targets_path.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--web.enable-remote-write-receiver")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let addr = wait_ready(&mut child, "prometheus", String::new).await;
        Prometheus {
            addr,
            targets: targets_path,
            _proc: Proc { child, _dir: dir },
        }
    }

    /// Scrapes `targets` from now on instead (Prometheus watches the file that lists them),
    /// e.g. a slipstream started after Prometheus, on a port of its own choosing.
    pub fn set_targets(&self, targets: &[SocketAddr]) {
        write_targets(&self.targets, targets);
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
        let check = &check;
        eventually_async(promql, within, || async move {
            let r = self.query(promql).await;
            if check(&r) { Ok(r) } else { Err(r) }
        })
        .await
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
    /// Starts Alertmanager on a port of its own choosing.
    pub async fn start() -> Alertmanager {
        let bin = binary("/usr/bin/prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config_path,
            "route:\n  receiver: 'null'\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let addr = wait_ready(&mut child, "alertmanager", String::new).await;
        Alertmanager {
            addr,
            _proc: Proc { child, _dir: dir },
        }
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`), active and not.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.addr, "/api/v2/alerts").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
    }
}
