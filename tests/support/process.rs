//! The `slipstream` binary as a separate process, for tests that kill it or run several.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::http_get;

/// The `slipstream` binary of this build profile, built (once per test process) if needed.
pub fn slipstream_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // This test runs from <target>/<profile>/deps/.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "slipstream", "--bin", "slipstream"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the slipstream binary failed");
        profile_dir.join("slipstream")
    })
}

/// A running `slipstream run` process, killed when dropped.
#[derive(Debug)]
pub struct Slipstream {
    child: Child,
    /// The admin server's address (from the config).
    pub admin: SocketAddr,
}

impl Slipstream {
    /// Starts `slipstream run --config <config>` and waits until `/healthz` answers on
    /// `admin`.
    pub async fn start(config: &Path, admin: SocketAddr) -> Slipstream {
        let child = Command::new(slipstream_binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("slipstream starts");
        let mut proc = Slipstream { child, admin };
        let start = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(admin).await.is_ok()
                && http_get(admin, "/healthz").await.0 == 200
            {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("slipstream exited at start: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "slipstream not healthy after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to save anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for a graceful exit; returns whether it exited with success.
    pub fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        self.child.wait().expect("reaped").success()
    }
}

impl Drop for Slipstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
