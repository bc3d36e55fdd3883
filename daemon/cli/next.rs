//! `sundial next`: preview the fire times of one schedule given on the command line, or
//! of every schedule in a manifest (`--manifest FILE [--deployment NAME]`).
//!
//! This is the only place in the schedule path that reads the clock (`--after` defaults to
//! now). [`print_fires`] renders any [`Schedule`], so a manifest-driven variant can reuse it.

use std::io::{self, Write};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{ArgGroup, ValueEnum};

use crate::schedule::{parse_anchor, parse_interval, parse_timezone, DstShift, Fire, Schedule};
use crate::validate::{self, SourceFile};

/// Preview when a schedule fires.
#[derive(Debug, clap::Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["cron", "interval", "rrule", "manifest"])))]
pub struct NextArgs {
    /// A five-field cron expression (croniter dialect) or @macro.
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Seconds, an ISO 8601 duration (PT10M) or HH:MM:SS.
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<String>,
    /// An RFC 5545 rule, e.g. "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0".
    #[arg(long, value_name = "RRULE")]
    pub rrule: Option<String>,
    /// Preview the schedules of this manifest file instead (it must validate).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<std::path::PathBuf>,
    /// With --manifest: only this deployment.
    #[arg(long, value_name = "NAME", requires = "manifest")]
    pub deployment: Option<String>,
    /// IANA time zone the schedule runs in.
    #[arg(long, value_name = "TZ", default_value = "UTC")]
    pub timezone: String,
    /// With cron: join restricted day-of-month and day-of-week with OR (true) or AND (false).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub day_or: bool,
    /// Interval anchor or rrule start: RFC 3339, or a wall time in --timezone.
    #[arg(long, value_name = "T")]
    pub anchor: Option<String>,
    /// List fires strictly after this RFC 3339 instant (default: now).
    #[arg(long, value_name = "T")]
    pub after: Option<String>,
    /// How many fires to list (1 or more).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per fire: local time, UTC time, and a note when DST moved it.
    Text,
    /// A JSON array of RFC 3339 strings in the schedule's timezone.
    Json,
}

/// Runs `sundial next`; an error is bad input (exit 2, decided by the caller).
pub fn run(args: NextArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let after = match &args.after {
        Some(text) => DateTime::parse_from_rfc3339(text.trim())
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| {
                anyhow!(
                    "--after {text:?}: write an RFC 3339 instant such as 2026-03-08T00:00:00-05:00"
                )
            })?,
        None => Utc::now(),
    };
    if let Some(path) = &args.manifest {
        return manifest(path, args.deployment.as_deref(), after, &args, out);
    }
    let schedule = build(&args)?;
    print_fires(&schedule, after, args.count as usize, args.format, out)
        .context("writing the fire times")
}

/// Said under an interval without `anchor_date`: `next` reads no git history, so it shows
/// the interval from the default anchor, which the daemon replaces.
const UNANCHORED: &str = "(no anchor_date: the daemon anchors this interval at the time of the commit that introduces it, so these times are from 2020-01-01T00:00:00 in its zone; write anchor_date to pin them)";
/// The same, in `--format json`.
const UNANCHORED_JSON: &str =
    "default: the daemon anchors it at the time of the commit that introduces it";

/// Previews every schedule of a manifest's deployments (or of one of them).
fn manifest(
    path: &std::path::Path,
    only: Option<&str>,
    after: DateTime<Utc>,
    args: &NextArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("--manifest: cannot read `{}`", path.display()))?;
    let display = path.to_string_lossy().into_owned();
    let file = SourceFile {
        display: display.clone(),
        repo_path: display.clone(),
        bytes: bytes.into(),
    };
    let validation = validate::validate(std::slice::from_ref(&file));
    let outcome = &validation.files[0];
    let Some(deployments) = &outcome.deployments else {
        let first = outcome
            .diagnostics
            .iter()
            .find(|d| d.is_error())
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message));
        bail!(
            "--manifest: `{display}` is not valid ({}); run `sundial validate {display}` for every error",
            first.unwrap_or_default()
        );
    };
    let chosen: Vec<_> = deployments
        .iter()
        .filter(|d| only.is_none_or(|name| d.name == name))
        .collect();
    if let (Some(name), true) = (only, chosen.is_empty()) {
        let names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
        bail!(
            "--deployment: no deployment `{name}` in `{display}` (it has: {})",
            names.join(", ")
        );
    }
    match args.format {
        Format::Json => {
            let mut entries = Vec::new();
            for d in &chosen {
                for s in &d.schedules {
                    let tz = s.schedule.timezone();
                    let fires: Vec<String> = s
                        .schedule
                        .iter_after(after)
                        .take(args.count as usize)
                        .map(|f| {
                            f.at.with_timezone(&tz)
                                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
                        })
                        .collect();
                    let mut entry = serde_json::json!({
                        "deployment": d.name,
                        "schedule": s.id,
                        "active": s.active && !d.paused,
                        "fires": fires,
                    });
                    if s.anchored_at_commit {
                        entry["anchor"] = UNANCHORED_JSON.into();
                    }
                    entries.push(entry);
                }
            }
            serde_json::to_writer_pretty(&mut *out, &entries)?;
            writeln!(out)?;
        }
        Format::Text => {
            for d in &chosen {
                if d.schedules.is_empty() {
                    writeln!(out, "{}: no schedules (runs only when triggered)\n", d.name)?;
                }
                for s in &d.schedules {
                    let state = if d.paused {
                        "  [paused: slots are recorded Skipped]"
                    } else if !s.active {
                        "  [inactive: slots are recorded Skipped]"
                    } else {
                        ""
                    };
                    writeln!(out, "{} · {} · id {}{state}", d.name, s.description, s.id)?;
                    if s.anchored_at_commit {
                        writeln!(out, "{UNANCHORED}")?;
                    }
                    print_fires(&s.schedule, after, args.count as usize, Format::Text, out)?;
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(())
}

fn build(args: &NextArgs) -> anyhow::Result<Schedule> {
    let tz = parse_timezone(&args.timezone).context("--timezone")?;
    let anchor = match &args.anchor {
        Some(_) if args.cron.is_some() => {
            bail!("--anchor applies to --interval and --rrule; a cron schedule has no anchor")
        }
        Some(text) => Some(parse_anchor(text, tz).context("--anchor")?),
        None => None,
    };
    if let Some(expr) = &args.cron {
        return Schedule::cron(expr, tz, args.day_or).context("--cron");
    }
    if let Some(text) = &args.interval {
        let every = parse_interval(text).context("--interval")?;
        return Schedule::interval(every, anchor, tz).context("--interval");
    }
    if let Some(text) = &args.rrule {
        // Shells make newlines awkward; accept a literal `\n` between lines too.
        let text = text.replace("\\n", "\n");
        return Schedule::rrule(&text, tz, anchor).context("--rrule");
    }
    bail!("give one of --cron, --interval or --rrule")
}

/// Writes the next `count` fires of `schedule` after `after` in `format`.
pub fn print_fires(
    schedule: &Schedule,
    after: DateTime<Utc>,
    count: usize,
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    let fires: Vec<Fire> = schedule.iter_after(after).take(count).collect();
    let tz = schedule.timezone();
    match format {
        Format::Json => {
            let times: Vec<String> = fires
                .iter()
                .map(|fire| {
                    fire.at
                        .with_timezone(&tz)
                        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &times)?;
            writeln!(out)
        }
        Format::Text => {
            let mut previous = after;
            for fire in &fires {
                for wall in schedule.dropped_by_dst(previous, fire.at) {
                    writeln!(
                        out,
                        "{}  (DST: does not exist, skipped by the spring-forward gap; not fired)",
                        wall.format("%Y-%m-%d %H:%M:%S")
                    )?;
                }
                previous = fire.at;
                let local = fire.at.with_timezone(&tz);
                write!(
                    out,
                    "{}  {}",
                    local.format("%Y-%m-%d %H:%M:%S %Z (%:z)"),
                    fire.at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                )?;
                match fire.shift {
                    None => writeln!(out)?,
                    Some(DstShift::GapMoved { wanted }) => writeln!(
                        out,
                        "  (DST: {} does not exist; fired at gap end)",
                        wanted.format("%H:%M")
                    )?,
                    Some(DstShift::SecondOccurrenceSkipped { wall }) => writeln!(
                        out,
                        "  (DST: {} occurs twice; fires at the first only)",
                        wall.format("%H:%M")
                    )?,
                }
            }
            if fires.len() < count {
                writeln!(out, "(no more fires: the schedule has ended)")?;
            }
            Ok(())
        }
    }
}
