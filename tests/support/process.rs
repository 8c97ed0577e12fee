//! The `slipstream` binary as a separate process, for tests that kill it or run several:
//! started on port 0, its addresses read from its ready file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use slipstream_test_support::process::{Ready, Running};

use crate::{eventually_async, http_get};

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
    proc: Running,
    /// Where it listens (from its ready file).
    pub ready: Ready,
    /// The admin server's address.
    pub admin: SocketAddr,
}

impl Slipstream {
    /// Starts `slipstream run --config <config>` (its listeners on port 0, the admin server
    /// enabled), waits for its ready file, then until `/healthz` answers.
    pub async fn start(config: &Path) -> Slipstream {
        let mut cmd = Command::new(slipstream_binary());
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        let proc = Running::start_async(cmd).await;
        let ready = proc.ready;
        let admin = ready.admin();
        eventually_async(
            "/healthz answering 200",
            Duration::from_secs(30),
            || async move { http_get(admin, "/healthz").await.0 == 200 },
        )
        .await;
        Slipstream { proc, ready, admin }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `kill -9`: no chance to save anything.
    pub fn kill9(mut self) {
        self.proc.kill9();
    }

    /// SIGTERM, then waits for a graceful exit; returns whether it exited with success.
    pub fn terminate(mut self) -> bool {
        self.proc.terminate().success()
    }
}
