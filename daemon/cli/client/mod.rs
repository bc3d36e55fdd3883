//! The client subcommands (`deployments`, `runs`, `logs`, `trigger`, `cancel`): they talk
//! to a running daemon over its HTTP API with the wire types of [`crate::api::types`], so
//! both sides agree by construction. One file per subcommand.
//!
//! The daemon is found by `--url` / `SUNDIAL_URL`, else the `url` file the daemon writes
//! into its state directory (`--state-dir` / `SUNDIAL_STATE_DIR`, default `.sundial`),
//! else the default listen address. Mutating calls send the token from
//! `<state-dir>/token`. Exit codes: 0, 1 when the API refused or could not be reached,
//! 2 on usage (bad flags, no token file).

pub mod breaches;
pub mod cancel;
pub mod deployments;
pub mod explain;
pub mod logs;
pub mod resume;
pub mod runs;
pub mod status;
mod table;
pub mod trigger;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::types::ErrorJson;

/// Where the daemon is and how to print; shared by every client subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The daemon's URL (default: `<state-dir>/url`, written by the daemon, else http://127.0.0.1:4280).
    #[arg(long, env = "SUNDIAL_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The daemon's state directory, where its URL and API token are.
    #[arg(
        long,
        env = "SUNDIAL_STATE_DIR",
        value_name = "D",
        default_value = ".sundial"
    )]
    pub state_dir: PathBuf,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How a client command fails: the caller maps these to exit codes 1 and 2.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with an error or could not be reached (exit 1).
    #[error("{0}")]
    Api(String),
    /// The command line or a local file cannot be used (exit 2).
    #[error(transparent)]
    Usage(#[from] anyhow::Error),
}

/// Prints an API error once and turns the outcome into the exit code.
pub fn finish(outcome: Result<(), ClientError>) -> anyhow::Result<ExitCode> {
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ClientError::Api(message)) => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(1))
        }
        Err(ClientError::Usage(e)) => Err(e),
    }
}

const DEFAULT_URL: &str = "http://127.0.0.1:4280";

/// A connection to one daemon.
pub struct Client {
    base: String,
    state_dir: PathBuf,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Client {
        let base = args
            .url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| url_file(&args.state_dir))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Client {
            base: base.trim_end_matches('/').to_string(),
            state_dir: args.state_dir.clone(),
            agent,
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.agent.get(&self.url(path)).call();
        self.json(path, response)
    }

    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let mut response = self
            .agent
            .get(&self.url(path))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Api(format!("GET {path}: {e}")))?;
        if response.status().is_success() {
            Ok(text)
        } else {
            Err(api_error(&text, response.status().as_u16()))
        }
    }

    /// A mutating call, with the token from the state directory.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let token = self.token()?;
        let response = self
            .agent
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body);
        self.json(path, response)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&self) -> Result<String, ClientError> {
        let path = self.state_dir.join("token");
        match crate::api::read_token(&self.state_dir) {
            Ok(token) if !token.is_empty() => Ok(token),
            Ok(_) => Err(anyhow::anyhow!("the API token `{}` is empty", path.display()).into()),
            Err(e) => Err(anyhow::anyhow!(
                "cannot read the API token `{}` ({e}); give --state-dir (or SUNDIAL_STATE_DIR) the daemon's state directory",
                path.display()
            )
            .into()),
        }
    }

    fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = response.map_err(|e| self.unreachable(e))?;
        let code = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Api(format!("{path}: reading the answer: {e}")))?;
        if !response.status().is_success() {
            return Err(api_error(&text, code));
        }
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Api(format!(
                "{path}: the daemon's answer is not what this sundial expects ({e}); are the daemon and the CLI the same version?"
            ))
        })
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Api(format!(
            "cannot reach the sundial daemon at {} ({e}); is it running? Start it with `sundial daemon --repo PATH`, or point --url / --state-dir at the running one",
            self.base
        ))
    }
}

/// The URL the daemon wrote into its state directory.
fn url_file(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join("url")).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// The error of an answer, with every listed problem on its own line.
fn api_error(body: &str, code: u16) -> ClientError {
    match serde_json::from_str::<ErrorJson>(body) {
        Ok(e) => {
            let mut message = e.error;
            for item in e.errors {
                message.push_str("\n  - ");
                message.push_str(&item);
            }
            ClientError::Api(message)
        }
        Err(_) => ClientError::Api(format!("the daemon answered {code}: {}", body.trim())),
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    println!("{text}");
    Ok(())
}
