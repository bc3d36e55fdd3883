//! A deployment's page (`GET /deployments/{name}`): what it is (file, commit, timeout,
//! retries), its schedules in words, its upcoming runs with DST notes, its parameters and
//! their schema, a custom-run form, charts of its recent runs, and its history.
//!
//! Contract: the deployment is the one in force (the engine's published status); one that
//! is not is a `404` page that still links to its history. Upcoming runs start at the
//! engine's next fire of each schedule and follow the schedule's own rule (pure), so the
//! page never plans anything itself. The history is one page of runs (`before=ID`).
//! Pause and resume are not here: sundial has no runtime pause (a deployment is paused in
//! its manifest, `paused: true`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{header_section, in_zone, page, relative, seconds_text, short, utc};
use super::runs::{runs_table, PAGE_SIZE};
use super::{charts, form};
use crate::api::{percent_encode, read, ApiError, ApiState};
use crate::engine::status::{DeploymentView, ScheduleView};
use crate::schedule::DstShift;
use crate::store::{RunFilter, RunState};

/// Upcoming runs listed (over all its schedules).
const UPCOMING: usize = 10;
/// Runs in the duration and lateness charts.
const CHART_RUNS: usize = 50;
/// The newest SLA breaches a deployment page lists.
const BREACHES: usize = 10;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    before: Option<i64>,
}

pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let status = state.status.borrow().clone();
    let history_url = format!("/runs?deployment={}", percent_encode(&name));
    let Some(d) = status.deployments.iter().find(|d| d.name() == name) else {
        let body = html! {
            h1 { "No deployment " (name) " in force" }
            p { a href=(history_url) { "Its runs, if it had any" } }
        };
        return Ok(page(
            &headers,
            "sundial: no such deployment",
            StatusCode::NOT_FOUND,
            body,
        ));
    };
    let dep = d.deployment();
    let (history, ended, slots, breaches) = {
        let name = name.clone();
        read(state.db.clone(), move |store| {
            let history = store.runs(&RunFilter {
                deployment: Some(name.clone()),
                before: q.before,
                limit: PAGE_SIZE,
                ..RunFilter::default()
            })?;
            let slots = store.slot_attempts(&history)?;
            let mut ended = Vec::new();
            for state in [
                RunState::Completed,
                RunState::Failed,
                RunState::TimedOut,
                RunState::Crashed,
            ] {
                ended.extend(store.runs(&RunFilter {
                    deployment: Some(name.clone()),
                    state: Some(state),
                    limit: CHART_RUNS,
                    ..RunFilter::default()
                })?);
            }
            ended.sort_by_key(|r| std::cmp::Reverse(r.id));
            ended.truncate(CHART_RUNS);
            ended.reverse();
            let breaches = store.breaches(Some(&name), BREACHES)?;
            Ok((history, ended, slots, breaches))
        })
        .await?
    };
    let older = (history.len() == PAGE_SIZE)
        .then(|| {
            history
                .last()
                .map(|r| format!("/deployments/{}?before={}", percent_encode(&name), r.id))
        })
        .flatten();
    let scheduled: Vec<_> = ended
        .iter()
        .filter(|r| r.scheduled_for.is_some())
        .cloned()
        .collect();
    let body = html! {
        (header_section(&status))
        h1 { (dep.name)
            @if dep.paused { " " span.tag title="paused: true in its manifest; Run now still works" { "paused" } }
            @if d.paused_after_failures.is_some() { " " span.tag.bad title="paused at run time, not by git" { "paused after failures" } }
            @if d.held_back { " " span.tag.bad title="its file fails at the newest commit" { "held back" } }
        }
        // Always there (empty when running), so a live update can take the notice away.
        section #pause data-live {
            @if let Some(p) = &d.paused_after_failures {
                p { strong { "Paused after failures" } " since " (utc(Some(p.since))) ": " (p.note) }
                form.api data-post=(format!("/api/deployments/{}/resume", percent_encode(&dep.name))) data-goto="reload" {
                    button type="submit" { "Resume" } " " output.result {}
                }
            }
        }
        @if let Some(text) = &dep.description { p { (text) } }
        dl #about {
            dt { "Slots" } dd { a href=(format!("/deployments/{}/explain", percent_encode(&dep.name))) { "Why didn't it run? What happened at each slot" } }
            dt { "Source" } dd { code { (dep.file) } " at commit " code title=(d.commit) { (short(&d.commit)) } }
            @if !dep.tags.is_empty() { dt { "Tags" } dd { @for t in &dep.tags { span.tag { (t) } " " } } }
            dt { "Timeout" } dd { @if let Some(t) = dep.timeout { (seconds_text(t.as_secs_f64())) } @else { "none" } }
            dt { "Retries" } dd { (dep.retries) }
        }
        h2 { "Schedules" }
        @if dep.schedules.is_empty() {
            p.mute { "No schedules: it runs when triggered." }
        } @else {
            ul #schedules { @for s in d.schedules() {
                li { (s.schedule.describe()) @if !s.active { " " span.tag { "inactive" } } " " small.mute { code { (s.description) } } }
            } }
        }
        h2 { "Upcoming runs" }
        (upcoming(d))
        h2 { "Custom run" }
        p.mute { "Fields start at the deployment's defaults; what you leave empty keeps its default." }
        (form::custom_run(d))
        details {
            summary { "Default parameters and schema" }
            pre.json #defaults { (serde_json::to_string_pretty(&serde_json::Value::Object(dep.parameters.clone())).unwrap_or_default()) }
            @if let Some(schema) = &dep.parameter_schema {
                pre.json #schema { (serde_json::to_string_pretty(schema).unwrap_or_default()) }
            } @else { p.mute { "No parameter schema is enforced." } }
        }
        // Always there (empty without breaches), so a live update can fill it in.
        section #breaches data-live { @if !breaches.is_empty() {
            h2 { "SLA breaches" }
            div.scroll { table.cards {
                thead { tr { th { "When" } th { "SLA" } th { "Severity" } th { "Run" } th { "What" } } }
                tbody { @for b in &breaches {
                    tr data-kind=(b.kind) {
                        td data-label="When" { (utc(Some(b.at))) }
                        td data-label="SLA" { (b.sla) " " small.mute { "(" (b.kind) ")" } }
                        td data-label="Severity" { span.tag.bad[b.severity == "high" || b.severity == "critical"] { (b.severity) } }
                        td data-label="Run" { @if let Some(id) = b.run_id { a href=(format!("/runs/{id}")) { (id) } } @else { "–" } }
                        td.full data-label="What" { (b.detail) }
                    }
                } }
            } }
        } }
        h2 { "Recent runs" }
        div.charts #charts data-live {
            (charts::durations("durations", &ended, dep.timeout))
            (charts::lateness("lateness", &scheduled))
        }
        section #history data-live {
            (runs_table("runs", &history, &slots, false))
            div.pager {
                @if q.before.is_some() { a href=(format!("/deployments/{}", percent_encode(&name))) { "← Newest" } }
                @if let Some(url) = &older { a href=(url) { "Older →" } }
                a href=(history_url) { "Filter its runs" }
            }
        }
    };
    Ok(page(
        &headers,
        &format!("sundial: {}", dep.name),
        StatusCode::OK,
        body,
    ))
}

/// The next fires of every schedule together, soonest first, each with its zone's time,
/// UTC, and what DST did to it.
fn upcoming(d: &DeploymentView) -> Markup {
    let dep = d.deployment();
    let mut fires: Vec<(DateTime<Utc>, ScheduleView<'_>, Option<String>)> = Vec::new();
    for s in d.schedules().filter(|s| s.active) {
        let Some(next) = s.next else { continue };
        let from = next - Duration::milliseconds(1);
        let mut last = next;
        for fire in s.schedule.iter_after(from).take(UPCOMING) {
            fires.push((fire.at, s, fire.shift.map(dst_note)));
            last = fire.at;
        }
        for wall in s.schedule.dropped_by_dst(from, last) {
            let note = format!(
                "{} does not exist that day (clocks go forward): it does not run",
                wall.format("%Y-%m-%d %H:%M")
            );
            // A dropped wall time is listed where the gap is.
            fires.push((dropped_instant(&s, wall).unwrap_or(last), s, Some(note)));
        }
    }
    fires.sort_by_key(|(at, _, _)| *at);
    fires.truncate(UPCOMING);
    html! {
        @if dep.paused {
            p.mute { "Paused in its manifest: no scheduled runs." }
        } @else if fires.is_empty() {
            p.mute { "Nothing planned." }
        } @else {
            div.scroll { table.cards #upcoming {
                thead { tr { th { "When (schedule's zone)" } th { "UTC" } th { "In" } th { "Schedule" } th { "Note" } } }
                tbody { @for (at, s, note) in &fires {
                    tr {
                        td data-label="When" { (in_zone(*at, s.timezone())) }
                        td.wide data-label="UTC" { (utc(Some(*at))) }
                        td data-label="In" { (relative(*at, "until")) }
                        td.wide data-label="Schedule" { (s.schedule.describe()) }
                        td.full { @if let Some(n) = note { span.tag title="daylight saving time" { "DST" } " " (n) } }
                    }
                } }
            } }
        }
    }
}

fn dst_note(shift: DstShift) -> String {
    match shift {
        DstShift::GapMoved { wanted } => format!(
            "{} does not exist that day (clocks go forward): it runs when the gap ends",
            wanted.format("%H:%M")
        ),
        DstShift::SecondOccurrenceSkipped { wall } => format!(
            "{} happens twice that day (clocks go back): it runs the first time only",
            wall.format("%H:%M")
        ),
    }
}

/// The instant a wall time dropped in a spring-forward gap would have been (the gap's
/// start, where the zone's clock jumps).
fn dropped_instant(s: &ScheduleView<'_>, wall: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let tz = s.schedule.timezone();
    // Just before the gap, the zone's offset is the old one.
    let before = wall - Duration::hours(3);
    let offset = tz.offset_from_local_datetime(&before).earliest()?;
    let fixed = chrono::Offset::fix(&offset);
    Some(Utc.from_utc_datetime(&(wall - Duration::seconds(i64::from(fixed.local_minus_utc())))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::status::planned;
    use crate::runner::launch::test_deployment;
    use crate::schedule::{Schedule, Tz};
    use crate::validate::desired::Launch;

    fn deployment(cron: &str, next: &str) -> DeploymentView {
        let tz: Tz = "Europe/Madrid".parse().unwrap();
        let mut d = test_deployment(Launch::Command(vec!["true".into()]));
        d.name = "etl".into();
        d.schedules = vec![planned("s", Schedule::cron(cron, tz, true).unwrap())];
        DeploymentView::alone(d, "abc", &[Some(next.parse().unwrap())])
    }

    /// Madrid springs forward on 2026-03-29 at 02:00 (01:00 UTC).
    #[test]
    fn upcoming_runs_say_what_dst_does_to_them() {
        let fixed = upcoming(&deployment("30 2 * * *", "2026-03-28T01:30:00Z")).into_string();
        assert!(fixed.contains("Sun 2026-03-29 03:00 CEST"), "{fixed}");
        assert!(
            fixed.contains(
                "02:30 does not exist that day (clocks go forward): it runs when the gap ends"
            ),
            "{fixed}"
        );
        assert_eq!(fixed.matches("<tr>").count(), 1 + UPCOMING, "{fixed}");
        let hourly = upcoming(&deployment("15 * * * *", "2026-03-28T23:15:00Z")).into_string();
        assert!(
            hourly.contains(
                "2026-03-29 02:15 does not exist that day (clocks go forward): it does not run"
            ),
            "{hourly}"
        );
    }
}
