//! What a deployment runs: its `command` split into argv, or its `entrypoint`, which must
//! name something that is there. With a view of the repository, the entrypoint's file (or
//! module, or executable) is found by the one rule of [`locate`] (the manifest's project
//! root, then the repository root) and a Python function is looked for in it:
//!
//! - a file or executable in neither place is an error at the entrypoint, naming both
//!   places tried; so is a `..` that leaves the repository;
//! - a module in neither place is a warning: it may be installed in the run's Python;
//! - a Python file with no mention of the function is an error; one whose text cannot
//!   tell (the name is assigned or imported, the file is not UTF-8 or too large) is a
//!   warning;
//! - found from the repository root: a `repository-root` warning, said once per file.
//!
//! Without a view (no repository known) only the form is checked. The forms are the
//! runner's (`runner::launch`), which finds the same paths by the same rule at run time.

use crate::manifest::pointer;

use super::desired::Launch;
use super::diagnostic::Code;
use super::locate::{self, Defines, Found, Kind, View};
use super::memo::MemoView;
use super::report::FileReport;

pub(super) fn launch(
    report: &mut FileReport<'_>,
    at: &str,
    jv: &str,
    entrypoint: Option<&str>,
    command: Option<&str>,
) -> Option<Launch> {
    if let Some(command) = command {
        return match crate::template::split_command(command) {
            Ok(argv) if !argv.is_empty() => Some(Launch::Command(argv)),
            Ok(_) => {
                report.error(
                    &format!("{jv}/command"),
                    false,
                    Code::InvalidCommand,
                    "`command` is empty",
                    Some("give the program and its arguments, e.g. `python -m etl.main`".into()),
                );
                None
            }
            Err(e) => {
                let help = match e {
                    crate::template::SplitError::Braces { .. } => "keep each `{{ ... }}` apart from quoted or escaped braces, e.g. `{ '{{ $X }}' }`",
                    _ => "close the quote; sundial splits the command like a POSIX shell but runs no shell",
                };
                report.error(
                    &format!("{jv}/command"),
                    false,
                    Code::InvalidCommand,
                    format!("`command` cannot be split into words: {e}"),
                    Some(help.into()),
                );
                None
            }
        };
    }
    match entrypoint.map(str::trim) {
        Some(entry) if !entry.is_empty() => {
            if let Some((_, func)) = entry.rsplit_once(':') {
                if !is_identifier(func) {
                    report.error(
                        &pointer(at, "entrypoint"),
                        false,
                        Code::NoEntrypoint,
                        format!("entrypoint `{entry}` does not end in a function name"),
                        Some(
                            "write `path/to/file.py:function` or `package.module:function`".into(),
                        ),
                    );
                    return None;
                }
            }
            Some(Launch::Entrypoint(entry.to_string()))
        }
        _ => {
            report.error(
                at,
                false,
                Code::NoEntrypoint,
                "this deployment has neither `entrypoint` nor `work_pool.job_variables.command`, so there is nothing to run",
                Some("add `entrypoint: path/to/file.py:function`".into()),
            );
            None
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn is_dotted_name(s: &str) -> bool {
    s.split('.').all(is_identifier)
}

/// Where the deployment's paths are looked for.
pub(super) struct Bases<'a> {
    /// The manifest's project root: entrypoint files and executables.
    pub project_root: &'a str,
    /// The directory the process starts in: modules (it is first on `sys.path`).
    pub working_dir: &'a str,
}

/// Checks that the entrypoint at `at` names something in the repository (see the module
/// docs). Reports through `report`; says nothing when `view` cannot tell.
pub(super) fn check_exists(
    report: &mut FileReport<'_>,
    view: &MemoView<'_>,
    at: &str,
    entry: &str,
    bases: &Bases<'_>,
) {
    let at = pointer(at, "entrypoint");
    let (target, func) = match entry.rsplit_once(':') {
        Some((target, func)) => (target, Some(func)),
        None => (entry, None),
    };
    let is_file_form = func.is_some() && (target.contains('/') || target.ends_with(".py"));
    if func.is_some() && !is_file_form {
        if is_dotted_name(target) {
            check_module(report, view, &at, target, func, bases);
        }
        return;
    }
    let found = match locate::locate(view, bases.project_root, target, Kind::File) {
        Ok(found) => found,
        Err(e) => {
            report.error(
                &at,
                false,
                Code::Entrypoint,
                format!("entrypoint `{entry}`: {e}"),
                Some("give a path inside the repository, relative to the manifest's folder or to the repository root".into()),
            );
            return;
        }
    };
    match (&found, func) {
        (Found::At { path, .. }, Some(func)) => {
            note_root(report, &at, &found, bases.project_root);
            check_function(report, view, &at, path, func);
        }
        (Found::At { .. }, None) => note_root(report, &at, &found, bases.project_root),
        (Found::Neither { .. }, None) if is_dotted_name(entry) && entry.contains('.') => {
            // `module.function`, as the runner reads a dotted name that is no file.
            if let Some((module, func)) = entry.rsplit_once('.') {
                check_module(report, view, &at, module, Some(func), bases);
            }
        }
        (Found::Neither { tried }, _) => report.error(
            &at,
            false,
            Code::Entrypoint,
            format!(
                "entrypoint {} `{target}` {}: looked for {}",
                if func.is_some() { "file" } else { "executable" },
                view.origin().missing(),
                places(tried)
            ),
            Some(format!(
                "{} it, or fix the path: it is relative to the manifest's folder{} or to {}",
                view.origin().remedy(),
                shown_base(bases.project_root),
                view.origin().root()
            )),
        ),
        (Found::CannotTell { .. }, _) => {}
    }
}

/// A module entrypoint: found in the repository (from the working directory, then the
/// root) or, with a warning, left to the run's Python.
fn check_module(
    report: &mut FileReport<'_>,
    view: &MemoView<'_>,
    at: &str,
    module: &str,
    func: Option<&str>,
    bases: &Bases<'_>,
) {
    let Ok(found) = locate::locate_module(view, bases.working_dir, module) else {
        return;
    };
    match &found {
        Found::At { path, .. } => {
            note_root(report, at, &found, bases.project_root);
            if let Some(func) = func {
                check_function(report, view, at, path, func);
            }
        }
        Found::Neither { tried } => report.warning(
            at,
            false,
            Code::Entrypoint,
            format!("entrypoint module `{module}` {} (looked for {}); the run imports it from its Python", view.origin().missing(), places(tried)),
            Some(format!("fine for an installed package; otherwise {} the module, or fix the entrypoint", view.origin().remedy())),
        ),
        Found::CannotTell { .. } => {}
    }
}

/// Whether the Python file at `path` defines `func`.
fn check_function(
    report: &mut FileReport<'_>,
    view: &MemoView<'_>,
    at: &str,
    path: &str,
    func: &str,
) {
    match view.defines(path, func) {
        Defines::Yes => {}
        Defines::No => report.error(
            at,
            false,
            Code::Entrypoint,
            format!("`{path}` defines no function `{func}`"),
            Some(format!(
                "define `def {func}(...)` at the top level of `{path}`, or fix the name after `:`"
            )),
        ),
        Defines::CannotTell(reason) => report.warning(
            at,
            false,
            Code::Entrypoint,
            format!("cannot tell whether `{path}` defines `{func}`: {reason}"),
            Some(format!(
                "the run fails if `{func}` is not there when the file is loaded"
            )),
        ),
    }
}

/// Says once per file (the report merges repeats) that paths were found from the
/// repository root rather than from the manifest's folder.
pub(super) fn note_root(report: &mut FileReport<'_>, at: &str, found: &Found, project_root: &str) {
    if !found.from_repository_root() {
        return;
    }
    report.warning(
        at,
        false,
        Code::RepositoryRoot,
        format!(
            "paths in this file are found from the repository root, not from the manifest's folder{}",
            shown_base(project_root)
        ),
        Some("this works (Prefect resolves them from where `prefect deploy` ran); sundial looks in the manifest's folder first, then at the repository root".into()),
    );
}

/// `` `a` and `b` ``.
pub(super) fn places(tried: &[String]) -> String {
    let quoted: Vec<String> = tried.iter().map(|p| format!("`{p}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// ` `flows`` for a folder, "" for the repository root itself.
fn shown_base(base: &str) -> String {
    if base.is_empty() {
        String::new()
    } else {
        format!(" `{base}`")
    }
}
