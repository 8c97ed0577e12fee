//! A full disk under the state directory and the forward spill: slipstream keeps running, the
//! failed snapshots are counted and resume once there is room, the spill refuses what it
//! cannot write with the retryable answer (so the client keeps it), and once the downstream
//! is back every accepted request is delivered: accepted = forwarded, nothing dropped.
//!
//! Runs on the 2 MiB tmpfs `scripts/test-deps.sh` mounts at
//! `/tmp/slipstream-test-full-disk`.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use slipstream_app::app::App;
use slipstream_e2e::{DownPort, eventually_async, otlp, raw, self_metric, start, test_config};

const FULL_DISK: &str = "/tmp/slipstream-test-full-disk";

/// Writes a file until the file system refuses; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
    path
}

async fn wait_metric(app: &App, name: &str, labels: &[&str], at_least: f64) {
    let admin = app.admin_addr.unwrap();
    let what = format!("{name}{labels:?} at least {at_least}");
    eventually_async(&what, Duration::from_secs(20), || async move {
        let v = self_metric(admin, name, labels).await;
        if v >= at_least { Ok(()) } else { Err(v) }
    })
    .await;
}

fn request(i: usize) -> Vec<u8> {
    otlp::trace_request("orders", 20, |j| {
        format!("request {i} span {j} {}", "x".repeat(200))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_retryably_loses_nothing_and_recovers() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        mounts.contains(&format!(" {FULL_DISK} tmpfs ")),
        "{FULL_DISK} is not a tmpfs: run scripts/test-deps.sh (as root, or with sudo)"
    );
    let dir = tempfile::tempdir_in(FULL_DISK).unwrap();
    let down = DownPort::hold();
    let port = down.port();
    let mut cfg = test_config(
        Some(("grpc", &format!("http://127.0.0.1:{port}"))),
        &format!(
            "  queue:\n    max_bytes: 16KiB\n    spill:\n      dir: {}\n      max_bytes: 64MiB\nslo:\n  evaluation_interval: 1s\n",
            dir.path().join("spill").display()
        ),
    );
    cfg.state.dir = Some(dir.path().join("state"));
    cfg.state.snapshot_interval = Duration::from_secs(1);
    cfg.aggregator.tick_interval = Duration::from_millis(500);
    let app = start(cfg).await;
    let http = app.http_addr.unwrap();
    let mut accepted = Vec::new();
    let mut i = 0;
    let mut send = async |accepted: &mut Vec<Vec<u8>>| {
        let body = request(i);
        i += 1;
        let r = raw::post_traces(http, body.clone()).await;
        if r.status == 200 {
            accepted.push(body);
        }
        r
    };

    // Room on disk: snapshots are written, the spill takes what memory cannot.
    for _ in 0..20 {
        assert_eq!(send(&mut accepted).await.status, 200);
    }
    wait_metric(
        &app,
        "slipstream_state_snapshots_total",
        &["outcome=\"ok\""],
        1.0,
    )
    .await;
    assert!(
        self_metric(
            app.admin_addr.unwrap(),
            "slipstream_forward_spill_requests",
            &[]
        )
        .await
            > 0.0
    );

    // The disk fills up.
    let filler = fill(dir.path());
    let mut refused = 0;
    for _ in 0..20 {
        let r = send(&mut accepted).await;
        if r.status != 200 {
            assert_eq!(r.status, 503, "a full spill is a retryable refusal");
            assert!(r.header("retry-after").is_some());
            refused += 1;
        }
    }
    assert!(refused > 0, "the full spill refused nothing");
    let segments = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
    assert!(segments <= 3, "{segments} spill files: one per refusal?");
    let ok_before = self_metric(
        app.admin_addr.unwrap(),
        "slipstream_state_snapshots_total",
        &["outcome=\"ok\""],
    )
    .await;
    wait_metric(
        &app,
        "slipstream_state_snapshots_total",
        &["outcome=\"failed\""],
        1.0,
    )
    .await;
    let (status, _) = slipstream_e2e::http_get(app.admin_addr.unwrap(), "/healthz").await;
    assert_eq!(status, 200, "still running");

    // Room again: snapshots resume, the spill takes requests again.
    std::fs::remove_file(filler).unwrap();
    wait_metric(
        &app,
        "slipstream_state_snapshots_total",
        &["outcome=\"ok\""],
        ok_before + 1.0,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(send(&mut accepted).await.status, 200);
    }

    // The downstream comes up: everything accepted arrives, nothing was dropped.
    let sink = down.start_sink().await;
    let n = accepted.len();
    let got = sink
        .wait_for(Duration::from_secs(30), "every accepted request", |r| {
            r.len() >= n
        })
        .await;
    let got: HashSet<Vec<u8>> = got.into_iter().map(|r| r.body.to_vec()).collect();
    assert!(
        accepted.iter().all(|b| got.contains(b)),
        "an accepted request was lost"
    );
    let admin = app.admin_addr.unwrap();
    assert_eq!(
        self_metric(admin, "slipstream_forward_dropped_requests_total", &[]).await,
        0.0
    );
    assert_eq!(
        self_metric(
            admin,
            "slipstream_receiver_requests_total",
            &["outcome=\"accepted\""]
        )
        .await,
        n as f64,
        "accepted = what the client got a 200 for"
    );
    assert_eq!(
        self_metric(admin, "slipstream_receiver_refused_requests_total", &[]).await,
        refused as f64,
        "every refusal counted"
    );
    app.shutdown().await;
}
