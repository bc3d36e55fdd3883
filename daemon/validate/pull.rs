//! Pull steps (DESIGN.md "Pull steps"): which are honoured, which are ignored with a
//! warning because the checkout of the commit stands in for them, and which are errors.
//! A step is known by the last part of its dotted name. `run_shell_script` lines are
//! split into words as Prefect splits them and run without a shell, or, with
//! `shell: true`, each run as `sh -c LINE`.

use crate::manifest::{pointer, Node, Value};

use super::desired::PullStep;
use super::diagnostic::Code;
use super::entrypoint::{note_root, places};
use super::locate::{self, Found, Kind, View};
use super::paths::resolve_inside;
use super::report::FileReport;

/// What the pull steps amount to: steps to perform and the directory they leave us in.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub steps: Vec<PullStep>,
    /// Relative to the repository root.
    pub directory: String,
    /// Whether `directory` was found from the repository root rather than from the
    /// manifest's folder (see `validate::locate`).
    pub directory_from_root: bool,
    /// Where the first `pip_install_requirements` step is, when there is one.
    pub installs_at: Option<String>,
}

impl Pulled {
    /// No steps: the process starts in `project_root`.
    pub fn at(project_root: &str) -> Pulled {
        Pulled {
            steps: Vec::new(),
            directory: project_root.to_string(),
            directory_from_root: false,
            installs_at: None,
        }
    }
}

/// Shell syntax that only a shell understands; `run_shell_script` runs no shell unless
/// the step says `shell: true`.
const SHELL_OPERATORS: &[&str] = &[
    "|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>>", "2>&1", "&>",
];

pub fn check(
    report: &mut FileReport<'_>,
    steps: &Node,
    at: &str,
    project_root: &str,
    view: &dyn View,
) -> Pulled {
    let mut pulled = Pulled::at(project_root);
    for (i, step) in steps.items().iter().enumerate() {
        let step_at = pointer(at, i);
        let Some(entry) = step.entries().first() else {
            continue; // the schema reported it
        };
        let full_name = entry.key.as_str();
        let name = full_name.rsplit('.').next().unwrap_or(full_name);
        let name_at = pointer(&step_at, full_name);
        let args = &entry.value;
        match name {
            "set_working_directory" => {
                let Some(dir) = args.text_of("directory") else {
                    report.error(&name_at, true, Code::PullStep, "`set_working_directory` needs `directory`", None);
                    continue;
                };
                match resolve_dir(view, &pulled.directory, &dir) {
                    Some(found) => {
                        note_root(report, &pointer(&name_at, "directory"), &found, project_root);
                        pulled.directory_from_root = found.from_repository_root();
                        pulled.directory = found.path().to_string();
                    }
                    None => report.warning(
                        &pointer(&name_at, "directory"),
                        false,
                        Code::PullStep,
                        format!("`set_working_directory` to `{dir}` is ignored: it is outside the checkout"),
                        Some("runs start in the checkout of the commit; use a relative directory to pick one inside it".into()),
                    ),
                }
            }
            "git_clone" | "git_clone_project" => report.warning(
                &name_at,
                true,
                Code::PullStep,
                format!("`{name}` is ignored: each run uses a checkout of the committed repository"),
                None,
            ),
            "pull_from_s3" | "pull_from_gcs" | "pull_from_azure_blob_storage" => report.warning(
                &name_at,
                true,
                Code::PullStep,
                format!("`{name}` is ignored: the checkout of the commit stands in for the uploaded copy"),
                None,
            ),
            "pip_install_requirements" => {
                let file = args.text_of("requirements_file").unwrap_or_else(|| "requirements.txt".into());
                let directory = match args.text_of("directory") {
                    Some(d) => resolve_dir(view, &pulled.directory, &d).map(|f| f.path().to_string()),
                    None => Some(pulled.directory.clone()),
                };
                let found = directory.and_then(|d| locate::locate(view, &d, &file, Kind::File).ok().map(|f| (d, f)));
                match found {
                    Some((directory, found)) => {
                        if let Found::Neither { tried } = &found {
                            report.error(
                                &name_at,
                                true,
                                Code::PullStep,
                                format!("requirements file `{file}` {}: looked for {}", view.origin().missing(), places(tried)),
                                Some(format!("{} it, or fix `requirements_file` (relative to the step's directory, or to {})", view.origin().remedy(), view.origin().root())),
                            );
                        }
                        note_root(report, &name_at, &found, project_root);
                        pulled.installs_at.get_or_insert_with(|| name_at.clone());
                        pulled.steps.push(PullStep::PipInstall { requirements: found.path().to_string(), directory })
                    }
                    None => report.error(&name_at, true, Code::PullStep, "`pip_install_requirements` names a file outside the checkout", None),
                }
            }
            "run_shell_script" => {
                let Some(script) = args.text_of("script") else {
                    report.error(&name_at, true, Code::PullStep, "`run_shell_script` needs `script`", None);
                    continue;
                };
                let shell = args.get("shell").is_some_and(|s| matches!(&s.value, Value::Bool(b) if b.value));
                if let Some(lines) = script_lines(report, &pointer(&name_at, "script"), &script, shell) {
                    let env = args
                        .get("env")
                        .map(|e| e.entries().iter().filter_map(|e| e.value.scalar_text().map(|v| (e.key.clone(), v))).collect())
                        .unwrap_or_default();
                    let directory = args.text_of("directory")
                        .and_then(|d| resolve_dir(view, &pulled.directory, &d))
                        .map(|found| found.path().to_string())
                        .unwrap_or_else(|| pulled.directory.clone());
                    pulled.steps.push(PullStep::Script { lines, directory, env });
                }
            }
            _ => report.error(
                &name_at,
                true,
                Code::PullStep,
                format!("unknown pull step `{full_name}`"),
                Some("sundial performs set_working_directory, pip_install_requirements and run_shell_script".into()),
            ),
        }
    }
    pulled
}

/// Each line of a `run_shell_script` as argv: split into words as Prefect splits it
/// (POSIX quoting, no shell), or, with `shell: true`, run as `sh -c LINE` as Prefect's
/// `create_subprocess_shell` does.
fn script_lines(
    report: &mut FileReport<'_>,
    at: &str,
    script: &str,
    shell: bool,
) -> Option<Vec<Vec<String>>> {
    let mut lines = Vec::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if shell {
            lines.push(vec!["sh".to_string(), "-c".to_string(), line.to_string()]);
            continue;
        }
        let words = match shell_words::split(line) {
            Ok(words) => words,
            Err(e) => {
                report.error(
                    at,
                    false,
                    Code::PullStep,
                    format!("script line `{line}` cannot be split into words: {e}"),
                    None,
                );
                return None;
            }
        };
        // Quoted operators are arguments (`sh -c "a && b"`); only unquoted words are
        // shell syntax.
        if let Some(op) = unquoted_words(line)
            .into_iter()
            .find(|w| SHELL_OPERATORS.contains(&w.as_str()))
        {
            report.error(
                at,
                false,
                Code::PullStep,
                format!("script line `{line}` uses the shell operator `{op}`, but sundial runs scripts without a shell"),
                Some(format!(
                    "add `shell: true` to the step (as in Prefect 3.7 and later), or write the line as `sh -c '{}'`",
                    line.replace('\'', "'\\''")
                )),
            );
            return None;
        }
        lines.push(words);
    }
    Some(lines)
}

/// The words of `line` that have no quote or backslash in them, as written. The line is
/// known to split (its quotes are closed).
fn unquoted_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    let end = |word: &mut String, quoted: &mut bool, words: &mut Vec<String>| {
        if !word.is_empty() && !*quoted {
            words.push(std::mem::take(word));
        }
        word.clear();
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => end(&mut word, &mut quoted, &mut words),
            '\'' => {
                quoted = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                quoted = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                quoted = true;
                word.extend(chars.next());
            }
            c => word.push(c),
        }
    }
    end(&mut word, &mut quoted, &mut words);
    words
}

/// A step's `directory`, relative to the repository root: found by the rule of
/// `validate::locate` from `current` as written, or from the checkout root when it starts
/// with `{{ step.directory }}` of a clone/pull step (that output is the checkout root).
/// `None` when it leaves the checkout.
fn resolve_dir(view: &dyn View, current: &str, dir: &str) -> Option<Found> {
    let rendered = crate::template::render(dir, &|p| match p {
        crate::template::Placeholder::StepOutput { field, .. } if field == "directory" => {
            Some(String::new())
        }
        _ => None,
    })
    .unwrap_or_else(|_| dir.to_string());
    if rendered == dir {
        locate::locate(view, current, dir, Kind::Dir).ok()
    } else {
        resolve_inside("", rendered.trim_start_matches('/')).map(|path| Found::At {
            path,
            root: locate::Root::Base,
        })
    }
}
