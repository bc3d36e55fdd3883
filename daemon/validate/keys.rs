//! Which keys are honoured, which are Prefect's and ignored with a warning, and which are
//! mistakes. Prefect ignores unknown keys, so a typo (`schedulez`) silently never runs;
//! in a GitOps repository with pre-commit that must fail, pointing at the right place.
//!
//! Policy (DESIGN.md "Keys"): on a deployment, `work_pool`, schedule entry or
//! `concurrency_limit`, any key outside the lists is an error (with the right place when
//! it is misplaced, else a did-you-mean). At the top level and in `job_variables`, which
//! legitimately hold other tools' keys, only a near miss of a known key is an error.

use crate::manifest::{pointer, Node, Value};

use super::diagnostic::Code;
use super::report::FileReport;

/// One kind of mapping and its vocabulary.
pub struct Place {
    what: &'static str,
    honoured: &'static [&'static str],
    /// Prefect knows these; sundial accepts them and says it ignores them.
    ignored: &'static [(&'static str, &'static str)],
    /// Keys people put here that belong elsewhere, with where.
    misplaced: &'static [(&'static str, &'static str)],
    /// Ignored or misplaced keys with the value that asks for Prefect's default: that
    /// value changes nothing, so an ignored key with it draws nothing, and a misplaced one
    /// a warning instead of an error.
    defaults: &'static [(&'static str, &'static str)],
    /// Whether other keys are allowed (with a warning) unless they look like typos.
    open: bool,
}

pub const TOP: Place = Place {
    what: "the top level",
    // `definitions` only holds YAML anchors: nothing to say about it.
    honoured: &[
        "name",
        "prefect-version",
        "pull",
        "deployments",
        "definitions",
        "notifications",
    ],
    ignored: &[
        ("build", "sundial runs no build steps"),
        ("push", "sundial runs no push steps"),
    ],
    misplaced: &[
        ("deployment", "`deployments:` (a list)"),
        ("schedules", "a deployment under `deployments:`"),
        ("entrypoint", "a deployment under `deployments:`"),
    ],
    defaults: &[],
    open: true,
};

pub const DEPLOYMENT: Place = Place {
    what: "a deployment",
    honoured: &[
        "name",
        "description",
        "tags",
        "version",
        "entrypoint",
        "parameters",
        "parameter_openapi_schema",
        "enforce_parameter_schema",
        "work_pool",
        "schedules",
        "schedule",
        "concurrency_limit",
        "paused",
        "pull",
        "timeout_seconds",
        "retries",
        "retry_delay_seconds",
        "catchup",
        "late_grace_seconds",
        "is_schedule_active",
        "notifications",
        "pause_after_failures",
        "sla",
    ],
    ignored: &[
        ("build", "sundial runs no build steps"),
        ("push", "sundial runs no push steps"),
        ("triggers", "sundial has no automations"),
        ("version_type", "it is informational"),
        ("flow_name", "the entrypoint names the function"),
        ("work_queue_name", "sundial has no work queues"),
        ("replaces", "it only renames a Prefect server's deployment"),
    ],
    misplaced: &[
        ("env", "`work_pool.job_variables.env`"),
        ("environment", "`work_pool.job_variables.env`"),
        ("working_dir", "`work_pool.job_variables.working_dir`"),
        ("command", "`work_pool.job_variables.command`"),
        ("job_variables", "`work_pool.job_variables`"),
        ("infra_overrides", "`work_pool.job_variables`"),
        ("stream_output", "`work_pool.job_variables.stream_output`"),
        ("is_paused", "`paused`"),
        ("timezone", "each schedule's `timezone`"),
        ("time_zone", "each schedule's `timezone`"),
        ("cron", "a schedule: `schedules: [{cron: ...}]`"),
        ("interval", "a schedule: `schedules: [{interval: ...}]`"),
        ("rrule", "a schedule: `schedules: [{rrule: ...}]`"),
        ("timeout", "`timeout_seconds`"),
        ("max_retries", "`retries`"),
        ("retry_delay", "`retry_delay_seconds`"),
    ],
    defaults: &[("is_paused", "false"), ("work_queue_name", "default")],
    open: false,
};

pub const WORK_POOL: Place = Place {
    what: "`work_pool`",
    honoured: &["name", "job_variables"],
    ignored: &[
        ("work_queue_name", "sundial has no work queues"),
        (
            "type",
            "the type belongs to the pool; sundial runs a local process",
        ),
    ],
    misplaced: &[
        ("env", "`work_pool.job_variables.env`"),
        ("environment", "`work_pool.job_variables.env`"),
        (
            "image",
            "`work_pool.job_variables.image`, where Prefect reads it (sundial runs a local process and ignores it there)",
        ),
        ("command", "`work_pool.job_variables.command`"),
        ("working_dir", "`work_pool.job_variables.working_dir`"),
        ("stream_output", "`work_pool.job_variables.stream_output`"),
    ],
    defaults: &[("type", "process"), ("work_queue_name", "default")],
    open: false,
};

impl Place {
    /// Whether sundial reads `key` here (the one list `keys` and `templates` consult).
    pub fn honours(&self, key: &str) -> bool {
        self.honoured.contains(&key)
    }
}

pub const JOB_VARIABLES: Place = Place {
    what: "`job_variables`",
    honoured: &[
        "command",
        "env",
        "working_dir",
        "stream_output",
        "python",
        "prestart_seconds",
        "node_labels",
    ],
    ignored: &[],
    misplaced: &[],
    defaults: &[],
    open: true,
};

pub const SCHEDULE: Place = Place {
    what: "a schedule",
    honoured: &[
        "cron",
        "interval",
        "rrule",
        "timezone",
        "day_or",
        "active",
        "parameters",
        "anchor_date",
        "slug",
    ],
    ignored: &[
        (
            "max_active_runs",
            "use the deployment's `concurrency_limit`",
        ),
        ("catchup", "use the deployment's `catchup`"),
        ("max_scheduled_runs", "sundial plans one slot at a time"),
    ],
    misplaced: &[
        ("time_zone", "`timezone`"),
        ("tz", "`timezone`"),
        ("is_active", "`active`"),
        (
            "paused",
            "`active: false` here, or the deployment's `paused`",
        ),
    ],
    defaults: &[("catchup", "false")],
    open: false,
};

pub const CONCURRENCY: Place = Place {
    what: "`concurrency_limit`",
    honoured: &["limit", "collision_strategy"],
    ignored: &[("grace_period_seconds", "sundial does not lease slots")],
    misplaced: &[],
    defaults: &[],
    open: false,
};

/// Checks every key of the mapping at `at` against `place`.
pub fn check(report: &mut FileReport<'_>, node: &Node, at: &str, place: &Place) {
    for entry in node.entries() {
        let key = entry.key.as_str();
        if place.honoured.contains(&key) {
            continue;
        }
        let here = pointer(at, key);
        let default = place
            .defaults
            .iter()
            .find(|(k, v)| *k == key && scalar_is(&entry.value, v));
        if let Some((_, why)) = place.ignored.iter().find(|(k, _)| *k == key) {
            if !entry.value.is_placeholder() && default.is_none() {
                report.warning(
                    &here,
                    true,
                    Code::IgnoredKey,
                    format!("`{key}` is ignored: {why}"),
                    None,
                );
            }
            continue;
        }
        if let Some((_, right)) = place.misplaced.iter().find(|(k, _)| *k == key) {
            if let Some((_, value)) = default {
                report.warning(
                    &here,
                    true,
                    Code::IgnoredKey,
                    format!("`{key}: {value}` asks for the default and is ignored"),
                    Some(format!("delete it; the key that changes this is {right}")),
                );
                continue;
            }
            report.error(
                &here,
                true,
                Code::MisplacedKey,
                format!("`{key}` does not belong in {}", place.what),
                Some(move_hint(key, &entry.value, right)),
            );
            continue;
        }
        let near = did_you_mean(key, place);
        match (near, place.open) {
            (Some(near), _) => report.error(
                &here,
                true,
                Code::UnknownKey,
                format!("unknown key `{key}` in {}", place.what),
                Some(format!("did you mean `{near}`?")),
            ),
            (None, false) => report.error(
                &here,
                true,
                Code::UnknownKey,
                format!("unknown key `{key}` in {}", place.what),
                Some(format!("known keys: {}", place.honoured.join(", "))),
            ),
            (None, true) if place.what == JOB_VARIABLES.what => report.warning(
                &here,
                true,
                Code::IgnoredKey,
                format!("job variable `{key}` is ignored; sundial runs a local process"),
                None,
            ),
            (None, true) => report.warning(
                &here,
                true,
                Code::IgnoredKey,
                format!("unknown key `{key}` at {} is ignored", place.what),
                None,
            ),
        }
    }
}

/// Where a misplaced key goes. A `working_dir` that is an absolute path would only be
/// ignored there (runs start in the checkout), so it is better deleted.
fn move_hint(key: &str, value: &Node, right: &str) -> String {
    let absolute = matches!(&value.value, Value::Str { text, .. } if text.starts_with('/') || text.starts_with('~'));
    if key == "working_dir" && absolute {
        return format!("delete it: runs start in the checkout, which an absolute path is outside of; a path relative to the project root goes in {right}");
    }
    format!("move it to {right}")
}

/// Whether `node` is the scalar written `text` (`false`, `process`).
fn scalar_is(node: &Node, text: &str) -> bool {
    match &node.value {
        Value::Bool(b) => b.value.to_string() == text,
        Value::Str { text: s, .. } => s == text,
        _ => false,
    }
}

/// The closest known key within edit distance 2, if any.
fn did_you_mean(key: &str, place: &Place) -> Option<&'static str> {
    let candidates = place
        .honoured
        .iter()
        .copied()
        .chain(place.ignored.iter().map(|(k, _)| *k));
    let length = key.chars().count();
    candidates
        // The distance is at least the difference in length: skip the costly comparison.
        .filter(|c| c.chars().count().abs_diff(length) <= 2)
        .map(|c| (strsim::damerau_levenshtein(key, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.len().max(key.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(did_you_mean("schedulez", &DEPLOYMENT), Some("schedules"));
        assert_eq!(did_you_mean("comand", &JOB_VARIABLES), Some("command"));
        assert_eq!(did_you_mean("image", &JOB_VARIABLES), None);
        assert_eq!(did_you_mean("timezon", &SCHEDULE), Some("timezone"));
    }
}
