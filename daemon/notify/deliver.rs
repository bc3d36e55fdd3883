//! Delivering one notification, on a blocking thread the engine does not wait for: a
//! webhook POST, a healthchecks ping, or a local command, each within [`TIME_LIMIT`].
//! `{{ $NAME }}` placeholders are resolved here, from the daemon's environment, so
//! secrets never reach the store. The answer is `Ok` or why it failed, in words.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::template::{render_env, Placeholder};

use super::{Event, Payload, Target};

/// How long one delivery may take (a webhook's whole exchange, a command's whole run).
pub const TIME_LIMIT: Duration = Duration::from_secs(15);

/// Delivers `payload` to `target`.
pub fn deliver(target: &Target, payload: &Payload) -> Result<(), String> {
    match target {
        Target::Webhook { url, headers } => {
            let url = resolve(url)?;
            let headers = headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            let body = serde_json::to_string(payload).map_err(|e| e.to_string())?;
            post(&url, &headers, "application/json", body)
        }
        Target::Healthchecks { url } => {
            let url = resolve(url)?;
            let url = url.trim_end_matches('/');
            let url = match payload.event {
                Event::Start => format!("{url}/start"),
                Event::Failure => format!("{url}/fail"),
                _ => url.to_string(),
            };
            post(
                &url,
                &[],
                "text/plain; charset=utf-8",
                payload.log_tail.clone(),
            )
        }
        Target::Command { argv } => {
            let argv = argv
                .iter()
                .map(|a| resolve(a))
                .collect::<Result<Vec<_>, String>>()?;
            run_command(&argv, payload)
        }
    }
}

/// `{{ $NAME }}` from the environment; a missing variable is this delivery's failure.
fn resolve(text: &str) -> Result<String, String> {
    render_env(text).map_err(|p| match p {
        Placeholder::Env(name) => format!(
            "`{{{{ ${name} }}}}`: {name} is not set in the daemon's environment; set it (e.g. in the service's EnvironmentFile)"
        ),
        other => format!("{other:?} cannot be resolved in a notification"),
    })
}

fn post(
    url: &str,
    headers: &[(String, String)],
    content_type: &str,
    body: String,
) -> Result<(), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIME_LIMIT))
        .user_agent(concat!("sundial/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut request = agent.post(url).header("Content-Type", content_type);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request
        .send(body)
        .map_err(|e| format!("POST {}: {e}", shown_url(url)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(512)
        .read_to_string()
        .unwrap_or_default();
    Err(format!(
        "POST {} answered {status}{}",
        shown_url(url),
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", text.trim())
        }
    ))
}

/// A URL as logs show it: scheme, host and port only (paths often hold the secret).
fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/…")
}

/// Runs the command with the payload as JSON on stdin and as `SUNDIAL_*` variables;
/// exit 0 is delivered. Past the time limit its process group is killed.
fn run_command(argv: &[String], payload: &Payload) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .env("SUNDIAL_EVENT", payload.event.as_str())
        .env("SUNDIAL_DEPLOYMENT", &payload.deployment)
        .env("SUNDIAL_RUN_ID", num(payload.run_id))
        .env("SUNDIAL_STATE", opt(&payload.state))
        .env("SUNDIAL_ATTEMPT", num(payload.attempt.map(i64::from)))
        .env("SUNDIAL_SLOT", opt(&payload.slot))
        .env("SUNDIAL_EXIT_CODE", num(payload.exit_code.map(i64::from)))
        .env("SUNDIAL_REASON", opt(&payload.reason))
        .env("SUNDIAL_COMMIT", opt(&payload.commit))
        .env(
            "SUNDIAL_SLA",
            payload
                .sla
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        )
        .env("SUNDIAL_RUN_URL", &payload.url)
        .env("SUNDIAL_TEXT", &payload.text);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let pid = child.id() as i32;
    let json = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    // Writing, reading and waiting happen beside this thread, which only keeps the time.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&json); // a command that reads nothing is fine
        }
        let mut err = String::new();
        if let Some(stderr) = stderr {
            use std::io::Read;
            let _ = stderr.take(64 * 1024).read_to_string(&mut err);
        }
        let _ = done_tx.send((child.wait(), err));
    });
    match done_rx.recv_timeout(TIME_LIMIT) {
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), err)) => {
            let tail: String = err
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(format!(
                "`{program}` ended with {status}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ))
        }
        Ok((Err(e), _)) => Err(format!("waiting for `{program}`: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(format!(
                "`{program}` took longer than {} s and was killed",
                TIME_LIMIT.as_secs()
            ))
        }
    }
}
