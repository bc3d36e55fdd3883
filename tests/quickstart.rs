//! The README's first command, exactly as a newcomer runs it: from the root of a fresh
//! clone, `sundial daemon --repo .` with the default (relative) state directory. Every
//! example deployment in `deployments/` is triggered and must complete. (Only `--listen`
//! differs, so the test never collides with a daemon on the default port.)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::daemon::wait_until;
use crate::support::{git_ok, sundial};

/// The daemon, killed with its group on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

fn get(url: &str) -> Option<(u16, String)> {
    let mut response = agent().get(url).call().ok()?;
    Some((
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

#[test]
fn the_readme_quick_start_runs_every_example_deployment() {
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("sundial");
    git_ok(
        work.path(),
        &[
            "clone",
            "-q",
            env!("CARGO_MANIFEST_DIR"),
            clone.to_str().unwrap(),
        ],
    );
    // A newcomer's clone is on `main`; a clone of a checkout whose HEAD is detached (a CI
    // worktree) would have no `main` branch for the daemon to watch.
    git_ok(&clone, &["checkout", "-q", "-B", "main"]);
    let log = std::fs::File::create(work.path().join("daemon.log")).unwrap();
    let mut command = sundial();
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("SUNDIAL_") || name == "NOTIFY_SOCKET" || name == "JOURNAL_STREAM" {
            command.env_remove(&*name);
        }
    }
    let child = command
        .current_dir(&clone)
        .args(["daemon", "--repo", ".", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let _daemon = Running(child);
    let state = clone.join(".sundial");
    let url = wait_until(Duration::from_secs(30), "the daemon's url file", || {
        let text = std::fs::read_to_string(state.join("url")).ok()?;
        let url = text.trim().to_string();
        (url.starts_with("http://") && !url.ends_with(":0")).then_some(url)
    });
    wait_until(Duration::from_secs(30), "the daemon ready", || {
        (get(&format!("{url}/readyz"))?.0 == 200).then_some(())
    });
    let token = std::fs::read_to_string(state.join("token")).unwrap();
    let (_, body) = get(&format!("{url}/api/deployments")).unwrap();
    let deployments: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    let in_repo = std::fs::read_dir(clone.join("deployments"))
        .unwrap()
        .count();
    assert!(deployments.len() >= in_repo, "{deployments:?}");
    for name in &deployments {
        let mut response = agent()
            .post(&format!("{url}/api/deployments/{name}/runs"))
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .header("Content-Type", "application/json")
            .send("{}")
            .unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(response.status().as_u16(), 201, "{name}: {text}");
        let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
            .as_i64()
            .unwrap();
        let run = wait_until(
            Duration::from_secs(60),
            &format!("the run of {name} to end"),
            || {
                let (_, body) = get(&format!("{url}/api/runs/{id}"))?;
                let run: Value = serde_json::from_str(&body).ok()?;
                (run["ended_at"].is_string()).then_some(run)
            },
        );
        let logs = get(&format!("{url}/api/runs/{id}/logs"))
            .map(|(_, body)| body)
            .unwrap_or_default();
        assert_eq!(run["state"], "Completed", "{name}: {run}\n{logs}");
        // The log says what ran in one line, not the bootstrap's ~90 lines of source.
        let header = logs.lines().next().unwrap_or_default();
        assert!(
            header.starts_with(&format!(
                "# sundial: run {id} of {name} attempt 1 at commit "
            )),
            "{logs}"
        );
        assert!(logs.lines().count() < 20, "{name}: {logs}");
    }
    assert!(Path::new(&state).join("state.db").exists());
}
