//! Checks of `{{ ... }}` placeholders by where they stand (DESIGN.md "Templating"):
//! - in parts sundial ignores (`build`, `push`, `definitions`, `triggers`, `sla`, ignored
//!   pull steps, other pools' job variables) they are not checked;
//! - in informational fields (`version`, `description`, `tags`, `flow_name`) one sundial
//!   cannot resolve is a warning;
//! - anywhere else only `{{ $NAME }}` (read from the daemon's environment when a run
//!   starts) and `{{ step.directory }}` of an earlier clone/pull step (the checkout root)
//!   resolve; any other placeholder is an error with a hint for its kind.

use std::collections::HashSet;

use crate::manifest::{pointer, pointer_from, Node, Step, Value};
use crate::template::{placeholders, Placeholder};

use super::diagnostic::Code;
use super::report::FileReport;

/// Pull steps whose work the checkout stands in for; their `directory` output is the root.
pub const CHECKOUT_STEPS: &[&str] = &[
    "git_clone",
    "git_clone_project",
    "pull_from_s3",
    "pull_from_gcs",
    "pull_from_azure_blob_storage",
];

const IGNORED_DEPLOYMENT_KEYS: &[&str] = &[
    "build",
    "push",
    "triggers",
    "sla",
    "version_type",
    "replaces",
    "work_queue_name",
];
const INFORMATIONAL_KEYS: &[&str] = &["version", "description", "tags", "flow_name"];

/// The ids of steps, by what sundial does with their outputs.
#[derive(Default)]
struct StepIds {
    checkout: HashSet<String>,
    build: HashSet<String>,
    other: HashSet<String>,
}

impl StepIds {
    fn contains(&self, id: &str) -> bool {
        self.checkout.contains(id) || self.build.contains(id) || self.other.contains(id)
    }
}

pub fn check(report: &mut FileReport<'_>, root: &Node) {
    let mut ids = StepIds::default();
    for (section, at) in [("build", "/build"), ("push", "/push")] {
        let _ = at;
        for step in root.get(section).map(Node::items).unwrap_or_default() {
            if let Some(id) = step_id(step) {
                ids.build.insert(id);
            }
        }
    }
    let mut pulls: Vec<&Node> = root
        .get("pull")
        .map(|p| p.items().iter().collect())
        .unwrap_or_default();
    for d in root.get("deployments").map(Node::items).unwrap_or_default() {
        pulls.extend(d.get("pull").map(Node::items).unwrap_or_default());
    }
    for step in pulls {
        if let Some(id) = step_id(step) {
            if CHECKOUT_STEPS.contains(&step_name(step)) {
                ids.checkout.insert(id);
            } else {
                ids.other.insert(id);
            }
        }
    }
    for entry in root.entries() {
        let at = pointer("", &entry.key);
        match entry.key.as_str() {
            "build" | "push" | "definitions" => {}
            "pull" => walk_pull(report, &entry.value, &at, &ids),
            "deployments" => {
                for (i, d) in entry.value.items().iter().enumerate() {
                    walk_deployment(report, d, &pointer(&at, i), &ids);
                }
            }
            "name" => walk(report, &entry.value, &at, &mut Vec::new(), &ids, true),
            _ => {}
        }
    }
}

fn walk_deployment(report: &mut FileReport<'_>, d: &Node, at: &str, ids: &StepIds) {
    let mut steps = Vec::new();
    for entry in d.entries() {
        let key = entry.key.as_str();
        if IGNORED_DEPLOYMENT_KEYS.contains(&key) {
            continue;
        }
        match key {
            "pull" => walk_pull(report, &entry.value, &pointer(at, key), ids),
            // Checked by `notify`: only `{{ $NAME }}` resolves there.
            "notifications" => {}
            "work_pool" => {
                for pool_entry in entry.value.entries() {
                    if pool_entry.key != "job_variables" {
                        continue;
                    }
                    for jv in pool_entry.value.entries() {
                        if super::keys::JOB_VARIABLES.honours(&jv.key) {
                            steps.clear();
                            steps.extend([
                                Step::Key(key),
                                Step::Key(&pool_entry.key),
                                Step::Key(&jv.key),
                            ]);
                            walk(report, &jv.value, at, &mut steps, ids, false);
                        }
                    }
                }
            }
            _ => {
                steps.clear();
                steps.push(Step::Key(key));
                walk(
                    report,
                    &entry.value,
                    at,
                    &mut steps,
                    ids,
                    INFORMATIONAL_KEYS.contains(&key),
                );
            }
        }
    }
}

fn walk_pull(report: &mut FileReport<'_>, steps: &Node, at: &str, ids: &StepIds) {
    for (i, step) in steps.items().iter().enumerate() {
        if CHECKOUT_STEPS.contains(&step_name(step)) {
            continue;
        }
        walk(report, step, at, &mut vec![Step::Index(i)], ids, false);
    }
}

/// Checks every string under `node`, whose pointer is `at` followed by `steps`; the steps
/// are kept while walking (and restored), so only a placeholder costs a pointer.
fn walk<'n>(
    report: &mut FileReport<'_>,
    node: &'n Node,
    at: &str,
    steps: &mut Vec<Step<'n>>,
    ids: &StepIds,
    informational: bool,
) {
    match &node.value {
        Value::Str { text, .. } => {
            let found = placeholders(text);
            if found.is_empty() {
                return;
            }
            let here = pointer_from(at, steps);
            for p in found {
                judge(report, &here, &p, ids, informational);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                walk(report, item, at, steps, ids, informational);
                steps.pop();
            }
        }
        Value::Map(entries) => {
            for e in entries {
                steps.push(Step::Key(&e.key));
                walk(report, &e.value, at, steps, ids, informational);
                steps.pop();
            }
        }
        _ => {}
    }
}

fn judge(
    report: &mut FileReport<'_>,
    at: &str,
    p: &Placeholder,
    ids: &StepIds,
    informational: bool,
) {
    let written = p.written();
    let (message, help) = match p {
        Placeholder::Env(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => return,
        Placeholder::Env(name) => (format!("`{written}`: `{name}` is not an environment variable name"), None),
        Placeholder::StepOutput { step, field } if ids.checkout.contains(step) && field == "directory" => return,
        Placeholder::StepOutput { step, .. } if ids.build.contains(step) => (
            format!("`{written}` is the output of a build or push step, and sundial runs no build steps"),
            Some("write the value itself, or pass it with `{{ $NAME }}` from the daemon's environment".to_string()),
        ),
        Placeholder::StepOutput { step, field } if ids.checkout.contains(step) || ids.other.contains(step) => (
            format!("`{written}`: step `{step}` has no output `{field}` that sundial can provide"),
            Some("only `directory` of a git_clone or pull_from_* step resolves (to the checkout root)".to_string()),
        ),
        Placeholder::StepOutput { step, .. } => (
            format!("`{written}`: no earlier step has id `{step}`"),
            Some(format!("give the step `id: {step}`, or fix the name")),
        ),
        Placeholder::PrefectServer(_) => (
            format!("`{written}` lives on a Prefect server, which sundial does not use"),
            Some("use `{{ $NAME }}` and set NAME through the systemd unit's `EnvironmentFile=`".to_string()),
        ),
        Placeholder::FlowRun(inner) => (
            format!("`{written}` is not resolved in a prefect.yaml: Prefect 3 drops it too (its run-time form is `{{{{ ctx.{inner} }}}}`, filled in by Prefect's worker, which sundial does not have)"),
            Some(RUN_ENVIRONMENT.to_string()),
        ),
        Placeholder::Other(inner) if inner.starts_with("ctx.flow_run.") || inner.starts_with("ctx.deployment.") => (
            format!("`{written}` is filled in by Prefect's worker at run time, which sundial does not have"),
            Some(RUN_ENVIRONMENT.to_string()),
        ),
        // `{{ clone-output }}`: a step's id without a field.
        Placeholder::Other(inner) if is_step_id(inner) => match ids.contains(inner) {
            true => (
                format!("`{written}` is the whole output of step `{inner}`: name one of its fields"),
                Some(format!("for the checkout root write `{{{{ {inner}.directory }}}}`")),
            ),
            false => (
                format!("`{written}`: no earlier step has id `{inner}`"),
                Some(format!("give the step `id: {inner}`, or write `{{{{ $NAME }}}}` for an environment variable")),
            ),
        },
        Placeholder::Other(_) => (format!("`{written}` is not a placeholder sundial can resolve"), Some("sundial resolves `{{ $NAME }}` from its environment and `{{ step-id.directory }}` of a git_clone or pull_from_* step".to_string())),
    };
    if informational {
        report.warning(at, false, Code::Template, message, help);
    } else {
        report.error(at, false, Code::Template, message, help);
    }
}

/// What a run has instead of Prefect's run context.
const RUN_ENVIRONMENT: &str = "a run sees SUNDIAL_RUN_ID, SUNDIAL_DEPLOYMENT, SUNDIAL_SCHEDULED_FOR and SUNDIAL_ATTEMPT in its environment";

/// Whether `text` could be a step's `id` (`clone-output`, `build_image`).
fn is_step_id(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn step_name(step: &Node) -> &str {
    step.entries()
        .first()
        .map_or("", |e| e.key.rsplit('.').next().unwrap_or(&e.key))
}

fn step_id(step: &Node) -> Option<String> {
    let args = &step.entries().first()?.value;
    match &args.get("id")?.value {
        Value::Str { text, .. } => Some(text.clone()),
        _ => None,
    }
}
