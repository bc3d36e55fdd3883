//! Paths inside a checkout, as `/`-separated strings relative to the repository root.
//! Pure string work: a manifest never reaches outside the commit that holds it.

/// The project root of a manifest: the directory holding a `prefect.yaml` (where
/// `prefect deploy` would run), or the repository root for files under `deployments/`.
pub fn project_root(repo_path: &str) -> String {
    let parts: Vec<&str> = repo_path.split('/').collect();
    let file = parts.last().copied().unwrap_or_default();
    let dirs = &parts[..parts.len().saturating_sub(1)];
    if matches!(file, "prefect.yaml" | "prefect.yml") {
        return dirs.join("/");
    }
    match dirs.iter().position(|d| *d == "deployments") {
        Some(i) => dirs[..i].join("/"),
        None => dirs.join("/"),
    }
}

/// `rel` resolved against `base`, both relative to the repository root; `None` when it is
/// absolute or climbs out of the repository.
pub fn resolve_inside(base: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') || rel.starts_with('~') {
        return None;
    }
    let mut stack: Vec<&str> = base
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            other => stack.push(other),
        }
    }
    Some(stack.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_roots() {
        assert_eq!(project_root("prefect.yaml"), "");
        assert_eq!(project_root("analytics/prefect.yml"), "analytics");
        assert_eq!(project_root("deployments/etl.yaml"), "");
        assert_eq!(project_root("deployments/team/etl.yaml"), "");
        assert_eq!(project_root("svc/deployments/etl.yaml"), "svc");
    }

    #[test]
    fn resolution_stays_inside() {
        assert_eq!(resolve_inside("a", "b/../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_inside("a", "..").as_deref(), Some(""));
        assert_eq!(resolve_inside("a", "../.."), None);
        assert_eq!(resolve_inside("", "/opt/app"), None);
        assert_eq!(resolve_inside("", "."), Some(String::new()));
    }
}
