//! `GET /api/deployments`, `POST /api/deployments/{name}/runs` (a manual run) and
//! `POST /api/deployments/{name}/resume` (end a pause after failures).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::types::{DeploymentJson, RunJson, TriggerJson, MAX_PARAMETERS_BYTES};
use super::{ask, read, ApiError, ApiState, Authorized, MAX_BODY_BYTES};
use crate::engine::request::{ResumeError, TriggerError};
use crate::engine::Request;

pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<DeploymentJson>>, ApiError> {
    let names: Vec<String> = state
        .status
        .borrow()
        .deployments
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    // One indexed look-up per deployment in force, never a pass over every run.
    let last: HashMap<String, crate::store::Run> = read(state.db.clone(), move |store| {
        store.newest_runs(&names.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await?
    .into_iter()
    .map(|r| (r.deployment.clone(), r))
    .collect();
    let status = state.status.borrow();
    Ok(Json(
        status
            .deployments
            .iter()
            .map(|d| DeploymentJson::new(d, last.get(d.name())))
            .collect(),
    ))
}

/// A trigger body: a JSON object (serde would also take `[]` for a struct) with only
/// `parameters`, an object.
fn parse_trigger(body: &[u8]) -> Result<TriggerJson, ApiError> {
    let refuse = |detail: String| {
        ApiError::BadRequest(format!(
            "the body must be a JSON object like {{\"parameters\": {{...}}}}: {detail}"
        ))
    };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| refuse(e.to_string()))?;
    let kind = match value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(refuse(format!("got {kind}")));
    }
    serde_json::from_value(value).map_err(|e| refuse(e.to_string()))
}

pub async fn trigger(
    _: Authorized,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunJson>), ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the request body is over {MAX_BODY_BYTES} bytes, the most the API reads"
        )),
        _ => ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text())),
    })?;
    // No body at all means no overrides; anything else must be the JSON object (white
    // space alone is not JSON).
    let body = if body.is_empty() {
        TriggerJson::default()
    } else {
        parse_trigger(&body)?
    };
    // The map serializes exactly as the run will receive it (compact JSON).
    let size = serde_json::to_vec(&body.parameters).map_or(0, |json| json.len());
    if size > MAX_PARAMETERS_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the parameters are {size} bytes as JSON, over the limit of {MAX_PARAMETERS_BYTES}: \
             they reach the run in the SUNDIAL_PARAMETERS environment variable, which Linux \
             limits to 128 KiB; pass large inputs another way (e.g. a path or URL as a parameter)"
        )));
    }
    let answer = ask(&state, |reply| Request::Trigger {
        deployment: name,
        parameters: body.parameters,
        reply,
    })
    .await?;
    match answer {
        Ok(run) => Ok((StatusCode::CREATED, Json(RunJson::from(&run)))),
        Err(e @ TriggerError::UnknownDeployment(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ (TriggerError::TooLarge(_) | TriggerError::Unstorable(_))) => {
            Err(ApiError::PayloadTooLarge(e.to_string()))
        }
        Err(TriggerError::Parameters(errors)) => Err(ApiError::Unprocessable {
            message: "the parameters do not match the deployment's parameter schema".into(),
            errors,
        }),
        Err(
            e @ (TriggerError::Store(_) | TriggerError::Unavailable | TriggerError::Standby(_)),
        ) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// 200 with the deployment, running again.
pub async fn resume(
    _: Authorized,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<DeploymentJson>, ApiError> {
    let deployment = name.clone();
    match ask(&state, |reply| Request::Resume { deployment, reply }).await? {
        Ok(()) => {}
        Err(e @ ResumeError::UnknownDeployment(_)) => {
            return Err(ApiError::NotFound(e.to_string()))
        }
        Err(e @ ResumeError::NotPaused(_)) => return Err(ApiError::Conflict(e.to_string())),
        Err(e @ (ResumeError::Store(_) | ResumeError::Unavailable | ResumeError::Standby(_))) => {
            return Err(ApiError::Unavailable(e.to_string()))
        }
    }
    let filter = crate::store::RunFilter {
        deployment: Some(name.clone()),
        limit: 1,
        ..Default::default()
    };
    let last = read(state.db.clone(), move |store| store.runs(&filter)).await?;
    let status = state.status.borrow();
    match status.deployments.iter().find(|d| d.name() == name) {
        Some(view) => Ok(Json(DeploymentJson::new(view, last.first()))),
        None => Err(ApiError::NotFound(format!("no deployment named `{name}`"))),
    }
}
