//! The dashboard (`GET /` and `GET /runs/{id}`): server-rendered HTML, readable on a
//! laptop and a phone, with inline CSS and one small script. maud escapes every
//! interpolated string, so names, messages and logs from manifests and processes cannot
//! inject markup. The page never contains the API token: "Run now" and "Cancel" post to
//! the token-protected API with a token the user types, kept in `sessionStorage`.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::{percent_encode, read, ApiError, ApiState};
use crate::engine::status::{DeploymentView, Status};
use crate::store::{Run, RunFilter, RunState};

/// The most of a log the run page shows (its tail).
const LOG_TAIL_BYTES: u64 = 64 * 1024;

pub async fn index(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let (last, recent, skipped) = read(state.db.clone(), |store| {
        let last: HashMap<String, Run> = store
            .last_runs()?
            .into_iter()
            .map(|r| (r.deployment.clone(), r))
            .collect();
        let recent = store.runs(&RunFilter {
            limit: 50,
            ..RunFilter::default()
        })?;
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
        Ok((last, recent, skipped))
    })
    .await?;
    let status = state.status.borrow().clone();
    let now = Utc::now();
    let body = html! {
        (header_section(&status))
        section {
            h2 { "Deployments" }
            @if status.deployments.is_empty() {
                p.mute { "No deployments in force." }
            } @else {
                div.scroll { table #deployments {
                    thead { tr { th { "Name" } th { "Schedules" } th { "Next fire" } th { "Last run" } th {} } }
                    tbody { @for d in &status.deployments { (deployment_row(d, last.get(&d.name), now)) } }
                } }
            }
        }
        section {
            h2 { "Recent runs" }
            (runs_table("runs", &recent, now))
        }
        section {
            h2 { "Skipped and refused slots" }
            @if skipped.is_empty() {
                p.mute { "None: every due slot ran." }
            } @else {
                (runs_table("skipped", &skipped, now))
            }
        }
    };
    Ok(page("sundial", None, body))
}

pub async fn run_page(
    State(state): State<ApiState>,
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
        let body = html! { h1 { "No run " (id) } p { a href="/" { "Back to the dashboard" } } };
        let mut response = page("sundial: no such run", None, body);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    let path = crate::engine::attempt::log_path(&state.logs_dir, id);
    let log =
        tokio::task::spawn_blocking(move || super::runs::read_log(&path, 0, Some(LOG_TAIL_BYTES)))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
    let log = String::from_utf8_lossy(&log);
    let now = Utc::now();
    let active = !run.state.is_final();
    let body = html! {
        p { a href="/" { "← sundial" } }
        @if active { (token_field()) }
        h1 { "Run " (run.id) " of " (run.deployment) " " (badge(run.state)) }
        dl #run {
            dt { "State" } dd #state { (run.state.as_str()) @if let Some(r) = &run.reason { " (" (r) ")" } }
            dt { "Trigger" } dd { (run.trigger.as_str()) }
            dt { "Attempt" } dd { (run.attempt) }
            dt { "Scheduled for" } dd { (utc(run.scheduled_for)) }
            dt { "Started" } dd { (utc(run.started_at)) }
            dt { "Ended" } dd { (utc(run.ended_at)) }
            dt { "Duration" } dd { (duration(&run, now)) }
            dt { "Lateness" } dd { (lateness(&run)) }
            dt { "Exit code" } dd { @if let Some(c) = run.exit_code { (c) } @else { "–" } }
            dt { "Commit" } dd { code { (run.commit) } }
            dt { "Parameters" } dd { code { (run.parameters.to_string()) } }
        }
        @if attempts.len() > 1 {
            h2 { "Attempts of this slot" }
            table #attempts {
                thead { tr { th { "Attempt" } th { "Run" } th { "State" } th { "Started" } th { "Commit" } } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { (a.attempt) }
                            td { @if a.id == run.id { (a.id) } @else { a href=(format!("/runs/{}", a.id)) { (a.id) } } }
                            td { (badge(a.state)) @if let Some(r) = &a.reason { " " span.mute { (r) } } }
                            td { (utc(a.started_at)) }
                            td { code title=(a.commit) { (a.commit.get(..7).unwrap_or(&a.commit)) } }
                        }
                    }
                }
            }
        }
        @if active {
            form.api data-post=(format!("/api/runs/{}/cancel", run.id)) data-goto="reload" {
                button type="submit" { "Cancel run" } " " output {}
            }
        }
        h2 { "Log" @if active { small { " (refreshing while it runs)" } } }
        @if log.is_empty() {
            p.mute { "Nothing logged yet." }
        } @else {
            pre.log #log { (log) }
        }
    };
    let title = format!("sundial: run {} of {}", run.id, run.deployment);
    Ok(page(&title, active.then_some(2), body))
}

fn header_section(status: &Status) -> Markup {
    html! {
        header {
            h1 { "sundial" }
            p {
                @if status.ready { "Applied commit " } @else { "Not ready yet; " }
                @if let Some(c) = &status.commit {
                    code title=(c) { (c.get(..12).unwrap_or(c)) }
                }
                @if let Some(at) = status.synced_at { span.mute { " · synced " (utc(Some(at))) } }
            }
            (token_field())
        }
        @if let Some((kind, message)) = &status.source.error {
            section.errors #source {
                h2 { "Repository" }
                p { (message) }
                p.mute {
                    "Failing (" (kind.as_str()) ") since " (utc(status.source.since))
                    "; last success " (utc(status.source.last_success_at))
                    ". The deployments in force keep running."
                }
            }
        }
        @if !status.errors.is_empty() {
            section.errors {
                h2 { "Errors" }
                ul #errors { @for e in &status.errors {
                    li { code { (e.file) ":" (e.line) ":" (e.column) } " " (e.message) }
                } }
                p.mute { "Files with errors keep their last good version running." }
            }
        }
        @if !status.warnings.is_empty() {
            details {
                summary { (status.warnings.len()) " warning(s)" }
                ul { @for w in &status.warnings {
                    li { code { (w.file) ":" (w.line) ":" (w.column) } " " (w.message) }
                } }
            }
        }
    }
}

/// Where the user types the API token; the page itself never holds it.
fn token_field() -> Markup {
    html! {
        form #auth onsubmit="return false" {
            label { "API token " input #token type="password" autocomplete="off" placeholder="contents of <state-dir>/token"; }
        }
    }
}

fn deployment_row(d: &DeploymentView, last: Option<&Run>, now: DateTime<Utc>) -> Markup {
    let next = d
        .schedules
        .iter()
        .filter_map(|s| s.next.map(|n| (n, s.timezone.as_str())))
        .min_by_key(|(n, _)| *n);
    html! {
        tr data-deployment=(d.name) {
            td {
                strong { (d.name) }
                @if d.paused { " " span.tag { "paused" } }
                @if let Some(p) = &d.paused_after_failures { " " span.tag.bad title=(p.note) { "paused after failures" } }
                @if d.held_back { " " span.tag.bad title="its file fails at the newest commit" { "held back" } }
                br; small.mute { (d.file) }
            }
            td { @for s in &d.schedules {
                div { (s.description) @if !s.active { " " span.tag { "inactive" } } }
            } }
            td {
                @if let Some((at, tz)) = next {
                    (in_zone(at, tz)) br; small.mute { (utc(Some(at))) " · " (until(at, now)) }
                } @else { span.mute { "–" } }
            }
            td { @if let Some(r) = last {
                a href=(format!("/runs/{}", r.id)) { (badge(r.state)) } br; small.mute { (utc(r.started_at.or(r.ended_at))) }
            } @else { span.mute { "never" } } }
            td {
                form.api data-post=(format!("/api/deployments/{}/runs", percent_encode(&d.name))) data-goto="run" {
                    button type="submit" { "Run now" } " " output {}
                }
            }
        }
    }
}

fn runs_table(id: &str, runs: &[Run], now: DateTime<Utc>) -> Markup {
    html! {
        @if runs.is_empty() {
            p.mute { "No runs yet." }
        } @else {
            div.scroll { table id=(id) {
                thead { tr {
                    th { "Run" } th { "Deployment" } th { "State" } th.wide { "Trigger" }
                    th { "Scheduled / started (UTC)" } th { "Duration" } th.wide { "Lateness" }
                } }
                tbody { @for r in runs {
                    tr {
                        td { a href=(format!("/runs/{}", r.id)) { (r.id) } }
                        td { (r.deployment) }
                        td { (badge(r.state)) @if let Some(why) = &r.reason { br; small.mute { (why) } } }
                        td.wide { (r.trigger.as_str()) @if r.attempt > 1 { " #" (r.attempt) } }
                        td { (utc(r.started_at.or(r.scheduled_for))) }
                        td { (duration(r, now)) }
                        td.wide { (lateness(r)) }
                    }
                } }
            } }
        }
    }
}

fn badge(state: RunState) -> Markup {
    html! { span class=(format!("badge s-{}", state.as_str())) { (state.as_str()) } }
}

fn utc(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "–".into())
}

/// The time in the schedule's own zone, as its users think of it.
fn in_zone(at: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => at
            .with_timezone(&zone)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => utc(Some(at)),
    }
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (at - now).num_seconds();
    if s <= 0 {
        "due".into()
    } else {
        format!("in {}", seconds_text(s as f64))
    }
}

fn duration(run: &Run, now: DateTime<Utc>) -> String {
    match (run.started_at, run.ended_at) {
        (Some(start), Some(end)) => seconds_text((end - start).num_milliseconds() as f64 / 1000.0),
        (Some(start), None) => format!(
            "{} so far",
            seconds_text((now - start).num_seconds() as f64)
        ),
        _ => "–".into(),
    }
}

fn lateness(run: &Run) -> String {
    match (run.scheduled_for, run.started_at) {
        (Some(due), Some(start)) => seconds_text((start - due).num_milliseconds() as f64 / 1000.0),
        _ => "–".into(),
    }
}

fn seconds_text(s: f64) -> String {
    if s.abs() < 60.0 {
        format!("{s:.1}s")
    } else if s.abs() < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as i64, (s % 60.0) as i64)
    } else if s.abs() < 86400.0 {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as i64,
            ((s % 3600.0) / 60.0) as i64
        )
    } else {
        format!(
            "{}d{:02}h",
            (s / 86400.0) as i64,
            ((s % 86400.0) / 3600.0) as i64
        )
    }
}

fn page(title: &str, refresh: Option<u32>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                main { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

const CSS: &str = r#"
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--run:#0969da;--mute:#6e7781}
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #8884;vertical-align:top}
th{font-size:.85em;color:var(--mute);font-weight:600}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85em;color:#fff;background:var(--mute);white-space:nowrap}
.s-Completed{background:var(--ok)}.s-Failed,.s-Crashed,.s-TimedOut{background:var(--bad)}
.s-Running,.s-Pending{background:var(--run)}.s-AwaitingRetry,.s-Scheduled{background:var(--warn)}
.tag{font-size:.8em;border:1px solid var(--mute);border-radius:.3rem;padding:0 .3rem}.tag.bad{border-color:var(--bad);color:var(--bad)}
.errors{border-left:4px solid var(--bad);padding-left:.75rem}.errors li{margin:.2rem 0}
.mute{color:var(--mute)}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
pre.log{background:#0d1117;color:#e6edf3;padding:.75rem;overflow:auto;max-height:70vh;white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{color:var(--mute)}dd{margin:0;word-break:break-all}
button{font:inherit;padding:.2rem .7rem;cursor:pointer}output{color:var(--bad);font-size:.85em}
#auth input{font:inherit;width:16rem;max-width:100%}
@media (max-width:700px){main{padding:.5rem}body{font-size:14px}.wide{display:none}th,td{padding:.3rem}}
"#;

/// Keeps the typed token in sessionStorage (never in the page) and posts the forms.
const SCRIPT: &str = r#"
const token=document.getElementById('token');
if(token){token.value=sessionStorage.getItem('sundial-token')||'';
token.addEventListener('input',()=>sessionStorage.setItem('sundial-token',token.value));}
for(const form of document.querySelectorAll('form.api')){
form.addEventListener('submit',async(event)=>{event.preventDefault();
const out=form.querySelector('output');
const t=sessionStorage.getItem('sundial-token')||'';
if(!t){out.textContent='Type the API token (the file <state-dir>/token) first.';if(token)token.focus();return;}
out.textContent='…';
try{const r=await fetch(form.dataset.post,{method:'POST',headers:{'Authorization':'Bearer '+t,'Content-Type':'application/json'},body:'{}'});
const j=await r.json();
if(!r.ok){out.textContent=j.error+(j.errors?': '+j.errors.join('; '):'');return;}
if(form.dataset.goto==='run'){location.href='/runs/'+j.id;}else{location.reload();}
}catch(e){out.textContent=String(e);}});}
"#;
