//! `/deployments/{name}/explain`: "why didn't it run?" in the dashboard. The same answer
//! as `GET /api/deployments/{name}/explain` ([`crate::explain`]), as a page with a form
//! for an instant or a range, kept in the URL.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::layout::{header_section, page, utc};
use crate::api::explain::{explanation, ExplainQuery};
use crate::api::{percent_encode, ApiError, ApiState};

pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let status = state.status.borrow().clone();
    let deployment_url = format!("/deployments/{}", percent_encode(&name));
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let form = html! {
        form #explain-form method="get" {
            label { "At " input name="at" value=(field(&q.at)) placeholder="2026-03-29T02:30"; }
            " or "
            label { "from " input name="from" value=(field(&q.from)) placeholder="2026-03-01"; }
            label { " to " input name="to" value=(field(&q.to)) placeholder="now"; }
            " " button type="submit" { "Explain" }
            p.mute { "RFC 3339, or a wall time or date in the zone of its first schedule. Empty: the last 20 slots and the next 3." }
        }
    };
    let (code, answer) = match explanation(&state, name.clone(), &q).await {
        Ok(found) => (
            StatusCode::OK,
            html! {
                @for note in &found.notes { p.note { (note) } }
                @if let Some(none) = &found.no_slot {
                    p #no-slot { "No slot there: " (none.why) "." }
                    ul {
                        li { "Nearest before: " (none.before.as_deref().unwrap_or("none")) }
                        li { "Nearest after: " (none.after.as_deref().unwrap_or("none")) }
                    }
                } @else if found.slots.is_empty() {
                    p.mute { "No slots in that range." }
                } @else {
                    div.scroll { table.cards #slots {
                        thead { tr { th { "Slot (UTC)" } th { "What" } th { "Run" } th { "Why" } } }
                        tbody { @for s in &found.slots {
                            tr data-what=(s.what) {
                                td data-label="Slot" { (s.at) }
                                td data-label="What" { span.tag { (s.what.replace('_', " ")) } }
                                td data-label="Run" { @if let Some(id) = s.run_id { a href=(format!("/runs/{id}")) { (id) } } @else { "–" } }
                                td.full data-label="Why" { (s.why) " " small.mute { "[" (s.schedule) "]" } }
                            }
                        } }
                    } }
                    @if found.truncated { p.mute { "Only the first 1000 slots are listed: narrow the range." } }
                }
            },
        ),
        Err(ApiError::BadRequest(message)) => (
            StatusCode::BAD_REQUEST,
            html! { p.errors #problem { (message) } },
        ),
        Err(ApiError::NotFound(message)) => (
            StatusCode::NOT_FOUND,
            html! { p.errors #problem { (message) } },
        ),
        Err(other) => return Err(other),
    };
    let body = html! {
        (header_section(&status))
        h1 { "Why didn't it run? " a href=(deployment_url) { (name) } }
        p.mute { "Each slot of its schedules and what became of it, from the run ledger; as of " (utc(Some(chrono::Utc::now()))) "." }
        (form)
        section #explanation { (answer) }
    };
    Ok(page(
        &headers,
        &format!("sundial: explain {name}"),
        code,
        body,
    ))
}
