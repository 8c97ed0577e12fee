//! The status page (`/` on the admin server) in a real browser: headless Chromium loads it from
//! a slipstream fed 40 minutes of traffic with an incident after a deploy, and the rendered DOM
//! shows the SLO table sorted by budget, the firing page, the charts with the deploy marker and
//! the services missing from the catalog. A screenshot lands in
//! `target/test-artifacts/status-page.png`.
//!
//! Needs `/usr/bin/chromium` (or `$CHROMIUM`): `scripts/test-deps.sh` installs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipstream_app::app::App;
use slipstream_core::ManualClock;
use slipstream_e2e::otlp::{Minute, play_minute, scenario};
use slipstream_e2e::raw::request_http;
use slipstream_e2e::test_config;

/// 2026-04-01T00:00:00Z.
const START: u64 = 1_775_001_600_000_000_000;

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "headless Chromium is missing ({}): run scripts/test-deps.sh, which installs the Debian \
         packages `chromium chromium-driver` (or point $CHROMIUM at a Chromium binary)",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `args` (`--dump-dom` or `--screenshot=...`) after
/// letting the page run 10 s of virtual time; returns its stdout.
async fn browse(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finishes within 60 s")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn dom(admin: SocketAddr, fragment: &str) -> String {
    browse(&format!("http://{admin}/{fragment}"), &["--dump-dom"]).await
}

/// The text of the first element opening with `open` (up to its first closing `</`).
fn element<'a>(dom: &'a str, open: &str) -> Option<&'a str> {
    let at = dom.find(open)?;
    let rest = &dom[at..];
    Some(&rest[..rest.find("</").unwrap_or(rest.len())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_slos_firing_alerts_and_charts() {
    let started = Instant::now();
    chromium(); // Fails first when it is missing.
    let slo_yaml = "slo:
  evaluation_interval: 1m
  catalog:
    orders: { owner: team-orders }
  templates: { latency: null }
";
    let clock = ManualClock::new(START);
    let app = App::start_with(test_config(None, slo_yaml), Arc::new(clock.clone()), false)
        .await
        .unwrap();
    let admin = app.admin_addr.unwrap();

    // The page and its assets, as a browser gets them.
    for (path, ty) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = request_http(admin, "GET", path, &[], Vec::new()).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
        assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    }
    let head = request_http(admin, "HEAD", "/", &[], Vec::new()).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        request_http(admin, "GET", "/ui/nope", &[], Vec::new())
            .await
            .status,
        404
    );

    // Before any traffic: the empty state.
    let empty = dom(admin, "").await;
    assert!(empty.contains("No SLOs yet: send traces"), "{empty}");

    // 40 minutes: orders deploys 1.1.0 at minute 30 and fails every request from then on;
    // payments (not in the catalog) is healthy.
    let orders = scenario(
        "orders",
        START,
        30,
        (0..40).map(|m| Minute {
            error_share: if m >= 30 { 1.0 } else { 0.0 },
            version: if m < 30 { "1.0.0" } else { "1.1.0" },
        }),
    );
    let payments = scenario(
        "payments",
        START,
        20,
        (0..40).map(|_| Minute {
            error_share: 0.0,
            version: "2.4.1",
        }),
    );
    for (m, (o, p)) in orders.iter().zip(&payments).enumerate() {
        play_minute(&app, &clock, START, m, &[o, p]).await;
    }

    let page = dom(admin, "").await;
    // The table, least budget remaining first.
    let orders_at = page
        .find("orders-availability")
        .expect("orders' SLO is listed");
    let payments_at = page
        .find("payments-availability")
        .expect("payments' SLO is listed");
    assert!(orders_at < payments_at, "sorted by budget remaining");
    // The firing page.
    let badge = element(&page, "<span class=\"badge firing sev-page").expect("a firing badge");
    assert!(badge.contains("FIRING · page · 1h/5m"), "{badge}");
    // The first SLO is open: its charts, with the deploy of 1.1.0 marked.
    assert!(page.matches("<svg class=\"chart\"").count() >= 3, "{page}");
    let marker = element(&page, "<g class=\"deploy-marker\"").expect("a deploy marker");
    assert!(marker.contains("1.1.0"), "{marker}");
    assert!(page.contains("Event timeline") && page.contains("firing"));
    // Services missing from the catalog.
    let uncataloged = &page[page.find("id=\"uncataloged\"").unwrap()..];
    assert!(!uncataloged[..40].contains("hidden"), "{uncataloged}");
    assert!(uncataloged.contains("<li>payments</li>"));

    // `#slo=NAME` opens that SLO instead.
    let page = dom(admin, "#slo=payments-availability").await;
    let detail = &page[page
        .find("id=\"slo-payments-availability\"")
        .expect("payments open")..];
    assert!(detail.contains("<svg class=\"chart\""));
    assert!(!page.contains("id=\"slo-orders-availability\""));

    // The screenshot.
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts"
    ));
    std::fs::create_dir_all(dir).unwrap();
    let png = dir.join("status-page.png");
    let _ = std::fs::remove_file(&png);
    browse(
        &format!("http://{admin}/"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
    )
    .await;
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{} is {size} bytes", png.display());

    app.shutdown().await;
    eprintln!("status page test: {:.1} s", started.elapsed().as_secs_f64());
}
