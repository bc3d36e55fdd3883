//! Liveness, readiness, the applied commit with its findings, and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::types::StatusJson;
use super::ApiState;

/// The OpenAPI 3.1 document of this API; `tests/api.rs` checks real answers against it.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `200` once the first commit is applied: `ready`, and in a cluster this node's role,
/// the leader and its epoch (`ready: standby (leader a, epoch 7)`); a standby is ready
/// too (it serves the API and runs what it claims).
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let status = state.status.borrow();
    if status.ready {
        let text = match &status.cluster {
            Some(c) => format!("ready: {}\n", c.role_text()),
            None => "ready\n".to_string(),
        };
        (StatusCode::OK, text).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first commit is not applied yet\n",
        )
            .into_response()
    }
}

pub async fn status(State(state): State<ApiState>) -> Json<StatusJson> {
    Json(StatusJson::from(&*state.status.borrow()))
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
