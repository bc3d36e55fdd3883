//! Validation: one code path shared by `sundial validate` and the daemon.
//!
//! Input is a set of manifest files (bytes and their paths in the repository); output is
//! every diagnostic of every file and, per file that has no error, its trusted
//! deployments. Nothing stops at the first problem: each file is loaded, checked against
//! the JSON Schema, then checked semantically with wrong values treated as absent, so one
//! run reports everything. A file with an error contributes no deployments; the daemon
//! keeps that file's last-known-good ones instead.

mod conflicts;
mod deployment;
pub mod desired;
pub mod diagnostic;
mod entrypoint;
pub mod incremental;
mod keys;
pub mod locate;
mod memo;
mod notify;
mod parallel;
mod parameters;
pub mod paths;
mod pull;
pub mod render;
mod report;
mod schedules;
pub mod schema;
mod sla;
mod templates;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::manifest::limits::format_bytes;
use crate::manifest::model::RawDeployment;
use crate::manifest::yaml::{self, LoadErrorKind};
use crate::manifest::{as_json, pointer, pointer_from, Node, Span, Step, Value};

pub use desired::{Deployment, DesiredState, PlannedSchedule};
pub use diagnostic::{Code, Diagnostic, Severity};
use incremental::Names;
use memo::{MemoView, Recurrences};
use parameters::ParameterSchemas;
use report::FileReport;

/// A manifest file to check.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// How to name the file to people (the path they gave, or its repository path).
    pub display: String,
    /// Its path relative to the repository root, `/`-separated.
    pub repo_path: String,
    /// Its bytes, or only its size when it is over the reader's limit.
    pub bytes: Contents,
}

/// What the reader of a manifest got: its bytes, or only its size when that is over the
/// limit (`--max-file-size`), so the file is reported without being read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    Bytes(Vec<u8>),
    TooLarge { size: u64, limit: u64 },
}

impl Contents {
    /// The bytes when they were read (empty for a file over the limit).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Contents::Bytes(bytes) => bytes,
            Contents::TooLarge { .. } => &[],
        }
    }

    /// What a reader with this `limit` makes of a file of `size` bytes whose content
    /// `read` returns when asked.
    pub fn read_within<E>(
        size: u64,
        limit: u64,
        read: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Contents, E> {
        if size > limit {
            return Ok(Contents::TooLarge { size, limit });
        }
        read().map(Contents::Bytes)
    }
}

impl From<Vec<u8>> for Contents {
    fn from(bytes: Vec<u8>) -> Contents {
        Contents::Bytes(bytes)
    }
}

/// The verdict on one file.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub file: String,
    pub repo_path: String,
    pub diagnostics: Vec<Diagnostic>,
    /// How many deployments the file declares (placeholders excluded).
    pub declared: usize,
    /// The file's deployments when it has no error; `None` when it has one. Shared: the
    /// daemon keeps one copy of them, however many holders (`Arc::make_mut` to change).
    pub deployments: Option<Arc<Vec<Deployment>>>,
    /// Its top-level `notifications:` (when it has no error and declares them): the
    /// default of its deployments, and of the whole repository's for the root
    /// `prefect.yaml`.
    pub notifications: Option<Vec<crate::notify::Notification>>,
}

impl FileOutcome {
    pub fn is_valid(&self) -> bool {
        self.deployments.is_some()
    }
}

/// The verdict on a set of files.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    pub files: Vec<FileOutcome>,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.files.iter().all(FileOutcome::is_valid)
    }

    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }

    pub fn declared(&self) -> usize {
        self.files.iter().map(|f| f.declared).sum()
    }
}

/// Validates files in the order given; a deployment name seen in an earlier file makes
/// the later one the error.
pub fn validate(files: &[SourceFile]) -> Validation {
    validate_in(files, &locate::Unknown)
}

/// Like [`validate`], also finding what the manifests name (entrypoints, requirements
/// files, directories) in `view`, the repository the files come from, by the rule of
/// [`locate`].
pub fn validate_in(files: &[SourceFile], view: &dyn locate::View) -> Validation {
    validate_on(files, view, parallel::threads())
}

/// [`validate_in`] with a large file's deployments checked on at most `threads` threads.
fn validate_on(files: &[SourceFile], view: &dyn locate::View, threads: usize) -> Validation {
    let mut names = Names::default();
    let shared = Shared::new(view, threads);
    let files = files
        .iter()
        .map(|f| check_file(f, &mut names, &shared))
        .collect();
    Validation { files }
}

/// What the checks of every file of one run share.
struct Shared<'a> {
    /// The repository the files come from, each question asked once.
    view: MemoView<'a>,
    parameter_schemas: ParameterSchemas,
    recurrences: Recurrences,
    /// How many threads may check one file's deployments ([`parallel`]).
    threads: usize,
}

impl<'a> Shared<'a> {
    fn new(view: &'a dyn locate::View, threads: usize) -> Shared<'a> {
        Shared {
            view: MemoView::new(view),
            parameter_schemas: ParameterSchemas::default(),
            recurrences: Recurrences::default(),
            threads,
        }
    }
}

fn check_file(file: &SourceFile, names: &mut Names, shared: &Shared<'_>) -> FileOutcome {
    let bytes = match &file.bytes {
        Contents::Bytes(bytes) => bytes,
        Contents::TooLarge { size, limit } => return too_large(file, *size, *limit),
    };
    let markers = conflicts::markers(bytes);
    if !markers.is_empty() {
        return merge_conflict(file, &markers);
    }
    let loaded = yaml::load(bytes);
    let mut report = FileReport::new(&file.display, loaded.root.as_ref());
    for e in &loaded.errors {
        let code = match e.kind {
            LoadErrorKind::Syntax => Code::YamlSyntax,
            LoadErrorKind::Tab => Code::TabIndent,
            LoadErrorKind::DuplicateKey => Code::DuplicateKey,
            LoadErrorKind::NotUtf8 => Code::NotUtf8,
            LoadErrorKind::TooLarge => Code::TooLarge,
            LoadErrorKind::TooDeep => Code::TooDeep,
        };
        report.error_at(e.span, code, e.message.clone(), e.help.clone());
    }
    let mut declared = 0;
    let mut deployments = Vec::new();
    let mut notifications = None;
    if let Some(root) = loaded.root.as_ref() {
        deployments = check_root(
            &mut report,
            file,
            root,
            names,
            &mut declared,
            shared,
            &mut notifications,
        );
    }
    let valid = !report.has_errors();
    let diagnostics = report.finish();
    free_apart(loaded);
    FileOutcome {
        file: file.display.clone(),
        repo_path: file.repo_path.clone(),
        diagnostics,
        declared,
        deployments: valid.then(|| Arc::new(deployments)),
        notifications: notifications.filter(|_| valid),
    }
}

/// A tree of at least this many values is freed on a thread of its own.
const FREED_APART: usize = 20_000;

/// Frees the tree of a file whose checks are done: a large one (a file of a thousand
/// deployments is some 45,000 allocations, a few milliseconds to free) on a thread of its
/// own, so the verdict does not wait for it; here when that thread cannot be started.
fn free_apart(loaded: yaml::Loaded) {
    if loaded.cost.nodes >= FREED_APART {
        let _ = std::thread::Builder::new()
            .name("sundial-free".into())
            .spawn(move || drop(loaded));
    }
}

/// The verdict on a file that was not read as YAML: its diagnostics, no deployments.
fn unread(file: &SourceFile, report: FileReport<'_>) -> FileOutcome {
    FileOutcome {
        file: file.display.clone(),
        repo_path: file.repo_path.clone(),
        diagnostics: report.finish(),
        declared: 0,
        deployments: None,
        notifications: None,
    }
}

/// The verdict on a file with an unresolved merge conflict: each marker line, as what it
/// is; the YAML is not read, since which side is meant is unknown.
fn merge_conflict(file: &SourceFile, markers: &[conflicts::Marker]) -> FileOutcome {
    let mut report = FileReport::new(&file.display, None);
    for marker in markers {
        let help = marker.text.starts_with('<').then(|| {
            "resolve the conflict: keep the side you mean (or combine them), delete the marker lines, and commit".to_string()
        });
        report.error_at(
            marker.span,
            Code::MergeConflict,
            format!("`{}` {}", marker.text, marker.role),
            help,
        );
    }
    unread(file, report)
}

/// The verdict on a file that was not read because of its size: one error about the
/// whole file (line 0), naming the flag that raises the limit.
fn too_large(file: &SourceFile, size: u64, limit: u64) -> FileOutcome {
    let mut report = FileReport::new(&file.display, None);
    report.error_at(
        Span::default(),
        Code::TooLarge,
        format!(
            "the file is {} ({size} bytes), over the limit of {} for a manifest",
            format_bytes(size),
            format_bytes(limit)
        ),
        Some("split it into smaller manifests, or raise the limit with `--max-file-size` (on `sundial validate` and `sundial daemon`)".into()),
    );
    unread(file, report)
}

fn check_root(
    report: &mut FileReport<'_>,
    file: &SourceFile,
    root: &Node,
    names: &mut Names,
    declared: &mut usize,
    shared: &Shared<'_>,
    top_notifications: &mut Option<Vec<crate::notify::Notification>>,
) -> Vec<Deployment> {
    match &root.value {
        Value::Map(_) => {}
        Value::Null => {
            report.warning(
                "",
                false,
                Code::NotAManifest,
                "the file is empty; it declares no deployments",
                None,
            );
            return Vec::new();
        }
        _ => {
            report.error(
                "",
                false,
                Code::NotAManifest,
                "a manifest is a mapping with a `deployments:` list",
                Some("see `sundial schema` or the README for the format".into()),
            );
            return Vec::new();
        }
    }
    if is_prefect2_spec(root) {
        report.error(
            "",
            false,
            Code::Prefect2Spec,
            "this is a Prefect 2 `prefect deployment build` spec, not a prefect.yaml",
            Some("put the deployment under `deployments:` as a list entry with its name, entrypoint, parameters and schedule; drop `infrastructure` and `storage` (sundial runs a local process from the committed checkout)".into()),
        );
        return Vec::new();
    }
    let wrong = schema::check(report, root);
    keys::check(report, root, "", &keys::TOP);
    yaml11_booleans(report, root, &mut Vec::new());
    templates::check(report, root);

    let project_root = paths::project_root(&file.repo_path);
    let top_pulled = root
        .get("pull")
        .filter(|p| !p.is_null())
        .map(|steps| pull::check(report, steps, "/pull", &project_root, &shared.view));
    *top_notifications = root
        .get("notifications")
        .filter(|n| !n.is_null())
        .map(|list| notify::check(report, list, "/notifications"));
    let Some(list) = root.get("deployments") else {
        return Vec::new();
    };
    let context = deployment::FileContext {
        project_root: &project_root,
        repo_path: &file.repo_path,
        top_pulled: top_pulled.as_ref(),
        top_notifications: top_notifications.as_deref(),
        wrong: &wrong,
    };
    let mut out =
        parallel::check_deployments(report, list.items(), context, shared, names, declared);
    // Kept for as long as the file is in force: no spare room.
    out.shrink_to_fit();
    out
}

/// Checks the keys of a deployment and of the mappings inside it.
fn check_keys(report: &mut FileReport<'_>, node: &Node, at: &str) {
    keys::check(report, node, at, &keys::DEPLOYMENT);
    if let Some(pool) = node.get("work_pool") {
        let pool_at = pointer(at, "work_pool");
        keys::check(report, pool, &pool_at, &keys::WORK_POOL);
        if let Some(jobs) = pool.get("job_variables") {
            keys::check(
                report,
                jobs,
                &pointer(&pool_at, "job_variables"),
                &keys::JOB_VARIABLES,
            );
        }
    }
    for (i, schedule) in node
        .get("schedules")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        keys::check(
            report,
            schedule,
            &format!("{at}/schedules/{i}"),
            &keys::SCHEDULE,
        );
    }
    if let Some(schedule) = node.get("schedule") {
        keys::check(report, schedule, &pointer(at, "schedule"), &keys::SCHEDULE);
    }
    if let Some(limit) = node.get("concurrency_limit") {
        keys::check(
            report,
            limit,
            &pointer(at, "concurrency_limit"),
            &keys::CONCURRENCY,
        );
    }
}

/// The deployment (`node`, at `at`) as the raw model, with every value the schema found
/// wrong set to null (already reported), so the semantic checks see the rest. Read straight
/// from the node when the schema found nothing wrong in it, else from a JSON copy.
fn raw_deployment(
    node: &Node,
    at: &str,
    wrong: &BTreeSet<String>,
) -> Result<RawDeployment, serde_json::Error> {
    let below = format!("{at}/");
    let mut bad = wrong
        .range(below.clone()..)
        .take_while(|bad| bad.starts_with(&below))
        .peekable();
    if bad.peek().is_none() {
        return as_json::from_node(node);
    }
    let mut json = node.to_json();
    for bad in bad {
        if let Some(slot) = json.pointer_mut(&bad[at.len()..]) {
            *slot = Json::Null;
        }
    }
    // Keys the schema does not know are ignored by serde; anything still mistyped is a gap
    // between schema and model, reported by the caller rather than hidden.
    serde_json::from_value(json)
}

/// A Prefect 2 `deployment.yaml` has the deployment at top level with infrastructure.
fn is_prefect2_spec(root: &Node) -> bool {
    root.get("deployments").is_none()
        && (root.get("infrastructure").is_some() || root.get("storage").is_some())
        && (root.get("entrypoint").is_some() || root.get("flow_name").is_some())
}

/// `yes`/`no`/`on`/`off` are booleans to Prefect's YAML 1.1 reader and strings to YAML 1.2
/// tools; say so once per occurrence. `steps` lead from the root to the node, kept while
/// walking (and restored), so only a YAML 1.1 word costs a pointer.
fn yaml11_booleans<'n>(report: &mut FileReport<'_>, node: &'n Node, steps: &mut Vec<Step<'n>>) {
    match &node.value {
        Value::Bool(b) if b.is_yaml11_word() => {
            let at = pointer_from("", steps);
            // Where a string was expected the type error already says to quote it.
            if !report.has_error_under(&at) {
                report.warning(
                    &at,
                    false,
                    Code::Yaml11Boolean,
                    format!(
                        "`{}` is read as {} (YAML 1.1), but YAML 1.2 tools read it as a string",
                        b.word, b.value
                    ),
                    Some(format!("write `{}`", b.value)),
                );
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                steps.push(Step::Index(i));
                yaml11_booleans(report, item, steps);
                steps.pop();
            }
        }
        Value::Map(entries) => {
            for e in entries {
                steps.push(Step::Key(&e.key));
                yaml11_booleans(report, &e.value, steps);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// The validated files of `(path, text)` pairs: what tests reconcile and publish.
#[cfg(test)]
pub fn outcomes_of(files: &[(&str, &str)]) -> Vec<FileOutcome> {
    let sources: Vec<SourceFile> = files
        .iter()
        .map(|(path, text)| SourceFile {
            display: path.to_string(),
            repo_path: path.to_string(),
            bytes: text.as_bytes().to_vec().into(),
        })
        .collect();
    validate(&sources).files
}

#[cfg(test)]
mod tests;
