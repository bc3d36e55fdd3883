//! Where a path that a manifest names is: one rule for entrypoints, requirements files and
//! working directories, shared by `validate` (on a work tree or a commit's tree) and the
//! runner (on its checkout).
//!
//! The rule: a relative path is looked for first from its base (the manifest's project
//! root, or the directory a `set_working_directory` step chose), then from the repository
//! root; the first place that has it wins, and [`Root`] says which. Both occur in real
//! repositories because Prefect resolves paths against the directory where `prefect
//! deploy` ran, which may be either. When neither has it, the answer names both places
//! tried; when the view cannot tell, the base's path is kept (today's meaning).
//!
//! Contract:
//! - Pure over a [`View`] ("what is at this path", "read this file"): no file system, git,
//!   clock or environment here, so a work tree, a git tree and a checkout all answer the
//!   same question the same way.
//! - A path never leaves the repository: an absolute path, `~`, or a `..` that climbs out
//!   of it from its base is [`Escapes`]. A `..` that stays inside from the base but not
//!   from the root simply has no second place to look.
//! - [`defines`] answers whether Python source defines a top-level function by reading its
//!   text, never by running it; when the text cannot tell (the name is assigned or
//!   imported, the file is not UTF-8 or is too large) it says so instead of guessing.
//!
//! Non-goals: modules installed outside the repository (a view knows only the repository),
//! and any placeholder rendering (callers render `{{ $NAME }}` first, or get "missing").

use super::paths::resolve_inside;

/// The largest Python file [`defines`] reads; a larger one "cannot tell".
pub const MAX_SCANNED: usize = 1024 * 1024;

/// What a view knows about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    File,
    Dir,
    Missing,
}

/// What is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// A read-only view of one repository (a work tree, a commit's tree, a checkout). Paths
/// are `/`-separated and relative to the repository root ("" is the root).
pub trait View {
    /// What is at `path`; `None` when the view cannot tell (no repository is known).
    fn entry(&self, path: &str) -> Option<Entry>;
    /// The bytes of the file at `path`; `None` when it cannot be read (or is over the
    /// reader's size limit).
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// The same view for another thread, so that a large file's deployments can be checked
    /// on several; `None` (the default) when this view cannot be shared (a git repository
    /// handle is one thread's).
    fn for_another_thread(&self) -> Option<Box<dyn View + Send + '_>> {
        None
    }
    /// Where the files come from, for the wording of what is missing.
    fn origin(&self) -> Origin {
        Origin::Repository
    }
}

/// Where a view's files come from, as a diagnostic names it: a file missing from a
/// repository (a commit, or its work tree) is to be committed; one missing from a folder
/// outside git (`sundial validate` run there) is to be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Repository,
    Folder,
}

impl Origin {
    /// How a missing file is said to be missing.
    pub fn missing(self) -> &'static str {
        match self {
            Origin::Repository => "is not in the repository",
            Origin::Folder => "does not exist",
        }
    }

    /// What to do about it: `commit` or `create`.
    pub fn remedy(self) -> &'static str {
        match self {
            Origin::Repository => "commit",
            Origin::Folder => "create",
        }
    }

    /// The second place paths are looked up from: the root of the repository, or of the
    /// folder (outside git: the current directory, when the manifest is under it).
    pub fn root(self) -> &'static str {
        match self {
            Origin::Repository => "the repository root",
            Origin::Folder => "the current directory",
        }
    }
}

/// A view that knows nothing: every lookup "cannot tell".
pub struct Unknown;

impl View for Unknown {
    fn entry(&self, _: &str) -> Option<Entry> {
        None
    }
    fn read(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn for_another_thread(&self) -> Option<Box<dyn View + Send + '_>> {
        Some(Box::new(Unknown))
    }
}

/// Which root a path was found from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// The base: the manifest's project root (or the directory a pull step chose).
    Base,
    /// The repository root, because the base does not have it.
    Repository,
}

/// The answer of [`locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It is at `path` (relative to the repository root), found from `root`.
    At { path: String, root: Root },
    /// Neither place has it; `tried` lists each path looked at, base first.
    Neither { tried: Vec<String> },
    /// The view cannot tell; `path` is the base's.
    CannotTell { path: String },
}

impl Found {
    /// The path to use: where it was found, else the base's path.
    pub fn path(&self) -> &str {
        match self {
            Found::At { path, .. } | Found::CannotTell { path } => path,
            Found::Neither { tried } => tried.first().map_or("", String::as_str),
        }
    }

    /// Whether it was found from the repository root rather than from its base.
    pub fn from_repository_root(&self) -> bool {
        matches!(
            self,
            Found::At {
                root: Root::Repository,
                ..
            }
        )
    }
}

/// `rel` is absolute or climbs out of the repository from its base.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{rel}` leaves the repository (from `{}`)", if base.is_empty() { "the repository root" } else { base.as_str() })]
pub struct Escapes {
    pub base: String,
    pub rel: String,
}

/// The places `rel` may be, in the order the rule tries them: from `base`, then from the
/// repository root (when that is another place).
pub fn candidates(base: &str, rel: &str) -> Result<Vec<String>, Escapes> {
    let first = resolve_inside(base, rel).ok_or_else(|| Escapes {
        base: base.to_string(),
        rel: rel.to_string(),
    })?;
    let mut out = vec![first];
    if let Some(second) = resolve_inside("", rel) {
        if !out.contains(&second) {
            out.push(second);
        }
    }
    Ok(out)
}

/// Finds the `kind` of thing `rel` names, by the rule in the module docs.
pub fn locate(view: &dyn View, base: &str, rel: &str, kind: Kind) -> Result<Found, Escapes> {
    let wanted = match kind {
        Kind::File => Entry::File,
        Kind::Dir => Entry::Dir,
    };
    let tried = candidates(base, rel)?;
    Ok(first_found(view, tried, wanted, 1))
}

/// The first of `tried` that `view` has as `wanted`; the first `per_root` paths belong to
/// the base, the rest to the repository root.
fn first_found(view: &dyn View, tried: Vec<String>, wanted: Entry, per_root: usize) -> Found {
    for (i, candidate) in tried.iter().enumerate() {
        match view.entry(candidate) {
            Some(entry) if entry == wanted => {
                let root = if i < per_root {
                    Root::Base
                } else {
                    Root::Repository
                };
                return Found::At {
                    path: candidate.clone(),
                    root,
                };
            }
            Some(_) => {}
            None => {
                return Found::CannotTell {
                    path: tried[0].clone(),
                }
            }
        }
    }
    Found::Neither { tried }
}

/// Finds the source of Python module `module` (`pkg.mod`): `pkg/mod.py` or
/// `pkg/mod/__init__.py`, from `base`, then from the repository root.
pub fn locate_module(view: &dyn View, base: &str, module: &str) -> Result<Found, Escapes> {
    let rel = module.replace('.', "/");
    let mut tried = Vec::new();
    for dir in candidates(base, &rel)? {
        tried.push(format!("{dir}.py"));
        tried.push(format!("{dir}/__init__.py"));
    }
    // Two paths per root: a hit in the first pair is the base's.
    Ok(first_found(view, tried, Entry::File, 2))
}

/// Whether Python source defines a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defines {
    /// A top-level `def NAME(` or `async def NAME(` (decorated or not).
    Yes,
    /// The name appears nowhere in the file.
    No,
    /// The text cannot say; the reason, for people.
    CannotTell(String),
}

/// Whether `source` defines the top-level function `name`, by reading the text: a line
/// starting (column 0) with `def name(` or `async def name(` is a definition; otherwise
/// the name anywhere else (an assignment, an import, an indented `def` under `if`) means
/// "cannot tell", and no mention at all means "no".
pub fn defines(source: &[u8], name: &str) -> Defines {
    if source.len() > MAX_SCANNED {
        return Defines::CannotTell(format!(
            "the file is over {} KiB, too large to read",
            MAX_SCANNED / 1024
        ));
    }
    let Ok(text) = std::str::from_utf8(source) else {
        return Defines::CannotTell("the file is not UTF-8".to_string());
    };
    let mut mentioned = false;
    for line in text.lines() {
        let def = line
            .strip_prefix("async")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map(str::trim_start)
            .unwrap_or(line);
        let defined = def
            .strip_prefix("def")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.trim_start().starts_with('('));
        if defined {
            return Defines::Yes;
        }
        mentioned = mentioned || has_word(line, name);
    }
    if mentioned {
        Defines::CannotTell(format!(
            "`{name}` is not a top-level `def`, but the file names it (assigned, imported or defined inside a block?)"
        ))
    } else {
        Defines::No
    }
}

/// Whether `word` occurs in `line` as a whole identifier.
fn has_word(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c == '_' || c.is_alphanumeric();
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// A view over a fixed set of files (their directories exist too), for tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;

    use super::{Entry, View};

    pub(crate) struct Files(HashMap<String, String>);

    pub(crate) fn files(list: &[(&str, &str)]) -> Files {
        Files(
            list.iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        )
    }

    impl View for Files {
        fn entry(&self, path: &str) -> Option<Entry> {
            if self.0.contains_key(path) {
                return Some(Entry::File);
            }
            let dir = format!("{path}/");
            let is_dir = path.is_empty() || self.0.keys().any(|p| p.starts_with(&dir));
            Some(if is_dir { Entry::Dir } else { Entry::Missing })
        }
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.0.get(path).map(|t| t.as_bytes().to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::files;
    use super::*;

    fn at(path: &str, root: Root) -> Found {
        Found::At {
            path: path.to_string(),
            root,
        }
    }

    #[test]
    fn the_manifest_folder_wins_when_it_has_the_file() {
        let view = files(&[("flows/x.py", ""), ("x.py", "")]);
        assert_eq!(
            locate(&view, "flows", "x.py", Kind::File),
            Ok(at("flows/x.py", Root::Base))
        );
    }

    #[test]
    fn the_repository_root_is_tried_second_and_named() {
        let view = files(&[("flows/x.py", "")]);
        let found = locate(&view, "flows", "flows/x.py", Kind::File).unwrap();
        assert_eq!(found, at("flows/x.py", Root::Repository));
        assert!(found.from_repository_root());
        assert_eq!(
            locate(&view, "flows", "flows", Kind::Dir),
            Ok(at("flows", Root::Repository))
        );
    }

    #[test]
    fn neither_place_lists_both_paths_tried() {
        let view = files(&[("other.py", "")]);
        let found = locate(&view, "flows", "flows/x.py", Kind::File).unwrap();
        assert_eq!(
            found,
            Found::Neither {
                tried: vec!["flows/flows/x.py".into(), "flows/x.py".into()]
            }
        );
        assert_eq!(found.path(), "flows/flows/x.py");
        // At the repository root there is only one place.
        assert_eq!(
            locate(&view, "", "x.py", Kind::File),
            Ok(Found::Neither {
                tried: vec!["x.py".into()]
            })
        );
    }

    #[test]
    fn a_directory_is_not_a_file_nor_a_file_a_directory() {
        let view = files(&[("flows/x.py", "")]);
        assert!(matches!(
            locate(&view, "", "flows", Kind::File),
            Ok(Found::Neither { .. })
        ));
        assert!(matches!(
            locate(&view, "", "flows/x.py", Kind::Dir),
            Ok(Found::Neither { .. })
        ));
    }

    #[test]
    fn climbing_out_is_an_error_and_climbing_within_has_one_place() {
        let view = files(&[("lib/x.py", "")]);
        assert_eq!(
            locate(&view, "flows", "../../x.py", Kind::File),
            Err(Escapes {
                base: "flows".into(),
                rel: "../../x.py".into()
            })
        );
        assert!(locate(&view, "", "/etc/passwd", Kind::File).is_err());
        assert_eq!(
            locate(&view, "flows", "../lib/x.py", Kind::File),
            Ok(at("lib/x.py", Root::Base))
        );
        assert_eq!(
            candidates("flows", "../lib/x.py").unwrap(),
            ["lib/x.py".to_string()]
        );
    }

    #[test]
    fn a_view_that_cannot_tell_keeps_the_base_path() {
        assert_eq!(
            locate(&Unknown, "flows", "flows/x.py", Kind::File),
            Ok(Found::CannotTell {
                path: "flows/flows/x.py".into()
            })
        );
    }

    #[test]
    fn modules_are_files_or_packages_from_either_root() {
        let view = files(&[("etl/jobs.py", ""), ("svc/pkg/__init__.py", "")]);
        assert_eq!(
            locate_module(&view, "svc", "etl.jobs"),
            Ok(at("etl/jobs.py", Root::Repository))
        );
        assert_eq!(
            locate_module(&view, "svc", "pkg"),
            Ok(at("svc/pkg/__init__.py", Root::Base))
        );
        assert!(matches!(
            locate_module(&view, "svc", "missing.mod"),
            Ok(Found::Neither { tried }) if tried.len() == 4
        ));
    }

    #[test]
    fn a_top_level_def_or_async_def_is_found_even_decorated() {
        let source = "import os\n\n@flow(log_prints=True)\ndef daily(x: int = 1):\n    pass\n";
        assert_eq!(defines(source.as_bytes(), "daily"), Defines::Yes);
        let source = "@flow\nasync  def  nightly (\n    x,\n):\n    pass\n";
        assert_eq!(defines(source.as_bytes(), "nightly"), Defines::Yes);
        // A longer name is another function.
        assert_eq!(
            defines(b"def daily_job():\n    pass\n", "daily"),
            Defines::No
        );
    }

    #[test]
    fn a_missing_function_is_no() {
        assert_eq!(
            defines(b"def other():\n    return 1\n", "daily"),
            Defines::No
        );
        assert_eq!(defines(b"", "daily"), Defines::No);
    }

    #[test]
    fn assigned_imported_nested_or_unreadable_cannot_tell() {
        for source in [
            "from etl.jobs import daily\n",
            "daily = flow(run)\n",
            "class Jobs:\n    def daily(self):\n        pass\n",
            "if True:\n    def daily():\n        pass\n",
        ] {
            assert!(
                matches!(defines(source.as_bytes(), "daily"), Defines::CannotTell(_)),
                "{source}"
            );
        }
        assert_eq!(
            defines(b"\xff\xfe def daily():", "daily"),
            Defines::CannotTell("the file is not UTF-8".into())
        );
        let big = vec![b'#'; MAX_SCANNED + 1];
        assert!(matches!(defines(&big, "daily"), Defines::CannotTell(_)));
    }
}
