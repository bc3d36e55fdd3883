//! What to execute for a deployment: an argv and a directory, never a shell line.
//!
//! A `command` is already split into words by `validate` and runs as is. An `entrypoint`
//! is resolved as Prefect resolves it, relative to the deployment's project root inside
//! the checkout (`<state>/checkouts/<sha>`):
//!
//! | entrypoint | argv |
//! | --- | --- |
//! | `path/file.py:func` | `python -c BOOTSTRAP file <checkout>/<root>/path/file.py func` |
//! | `package.module:func` | `python -c BOOTSTRAP module package.module func` |
//! | `bin/job` (a file in the checkout) | `<checkout>/<root>/bin/job` |
//! | `package.module.func` (no such file) | `python -c BOOTSTRAP module package.module func` |
//!
//! `python` is `job_variables.python`, else `python3`. [`BOOTSTRAP`] reads
//! `SUNDIAL_PARAMETERS` and calls `func(**parameters)`; see `bootstrap.py`.
//!
//! A path is found by the one rule `validate` uses too (`validate::locate`): from the
//! project root first, then from the repository root, looking in the checkout ([`OnDisk`]).
//! A file found only from the repository root runs from there (what [`Plan::notes`] says in
//! the run's log); a module found only there gets the checkout root on `PYTHONPATH`.
//!
//! Reads only the checkout (what is there). Nothing here reaches outside the checkout: a
//! path that climbs out of it is a [`LaunchError`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::validate::desired::{Deployment, Launch};
use crate::validate::locate::{self, Entry, Found, Kind, Origin, View};

/// The largest the parameters may be, as compact JSON (what the run receives): they reach
/// the run in the `SUNDIAL_PARAMETERS` environment variable, and Linux refuses to start a
/// program with one environment string over 128 KiB (`MAX_ARG_STRLEN`, which counts
/// `NAME=` and the final NUL).
pub const MAX_PARAMETERS_BYTES: usize = 128 * 1024 - "SUNDIAL_PARAMETERS=".len() - 1;

/// The Python bootstrap, passed to `python -c`.
pub const BOOTSTRAP: &str = include_str!("bootstrap.py");

/// Set to `stdin` for a pre-started run: the bootstrap imports the entrypoint, then waits
/// for one byte on its standard input before calling the function (end of input: it
/// exits without calling).
pub const RELEASE_VAR: &str = "SUNDIAL_RELEASE";

/// The interpreter when `job_variables.python` is not set.
pub const DEFAULT_PYTHON: &str = "python3";

const FORMS: &str = "accepted forms: `path/to/file.py:function`, `package.module:function`, \
                     an executable path in the repository, or `module.function`";

/// Why a deployment's entrypoint gives nothing to run. Each message names the entrypoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("entrypoint `{entrypoint}` is not a file in the checkout and not a dotted `module.function`; {FORMS}")]
    Unrecognised { entrypoint: String },
    #[error("entrypoint `{entrypoint}` points outside the checkout; paths are relative to the project root `{project_root}`")]
    OutsideCheckout {
        entrypoint: String,
        project_root: String,
    },
    #[error("entrypoint `{entrypoint}` resolves to {}, which is not valid UTF-8", path.display())]
    NotUtf8 { entrypoint: String, path: PathBuf },
}

/// What to run for a deployment, and what the run's log should say about where it was
/// found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub argv: Vec<String>,
    /// One sentence per path found from the repository root rather than from the
    /// manifest's folder (the entrypoint, the working directory).
    pub notes: Vec<String>,
    /// A directory to put first on `PYTHONPATH`: the checkout root, for a module found
    /// only from there.
    pub python_path: Option<PathBuf>,
}

/// The program to run for a deployment in a checkout; see [`plan`].
pub fn argv(deployment: &Deployment, checkout: &Path) -> Result<Vec<String>, LaunchError> {
    plan(deployment, checkout).map(|p| p.argv)
}

/// The program to run for a deployment in a checkout. `checkout` is `<state>/checkouts/<sha>`;
/// `deployment.project_root` and `deployment.working_dir` are `/`-separated paths relative
/// to the checkout root.
///
/// Errors when an entrypoint matches none of the accepted forms or leaves the checkout.
pub fn plan(deployment: &Deployment, checkout: &Path) -> Result<Plan, LaunchError> {
    let mut notes = Vec::new();
    if deployment.working_dir_from_root {
        notes.push(format!(
            "working directory `{}` was found from the repository root, not from the manifest's folder `{}`",
            deployment.working_dir, deployment.project_root
        ));
    }
    let view = OnDisk::repository(checkout);
    let entry = match &deployment.launch {
        Launch::Command(argv) => {
            return Ok(Plan {
                argv: argv.clone(),
                notes,
                python_path: None,
            })
        }
        Launch::Entrypoint(entry) => entry.trim(),
    };
    let mut python_path = None;
    let mut note = |found: &Found, what: &str| {
        if found.from_repository_root() {
            notes.push(format!(
                "entrypoint {what} `{}` was found from the repository root, not from the manifest's folder `{}`",
                found.path(),
                deployment.project_root
            ));
        }
    };
    let python = || {
        deployment
            .python
            .clone()
            .unwrap_or_else(|| DEFAULT_PYTHON.to_string())
    };
    let bootstrap = |kind: &str, target: String, func: &str| {
        vec![
            python(),
            "-c".to_string(),
            BOOTSTRAP.to_string(),
            kind.to_string(),
            target,
            func.to_string(),
        ]
    };
    let unrecognised = || LaunchError::Unrecognised {
        entrypoint: entry.to_string(),
    };
    let outside = || LaunchError::OutsideCheckout {
        entrypoint: entry.to_string(),
        project_root: deployment.project_root.clone(),
    };

    if let Some((path, func)) = entry.rsplit_once(':') {
        if path.is_empty() || !is_identifier(func) {
            return Err(unrecognised());
        }
        if path.contains('/') || path.ends_with(".py") {
            let found = locate::locate(&view, &deployment.project_root, path, Kind::File)
                .map_err(|_| outside())?;
            if found.path().is_empty() {
                return Err(outside());
            }
            note(&found, "file");
            let file = utf8(entry, checkout.join(found.path()))?;
            let argv = bootstrap("file", file, func);
            return Ok(Plan {
                argv,
                notes,
                python_path,
            });
        }
        if !is_dotted_name(path) {
            return Err(unrecognised());
        }
        python_path = module_root(&view, deployment, path, checkout, &mut note);
        let argv = bootstrap("module", path.to_string(), func);
        return Ok(Plan {
            argv,
            notes,
            python_path,
        });
    }

    // No colon: an executable when the file is in the commit, else `module.function`.
    if let Ok(found @ Found::At { .. }) =
        locate::locate(&view, &deployment.project_root, entry, Kind::File)
    {
        note(&found, "executable");
        let argv = vec![utf8(entry, checkout.join(found.path()))?];
        return Ok(Plan {
            argv,
            notes,
            python_path,
        });
    }
    match entry.rsplit_once('.') {
        Some((module, func)) if is_dotted_name(module) && is_identifier(func) => {
            python_path = module_root(&view, deployment, module, checkout, &mut note);
            let argv = bootstrap("module", module.to_string(), func);
            Ok(Plan {
                argv,
                notes,
                python_path,
            })
        }
        _ if entry.starts_with('/') || entry.split('/').any(|p| p == "..") => {
            Err(LaunchError::OutsideCheckout {
                entrypoint: entry.to_string(),
                project_root: deployment.project_root.clone(),
            })
        }
        _ => Err(unrecognised()),
    }
}

/// The directory the process starts in: `working_dir` (already resolved against the
/// project root and any `set_working_directory` step by `validate`) inside the checkout.
pub fn working_dir(deployment: &Deployment, checkout: &Path) -> PathBuf {
    deployment
        .working_dir
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .fold(checkout.to_path_buf(), |dir, part| dir.join(part))
}

/// The checkout root when `module` is found only from the repository root (the bootstrap
/// puts the working directory on `sys.path`, which would miss it); `None` otherwise.
fn module_root(
    view: &OnDisk<'_>,
    deployment: &Deployment,
    module: &str,
    checkout: &Path,
    note: &mut impl FnMut(&Found, &str),
) -> Option<PathBuf> {
    let found = locate::locate_module(view, &deployment.working_dir, module).ok()?;
    note(&found, "module");
    found.from_repository_root().then(|| checkout.to_path_buf())
}

/// A directory on disk (a checkout, or a work tree for `sundial validate`) as a
/// [`View`]: paths are joined under it; a read takes at most [`locate::MAX_SCANNED`] + 1
/// bytes, so a larger file is "too large" to the function check.
pub struct OnDisk<'a> {
    root: &'a Path,
    origin: Origin,
}

impl<'a> OnDisk<'a> {
    /// A checkout, or a git repository's work tree.
    pub fn repository(root: &'a Path) -> OnDisk<'a> {
        OnDisk {
            root,
            origin: Origin::Repository,
        }
    }

    /// A folder outside git: what is missing there is to be created, not committed.
    pub fn folder(root: &'a Path) -> OnDisk<'a> {
        OnDisk {
            root,
            origin: Origin::Folder,
        }
    }
}

impl View for OnDisk<'_> {
    fn entry(&self, path: &str) -> Option<Entry> {
        match std::fs::metadata(self.root.join(path)) {
            Ok(meta) if meta.is_file() => Some(Entry::File),
            Ok(meta) if meta.is_dir() => Some(Entry::Dir),
            Ok(_) => Some(Entry::Missing),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Some(Entry::Missing)
            }
            Err(_) => None,
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let file = std::fs::File::open(self.root.join(path)).ok()?;
        let mut bytes = Vec::new();
        file.take(locate::MAX_SCANNED as u64 + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes)
    }

    fn for_another_thread(&self) -> Option<Box<dyn View + Send + '_>> {
        Some(Box::new(OnDisk {
            root: self.root,
            origin: self.origin,
        }))
    }

    fn origin(&self) -> Origin {
        self.origin
    }
}

fn utf8(entry: &str, path: PathBuf) -> Result<String, LaunchError> {
    match path.to_str() {
        Some(text) => Ok(text.to_string()),
        None => Err(LaunchError::NotUtf8 {
            entrypoint: entry.to_string(),
            path,
        }),
    }
}

/// A Python identifier (letters, digits, `_`; not starting with a digit). Non-ASCII
/// letters are allowed, as Python allows them.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_dotted_name(s: &str) -> bool {
    s.split('.').all(is_identifier)
}

/// A minimal valid [`Deployment`] for tests: project root and working dir at the
/// repository root, no schedules, no pull steps.
#[cfg(test)]
pub(crate) fn test_deployment(launch: Launch) -> Deployment {
    use std::time::Duration;
    Deployment {
        name: "test".to_string(),
        file: "prefect.yaml".to_string(),
        project_root: String::new(),
        description: None,
        tags: Vec::new(),
        version: None,
        launch,
        parameters: Default::default(),
        parameter_schema: None,
        pull: Vec::new(),
        working_dir: String::new(),
        working_dir_from_root: false,
        env: Vec::new(),
        stream_output: false,
        python: None,
        prestart: None,
        node_labels: Vec::new(),
        schedules: Vec::new(),
        paused: false,
        concurrency: None,
        timeout: None,
        retries: 0,
        retry_delays: vec![Duration::ZERO],
        catchup: Default::default(),
        notifications: Vec::new(),
        notifications_unset: true,
        pause_after_failures: None,
        slas: Vec::new(),
        late_grace: Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(e: &str) -> Deployment {
        test_deployment(Launch::Entrypoint(e.to_string()))
    }

    fn tail(argv: &[String]) -> Vec<&str> {
        assert_eq!(argv[0], "python3");
        assert_eq!(argv[1], "-c");
        assert_eq!(argv[2], BOOTSTRAP);
        argv[3..].iter().map(String::as_str).collect()
    }

    #[test]
    fn command_runs_as_given() {
        let d = test_deployment(Launch::Command(vec![
            "python".into(),
            "-m".into(),
            "etl.main".into(),
        ]));
        assert_eq!(
            argv(&d, Path::new("/co")).unwrap(),
            ["python", "-m", "etl.main"]
        );
    }

    #[test]
    fn file_form_is_an_absolute_path_under_the_project_root() {
        let mut d = entry("flows/etl.py:daily_job");
        d.project_root = "analytics".into();
        let argv = argv(&d, Path::new("/state/checkouts/abc")).unwrap();
        assert_eq!(
            tail(&argv),
            [
                "file",
                "/state/checkouts/abc/analytics/flows/etl.py",
                "daily_job"
            ]
        );
        // A bare `file.py:func` is the file form too.
        let argv = super::argv(&entry("etl.py:run"), Path::new("/co")).unwrap();
        assert_eq!(tail(&argv), ["file", "/co/etl.py", "run"]);
    }

    #[test]
    fn module_form_keeps_the_dotted_name() {
        let argv = argv(&entry("etl.jobs:run"), Path::new("/co")).unwrap();
        assert_eq!(tail(&argv), ["module", "etl.jobs", "run"]);
    }

    #[test]
    fn python_comes_from_job_variables() {
        let mut d = entry("etl:run");
        d.python = Some("/opt/venv/bin/python".into());
        assert_eq!(
            argv(&d, Path::new("/co")).unwrap()[0],
            "/opt/venv/bin/python"
        );
    }

    #[test]
    fn an_existing_file_without_colon_is_an_executable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("svc/bin")).unwrap();
        std::fs::write(dir.path().join("svc/bin/job.sh"), "#!/bin/sh\n").unwrap();
        let mut d = entry("bin/job.sh");
        d.project_root = "svc".into();
        let expected = dir.path().join("svc/bin/job.sh");
        assert_eq!(argv(&d, dir.path()).unwrap(), [expected.to_str().unwrap()]);
    }

    #[test]
    fn a_missing_dotted_path_is_module_and_function() {
        let dir = tempfile::tempdir().unwrap();
        let argv = argv(&entry("etl.main.run"), dir.path()).unwrap();
        assert_eq!(tail(&argv), ["module", "etl.main", "run"]);
    }

    #[test]
    fn unknown_forms_say_what_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["bin/missing", "job", "my-pkg.mod:run", "flows/etl.py:"] {
            let err = argv(&entry(bad), dir.path()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("entrypoint `{bad}` is not a file in the checkout and not a dotted `module.function`; {FORMS}")
            );
        }
    }

    #[test]
    fn paths_never_leave_the_checkout() {
        for bad in ["../other/etl.py:run", "/etc/etl.py:run", "../../bin/job"] {
            let err = argv(&entry(bad), Path::new("/co")).unwrap_err();
            assert!(
                matches!(err, LaunchError::OutsideCheckout { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn working_dir_joins_inside_the_checkout() {
        let mut d = entry("etl:run");
        assert_eq!(working_dir(&d, Path::new("/co")), Path::new("/co"));
        d.working_dir = "analytics/flows".into();
        assert_eq!(
            working_dir(&d, Path::new("/co")),
            Path::new("/co/analytics/flows")
        );
    }
}
