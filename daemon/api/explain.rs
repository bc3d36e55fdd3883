//! `GET /api/deployments/{name}/explain`: what happened at each slot of a deployment, and
//! why ([`crate::explain`]). `?at=T` for one instant, `?from=T&to=T` for a range, neither
//! for each schedule's recent slots and its next ones. Times are RFC 3339, or a wall time
//! (`2026-03-29T02:30`, `2026-03-29`) in the zone of the deployment's first schedule.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::types::ExplanationJson;
use super::{ask, read, ApiError, ApiQuery, ApiState};
use crate::engine::Request;
use crate::explain::{self, Facts, Span};
use crate::schedule::{parse_anchor, Tz};

#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    pub at: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

pub async fn explain(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> Result<Json<ExplanationJson>, ApiError> {
    Ok(Json(explanation(&state, name, &q).await?))
}

/// The explanation of `name`'s slots that `q` asks for (the API and the dashboard).
pub async fn explanation(
    state: &ApiState,
    name: String,
    q: &ExplainQuery,
) -> Result<ExplanationJson, ApiError> {
    let deployment = name.clone();
    let Some(planned) = ask(state, |reply| Request::Planned { deployment, reply }).await? else {
        return Err(ApiError::NotFound(format!("no deployment named `{name}`")));
    };
    let tz = planned
        .deployment
        .schedules
        .first()
        .map_or(Tz::UTC, |s| s.schedule.timezone());
    let now = Utc::now();
    let when = |key: &str, text: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        parse_anchor(text, tz).map(|a| Some(a.instant)).map_err(|_| {
            ApiError::BadRequest(format!(
                "`{key}={text}` is not a time: give RFC 3339 (`2026-03-29T02:30:00+02:00`) or a wall time in {tz} (`2026-03-29T02:30`, `2026-03-29`)"
            ))
        })
    };
    let span = match (
        when("at", &q.at)?,
        when("from", &q.from)?,
        when("to", &q.to)?,
    ) {
        (Some(at), None, None) => Span::At(at),
        (None, None, None) => Span::Recent(now),
        (None, from, to) => {
            let from = from.unwrap_or(now - chrono::Duration::days(1));
            let to = to.unwrap_or(now);
            if to < from {
                return Err(ApiError::BadRequest("`to` is before `from`".into()));
            }
            Span::Between(from, to)
        }
        (Some(_), _, _) => {
            return Err(ApiError::BadRequest(
                "give `at` alone, or `from` and/or `to`".into(),
            ))
        }
    };
    let slots = explain::slots(&planned.deployment, span);
    let range = slots.range();
    let deployment = planned.deployment.clone();
    let (rows, first_recorded) = read(state.db.clone(), move |store| {
        let rows = match range {
            Some((from, to)) => {
                store.slot_rows(&deployment.name, from, to, explain::MAX_SLOTS * 4)?
            }
            None => Vec::new(),
        };
        Ok((rows, store.first_slots(&deployment.name)?))
    })
    .await?;
    let facts = Facts {
        now,
        held_back: planned.held_back,
        pause: planned.pause,
        first_recorded,
    };
    let explained = explain::explain(&planned.deployment, &slots, &rows, &facts, span);
    Ok(ExplanationJson::from(&explained))
}
