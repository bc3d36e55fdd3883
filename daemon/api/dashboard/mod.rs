//! The dashboard: server-rendered HTML pages, readable on a 390 px phone and a 1920 px
//! screen, keyboard reachable, with everything served by the binary (inline CSS, one
//! small inline script, inline SVG charts).
//!
//! Pages: the overview (`GET /`), the runs list with filters and pages in the URL
//! (`/runs`, [`runs`]), a run (`/runs/{id}`), and a deployment (`/deployments/{name}`,
//! [`deployment`]). [`layout`] is the frame (live updates by ETag poll, the token field,
//! how values are shown), [`charts`] draws the SVG, [`form`] builds the custom-run form.
//!
//! Contract: pages read the engine's published status and the store through the
//! read-only pool, like the API's handlers, and each read is bounded by what the page
//! shows (see `store::history`). maud escapes every interpolated string, so names,
//! messages and logs from manifests and processes cannot inject markup. The pages never
//! contain the API token: buttons post to the token-protected API with the token the user
//! types, kept in `sessionStorage`. Non-goals: a JavaScript framework, pausing or
//! resuming a deployment (no runtime pause exists; `paused:` is in the manifest).

mod charts;
mod deployment;
mod explain;
mod form;
mod layout;
mod runs;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::{percent_encode, read, ApiError, ApiState};
use crate::engine::status::DeploymentView;
use crate::store::{Run, RunFilter, RunState};
use layout::{badge, header_section, in_zone, page, relative, utc};

pub use deployment::show as deployment_page;
pub use explain::show as explain_page;
pub use runs::{list as runs_page, run_page};

/// Runs on the overview; the rest are on `/runs`.
const RECENT: usize = 20;

pub async fn index(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let status = state.status.borrow().clone();
    let names: Vec<String> = status
        .deployments
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let now = Utc::now();
    let (since, width) = runs::window(None, None, now);
    let (last, recent, slots, skipped, counts) = read(state.db.clone(), move |store| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let last = store.newest_runs(&names)?;
        let recent = store.runs(&RunFilter {
            limit: RECENT,
            ..RunFilter::default()
        })?;
        let slots = store.slot_attempts(&recent)?;
        let mut skipped = store.runs(&RunFilter {
            state: Some(RunState::Skipped),
            limit: 20,
            ..RunFilter::default()
        })?;
        let refused = store.runs(&RunFilter {
            state: Some(RunState::Cancelled),
            limit: 50,
            ..RunFilter::default()
        })?;
        skipped.extend(refused.into_iter().filter(|r| r.started_at.is_none()));
        skipped.sort_by_key(|r| std::cmp::Reverse(r.id));
        skipped.truncate(20);
        let counts = store.run_histogram(None, since, width, runs::BUCKETS)?;
        Ok((last, recent, slots, skipped, counts))
    })
    .await?;
    let no_slots = runs::Slots::new();
    let chart =
        charts::runs_over_time("over-time", &counts, since, width, runs::BUCKETS, |a, b| {
            runs::bucket_link(None, a, b)
        });
    let body = html! {
        (header_section(&status))
        section {
            h2 { "Deployments" }
            @if status.deployments.is_empty() {
                p.mute { "No deployments in force." }
            } @else {
                div.scroll #deployments-box data-live { table.cards #deployments {
                    thead { tr { th { "Name" } th { "Schedules" } th { "Next fire" } th { "Last run" } th {} } }
                    tbody { @for d in &status.deployments {
                        (deployment_row(d, last.iter().find(|r| r.deployment == d.name())))
                    } }
                } }
            }
        }
        section #chart data-live {
            h2 { "Runs in the last 24 hours" }
            (chart)
        }
        section #recent data-live {
            h2 { "Recent runs" }
            (runs::runs_table("runs", &recent, &slots, true))
            p { a href="/runs" { "All runs, with filters →" } }
        }
        section #skipped-box data-live {
            h2 { "Skipped and refused slots" }
            @if skipped.is_empty() {
                p.mute { "None: every due slot ran." }
            } @else {
                (runs::runs_table("skipped", &skipped, &no_slots, true))
            }
        }
    };
    Ok(page(&headers, "sundial", StatusCode::OK, body))
}

fn deployment_row(d: &DeploymentView, last: Option<&Run>) -> Markup {
    let dep = d.deployment();
    let next = d
        .schedules()
        .filter_map(|s| s.next.map(|n| (n, s.timezone())))
        .min_by_key(|(n, _)| *n);
    let page = format!("/deployments/{}", percent_encode(&dep.name));
    html! {
        tr data-deployment=(dep.name) {
            td data-label="Name" {
                a href=(page) { strong { (dep.name) } }
                @if dep.paused { " " span.tag { "paused" } }
                @if let Some(p) = &d.paused_after_failures { " " span.tag.bad title=(p.note) { "paused after failures" } }
                @if d.held_back { " " span.tag.bad title="its file fails at the newest commit" { "held back" } }
                br; small.mute { (dep.file) }
            }
            td.full data-label="Schedules" { @for s in d.schedules() {
                div title=(s.description) { (s.schedule.describe()) @if !s.active { " " span.tag { "inactive" } } }
            } }
            td data-label="Next" { (next_fire(next)) }
            td data-label="Last run" { @if let Some(r) = last {
                a href=(format!("/runs/{}", r.id)) { (badge(r.state)) } br; small.mute { (utc(r.started_at.or(r.ended_at))) }
            } @else { span.mute { "never" } } }
            td {
                form.api data-post=(format!("/api/deployments/{}/runs", percent_encode(&dep.name))) data-goto="run" {
                    button type="submit" { "Run now" } " " a href=(format!("{page}#custom-run")) { "Custom run" } " " output {}
                }
            }
        }
    }
}

fn next_fire(next: Option<(DateTime<Utc>, &str)>) -> Markup {
    html! {
        @if let Some((at, tz)) = next {
            (in_zone(at, tz)) br; small.mute { (utc(Some(at))) " · " (relative(at, "until")) }
        } @else { span.mute { "–" } }
    }
}
