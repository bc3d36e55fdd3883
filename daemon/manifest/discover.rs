//! Which files are manifests (DESIGN.md "Discovery"): by default every `prefect.yaml` or
//! `prefect.yml` anywhere and every `*.yaml|*.yml` under a `deployments/` directory. Pure
//! functions of a repository-relative path, so the working-tree walk of `sundial validate`
//! and the commit-tree walk of the daemon agree.

/// Which files are manifests: the default rules, or the `--manifests` globs that replace
/// them (matched against the repository-relative path; `*` stays within a directory,
/// `**` crosses them).
#[derive(Debug, Clone, Default)]
pub enum Discovery {
    #[default]
    Default,
    Globs(globset::GlobSet),
}

impl Discovery {
    /// The default rules when `globs` is empty, else exactly the globs.
    pub fn new(globs: &[String]) -> Result<Discovery, globset::Error> {
        if globs.is_empty() {
            return Ok(Discovery::Default);
        }
        let mut set = globset::GlobSetBuilder::new();
        for glob in globs {
            let glob = glob.trim_start_matches("./");
            set.add(
                globset::GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()?,
            );
        }
        Ok(Discovery::Globs(set.build()?))
    }

    pub fn is_manifest(&self, repo_path: &str) -> bool {
        match self {
            Discovery::Default => is_default_manifest(repo_path),
            Discovery::Globs(set) => set.is_match(repo_path),
        }
    }
}

/// Whether `repo_path` (`/`-separated, relative) is a manifest under the default rules.
pub fn is_default_manifest(repo_path: &str) -> bool {
    let mut parts: Vec<&str> = repo_path.split('/').collect();
    let Some(file) = parts.pop() else {
        return false;
    };
    if parts.iter().any(|p| p.starts_with('.')) {
        return false;
    }
    matches!(file, "prefect.yaml" | "prefect.yml")
        || (parts.contains(&"deployments") && is_yaml(file))
}

/// Whether a file name ends in `.yaml` or `.yml`.
pub fn is_yaml(file: &str) -> bool {
    file.ends_with(".yaml") || file.ends_with(".yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules() {
        assert!(is_default_manifest("prefect.yaml"));
        assert!(is_default_manifest("svc/a/prefect.yml"));
        assert!(is_default_manifest("deployments/etl.yaml"));
        assert!(is_default_manifest("deployments/team/etl.yml"));
        assert!(!is_default_manifest("etl.yaml"));
        assert!(!is_default_manifest(".github/deployments/x.yaml"));
        assert!(!is_default_manifest("deployments/readme.md"));
    }

    #[test]
    fn globs_replace_the_default() {
        let globs = Discovery::new(&["ops/*.yaml".into(), "teams/**/flows.yml".into()]).unwrap();
        assert!(globs.is_manifest("ops/etl.yaml"));
        assert!(!globs.is_manifest("ops/sub/etl.yaml"));
        assert!(globs.is_manifest("teams/a/b/flows.yml"));
        assert!(!globs.is_manifest("prefect.yaml"));
        assert!(Discovery::new(&[]).unwrap().is_manifest("prefect.yaml"));
        assert!(Discovery::new(&["[".into()]).is_err());
    }
}
