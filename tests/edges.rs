//! Smaller edges of the API and the state directory (issue 12.9), against the real daemon:
//! oversize parameters and bodies, `Host:` names (DNS rebinding), the bearer scheme's
//! case, and the modes of what the daemon creates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use sundial::api::types::MAX_PARAMETERS_BYTES;
use sundial::store::RunState;

use crate::support::daemon::{Daemon, GitRepo, Setup};

/// `echo` prints how long `SUNDIAL_PARAMETERS` is; `tick` runs every second.
const ECHO: &str = r#"deployments:
  - name: echo
    work_pool:
      job_variables:
        command: python3 -c "import os; print('parameters', len(os.environ['SUNDIAL_PARAMETERS']))"
"#;

fn start(extra: &[&str]) -> (GitRepo, Daemon) {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/echo.yaml", Some(ECHO))], "echo");
    let daemon = Daemon::start_with(repo.path(), extra);
    (repo, daemon)
}

#[track_caller]
fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A request written by hand, so that `Host` and `Authorization` are exactly what the
/// test says: (status, body).
fn raw(daemon: &Daemon, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(daemon.listen()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

fn get_with_host(daemon: &Daemon, path: &str, host: &str) -> (u16, String) {
    raw(daemon, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n"))
}

/// Parameters whose compact JSON is exactly `size` bytes: `{"blob":"xx...x"}`.
fn parameters_of(size: usize) -> Value {
    let blob = "x".repeat(size - r#"{"blob":""}"#.len());
    json!({ "blob": blob })
}

#[test]
fn parameters_over_128_kib_are_refused_up_front_naming_the_limit() {
    let (_repo, daemon) = start(&[]);
    let token = daemon.token();
    let trigger = "/api/deployments/echo/runs";

    // One byte too many: refused before any run exists (it used to be 201, then the run
    // crashed with "Argument list too long").
    let body = json!({ "parameters": parameters_of(MAX_PARAMETERS_BYTES + 1) }).to_string();
    let (code, answer) = daemon.post(trigger, &body, Some(&token));
    assert_eq!(code, 413, "{answer}");
    let error = parse(&answer)["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!(
            "the parameters are {} bytes as JSON, over the limit of {MAX_PARAMETERS_BYTES}",
            MAX_PARAMETERS_BYTES + 1
        )),
        "{error}"
    );
    assert!(error.contains("SUNDIAL_PARAMETERS"), "{error}");
    assert!(daemon.stored_runs("echo").is_empty());

    // Exactly the limit: the run starts and sees all of it.
    let body = json!({ "parameters": parameters_of(MAX_PARAMETERS_BYTES) }).to_string();
    let (code, answer) = daemon.post(trigger, &body, Some(&token));
    assert_eq!(code, 201, "{answer}");
    let run = daemon.ended_run("echo", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Completed, "{}", daemon.run_log(run.id));
    assert!(
        daemon
            .run_log(run.id)
            .contains(&format!("parameters {MAX_PARAMETERS_BYTES}\n")),
        "{}",
        daemon.run_log(run.id)
    );
}

#[test]
fn a_body_over_the_limit_is_refused_with_413_and_a_json_error() {
    let (_repo, daemon) = start(&[]);
    let body = format!(r#"{{"parameters": {{"a": "{}"}}}}"#, "x".repeat(300 * 1024));
    let (code, answer) = daemon.post("/api/deployments/echo/runs", &body, Some(&daemon.token()));
    assert_eq!(
        (code, parse(&answer)),
        (
            413,
            json!({"error": "the request body is over 262144 bytes, the most the API reads"})
        )
    );
}

#[test]
fn a_foreign_host_name_is_refused_against_dns_rebinding() {
    let (_repo, daemon) = start(&["--allow-host", "sundial.test"]);
    let port = daemon.listen().rsplit(':').next().unwrap().to_string();

    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("sundial.test.evil.example:{port}"),
    ] {
        let (code, body) = get_with_host(&daemon, "/api/status", &host);
        assert_eq!(code, 421, "Host: {host}: {body}");
        let error = parse(&body)["error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with(&format!(
                "this daemon does not answer to the name in `Host: {host}`"
            )),
            "{error}"
        );
        assert!(error.contains("--allow-host"), "{error}");
    }
    // Run logs and the dashboard are refused too, not only the JSON API.
    assert_eq!(get_with_host(&daemon, "/", "evil.example").0, 421);
    assert_eq!(
        get_with_host(&daemon, "/api/runs/1/logs", "evil.example").0,
        421
    );

    for host in [
        daemon.listen().to_string(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
        "127.0.0.1".to_string(),
        format!("sundial.test:{port}"),
        "SUNDIAL.TEST".to_string(),
    ] {
        let (code, body) = get_with_host(&daemon, "/api/status", &host);
        assert_eq!(code, 200, "Host: {host}: {body}");
    }
}

#[test]
fn a_bad_allow_host_stops_the_start_naming_the_flag() {
    let repo = GitRepo::new();
    let state = tempfile::tempdir().unwrap();
    let out = crate::support::sundial()
        .args(["daemon", "--listen", "127.0.0.1:0", "--allow-host", "a/b"])
        .arg("--repo")
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--allow-host \"a/b\": give a host name or address, optionally with :PORT"),
        "{stderr}"
    );
}

#[test]
fn the_bearer_scheme_is_accepted_in_any_case() {
    let (_repo, daemon) = start(&[]);
    let token = daemon.token();
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (code, body) = raw(
            &daemon,
            &format!(
                "POST /api/deployments/echo/runs HTTP/1.1\r\nHost: {}\r\n\
                 Authorization: {scheme} {token}\r\nContent-Length: 0\r\n",
                daemon.listen()
            ),
        );
        assert_eq!(code, 201, "{scheme}: {body}");
    }
    let (code, _) = raw(
        &daemon,
        &format!(
            "POST /api/deployments/echo/runs HTTP/1.1\r\nHost: {}\r\n\
             Authorization: Basic {token}\r\nContent-Length: 0\r\n",
            daemon.listen()
        ),
    );
    assert_eq!(code, 401);
}

#[track_caller]
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Outside systemd (no `StateDirectoryMode=`, a umask of 022 from the shell) the state
/// directory used to be 0755 and the database and logs 0644.
#[test]
fn the_state_directory_and_its_files_are_private_outside_systemd() {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/echo.yaml", Some(ECHO))], "echo");
    let daemon = Daemon::launch(
        repo.path(),
        Setup {
            fresh_state_dir: true,
            ..Setup::default()
        },
    );
    let (code, body) = daemon.post("/api/deployments/echo/runs", "", Some(&daemon.token()));
    assert_eq!(code, 201, "{body}");
    let run = daemon.ended_run("echo", Duration::from_secs(30));
    let dir = &daemon.state_dir;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut files = vec![
        dir.join("state.db"),
        dir.join("token"),
        dir.join("url"),
        dir.join("logs").join(format!("{}.log", run.id)),
    ];
    for extra in ["state.db-wal", "state.db-shm"] {
        if dir.join(extra).exists() {
            files.push(dir.join(extra));
        }
    }
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn defaults_that_push_the_parameters_over_128_kib_fail_clearly_not_with_e2big() {
    let repo = GitRepo::new();
    let big = "x".repeat(100 * 1024);
    let text = format!(
        "deployments:\n  - name: heavy\n    parameters: {{a: \"{big}\"}}\n    work_pool:\n      job_variables:\n        command: echo never\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n        parameters: {{b: \"{}\"}}\n",
        crate::support::daemon::soon(5),
        "y".repeat(40 * 1024)
    );
    repo.commit(&[("deployments/h.yaml", Some(&text))], "heavy");
    let daemon = Daemon::start(repo.path());
    // A trigger whose own overrides are small, but not once merged with the defaults.
    let body = json!({"parameters": {"c": "z".repeat(40 * 1024)}}).to_string();
    let (code, answer) = daemon.post("/api/deployments/heavy/runs", &body, Some(&daemon.token()));
    assert_eq!(code, 413, "{answer}");
    assert!(
        parse(&answer)["error"].as_str().unwrap().contains(&format!(
            "merged with the deployment's defaults, are {} bytes",
            100 * 1024 + 40 * 1024 + 15
        )),
        "{answer}"
    );
    // The scheduled slot: defaults plus the schedule's overrides.
    let run = daemon.ended_run("heavy", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Failed);
    let reason = run.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("over the limit of {MAX_PARAMETERS_BYTES}"))
            && !reason.contains("Argument list too long"),
        "{reason}"
    );
}

#[test]
fn placeholders_in_a_working_directory_are_filled_in_and_kept_inside_the_checkout() {
    let repo = GitRepo::new();
    let text = format!(
        "deployments:\n  - name: where\n    work_pool:\n      job_variables:\n        command: pwd\n        working_dir: \"sub/{{{{ $WHERE }}}}\"\n    schedules:\n      - interval: 3600\n        anchor_date: \"{}\"\n",
        crate::support::daemon::soon(5)
    );
    repo.commit(
        &[
            ("sub/inner/keep", Some("")),
            ("deployments/w.yaml", Some(&text)),
        ],
        "where",
    );
    let inside = Daemon::launch(
        repo.path(),
        Setup {
            env: vec![("WHERE".into(), "inner".into())],
            ..Setup::default()
        },
    );
    let run = inside.ended_run("where", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Completed, "{}", inside.run_log(run.id));
    assert!(
        inside.run_log(run.id).contains("/sub/inner\n"),
        "{}",
        inside.run_log(run.id)
    );
    drop(inside);
    let outside = Daemon::launch(
        repo.path(),
        Setup {
            env: vec![("WHERE".into(), "../../..".into())],
            ..Setup::default()
        },
    );
    // Its own state directory: the slot is gone, so the run is triggered.
    let (code, body) = outside.post("/api/deployments/where/runs", "", Some(&outside.token()));
    assert_eq!(code, 201, "{body}");
    let run = outside.ended_run("where", Duration::from_secs(30));
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(
        run.reason.as_deref(),
        Some("the working directory `sub/../../..` (from `sub/{{ $WHERE }}`) is outside the checkout; name a directory of the repository")
    );
}
