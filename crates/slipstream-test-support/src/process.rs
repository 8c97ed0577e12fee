//! The `slipstream` binary as a child process on port 0: the test appends `--ready-file` to
//! its `slipstream run` command, waits for the file (the process writes it once every
//! listener is bound) and reads the addresses it got from it. [`Slipstream`] is such a
//! process on a config file, for tests that kill it or run several; [`slipstream_binary`]
//! builds the binary for tests of crates that do not have it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::eventually::{eventually, eventually_async};
use crate::http_get;

/// How long a process may take to bind its listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The addresses a `slipstream run --ready-file` reported: those of the enabled listeners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// OTLP/gRPC.
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP.
    pub otlp_http: Option<SocketAddr>,
    /// The admin server.
    pub admin: Option<SocketAddr>,
    /// The SLI series' scrape endpoint.
    pub prometheus: Option<SocketAddr>,
}

impl Ready {
    /// Parses a ready file's JSON object.
    pub fn parse(text: &str) -> Result<Ready, String> {
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let obj = doc.as_object().ok_or("not a JSON object")?;
        let addr = |name: &str| -> Result<Option<SocketAddr>, String> {
            obj.get(name)
                .map(|v| {
                    v.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("{name}: {v} is not an address"))
                })
                .transpose()
        };
        Ok(Ready {
            otlp_grpc: addr("otlp_grpc")?,
            otlp_http: addr("otlp_http")?,
            admin: addr("admin")?,
            prometheus: addr("prometheus")?,
        })
    }

    /// Reads the ready file at `path`: `None` while it does not exist; panics when it
    /// exists but does not parse (it is renamed into place whole).
    pub fn read(path: &Path) -> Option<Ready> {
        let text = std::fs::read_to_string(path).ok()?;
        Some(Ready::parse(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display())))
    }

    /// OTLP/gRPC, which the test's config enabled.
    pub fn otlp_grpc(&self) -> SocketAddr {
        self.otlp_grpc.expect("OTLP/gRPC is enabled")
    }

    /// OTLP/HTTP, which the test's config enabled.
    pub fn otlp_http(&self) -> SocketAddr {
        self.otlp_http.expect("OTLP/HTTP is enabled")
    }

    /// The admin server, which the test's config enabled.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("the admin server is enabled")
    }

    /// The SLI series' endpoint, which the test's config enabled.
    pub fn prometheus(&self) -> SocketAddr {
        self.prometheus.expect("the Prometheus endpoint is enabled")
    }
}

/// A `slipstream run` child process and the addresses it is listening on; killed (SIGKILL)
/// when dropped.
#[derive(Debug)]
pub struct Running {
    /// The process (e.g. to take its piped stderr, or wait for it).
    pub child: Child,
    /// Where it listens.
    pub ready: Ready,
    _dir: tempfile::TempDir,
}

/// Spawns `cmd` with `--ready-file` appended; the file's path.
fn spawn(mut cmd: Command) -> (Child, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join("ready.json");
    let child = cmd
        .arg("--ready-file")
        .arg(&path)
        .spawn()
        .expect("the process starts");
    (child, path, dir)
}

/// The ready file once it is there; panics when the process has exited meanwhile.
fn check(child: &mut Child, path: &Path) -> Option<Ready> {
    if let Some(status) = child.try_wait().expect("the child's status") {
        panic!("the process exited before it was ready: {status}");
    }
    Ready::read(path)
}

impl Running {
    /// Starts `cmd` (`slipstream run --config FILE`, with whatever environment and pipes the
    /// test wants) with `--ready-file` in a scratch directory, and waits up to
    /// [`START_TIMEOUT`] for the file; panics if the process exits first.
    pub fn start(cmd: Command) -> Running {
        let (mut child, path, dir) = spawn(cmd);
        let ready = eventually("the ready file", START_TIMEOUT, || check(&mut child, &path));
        Running {
            child,
            ready,
            _dir: dir,
        }
    }

    /// [`Running::start`] for a test on a runtime: the wait lets the runtime's other tasks
    /// (a downstream the process connects to, say) run.
    pub async fn start_async(cmd: Command) -> Running {
        let (mut child, path, dir) = spawn(cmd);
        let ready = eventually_async("the ready file", START_TIMEOUT, || {
            std::future::ready(check(&mut child, &path))
        })
        .await;
        Running {
            child,
            ready,
            _dir: dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to save anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Sends SIGTERM.
    pub fn send_term(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// SIGTERM, then waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.send_term();
        self.child.wait().expect("reaped")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines a child writes to a pipe (its stderr, say), read as they come by a thread of
/// their own, so the child never blocks on a full pipe and a test can wait for a line.
#[derive(Debug)]
pub struct Lines {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    /// Starts reading `pipe` line by line until it closes.
    pub fn follow(pipe: impl std::io::Read + Send + 'static) -> Lines {
        use std::io::BufRead as _;
        let seen = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let lines = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        Lines {
            seen,
            reader: Some(reader),
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a line read after the first `after` lines that contains
    /// `want`; returns the number of lines read up to and including it (to pass as `after`
    /// to the next wait). Panics with every line seen at the deadline.
    pub fn wait_for(&self, after: usize, want: &str, timeout: Duration) -> usize {
        eventually(&format!("a line with {want:?}"), timeout, || {
            let seen = self.seen.lock().unwrap();
            match seen.iter().skip(after).position(|l| l.contains(want)) {
                Some(i) => Ok(after + i + 1),
                None => Err(seen.join("\n")),
            }
        })
    }

    /// Waits for the pipe to close (the child exited) and returns every line.
    pub fn finish(mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread");
        }
        self.seen()
    }
}

/// Waits up to `timeout` for `child` to exit; kills it and panics naming `what` otherwise.
pub fn exit_within(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(what, timeout, || {
            child.try_wait().expect("the child's status")
        })
    }));
    match exited {
        Ok(status) => status,
        Err(panic) => {
            let _ = child.kill();
            let _ = child.wait();
            std::panic::resume_unwind(panic)
        }
    }
}

/// A port on 127.0.0.1 that is bound but not listening, for as long as this is held:
/// connections to it are refused, and no other test can take it meanwhile (a "free" port
/// that was bound and let go could be handed to another test's server).
#[derive(Debug)]
pub struct HeldPort {
    socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl HeldPort {
    /// Binds a port chosen by the system.
    pub fn hold() -> HeldPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("the bound address");
        HeldPort { socket, addr }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets the port go (to start a server on it at once); its address.
    pub fn release(self) -> SocketAddr {
        drop(self.socket);
        self.addr
    }
}

// === the binary ===

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
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
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
