//! The HTTP API (DESIGN.md "HTTP API"): health, readiness, status, deployments, run
//! history, manual triggers and cancels, Prometheus metrics and the dashboard. [`router`]
//! builds the routes apart from serving them; one file per resource.
//!
//! Handlers read the engine's published [`Status`] and open the store read-only; they
//! never touch the engine's state. Triggers and cancels are [`Request`]s sent to the
//! engine, which owns the runs. Mutating calls need `Authorization: Bearer <token>`
//! ([`Authorized`]; the scheme in any case, RFC 7235), compared in constant time. One
//! [`ApiError`] picks every error status code.
//!
//! Every request first passes the `Host` check ([`host`], against DNS rebinding), and no
//! request body is read past [`MAX_BODY_BYTES`]. How connections are served (timeouts,
//! the connection cap) is [`serve`]'s.

mod breaches;
mod dashboard;
mod deployments;
pub(crate) mod explain;
mod host;
mod kept;
mod metrics;
mod readers;
mod runs;
pub mod serve;
mod status;
pub mod types;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;

use crate::engine::status::Status;
use crate::engine::Request;
use crate::store::StoreError;
use types::ErrorJson;

pub use host::{AllowedHosts, BadAllowedHost};
use readers::read;
pub use readers::Readers;

/// The largest request body read; a larger one is refused with 413. The only body the
/// API reads is a trigger's, whose parameters must fit in 128 KiB anyway
/// ([`types::MAX_PARAMETERS_BYTES`]).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Status>,
    /// Triggers and cancels go to the engine, which owns the runs.
    pub requests: tokio::sync::mpsc::Sender<Request>,
    pub db: Readers,
    pub logs_dir: PathBuf,
    /// The bearer token mutating calls must present (`<state-dir>/token`).
    pub token: Arc<str>,
    /// The `Host` names requests may carry.
    pub hosts: Arc<AllowedHosts>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(status::openapi))
        .route("/api/status", get(status::status))
        .route("/api/deployments", get(deployments::list))
        .route("/api/deployments/{name}/runs", post(deployments::trigger))
        .route("/api/deployments/{name}/resume", post(deployments::resume))
        .route("/api/deployments/{name}/explain", get(explain::explain))
        .route("/api/runs", get(runs::list))
        .route("/api/breaches", get(breaches::list))
        .route("/api/runs/{id}", get(runs::get))
        .route("/api/runs/{id}/logs", get(runs::logs))
        .route("/api/runs/{id}/cancel", post(runs::cancel))
        .route("/", get(dashboard::index))
        .route("/runs", get(dashboard::runs_page))
        .route("/runs/{id}", get(dashboard::run_page))
        .route("/deployments/{name}", get(dashboard::deployment_page))
        .route("/deployments/{name}/explain", get(dashboard::explain_page))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::check,
        ))
        .with_state(state)
}

/// Reads the API token the daemon created in its state directory.
pub fn read_token(state_dir: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(state_dir.join("token"))?;
    Ok(text.trim().to_string())
}

/// Writes `<state-dir>/url` (mode 0600), where the CLI finds the daemon it should talk to.
/// An unspecified address (`0.0.0.0`) is written as the loopback address of its family.
pub fn write_url_file(state_dir: &Path, listening: SocketAddr) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut addr = listening;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = state_dir.join("url");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    // A file left by an older sundial keeps its mode when opened; make it private too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("http://{addr}\n").as_bytes())
}

/// Every way a request can fail, and its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("this call needs `Authorization: Bearer <token>`; the token is in the daemon's state directory (`<state-dir>/token`)")]
    Unauthorized,
    #[error(
        "the token is wrong; use the one in the daemon's state directory (`<state-dir>/token`)"
    )]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A `Host` this daemon does not answer to (see [`host`]).
    #[error("this daemon does not answer to the name in `Host: {0}` (a web page reaching it through a name of its own could read it: DNS rebinding); use its listen address or localhost, or start it with --allow-host NAME (SUNDIAL_ALLOW_HOSTS) for a name it should answer to")]
    MisdirectedHost(String),
    /// Several problems at once, every one listed.
    #[error("{message}")]
    Unprocessable {
        message: String,
        errors: Vec<String>,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("the state database cannot be read")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Whether the store's connection was ended under the read ([`StoreError::connection_broke`]).
    fn connection_broke(&self) -> bool {
        matches!(self, ApiError::Store(e) if e.connection_broke())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code.is_server_error() {
            tracing::error!("API: {}", crate::engine::error_chain(&self));
        }
        let body = ErrorJson {
            error: self.to_string(),
            errors: match self {
                ApiError::Unprocessable { errors, .. } => errors,
                _ => Vec::new(),
            },
        };
        let mut response = (code, Json(body)).into_response();
        if code == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        }
        response
    }
}

/// `Query<T>`, refused with a JSON [`ApiError::BadRequest`] instead of axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(query)) => Ok(ApiQuery(query)),
            Err(e) => {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError::BadRequest(format!(
                    "the query string is not valid: {detail} (see /api/openapi.json)"
                )))
            }
        }
    }
}

/// The `{id}` of a `/api/runs/{id}` path; one that is not an integer is a JSON 400.
pub struct RunId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        text.parse().map(RunId).map_err(|_| {
            ApiError::BadRequest(format!(
                "`{text}` is not a run id: give an integer from 1 to {}",
                i64::MAX
            ))
        })
    }
}

/// Proof that a request carried the right bearer token; take it as a handler argument.
pub struct Authorized;

impl FromRequestParts<ApiState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        if token_matches(presented, &state.token) {
            Ok(Authorized)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched in any
/// case (RFC 7235 section 2.1), and any amount of blank separates it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Compares in time independent of where the two differ (their lengths are not secret).
fn token_matches(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a request to the engine and waits for its answer.
async fn ask<T>(
    state: &ApiState,
    make: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> Request,
) -> Result<T, ApiError> {
    let stopping =
        || ApiError::Unavailable("the daemon is stopping; try again after it restarts".into());
    let (reply, answer) = tokio::sync::oneshot::channel();
    state
        .requests
        .send(make(reply))
        .await
        .map_err(|_| stopping())?;
    answer.await.map_err(|_| stopping())
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, token_matches};

    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR  abc ",
            "Bearer\tabc",
        ] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearerabc", "Bearer ", "Bearer", "abc"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn a_token_matches_only_itself() {
        assert!(token_matches("abc123", "abc123"));
        assert!(!token_matches("abc124", "abc123"));
        assert!(!token_matches("abc12", "abc123"));
        assert!(!token_matches("", ""));
    }
}
