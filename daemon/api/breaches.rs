//! `GET /api/breaches?deployment=&limit=`: SLA breaches, newest first.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::types::BreachJson;
use super::{read, ApiError, ApiQuery, ApiState};

#[derive(Debug, Deserialize)]
pub struct BreachesQuery {
    deployment: Option<String>,
    limit: Option<usize>,
}

const MAX_LIMIT: usize = 1000;

pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<BreachesQuery>,
) -> Result<Json<Vec<BreachJson>>, ApiError> {
    let limit = match q.limit {
        None => 50,
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(limit) => {
            return Err(ApiError::BadRequest(format!(
                "limit {limit} is out of range: give 1 to {MAX_LIMIT}"
            )))
        }
    };
    let deployment = q.deployment.filter(|d| !d.is_empty());
    let found = read(state.db.clone(), move |store| {
        store.breaches(deployment.as_deref(), limit)
    })
    .await?;
    Ok(Json(found.iter().map(BreachJson::from).collect()))
}
