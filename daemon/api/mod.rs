//! The HTTP API (DESIGN.md "HTTP API"): health, readiness, status, deployments and run
//! history. [`router`] builds the routes apart from serving them. Handlers read the
//! engine's published [`Status`] and open the store read-only; they never touch the
//! engine's state. One [`ApiError`] picks every error status code.

pub mod types;

use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;

use crate::engine::status::Status;
use crate::store::{RunFilter, RunState, Store, StoreError};
use types::{DeploymentJson, ErrorJson, RunJson, StatusJson};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub status: watch::Receiver<Status>,
    /// Triggers and cancels go to the engine, which owns the runs.
    pub requests: tokio::sync::mpsc::Sender<crate::engine::Request>,
    pub db: PathBuf,
    pub logs_dir: PathBuf,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .route("/api/deployments", get(deployments))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/logs", get(logs))
        .with_state(state)
}

/// Every way a request can fail, and its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the state database cannot be read")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if code.is_server_error() {
            tracing::error!("API: {}", crate::engine::sync::error_chain(&self));
        }
        (
            code,
            Json(ErrorJson {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if state.status.borrow().ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first commit is not applied yet\n",
        )
            .into_response()
    }
}

async fn status(State(state): State<ApiState>) -> Json<StatusJson> {
    Json(StatusJson::from(&*state.status.borrow()))
}

async fn deployments(State(state): State<ApiState>) -> Json<Vec<DeploymentJson>> {
    let status = state.status.borrow();
    Json(
        status
            .deployments
            .iter()
            .map(DeploymentJson::from)
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    deployment: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

/// The most runs one request answers.
const MAX_LIMIT: usize = 1000;

async fn runs(
    State(state): State<ApiState>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<RunJson>>, ApiError> {
    let run_state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(RunState::parse(text).ok_or_else(|| {
            let names: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!(
                "unknown state {text:?}; use one of {}",
                names.join(", ")
            ))
        })?),
        None => None,
    };
    let filter = RunFilter {
        deployment: q.deployment.filter(|d| !d.is_empty()),
        state: run_state,
        before: q.before,
        limit: q.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
    };
    let found = read(state.db, move |store| store.runs(&filter)).await?;
    Ok(Json(found.iter().map(RunJson::from).collect()))
}

async fn run(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<RunJson>, ApiError> {
    let found = read(state.db, move |store| store.run(id)).await?;
    found
        .map(|r| Json(RunJson::from(&r)))
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))
}

async fn logs(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    if read(state.db, move |store| store.run(id)).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run {id}")));
    }
    let path = crate::engine::attempt::log_path(&state.logs_dir, id);
    let text = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Runs a read on its own read-only connection, off the async threads.
async fn read<T: Send + 'static>(
    db: PathBuf,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let store = Store::open_read_only(&db)?;
        f(&store)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(ApiError::from)
}
