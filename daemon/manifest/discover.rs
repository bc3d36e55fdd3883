//! Which files are manifests (DESIGN.md "Discovery"): by default every `prefect.yaml` or
//! `prefect.yml` anywhere and every `*.yaml|*.yml` under a `deployments/` directory. Pure
//! functions of a repository-relative path, so the working-tree walk of `sundial validate`
//! and the commit-tree walk of the daemon agree.

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
}
