//! The runs list (`GET /runs`: filters and pages kept in the URL, with the chart of runs
//! over time) and a run's page (`GET /runs/{id}`: its fields, the attempts of its slot,
//! its log with search and follow).
//!
//! Contract: a list page reads one page of runs (keyset by id, `before=ID`) and the
//! attempts of that page's slots, never more; filters are `WHERE` terms. A filter value
//! that does not parse is a `400` page that says which and why (the rest of the page
//! still shows, without that filter). Times in the URL are UTC.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound, NaiveDate, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::charts;
use super::layout::{badge, duration, header_section, lateness, page, short, utc};
use crate::api::{percent_encode, read, ApiError, ApiState};
use crate::store::{AttemptRef, Run, RunFilter, RunState, SlotKey, Trigger};

/// Runs on one page of a list.
pub const PAGE_SIZE: usize = 50;
/// The most of a log the run page shows (its tail).
const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Bars of the runs-over-time chart.
pub const BUCKETS: i64 = 24;

/// The query of `/runs` as typed; every field optional, empty meaning "any".
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    deployment: Option<String>,
    state: Option<String>,
    trigger: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
}

/// The attempts of each slot on a page.
pub type Slots = std::collections::HashMap<SlotKey, Vec<AttemptRef>>;

pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (filter, problems) = filter_of(&q);
    let now = Utc::now();
    let (since, width) = window(filter.since, filter.until, now);
    let for_read = filter.clone();
    let (runs, slots, counts) = read(state.db.clone(), move |store| {
        let runs = store.runs(&for_read)?;
        let slots = store.slot_attempts(&runs)?;
        let counts = store.run_histogram(for_read.deployment.as_deref(), since, width, BUCKETS)?;
        Ok((runs, slots, counts))
    })
    .await?;
    let status = state.status.borrow().clone();
    let deployment = filter.deployment.clone();
    let chart = charts::runs_over_time("over-time", &counts, since, width, BUCKETS, |a, b| {
        bucket_link(deployment.as_deref(), a, b)
    });
    let mut names: Vec<&str> = status.deployments.iter().map(|d| d.name()).collect();
    if let Some(d) = &filter.deployment {
        if !names.contains(&d.as_str()) {
            names.push(d);
        }
    }
    let older = (runs.len() == PAGE_SIZE)
        .then(|| runs.last().map(|r| list_url(&q, Some(r.id))))
        .flatten();
    let body = html! {
        (header_section(&status))
        h1 { "Runs" }
        form.filters method="get" action="/runs" {
            label { "Deployment" select name="deployment" {
                option value="" { "any" }
                @for n in &names { option value=(n) selected[filter.deployment.as_deref() == Some(*n)] { (n) } }
            } }
            label { "State" select name="state" {
                option value="" { "any" }
                @for s in RunState::ALL { option value=(s.as_str()) selected[filter.state == Some(s)] { (s.as_str()) } }
            } }
            label { "Trigger" select name="trigger" {
                option value="" { "any" }
                @for t in Trigger::ALL { option value=(t.as_str()) selected[filter.trigger == Some(t)] { (t.as_str()) } }
            } }
            // The form's own format, whatever form the URL had (a chart's bar links RFC 3339).
            label { "From (UTC)" input type="datetime-local" name="since" value=[filter.since.map(form_time)]; }
            label { "Until (UTC)" input type="datetime-local" name="until" value=[filter.until.map(form_time)]; }
            button type="submit" { "Filter" }
            a href="/runs" { "Clear" }
        }
        @if !problems.is_empty() {
            ul.errors #filter-errors { @for p in &problems { li { (p) } } }
        }
        section #chart data-live { (chart) }
        section #list data-live {
            (runs_table("runs", &runs, &slots, true))
            div.pager {
                @if filter.before.is_some() { a href=(list_url(&q, None)) { "← Newest" } }
                @if let Some(url) = &older { a #older href=(url) { "Older →" } }
            }
        }
    };
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(page(&headers, "sundial: runs", code, body))
}

/// The filter the query asks for, and what in it could not be read.
fn filter_of(q: &ListQuery) -> (RunFilter, Vec<String>) {
    let mut problems = Vec::new();
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut filter = RunFilter {
        deployment: given(&q.deployment),
        limit: PAGE_SIZE,
        ..RunFilter::default()
    };
    if let Some(text) = given(&q.state) {
        filter.state = RunState::parse(&text);
        if filter.state.is_none() {
            problems.push(format!("unknown state {text:?}: choose one from the list"));
        }
    }
    if let Some(text) = given(&q.trigger) {
        filter.trigger = Trigger::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(&text));
        if filter.trigger.is_none() {
            problems.push(format!(
                "unknown trigger {text:?}: use schedule, manual, retry or catchup"
            ));
        }
    }
    for (field, text, slot) in [
        ("From", given(&q.since), &mut filter.since),
        ("Until", given(&q.until), &mut filter.until),
    ] {
        if let Some(text) = text {
            *slot = parse_utc(&text);
            if slot.is_none() {
                problems.push(format!(
                    "{field} {text:?} is not a time: write 2026-03-09T14:00 (UTC)"
                ));
            }
        }
    }
    if let Some(text) = given(&q.before) {
        filter.before = text.parse().ok();
        if filter.before.is_none() {
            problems.push(format!("before={text:?} is not a run id"));
        }
    }
    (filter, problems)
}

/// A UTC time as a form or a link writes it: `2026-03-09T14:00`, with seconds, RFC 3339,
/// or a date alone (its midnight).
fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)
    })
    .map(|t| t.and_utc())
}

/// The chart's window: the filter's, else the 24 hours up to the end of this hour.
pub fn window(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Duration) {
    let hour_end = now.duration_trunc(Duration::hours(1)).unwrap_or(now) + Duration::hours(1);
    let until = until.unwrap_or(hour_end);
    let since = since.unwrap_or(until - Duration::hours(BUCKETS));
    let span = (until - since).max(Duration::minutes(BUCKETS));
    (since, span / BUCKETS as i32)
}

fn form_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M").to_string()
}

fn url_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn bucket_link(deployment: Option<&str>, since: DateTime<Utc>, until: DateTime<Utc>) -> String {
    let mut url = format!("/runs?since={}&until={}", url_time(since), url_time(until));
    if let Some(d) = deployment {
        url.push_str(&format!("&deployment={}", percent_encode(d)));
    }
    url
}

/// This list's address with another page (`before`).
fn list_url(q: &ListQuery, before: Option<i64>) -> String {
    let mut parts = Vec::new();
    for (key, value) in [
        ("deployment", &q.deployment),
        ("state", &q.state),
        ("trigger", &q.trigger),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{key}={}", percent_encode(v)));
        }
    }
    if let Some(b) = before {
        parts.push(format!("before={b}"));
    }
    format!("/runs?{}", parts.join("&"))
}

/// A table of runs (cards on a phone), each with the attempts of its slot and, while it
/// is active, a Cancel button.
pub fn runs_table(id: &str, runs: &[Run], slots: &Slots, with_deployment: bool) -> Markup {
    html! {
        @if runs.is_empty() {
            p.mute { "No runs." }
        } @else {
            div.scroll { table.cards id=(id) {
                thead { tr {
                    th { "Run" } @if with_deployment { th { "Deployment" } } th { "State" } th { "Trigger / attempts" }
                    th { "Scheduled / started (UTC)" } th { "Duration" } th.wide { "Lateness" } th.wide { "Commit" }
                    th.wide { "Parameters" } th {}
                } }
                tbody { @for r in runs {
                    tr data-run=(r.id) {
                        td data-label="Run" { a href=(format!("/runs/{}", r.id)) { (r.id) } }
                        @if with_deployment {
                            td data-label="Deployment" { a href=(format!("/deployments/{}", percent_encode(&r.deployment))) { (r.deployment) } }
                        }
                        td data-label="State" { (badge(r.state)) @if let Some(why) = &r.reason { br; small.mute { (why) } } }
                        td data-label="Trigger" { (r.trigger.as_str()) (attempts(r, slots)) }
                        td data-label="Time" { (utc(r.started_at.or(r.scheduled_for).or(Some(r.created_at)))) }
                        td data-label="Duration" { (duration(r)) }
                        td.wide data-label="Lateness" { (lateness(r)) }
                        td.wide data-label="Commit" { code title=(r.commit) { (short(&r.commit)) } }
                        td.wide data-label="Parameters" { code { (truncate(&r.parameters.to_string(), 80)) } }
                        td.full { @if !r.state.is_final() { (cancel_form(r.id)) } }
                    }
                } }
            } }
        }
    }
}

/// The attempts of `run`'s slot as small linked badges, when it has more than one.
fn attempts(run: &Run, slots: &Slots) -> Markup {
    let key = match (&run.schedule_id, run.scheduled_for) {
        (Some(s), Some(at)) => (run.deployment.clone(), s.clone(), at),
        _ => return html! {},
    };
    let Some(all) = slots.get(&key).filter(|a| a.len() > 1) else {
        return html! {};
    };
    html! {
        " " span.attempts {
            @for a in all {
                a class=(format!("s-{}", a.state.as_str())) href=(format!("/runs/{}", a.id))
                    title=(format!("attempt {}: {} at commit {}", a.attempt, a.state.as_str(), short(&a.commit)))
                    aria-current=[(a.id == run.id).then_some("true")] {
                    (a.attempt)
                }
            }
        }
    }
}

pub fn cancel_form(id: i64) -> Markup {
    html! {
        form.api data-post=(format!("/api/runs/{id}/cancel")) data-goto="reload" {
            button type="submit" { "Cancel" } " " output {}
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

pub async fn run_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let found = read(state.db.clone(), move |store| {
        let Some(run) = store.run(id)? else {
            return Ok(None);
        };
        let attempts = store.attempts_of(&run)?;
        Ok(Some((run, attempts)))
    })
    .await?;
    let Some((run, attempts)) = found else {
        let body = html! { h1 { "No run " (id) } p { a href="/runs" { "All runs" } } };
        return Ok(page(
            &headers,
            "sundial: no such run",
            StatusCode::NOT_FOUND,
            body,
        ));
    };
    // In a cluster, a run of another node has its log there.
    let status = state.status.borrow().clone();
    let elsewhere = status.cluster.as_ref().and_then(|c| c.elsewhere(&run));
    let path = crate::engine::attempt::log_path(&state.logs_dir, id);
    let log = tokio::task::spawn_blocking(move || {
        crate::api::runs::read_log(&path, 0, Some(LOG_TAIL_BYTES))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let log = String::from_utf8_lossy(&log);
    let active = !run.state.is_final();
    let deployment_url = format!("/deployments/{}", percent_encode(&run.deployment));
    let body = html! {
        h1 #title data-live { "Run " (run.id) " of " a href=(deployment_url) { (run.deployment) } " " (badge(run.state)) }
        dl #run data-live {
            dt { "State" } dd #state { (run.state.as_str()) @if let Some(r) = &run.reason { " (" (r) ")" } }
            dt { "Cause" } dd { (run.cause())
                @if let Some(of) = run.retry_of { " (" a href=(format!("/runs/{of}")) { "run " (of) } ")" } }
            dt { "Attempt" } dd { (run.attempt) }
            dt { "Scheduled for" } dd { (utc(run.scheduled_for)) }
            dt { "Started" } dd { (utc(run.started_at)) }
            dt { "Ended" } dd { (utc(run.ended_at)) }
            dt { "Duration" } dd { (duration(&run)) }
            dt { "Lateness" } dd #lateness { (lateness(&run)) }
            dt { "Exit code" } dd { @if let Some(c) = run.exit_code { (c) } @else { "–" } }
            dt { "Commit" } dd { code { (run.commit) } }
            @if let Some(node) = &run.node { dt { "Node" } dd #node { (node) } }
            dt { "Parameters" } dd { pre.json #parameters { (serde_json::to_string_pretty(&run.parameters).unwrap_or_default()) } }
        }
        div #actions data-live { @if active { (cancel_form(run.id)) } }
        @if attempts.len() > 1 {
            h2 { "Attempts of this slot" }
            table #attempts data-live {
                thead { tr { th { "Attempt" } th { "Run" } th { "State" } th { "Started" } th { "Commit" } } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { (a.attempt) }
                            td { @if a.id == run.id { (a.id) } @else { a href=(format!("/runs/{}", a.id)) { (a.id) } } }
                            td { (badge(a.state)) @if let Some(r) = &a.reason { " " span.mute { (r) } } }
                            td { (utc(a.started_at)) }
                            td { code title=(a.commit) { (short(&a.commit)) } }
                        }
                    }
                }
            }
        }
        h2 { "Log" }
        div.log-tools {
            label { "Search " input #log-search type="search" autocomplete="off"; }
            label { input #log-follow type="checkbox" checked[active]; " Follow" }
            span #log-count.mute {}
        }
        div #log-box data-live {
            @if let Some((node, url)) = elsewhere {
                p.mute #elsewhere {
                    "Node " code { (node) } " runs this run and keeps its log"
                    @if let Some(url) = url {
                        ": " a href=(format!("{}/runs/{id}", url.trim_end_matches('/'))) { "open it there" }
                    }
                    "."
                }
            } @else if log.is_empty() {
                p.mute { "Nothing logged yet." }
            } @else {
                pre.log #log { @for line in log.split_inclusive('\n') { span.line { (line) } } }
            }
        }
    };
    let title = format!("sundial: run {} of {}", run.id, run.deployment);
    Ok(page(&headers, &title, StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_from_the_url_and_bad_values_are_named() {
        let q = ListQuery {
            deployment: Some("etl".into()),
            state: Some("failed".into()),
            trigger: Some("manual".into()),
            since: Some("2026-03-09T14:00".into()),
            until: Some("".into()),
            before: Some("120".into()),
        };
        let (f, problems) = filter_of(&q);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(f.state, Some(RunState::Failed));
        assert_eq!(f.trigger, Some(Trigger::Manual));
        assert_eq!(f.since, Some("2026-03-09T14:00:00Z".parse().unwrap()));
        assert_eq!((f.until, f.before), (None, Some(120)));
        assert_eq!(
            list_url(&q, Some(7)),
            "/runs?deployment=etl&state=failed&trigger=manual&since=2026-03-09T14%3A00&before=7"
        );
        let bad = ListQuery {
            state: Some("Done".into()),
            since: Some("yesterday".into()),
            ..ListQuery::default()
        };
        let (f, problems) = filter_of(&bad);
        assert_eq!((f.state, f.since), (None, None));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_retried_slot_shows_its_attempts_each_with_its_state_and_commit() {
        let at: DateTime<Utc> = "2026-03-09T14:00:00Z".parse().unwrap();
        let run = Run {
            id: 8,
            deployment: "etl".into(),
            schedule_id: Some("daily".into()),
            scheduled_for: Some(at),
            trigger: Trigger::Retry,
            state: RunState::Completed,
            reason: None,
            attempt: 2,
            commit: "bbbbbbbbbb".into(),
            parameters: serde_json::json!({}),
            created_at: at,
            started_at: Some(at),
            ended_at: Some(at),
            exit_code: Some(0),
            pid: None,
            not_before: None,
            retry_pending: false,
            retry_of: Some(7),
            node: None,
            epoch: None,
        };
        let attempt = |id, attempt, state, commit: &str| AttemptRef {
            id,
            attempt,
            state,
            commit: commit.into(),
        };
        let mut slots = Slots::new();
        slots.insert(
            ("etl".into(), "daily".into(), at),
            vec![
                attempt(5, 1, RunState::Failed, "aaaaaaaaaa"),
                attempt(8, 2, RunState::Completed, "bbbbbbbbbb"),
            ],
        );
        let html = attempts(&run, &slots).into_string();
        assert!(
            html.contains(r#"<a class="s-Failed" href="/runs/5" title="attempt 1: Failed at commit aaaaaaa">1</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"href="/runs/8" title="attempt 2: Completed at commit bbbbbbb" aria-current="true">2</a>"#),
            "{html}"
        );
        let alone = Slots::new();
        assert_eq!(attempts(&run, &alone).into_string(), "");
    }

    #[test]
    fn the_chart_window_is_the_filter_or_the_last_day_by_hour() {
        let now: DateTime<Utc> = "2026-03-09T14:25:00Z".parse().unwrap();
        let (since, width) = window(None, None, now);
        assert_eq!(
            since,
            "2026-03-08T15:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(width, Duration::hours(1));
        let from = "2026-03-09T00:00:00Z".parse().unwrap();
        let until = "2026-03-09T12:00:00Z".parse().unwrap();
        assert_eq!(
            window(Some(from), Some(until), now),
            (from, Duration::minutes(30))
        );
    }
}
