//! Run history (`GET /api/runs`, `/api/runs/{id}`, `/api/runs/{id}/logs`) and
//! `POST /api/runs/{id}/cancel`.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::kept::Answer;
use super::readers::{kept_answer, read_page};
use super::types::RunJson;
use super::{ask, percent_encode, read, ApiError, ApiQuery, ApiState, Authorized, RunId};
use crate::engine::{CancelError, Request};
use crate::store::{RunFilter, RunState, StoreRead};

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    deployment: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    before: Option<i64>,
}

/// The most runs one request answers.
const MAX_LIMIT: usize = 1000;

/// Newest first; a full page carries `Link: <...&before=ID>; rel="next"` for the next one.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Response, ApiError> {
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
    let limit = match q.limit {
        None => 50,
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(limit) => {
            return Err(ApiError::BadRequest(format!(
                "limit {limit} is out of range: give 1 to {MAX_LIMIT} (and follow the `Link` \
                 header for more)"
            )))
        }
    };
    let filter = RunFilter {
        deployment: q.deployment.filter(|d| !d.is_empty()),
        state: run_state,
        before: q.before,
        limit,
        ..RunFilter::default()
    };
    let next = next_link(&filter);
    let key = match filter.before {
        Some(before) => format!("{next}&before={before}"),
        None => next.clone(),
    };
    // A page read before and the store unchanged since: answered again at once (see
    // `api::kept`). Otherwise it is read and written as JSON on the blocking thread,
    // straight from the rows where the store can (SQLite writes `RunJson`'s JSON itself).
    let answer = match kept_answer(&state.db, &key) {
        Some(answer) => answer,
        None => read_page(state.db, key, move |store| read_runs(store, &filter)).await?,
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response();
    if let Some(last) = answer.last {
        let link = format!("<{next}&before={last}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// A page of runs as the JSON of `GET /api/runs`, and its last id when it is full.
fn read_runs(store: &dyn StoreRead, filter: &RunFilter) -> Result<Answer, ApiError> {
    let mut body = String::with_capacity(512 * filter.limit.min(100) + 2);
    if let Some((count, last)) = store.runs_json(filter, &mut body)? {
        let last = last.filter(|_| count == filter.limit);
        return Ok(Answer {
            body: body.into(),
            last,
        });
    }
    let found = store.runs(filter)?;
    let last = found
        .last()
        .map(|r| r.id)
        .filter(|_| found.len() == filter.limit);
    let page: Vec<RunJson> = found.into_iter().map(RunJson::from).collect();
    let text = serde_json::to_string(&page).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Answer {
        body: text.into(),
        last,
    })
}

/// The next page's path without its `before`.
fn next_link(filter: &RunFilter) -> String {
    let mut path = format!("/api/runs?limit={}", filter.limit);
    if let Some(d) = &filter.deployment {
        path.push_str("&deployment=");
        path.push_str(&percent_encode(d));
    }
    if let Some(s) = filter.state {
        path.push_str("&state=");
        path.push_str(s.as_str());
    }
    path
}

pub async fn get(
    State(state): State<ApiState>,
    RunId(id): RunId,
) -> Result<Json<RunJson>, ApiError> {
    let found = read(state.db, move |store| store.run(id)).await?;
    found
        .map(|r| Json(RunJson::from(&r)))
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// Answer only the bytes from this offset on (how `sundial logs --follow` tails).
    offset: Option<u64>,
    /// In a cluster, the node another node's redirect meant (so a redirect that comes
    /// back to the wrong node stops there instead of going round).
    node: Option<String>,
}

/// The run's log as plain text (empty while nothing is written yet). In a cluster, a
/// run another node runs or ran has its log there: `307` to that node's API.
pub async fn logs(
    State(state): State<ApiState>,
    RunId(id): RunId,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    let Some(run) = read(state.db, move |store| store.run(id)).await? else {
        return Err(ApiError::NotFound(format!("no run {id}")));
    };
    let status = state.status.borrow().clone();
    if let Some(cluster) = &status.cluster {
        if let Some(meant) = q.node.as_deref().filter(|n| *n != cluster.node) {
            return Err(ApiError::NotFound(format!(
                "this is node {}, not node {meant}, which keeps run {id}'s log: the address node {meant} gives leads here; give each node its own --public-url",
                cluster.node
            )));
        }
        if let Some((node, url)) = cluster.elsewhere(&run) {
            let own = cluster.url_of(&cluster.node);
            let Some(url) = url.filter(|u| Some(u.as_str()) != own) else {
                return Err(ApiError::NotFound(format!(
                    "run {id}'s log is kept by node {node}, whose address is not known (or is this node's): ask its API, and give each node its own --public-url"
                )));
            };
            let offset = q.offset.map(|o| format!("&offset={o}")).unwrap_or_default();
            let location = format!(
                "{}/api/runs/{id}/logs?node={}{offset}",
                url.trim_end_matches('/'),
                super::percent_encode(&node)
            );
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response());
        }
    }
    let path = crate::engine::attempt::log_path(&state.logs_dir, id);
    let offset = q.offset.unwrap_or(0);
    let text = tokio::task::spawn_blocking(move || read_log(&path, offset, None))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Reads a log from `offset` (at most `max` bytes, the last ones when `max` is given);
/// a log not written yet is empty.
pub(super) fn read_log(path: &PathBuf, offset: u64, max: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let fail = |e: std::io::Error| ApiError::Internal(format!("reading {}: {e}", path.display()));
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(e)),
    };
    let len = file.metadata().map_err(fail)?.len();
    let start = match max {
        Some(max) => offset.max(len.saturating_sub(max)),
        None => offset,
    };
    let mut bytes = Vec::new();
    if start < len {
        file.seek(SeekFrom::Start(start)).map_err(fail)?;
        file.take(len - start)
            .read_to_end(&mut bytes)
            .map_err(fail)?;
    }
    Ok(bytes)
}

/// 202 with the run: a running process is being stopped (the row says Cancelled once it
/// has ended), by the node that runs it in a cluster; a waiting run is Cancelled at once.
pub async fn cancel(
    _: Authorized,
    State(state): State<ApiState>,
    RunId(id): RunId,
) -> Result<(StatusCode, Json<RunJson>), ApiError> {
    match ask(&state, |reply| Request::Cancel { run: id, reply }).await? {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(RunJson::from(&run)))),
        Err(e @ CancelError::UnknownRun(_)) => Err(ApiError::NotFound(e.to_string())),
        Err(e @ CancelError::AlreadyEnded(..)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ (CancelError::Store(_) | CancelError::Unavailable)) => {
            Err(ApiError::Unavailable(e.to_string()))
        }
    }
}
