//! Charts as inline SVG drawn on the server: runs over time by state (stacked bars per time
//! bucket), a deployment's duration per run with its timeout as a line, and start
//! lateness per scheduled run.
//!
//! Contract: pure functions of the data they are given (no store, no clock). Every chart
//! is a `<figure>` whose SVG has a `<title>` and a caption saying what it shows, plus the
//! same numbers as a table (folded), so it reads without sight and without CSS. Each bar
//! is a `<g class="bar">`, a link (keyboard reachable) when it leads somewhere. Nothing is
//! loaded from the network; colours come from the page's CSS classes of the run states.

use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

use super::layout::{lateness_seconds, seconds_text, short};
use crate::store::{BucketCount, Run, RunState};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 170.0;
/// Room for the axis labels: left (values) and bottom (times).
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 6.0;

/// One bar: stacked segments (a state's CSS class and a value), bottom first.
struct Bar {
    label: String,
    segments: Vec<(RunState, f64)>,
    href: Option<String>,
}

/// Runs per bucket and state: `counts` from [`crate::store::Store::run_histogram`] over
/// `buckets` buckets of `width` from `since`; `link` makes a bucket's runs-list address.
pub fn runs_over_time(
    id: &str,
    counts: &[BucketCount],
    since: DateTime<Utc>,
    width: Duration,
    buckets: i64,
    link: impl Fn(DateTime<Utc>, DateTime<Utc>) -> String,
) -> Markup {
    let mut bars: Vec<(i64, Bar)> = Vec::new();
    for c in counts {
        let start = since + width * c.bucket as i32;
        if bars.last().is_none_or(|(b, _)| *b != c.bucket) {
            bars.push((
                c.bucket,
                Bar {
                    label: format!(
                        "{} – {}",
                        start.format("%m-%d %H:%M"),
                        (start + width).format("%H:%M UTC")
                    ),
                    segments: Vec::new(),
                    href: Some(link(start, start + width)),
                },
            ));
        }
        if let Some((_, bar)) = bars.last_mut() {
            bar.segments.push((c.state, c.count as f64));
        }
    }
    for (_, bar) in &mut bars {
        bar.segments.sort_by_key(|(state, _)| state_order(*state));
    }
    let total: f64 = counts.iter().map(|c| c.count as f64).sum();
    let end = since + width * buckets as i32;
    let caption = format!(
        "Runs by state from {} to {}: {} runs in {} of {} buckets of {}",
        since.format("%Y-%m-%d %H:%M"),
        end.format("%Y-%m-%d %H:%M UTC"),
        total,
        bars.len(),
        buckets,
        seconds_text(width.num_seconds() as f64)
    );
    let slots: Vec<Option<Bar>> = {
        let mut slots: Vec<Option<Bar>> = (0..buckets).map(|_| None).collect();
        for (b, bar) in bars {
            if let Some(slot) = slots.get_mut(b as usize) {
                *slot = Some(bar);
            }
        }
        slots
    };
    let axis = (
        since.format("%m-%d %H:%M").to_string(),
        end.format("%m-%d %H:%M UTC").to_string(),
    );
    chart(id, &caption, &slots, None, |v| format!("{v:.0}"), axis)
}

/// Each ended run's duration (oldest first), with the deployment's timeout as a line.
pub fn durations(id: &str, runs: &[Run], timeout: Option<std::time::Duration>) -> Markup {
    let slots: Vec<Option<Bar>> = runs
        .iter()
        .filter_map(|r| {
            let seconds = (r.ended_at? - r.started_at?).num_milliseconds() as f64 / 1000.0;
            Some(Some(run_bar(r, seconds)))
        })
        .collect();
    let limit = timeout.map(|t| {
        (
            t.as_secs_f64(),
            format!("timeout {}", seconds_text(t.as_secs_f64())),
        )
    });
    let caption = format!(
        "Duration of the last {} ended runs, oldest first{}",
        slots.len(),
        limit
            .as_ref()
            .map(|(_, l)| format!("; dashed line: {l}"))
            .unwrap_or_default()
    );
    let axis = axis_of(runs);
    chart(id, &caption, &slots, limit, seconds_text, axis)
}

/// Start lateness (start − scheduled time) of scheduled first attempts, oldest first.
pub fn lateness(id: &str, runs: &[Run]) -> Markup {
    let slots: Vec<Option<Bar>> = runs
        .iter()
        .filter(|r| r.attempt == 1)
        .filter_map(|r| Some(Some(run_bar(r, lateness_seconds(r)?.max(0.0)))))
        .collect();
    let caption = format!(
        "Start lateness of the last {} scheduled runs, oldest first",
        slots.len()
    );
    let axis = axis_of(runs);
    chart(id, &caption, &slots, None, seconds_text, axis)
}

fn run_bar(run: &Run, value: f64) -> Bar {
    Bar {
        label: format!(
            "Run {} ({}, {}, commit {})",
            run.id,
            run.state.as_str(),
            run.started_at
                .map(|t| t.format("%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default(),
            short(&run.commit)
        ),
        segments: vec![(run.state, value)],
        href: Some(format!("/runs/{}", run.id)),
    }
}

fn axis_of(runs: &[Run]) -> (String, String) {
    let when = |r: Option<&Run>| {
        r.and_then(|r| r.started_at)
            .map(|t| t.format("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    (when(runs.first()), when(runs.last()))
}

/// Failures at the bottom, where the eye lands first.
fn state_order(state: RunState) -> usize {
    [
        RunState::Failed,
        RunState::Crashed,
        RunState::TimedOut,
        RunState::Cancelled,
        RunState::Skipped,
        RunState::Completed,
    ]
    .iter()
    .position(|s| *s == state)
    .unwrap_or(6)
}

/// Bars in equal slots (an empty slot keeps its place), a value axis from 0, and an
/// optional limit line.
fn chart(
    id: &str,
    caption: &str,
    slots: &[Option<Bar>],
    limit: Option<(f64, String)>,
    value_text: impl Fn(f64) -> String,
    axis: (String, String),
) -> Markup {
    let top = slots
        .iter()
        .flatten()
        .map(|b| b.segments.iter().map(|(_, v)| v).sum::<f64>())
        .fold(0.0_f64, f64::max)
        .max(limit.as_ref().map_or(0.0, |(v, _)| *v * 1.15))
        .max(f64::MIN_POSITIVE);
    let plot_h = HEIGHT - BOTTOM - TOP;
    let plot_w = WIDTH - LEFT;
    let slot_w = plot_w / slots.len().max(1) as f64;
    let bar_w = (slot_w * 0.8).clamp(1.0, 40.0);
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let caption_id = format!("{id}-caption");
    let mut limit_line = String::new();
    if let Some((v, _)) = &limit {
        let _ = write!(limit_line, "{:.1}", y(*v));
    }
    let rows: Vec<(&str, String)> = slots
        .iter()
        .flatten()
        .map(|b| {
            let values: Vec<String> = b
                .segments
                .iter()
                .map(|(s, v)| format!("{} {}", value_text(*v), s.as_str()))
                .collect();
            (b.label.as_str(), values.join(", "))
        })
        .collect();
    if rows.is_empty() {
        return html! { figure id=(id) { figcaption id=(caption_id) { (caption) ": nothing to draw yet." } } };
    }
    html! {
        figure id=(id) {
            svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) preserveAspectRatio="xMinYMid meet" role="img" aria-labelledby=(caption_id) {
                title { (caption) }
                line.axis x1=(LEFT) y1=(y(0.0)) x2=(WIDTH) y2=(y(0.0)) {}
                text x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (value_text(top)) }
                text x=(LEFT - 4.0) y=(y(0.0)) text-anchor="end" { "0" }
                text x=(LEFT) y=(HEIGHT - 4.0) { (axis.0) }
                text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (axis.1) }
                @for (i, slot) in slots.iter().enumerate() {
                    @if let Some(bar) = slot {
                        @let x = LEFT + i as f64 * slot_w + (slot_w - bar_w) / 2.0;
                        @let inner = segments(bar, x, bar_w, &y);
                        @if let Some(href) = &bar.href {
                            a href=(href) { g.bar { title { (bar.label) ": " (summary(bar, &value_text)) } (inner) } }
                        } @else {
                            g.bar { title { (bar.label) ": " (summary(bar, &value_text)) } (inner) }
                        }
                    }
                }
                @if let Some((_, label)) = &limit {
                    line.limit x1=(LEFT) y1=(limit_line) x2=(WIDTH) y2=(limit_line) {}
                    text x=(WIDTH) y=(y(limit.as_ref().map_or(0.0, |l| l.0)) - 3.0) text-anchor="end" { (label) }
                }
            }
            figcaption id=(caption_id) { (caption) }
            details {
                summary { "As a table" }
                table { tbody { @for (label, values) in &rows { tr { td { (label) } td { (values) } } } } }
            }
        }
    }
}

fn summary(bar: &Bar, value_text: &impl Fn(f64) -> String) -> String {
    bar.segments
        .iter()
        .map(|(s, v)| format!("{} {}", value_text(*v), s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn segments(bar: &Bar, x: f64, w: f64, y: &impl Fn(f64) -> f64) -> Markup {
    // Each segment stacks on the ones below it.
    let tops = bar.segments.iter().scan(0.0, |base, (state, v)| {
        let bottom = *base;
        *base += v;
        Some((*state, y(*base), y(bottom)))
    });
    html! {
        @for (state, top, bottom) in tops {
            rect class=(format!("s-{}", state.as_str())) x=(format!("{x:.1}")) y=(format!("{top:.1}"))
                width=(format!("{w:.1}")) height=(format!("{:.1}", (bottom - top).max(0.5))) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn one_bar_per_bucket_with_runs_each_a_link_with_a_text_alternative() {
        let counts = [
            BucketCount {
                bucket: 0,
                state: RunState::Completed,
                count: 2,
            },
            BucketCount {
                bucket: 0,
                state: RunState::Failed,
                count: 1,
            },
            BucketCount {
                bucket: 3,
                state: RunState::Completed,
                count: 4,
            },
        ];
        let svg = runs_over_time(
            "over-time",
            &counts,
            at("2026-03-01T00:00:00Z"),
            Duration::hours(1),
            24,
            |a, b| format!("/runs?since={}&until={}", a.format("%H"), b.format("%H")),
        )
        .into_string();
        assert_eq!(svg.matches(r#"<g class="bar">"#).count(), 2, "{svg}");
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(
            svg.contains(r#"<a href="/runs?since=03&amp;until=04">"#),
            "{svg}"
        );
        assert!(svg.contains("7 runs in 2 of 24 buckets"), "{svg}");
        assert!(
            svg.contains("<td>1 Failed, 2 Completed</td>"),
            "failures first: {svg}"
        );
    }

    #[test]
    fn durations_have_a_timeout_line_and_one_bar_per_ended_run() {
        let run = |id: i64, secs: i64, ended: bool| Run {
            id,
            deployment: "etl".into(),
            schedule_id: None,
            scheduled_for: None,
            trigger: crate::store::Trigger::Manual,
            state: if ended {
                RunState::Completed
            } else {
                RunState::Running
            },
            reason: None,
            attempt: 1,
            commit: "abcdef123".into(),
            parameters: serde_json::json!({}),
            created_at: at("2026-03-01T00:00:00Z"),
            started_at: Some(at("2026-03-01T00:00:00Z")),
            ended_at: ended.then(|| at("2026-03-01T00:00:00Z") + Duration::seconds(secs)),
            exit_code: None,
            pid: None,
            not_before: None,
            retry_pending: false,
            retry_of: None,
            node: None,
            epoch: None,
        };
        let svg = durations(
            "durations",
            &[run(1, 10, true), run(2, 30, true), run(3, 0, false)],
            Some(std::time::Duration::from_secs(60)),
        )
        .into_string();
        assert_eq!(svg.matches(r#"<g class="bar">"#).count(), 2, "{svg}");
        assert!(
            svg.contains(r#"class="limit""#) && svg.contains("timeout 1m00s"),
            "{svg}"
        );
        assert!(svg.contains("Duration of the last 2 ended runs"), "{svg}");
    }
}
