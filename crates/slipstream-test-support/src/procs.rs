//! Real Prometheus and Alertmanager processes for the exporter tests (Debian packages
//! `prometheus` and `prometheus-alertmanager`, installed by `scripts/test-deps.sh`; or the
//! binaries `PROMETHEUS_BIN` and `ALERTMANAGER_BIN` name). Each listens on a port of its own
//! choosing (`127.0.0.1:0`), found from `/proc` once it is bound, and writes its log to its
//! scratch directory, shown when it exits before it is ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::listening::wait_ready;

use crate::{eventually_async, http_get};

/// The binary `$env` names, else `name` on `PATH`; panics naming the fix when neither is there.
fn binary(name: &str, env: &str) -> PathBuf {
    let missing = format!(
        "`{name}` is not installed: run scripts/test-deps.sh (it installs the Debian packages \
         `prometheus` and `prometheus-alertmanager`), or point {env} at the binary"
    );
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{env}={}: {missing}", p.display());
        return p;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{missing}"))
}

/// A child process killed when dropped, with its scratch directory and log.
#[derive(Debug)]
struct Proc {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` listening on a port of its own choosing, its stderr to `what.log` in `dir`;
    /// waits until it answers `/-/ready`.
    async fn start(mut cmd: Command, what: &str, dir: tempfile::TempDir) -> Proc {
        let log = dir.path().join(format!("{what}.log"));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = cmd
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let addr = wait_ready(&mut child, what, || read_log(&log)).await;
        Proc {
            child,
            log,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
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
    proc: Proc,
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
        let dir = tempfile::tempdir().unwrap();
        let targets_path = dir.path().join("targets.json");
        write_targets(&targets_path, targets);
        let job = format!(
            "  - job_name: slipstream\n    scrape_interval: 1s\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            targets_path.display()
        );
        Self::launch(dir, &job, args).await
    }

    /// Starts Prometheus with these `scrape_configs` (YAML list items, indented by two
    /// spaces; none when empty) instead of the `slipstream` job.
    pub async fn start_scraping(scrape_configs: &str) -> Prometheus {
        Self::launch(tempfile::tempdir().unwrap(), scrape_configs, &[]).await
    }

    async fn launch(dir: tempfile::TempDir, scrape_configs: &str, args: &[&str]) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:{}\n",
            if scrape_configs.is_empty() {
                " []".to_owned()
            } else {
                format!("\n{}", scrape_configs.trim_end_matches('\n'))
            }
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(binary("prometheus", "PROMETHEUS_BIN"));
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.enable-remote-write-receiver")
            .args(args);
        let targets = dir.path().join("targets.json");
        let proc = Proc::start(cmd, "prometheus", dir).await;
        Prometheus {
            addr: proc.addr,
            targets,
            proc,
        }
    }

    /// What Prometheus logged so far (to show beside a failed wait).
    pub fn log(&self) -> String {
        read_log(&self.proc.log)
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
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config_path,
            "route:\n  receiver: 'null'\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let mut cmd = Command::new(binary("prometheus-alertmanager", "ALERTMANAGER_BIN"));
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg("--cluster.listen-address=");
        let proc = Proc::start(cmd, "alertmanager", dir).await;
        Alertmanager {
            addr: proc.addr,
            _proc: proc,
        }
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`), active and not.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(self.addr, "/api/v2/alerts").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
    }
}
