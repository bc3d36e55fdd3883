//! Semantic checks of one deployment, beyond what the schema can say, and the building
//! of its trusted [`Deployment`]. Every problem is reported (none stops the others); the
//! deployment is built only if this deployment had no error.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value as Json};

use crate::manifest::model::{RawConcurrency, RawDeployment, RawRetryDelay};
use crate::manifest::{pointer, Node};

use super::desired::{Concurrency, Deployment, Launch};
use super::diagnostic::Code;
use super::entrypoint::{self, launch, Bases};
use super::locate::{self, Kind};
use super::memo::{MemoView, Recurrences};
use super::parameters::ParameterSchemas;
use super::pull;
use super::report::FileReport;
use super::schedules;

/// Default for `late_grace_seconds` (like Quartz's misfire threshold).
const DEFAULT_LATE_GRACE: f64 = 60.0;

/// What a deployment check needs to know about its file, on whichever thread it runs.
#[derive(Clone, Copy)]
pub struct FileContext<'a> {
    pub project_root: &'a str,
    pub repo_path: &'a str,
    /// The top-level `pull` steps (checked once), used unless the deployment has its own.
    pub top_pulled: Option<&'a pull::Pulled>,
    /// The top-level `notifications` (checked once), used unless the deployment has its own.
    pub top_notifications: Option<&'a [crate::notify::Notification]>,
    /// The pointers of the values the schema found wrong (read as null).
    pub wrong: &'a BTreeSet<String>,
}

/// What a deployment check needs: its file, and the caches of the thread it runs on.
pub struct Context<'a> {
    pub file: FileContext<'a>,
    /// The repository the file comes from (a commit's tree or a work tree).
    pub view: &'a MemoView<'a>,
    /// The `parameter_openapi_schema`s compiled so far, shared by the files of one run.
    pub parameter_schemas: &'a ParameterSchemas,
    /// The rrules parsed so far, each distinct one parsed once.
    pub recurrences: &'a Recurrences,
}

/// Checks the deployment at `at` (its raw form read with wrong values nulled) and builds it.
pub fn check(
    report: &mut FileReport<'_>,
    ctx: &Context<'_>,
    node: &Node,
    at: &str,
    mut raw: RawDeployment,
) -> Option<Deployment> {
    let errors_before = report.error_count();
    let name = match raw.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => {
            if !report.has_error_under(&pointer(at, "name")) {
                report.error(
                    &pointer(at, "name"),
                    false,
                    Code::MissingName,
                    "a deployment needs a `name`",
                    Some("add `name: my-deployment` (unique across all manifest files)".into()),
                );
            }
            String::new()
        }
    };

    let jobs = raw
        .work_pool
        .as_ref()
        .and_then(|w| w.job_variables.clone())
        .unwrap_or_default();
    let jv = format!("{at}/work_pool/job_variables");
    let launch = launch(
        report,
        at,
        &jv,
        raw.entrypoint.as_deref(),
        jobs.command.as_deref(),
    );

    let slas = node
        .get("sla")
        .filter(|n| !n.is_null())
        .map(|list| super::sla::check(report, list, &pointer(at, "sla")))
        .unwrap_or_default();
    let own = node.get("notifications").filter(|n| !n.is_null());
    let notifications_unset = own.is_none() && ctx.file.top_notifications.is_none();
    let notifications = match own {
        Some(list) => super::notify::check(report, list, &pointer(at, "notifications")),
        None => ctx
            .file
            .top_notifications
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
    };
    let pulled = match node.get("pull").filter(|p| !p.is_null()) {
        Some(steps) => pull::check(
            report,
            steps,
            &pointer(at, "pull"),
            ctx.file.project_root,
            ctx.view,
        ),
        None => ctx
            .file
            .top_pulled
            .cloned()
            .unwrap_or_else(|| pull::Pulled::at(ctx.file.project_root)),
    };

    let mut working_dir_from_root = pulled.directory_from_root;
    let working_dir = match jobs.working_dir.as_deref() {
        // An absolute path names a folder of Prefect's worker or image, as an absolute
        // `set_working_directory` does: ignored the same way.
        Some(dir) if dir.starts_with('/') || dir.starts_with('~') => {
            let start = match pulled.directory.as_str() {
                "" => "the root of the checkout".to_string(),
                d => format!("`{d}` in the checkout"),
            };
            report.warning(
                &format!("{jv}/working_dir"),
                false,
                Code::WorkingDir,
                format!("working_dir `{dir}` is ignored: it is outside the checkout, and runs start in {start}"),
                Some("give a path relative to the project root to start somewhere else in the checkout".into()),
            );
            pulled.directory.clone()
        }
        Some(dir) => {
            match locate::locate(ctx.view, &pulled.directory, dir, Kind::Dir) {
                Ok(found) => {
                    entrypoint::note_root(
                        report,
                        &format!("{jv}/working_dir"),
                        &found,
                        ctx.file.project_root,
                    );
                    working_dir_from_root = found.from_repository_root();
                    found.path().to_string()
                }
                Err(_) => {
                    report.error(
                    &format!("{jv}/working_dir"),
                    false,
                    Code::WorkingDir,
                    format!("working_dir `{dir}` climbs out of the checkout"),
                    Some("give a path relative to the project root that stays inside the repository".into()),
                );
                    String::new()
                }
            }
        }
        None => pulled.directory.clone(),
    };

    if let (Some(Launch::Entrypoint(entry)), None) = (&launch, &jobs.command) {
        let bases = Bases {
            project_root: ctx.file.project_root,
            working_dir: &working_dir,
        };
        entrypoint::check_exists(report, ctx.view, at, entry, &bases);
    }
    let env = env(report, &format!("{jv}/env"), jobs.env.as_ref());
    // At the step, not the deployment: a top-level step shared by every deployment is
    // one warning (the report merges the repeats).
    if let (Some(step_at), None) = (&pulled.installs_at, &jobs.python) {
        report.warning(
            step_at,
            true,
            Code::PullStep,
            "pip_install_requirements installs into the system python3, which usually refuses installs outside a virtual environment",
            Some("set `work_pool.job_variables.python` to a virtualenv's python".into()),
        );
    }
    let prestart = prestart(report, &jv, &jobs, &launch, &pulled);
    let node_labels = node_labels(report, &jv, jobs.node_labels.as_ref());
    // Taken, not copied: the checks below read the defaults from `parameters`.
    let mut parameters = raw.parameters.take().unwrap_or_default();
    let raw_schedules = schedules::of(report, at, &raw);
    // Exactly as many as declared: a deployment is kept in memory for as long as it is in
    // force (a `Vec` grown by `push` would hold room for four).
    let mut schedules = Vec::with_capacity(raw_schedules.len());
    // Each schedule's identity keys its slots: two with one identity would share them.
    let mut identities: Vec<(String, usize)> = Vec::new();
    for (i, (sched_at, raw_schedule)) in raw_schedules.iter().enumerate() {
        let Some(planned) = schedules::planned(report, ctx.recurrences, sched_at, raw_schedule)
        else {
            continue;
        };
        if let Some((_, first)) = identities.iter().find(|(id, _)| *id == planned.id) {
            let slugged = raw_schedule
                .slug
                .as_deref()
                .is_some_and(|s| !s.trim().is_empty());
            let (where_, same, help) = if slugged {
                (
                    pointer(sched_at, "slug"),
                    "slug",
                    "give each schedule its own `slug`",
                )
            } else {
                (
                    sched_at.clone(),
                    "timing and parameters",
                    "remove one of them, or tell them apart by `parameters` or a `slug`",
                )
            };
            report.error(
                &where_,
                false,
                Code::DuplicateSchedule,
                format!("this schedule has the same {same} as schedule {} of this deployment: both would claim the same slots, and only one would fire", first + 1),
                Some(help.into()),
            );
            continue;
        }
        identities.push((planned.id.clone(), i));
        schedules.push(planned);
    }
    let parameter_schema =
        ctx.parameter_schemas
            .check(report, at, &raw, &mut parameters, &raw_schedules);

    if raw.is_schedule_active == Some(false) {
        report.error(
            &pointer(at, "is_schedule_active"),
            true,
            Code::MisplacedKey,
            "`is_schedule_active: false` is Prefect 2's way to pause",
            Some("write `paused: true` instead".into()),
        );
    } else if raw.is_schedule_active == Some(true) {
        report.warning(
            &pointer(at, "is_schedule_active"),
            true,
            Code::IgnoredKey,
            "`is_schedule_active: true` is the default and is ignored",
            None,
        );
    }

    let concurrency = raw.concurrency_limit.as_ref().map(|c| match c {
        RawConcurrency::Limit(limit) => Concurrency {
            limit: *limit,
            strategy: Default::default(),
        },
        RawConcurrency::Full {
            limit,
            collision_strategy,
        } => Concurrency {
            limit: *limit,
            strategy: collision_strategy.unwrap_or_default(),
        },
    });
    let retry_delays = match &raw.retry_delay_seconds {
        None => vec![Duration::ZERO],
        Some(RawRetryDelay::One(s)) => vec![Duration::from_secs_f64(*s)],
        Some(RawRetryDelay::PerAttempt(list)) if list.iter().all(Option::is_none) => {
            vec![Duration::ZERO]
        }
        Some(RawRetryDelay::PerAttempt(list)) => list
            .iter()
            .flatten()
            .map(|s| Duration::from_secs_f64(*s))
            .collect(),
    };

    if report.error_count() > errors_before || report.has_error_under(at) {
        return None;
    }
    Some(Deployment {
        name,
        file: ctx.file.repo_path.to_string(),
        project_root: ctx.file.project_root.to_string(),
        description: raw.description,
        tags: raw
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| scalar_text(&t))
            .collect(),
        version: raw.version.as_ref().map(scalar_text),
        launch: launch?,
        parameters,
        parameter_schema: parameter_schema.map(Box::new),
        pull: pulled.steps,
        working_dir,
        working_dir_from_root,
        env,
        stream_output: jobs.stream_output.unwrap_or(false),
        python: jobs.python,
        prestart,
        node_labels,
        schedules,
        paused: raw.paused.unwrap_or(false),
        concurrency,
        timeout: raw.timeout_seconds.map(Duration::from_secs_f64),
        retries: raw.retries.unwrap_or(0),
        retry_delays,
        catchup: raw.catchup.unwrap_or_default(),
        late_grace: Duration::from_secs_f64(raw.late_grace_seconds.unwrap_or(DEFAULT_LATE_GRACE)),
        notifications,
        notifications_unset,
        pause_after_failures: raw.pause_after_failures,
        slas,
    })
}

/// `prestart_seconds`, where it applies: a Python entrypoint started by sundial's
/// bootstrap, with nothing to do before it (no `command`, no pull steps).
fn prestart(
    report: &mut FileReport<'_>,
    jv: &str,
    jobs: &crate::manifest::model::RawJobVariables,
    launch: &Option<Launch>,
    pulled: &pull::Pulled,
) -> Option<Duration> {
    let seconds = jobs.prestart_seconds.filter(|s| *s > 0.0 && *s <= 60.0)?;
    let at = pointer(jv, "prestart_seconds");
    let why = if jobs.command.is_some() || !matches!(launch, Some(Launch::Entrypoint(_))) {
        Some("it applies to a Python entrypoint, and this deployment runs a `command`")
    } else if !pulled.steps.is_empty() {
        Some("its pull steps run at the slot's time, before the process can start")
    } else {
        None
    };
    if let Some(why) = why {
        report.warning(
            &at,
            true,
            Code::IgnoredKey,
            format!("`prestart_seconds` is ignored: {why}"),
            Some("remove it, or run the flow from `entrypoint` without pull steps".into()),
        );
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

fn env(
    report: &mut FileReport<'_>,
    at: &str,
    env: Option<&Map<String, Json>>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in env.into_iter().flatten() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            report.error(
                &pointer(at, key),
                true,
                Code::InvalidEnv,
                format!("`{key}` is not a valid environment variable name"),
                Some("use letters, digits and `_`".into()),
            );
            continue;
        }
        out.push((key.clone(), scalar_text(value)));
    }
    out
}

/// `node_labels`: each key and value checked at its line; sorted by key.
fn node_labels(
    report: &mut FileReport<'_>,
    jv: &str,
    labels: Option<&Map<String, Json>>,
) -> Vec<(String, String)> {
    use crate::cluster::labels::{check_key, check_value};
    let at = pointer(jv, "node_labels");
    let mut out = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        let value = scalar_text(value);
        if let Err(why) = check_key(key).and_then(|()| check_value(&value)) {
            report.error(
                &pointer(&at, key),
                true,
                Code::NodeLabels,
                why,
                Some("write labels as a node's `--label KEY=VALUE` would carry them, e.g. `gpu: \"true\"`".into()),
            );
            continue;
        }
        out.push((key.clone(), value));
    }
    out.sort();
    out
}

/// A scalar as the text a process would see (`true`, `42`, `1.5`, the string itself).
fn scalar_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}
