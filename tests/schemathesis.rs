//! schemathesis (PyPI; the test command installs it into `target/schemathesis-venv`)
//! against the live daemon: it reads `/api/openapi.json`, generates valid and invalid
//! requests for every operation (with the token), and fails on any 5xx, any answer the
//! document does not allow (status, content type, headers, body schema), invalid data
//! accepted or valid data refused. Bounded: 100 examples per operation and a fixed seed
//! (about 1,500 requests, 20 s on an idle machine), killed after 150 s.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::daemon::{wait_until, Daemon, GitRepo};

/// `hello` has a parameter schema (so some triggers are 422), `quick` ends at once, `slow`
/// runs for a while (so some cancels are 202, others 409).
const DEPLOYMENTS: &str = r#"deployments:
  - name: hello
    parameters: {n: 1}
    parameter_openapi_schema:
      type: object
      properties: {n: {type: integer}, who: {type: string}}
    work_pool:
      job_variables:
        command: "true"
  - name: quick
    work_pool:
      job_variables:
        command: "true"
  - name: slow
    work_pool:
      job_variables:
        command: sleep 2
"#;

/// The schemathesis of `target/schemathesis-venv`; fails with the fix when it is missing.
#[track_caller]
fn schemathesis() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/schemathesis");
    assert!(
        path.is_file(),
        "{} is not installed; run `./scripts/test.sh`, which installs it",
        path.display()
    );
    path
}

/// Kills schemathesis if the test ends (fails) before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How many requests the run made: the interactions in its NDJSON report.
fn calls_in(report_dir: &Path) -> usize {
    let mut calls = 0;
    for entry in std::fs::read_dir(report_dir).unwrap() {
        let file = std::fs::File::open(entry.unwrap().path()).unwrap();
        for line in std::io::BufReader::new(file).lines() {
            let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if let Some(interactions) =
                event["ScenarioFinished"]["recorder"]["interactions"].as_object()
            {
                calls += interactions.len();
            }
        }
    }
    calls
}

#[test]
fn the_live_api_matches_its_openapi_document_under_schemathesis() {
    let tool = schemathesis();
    let repo = GitRepo::new();
    repo.commit(&[("deployments/api.yaml", Some(DEPLOYMENTS))], "api");
    let daemon = Daemon::start(repo.path());
    // Its example database and report go to a directory of their own, not the checkout.
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let mut child = Command::new(tool)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", daemon.url))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", daemon.token()),
        ])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "100",
            "--seed",
            "20261201",
        ])
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args(["--report", "ndjson", "--report-dir"])
        .arg(&report)
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .expect("start schemathesis");
    let child = &mut child.0;
    // Read its output while it runs: a full pipe would block it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let status = wait_until(Duration::from_secs(150), "schemathesis to finish", || {
        child.try_wait().unwrap()
    });
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "schemathesis found answers that break the OpenAPI document:\n{out}\n{err}\n--- daemon log (tail)\n{}",
        tail(&daemon.log(), 40)
    );
    let calls = calls_in(&report);
    eprintln!(
        "schemathesis made {calls} calls; its summary:\n{}",
        tail(&out, 14)
    );
    assert!(
        calls > 500,
        "only {calls} calls: did schemathesis test anything?\n{out}"
    );
    assert_eq!(daemon.get("/readyz").0, 200, "the daemon survived");
}
