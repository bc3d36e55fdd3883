//! `sundial validate [PATH]...`: checks manifests the way the daemon will, for people
//! (human), programs (json) and pull requests (github). Exit 0 valid (warnings allowed),
//! 1 invalid, 2 when the files cannot be found or read. A file over `--max-file-size` is
//! invalid (exit 1, an error on that file) and is never read into memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::manifest::discover;
use crate::runner::launch::OnDisk;
use crate::validate::{self, render, Contents, SourceFile};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Files or directories to check (directories are searched for *.yaml and *.yml,
    /// skipping hidden ones). Default: `prefect.yaml` files and `deployments/**` under `.`.
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub manifests: super::ManifestGlobs,
    #[command(flatten)]
    pub max_file_size: super::MaxFileSize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let discovery = args.manifests.discovery()?;
    let paths = if args.paths.is_empty() {
        let found = walk(Path::new("."), &|rel| discovery.is_manifest(rel))?;
        if found.is_empty() {
            match discovery {
                discover::Discovery::Default => bail!("no manifests found under `.` (looked for prefect.yaml and deployments/**/*.yaml); pass the files to check"),
                discover::Discovery::Globs(_) => bail!("--manifests: no file under `.` matches {}", args.manifests.globs.join(", ")),
            }
        }
        found
    } else {
        let mut found = Vec::new();
        for path in &args.paths {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            if meta.is_dir() {
                found.extend(walk(path, &|rel| discover::is_yaml(rel))?);
            } else {
                found.push(path.clone());
            }
        }
        found
    };
    let mut files = Vec::new();
    for path in paths {
        let bytes = read_within(&path, args.max_file_size.bytes)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        files.push(SourceFile {
            display: display(&path),
            repo_path: repo_path(&path),
            bytes,
        });
    }
    // Files the manifests name (entrypoints, requirements files, directories) are found in
    // the work tree of the repository that holds them, by the rule the daemon uses on a
    // commit (outside git: in the folder `repo_path` chose, and what is missing is to be
    // created rather than committed); with files of several roots, nothing is looked up.
    let roots: std::collections::BTreeSet<PathBuf> = paths_roots(&files);
    let root = (roots.len() == 1)
        .then(|| roots.into_iter().next())
        .flatten();
    let validation = match &root {
        Some(root) if root.join(".git").exists() => {
            validate::validate_in(&files, &OnDisk::repository(root))
        }
        Some(root) => validate::validate_in(&files, &OnDisk::folder(root)),
        None => validate::validate(&files),
    };
    let text = match args.format {
        Format::Human => {
            let sources: HashMap<String, Cow<'_, str>> = files
                .iter()
                .map(|f| {
                    (
                        f.display.clone(),
                        String::from_utf8_lossy(f.bytes.as_bytes()),
                    )
                })
                .collect();
            render::human(&validation, &sources)
        }
        Format::Json => render::json(&validation),
        Format::Github => render::github(&validation),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    let code = if validation.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    // The process ends now: freeing every deployment one by one would only delay it.
    std::mem::forget(validation);
    Ok(code)
}

/// A file's bytes, or only its size when that is over `limit`; never reads more than
/// `limit` bytes, even from a file that grows while it is read.
fn read_within(path: &Path, limit: u64) -> std::io::Result<Contents> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let contents = Contents::read_within(size, limit, || {
        // Sized by the file (at most `limit`, checked above): read without regrowing.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).saturating_add(1));
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        Ok::<_, std::io::Error>(bytes)
    })?;
    Ok(match contents {
        Contents::Bytes(bytes) if bytes.len() as u64 > limit => Contents::TooLarge {
            size: bytes.len() as u64,
            limit,
        },
        other => other,
    })
}

/// Files under `root` whose root-relative path passes `keep`, sorted so output and
/// duplicate-name errors are deterministic. Skipped, as ripgrep skips them: hidden entries,
/// what `.gitignore` (and `.git/info/exclude`, `.ignore`) ignores, and Python virtual
/// environments (a directory with a `pyvenv.cfg`), whose packages ship YAML of their own.
fn walk(root: &Path, keep: &dyn Fn(&str) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .filter_entry(|entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            let name = entry.file_name().to_string_lossy();
            !(is_dir
                && (name == "target"
                    || name == "node_modules"
                    || entry.path().join("pyvenv.cfg").is_file()))
        })
        .build();
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot list `{}`", root.display()))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.into_path();
        let rel = slashed(path.strip_prefix(root).unwrap_or(&path));
        if keep(&rel) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn display(path: &Path) -> String {
    let text = slashed(path);
    text.strip_prefix("./").map(str::to_string).unwrap_or(text)
}

/// The path with `/` between its parts, as manifests and messages write paths.
fn slashed(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The repository roots the files belong to (their `repo_path` is relative to these).
fn paths_roots(files: &[SourceFile]) -> std::collections::BTreeSet<PathBuf> {
    files
        .iter()
        .map(|f| {
            let absolute =
                std::fs::canonicalize(&f.display).unwrap_or_else(|_| PathBuf::from(&f.display));
            let mut root = absolute.clone();
            for _ in f.repo_path.split('/') {
                root.pop();
            }
            root
        })
        .collect()
}

/// The path relative to the enclosing git repository (the nearest parent with `.git`).
/// Outside one: relative to the current directory when the file is under it, else its
/// name alone, so that its own folder is the project's root (`../app/prefect.yaml` finds
/// `../app/flows/etl.py`, as `prefect deploy` run in `../app` would).
fn repo_path(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut dir = absolute.parent();
    while let Some(d) = dir {
        if d.join(".git").exists() {
            if let Ok(rel) = absolute.strip_prefix(d) {
                return slashed(rel);
            }
        }
        dir = d.parent();
    }
    let cwd = std::env::current_dir().and_then(std::fs::canonicalize);
    if let Some(rel) = cwd
        .ok()
        .and_then(|cwd| absolute.strip_prefix(cwd).ok().map(Path::to_path_buf))
    {
        return slashed(&rel);
    }
    match absolute.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => display(path),
    }
}
