//! The dashboard in real headless Chromium: the rendered DOM shows the deployments, a
//! run's state and an error's file:line, and a log's markup stays text. Screenshots are
//! saved next to the test binaries (`<target>/dashboard.png`, `dashboard-phone.png`) for
//! review. Fails, never skips, when chromium is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::daemon::wait_until;
use crate::support::require_tool;

/// Runs chromium headless with `args` then `url`; returns stdout.
#[track_caller]
fn chromium(args: &[&str], url: &str) -> String {
    let binary = require_tool("chromium");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let status = wait_until(Duration::from_secs(90), "chromium to finish", || {
        child.try_wait().unwrap()
    });
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "chromium {args:?} {url} failed: {status}");
    out
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_dashboard_renders_deployments_runs_errors_and_escaped_logs_in_chromium() {
    let (_repo, daemon) = crate::api::start();
    let token = daemon.token();
    let (code, body) = daemon.post("/api/deployments/quick/runs", "", Some(&token));
    assert_eq!(code, 201, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = run["id"].as_i64().unwrap();
    wait_until(Duration::from_secs(20), "quick completed", || {
        (daemon.json(&format!("/api/runs/{id}"))["state"] == "Completed").then_some(())
    });

    let dom = chromium(&["--dump-dom"], &format!("{}/", daemon.url));
    for needle in [
        r#"<tr data-deployment="hello">"#,
        "<strong>hello</strong>",
        "<strong>quick</strong>",
        "<div>cron 0 9 * * * (America/Chicago)</div>",
        r#"<span class="badge s-Completed">Completed</span>"#,
        "<code>deployments/bad.yaml:4:5</code> unknown key `schedulez` in a deployment; did you mean `schedules`?",
        "Run now",
    ] {
        assert!(dom.contains(needle), "the dashboard's DOM lacks {needle:?}:\n{dom}");
    }
    assert!(!dom.contains(&token), "the page must never hold the token");

    let page = chromium(&["--dump-dom"], &format!("{}/runs/{id}", daemon.url));
    assert!(page.contains(r#"<dd id="state">Completed</dd>"#), "{page}");
    assert!(
        page.contains("done &lt;script&gt;alert(1)&lt;/script&gt;"),
        "the log is shown as text:\n{page}"
    );
    assert!(
        !page.contains("<script>alert(1)"),
        "a log must not inject markup:\n{page}"
    );
    let missing = daemon.get("/runs/999");
    assert_eq!(missing.0, 404);

    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
        &format!("{}/", daemon.url),
    );
    let phone = target_dir().join("dashboard-phone.png");
    chromium(
        &[
            &format!("--screenshot={}", phone.display()),
            "--window-size=390,844",
            "--hide-scrollbars",
        ],
        &format!("{}/", daemon.url),
    );
    for png in [&shot, &phone] {
        let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            png.display()
        );
    }
}
