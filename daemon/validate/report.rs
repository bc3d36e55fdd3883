//! Collects the diagnostics of one file, turning JSON Pointers into positions.
//!
//! A warning is said once per cause: when the checks of several deployments find the same
//! one (a shared top-level step, a YAML alias, the same ignored key in each), the first is
//! kept and names how many more deployments have it. Errors are all listed.
//!
//! A file lists at most [`MAX_DIAGNOSTICS`]; past that each finding is only counted (so
//! the file's verdict stays right) and one last diagnostic says how many were left out.
//! Nobody reads a hundred thousand errors, and finding each one's position costs time
//! in proportion to the file: the cap keeps a file of many small mistakes linear to check.

use std::collections::HashMap;

use crate::manifest::{Node, Span, Value};

use super::diagnostic::{Code, Diagnostic, Severity};

/// How many diagnostics one file lists.
pub const MAX_DIAGNOSTICS: usize = 1_000;

/// The diagnostics of one file under construction; every check writes through this.
pub struct FileReport<'a> {
    pub file: &'a str,
    root: Option<&'a Node>,
    /// What the file's checks found before this report's part of them began (for a part
    /// of the checks run on another thread, [`FileReport::part`]): seen by
    /// [`FileReport::has_error_under`], never listed again.
    earlier: &'a [Diagnostic],
    pub diagnostics: Vec<Diagnostic>,
    /// For each listed diagnostic, the deployment (its index) whose check found it.
    origins: Vec<Option<usize>>,
    /// The deployment being checked, if any.
    deployment: Option<usize>,
    /// Errors recorded, listed or not.
    errors: usize,
    unlisted_errors: usize,
    unlisted_warnings: usize,
}

impl<'a> FileReport<'a> {
    pub fn new(file: &'a str, root: Option<&'a Node>) -> Self {
        FileReport {
            file,
            root,
            earlier: &[],
            diagnostics: Vec::new(),
            origins: Vec::new(),
            deployment: None,
            errors: 0,
            unlisted_errors: 0,
            unlisted_warnings: 0,
        }
    }

    /// Whether a diagnostic of `severity` still gets listed; counts it either way.
    fn admit(&mut self, severity: Severity) -> bool {
        if severity == Severity::Error {
            self.errors += 1;
        }
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            return true;
        }
        match severity {
            Severity::Error => self.unlisted_errors += 1,
            Severity::Warning => self.unlisted_warnings += 1,
        }
        false
    }

    /// A report for a part of this file's checks (one thread's run of deployments): it
    /// lists only what that part finds, sees what this report holds, and is taken back
    /// with [`FileReport::record`].
    pub fn part(&self) -> FileReport<'_> {
        FileReport {
            earlier: &self.diagnostics,
            ..FileReport::new(self.file, self.root)
        }
    }

    /// What a part found ([`FileReport::part`]), given up so this report can adopt it.
    pub fn into_part(self) -> Part {
        Part {
            listed: self.diagnostics,
            unlisted_errors: self.unlisted_errors,
            unlisted_warnings: self.unlisted_warnings,
        }
    }

    /// Records a diagnostic found now (or listed by a part: then as if found here and now,
    /// so the listing cap counts it in order), attributed to the deployment being checked.
    pub fn record(&mut self, diagnostic: Diagnostic) {
        if !self.admit(diagnostic.severity) {
            return;
        }
        self.origins.push(self.deployment);
        self.diagnostics.push(diagnostic);
    }

    /// Counts what a part found past its own listing cap: past this report's cap too,
    /// since the part listed as many before it.
    pub fn adopt_unlisted(&mut self, part: &Part) {
        self.errors += part.unlisted_errors;
        self.unlisted_errors += part.unlisted_errors;
        self.unlisted_warnings += part.unlisted_warnings;
    }

    /// Attributes what is recorded from now on to the deployment at `index` (or to none).
    pub fn checking_deployment(&mut self, index: Option<usize>) {
        self.deployment = index;
    }

    /// How many errors were recorded, including those past the listing cap.
    pub fn error_count(&self) -> usize {
        self.errors
    }

    /// The listed diagnostics sorted by position, then one saying how many were left out.
    pub fn finish(self) -> Vec<Diagnostic> {
        let mut found: Vec<(Diagnostic, Option<usize>)> =
            self.diagnostics.into_iter().zip(self.origins).collect();
        found.sort_by_key(|(d, _)| (d.line, d.column, d.severity));
        let mut diagnostics = merge_repeated_warnings(found, self.root);
        let unlisted = self.unlisted_errors + self.unlisted_warnings;
        if unlisted > 0 {
            diagnostics.push(Diagnostic {
                severity: if self.unlisted_errors > 0 {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                file: self.file.to_string(),
                line: 0,
                column: 0,
                width: 0,
                pointer: String::new(),
                code: Code::TooManyProblems,
                message: format!(
                    "{} ({}, {}) {} not listed: a file lists at most {MAX_DIAGNOSTICS}",
                    count(unlisted, "more problem"),
                    count(self.unlisted_errors, "error"),
                    count(self.unlisted_warnings, "warning"),
                    if unlisted == 1 { "is" } else { "are" }
                ),
                help: Some("fix the ones listed and validate again".into()),
            });
        }
        diagnostics
    }

    /// Records an error at the node `pointer` names (its key when `at_key`).
    pub fn error(
        &mut self,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(Severity::Error, pointer, at_key, code, message.into(), help);
    }

    pub fn warning(
        &mut self,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(
            Severity::Warning,
            pointer,
            at_key,
            code,
            message.into(),
            help,
        );
    }

    /// Records an error at an explicit span (for problems found before a tree exists).
    pub fn error_at(&mut self, span: Span, code: Code, message: String, help: Option<String>) {
        self.record(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_string(),
            line: span.start.line,
            column: span.start.column,
            width: span.width,
            pointer: String::new(),
            code,
            message,
            help,
        });
    }

    fn push(
        &mut self,
        severity: Severity,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: String,
        help: Option<String>,
    ) {
        if !self.admit(severity) {
            return;
        }
        let span = self
            .root
            .map(|r| r.span_of(pointer, at_key))
            .unwrap_or_default();
        self.origins.push(self.deployment);
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line: span.start.line,
            column: span.start.column,
            width: span.width,
            pointer: pointer.to_string(),
            code,
            message,
            help,
        });
    }

    /// Whether a listed error sits at `pointer` or below it.
    pub fn has_error_under(&self, pointer: &str) -> bool {
        self.earlier.iter().chain(&self.diagnostics).any(|d| {
            d.is_error()
                && d.pointer
                    .strip_prefix(pointer)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }
}

/// What a part of a file's checks found ([`FileReport::into_part`]).
pub struct Part {
    /// Listed, in the order found.
    pub listed: Vec<Diagnostic>,
    unlisted_errors: usize,
    unlisted_warnings: usize,
}

/// What a warning says: its code, message and help.
type Cause = (Code, String, Option<String>);

/// One warning per cause: a warning said again in other deployments (the same key in
/// each, or one node that YAML aliases share) is kept once, at its first place, naming the
/// deployment and how many more have it. Errors are all kept: each must be fixed.
fn merge_repeated_warnings(
    diagnostics: Vec<(Diagnostic, Option<usize>)>,
    root: Option<&Node>,
) -> Vec<Diagnostic> {
    let mut kept: Vec<Diagnostic> = Vec::with_capacity(diagnostics.len());
    // For each kept warning: its deployments, in order of first appearance.
    let mut groups: HashMap<Cause, (usize, Vec<usize>)> = HashMap::new();
    for (d, origin) in diagnostics {
        let Some(index) = origin.filter(|_| !d.is_error()) else {
            kept.push(d);
            continue;
        };
        let cause = (d.code, d.message.clone(), d.help.clone());
        match groups.get_mut(&cause) {
            Some((_, deployments)) => {
                if !deployments.contains(&index) {
                    deployments.push(index);
                }
            }
            None => {
                groups.insert(cause, (kept.len(), vec![index]));
                kept.push(d);
            }
        }
    }
    for (at, deployments) in groups.into_values() {
        if deployments.len() < 2 {
            continue;
        }
        let name = root
            .and_then(|r| r.get("deployments"))
            .and_then(|list| list.items().get(deployments[0]))
            .and_then(|d| d.get("name"))
            .and_then(|n| match &n.value {
                Value::Str { text, .. } => Some(format!("`{text}`")),
                _ => None,
            })
            .unwrap_or_else(|| format!("deployment {}", deployments[0] + 1));
        let more = count(deployments.len() - 1, "more deployment");
        kept[at].message = format!("{} (in {name} and {more})", kept[at].message);
    }
    kept
}

/// `1 error`, `2 errors`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
