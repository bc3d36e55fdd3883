//! Node labels: which nodes of a cluster may run a deployment's runs.
//!
//! Contract (pure, no store):
//! - A node carries labels `KEY=VALUE` (`--label`, repeatable, or `$SUNDIAL_LABELS`
//!   separated by commas); a deployment asks for some with the job variable
//!   `node_labels` (a mapping, as a Kubernetes `nodeSelector`). A node claims a run only
//!   when it carries every label its deployment asks for, with the same value; a
//!   deployment that asks for none runs on any node.
//! - A key is 1 to 63 letters, digits, `.`, `_`, `-` or `/`, starting with a letter or
//!   digit; a value is 0 to 63 letters, digits, `.`, `_` or `-`. A value written in YAML
//!   as a number or a boolean is its text (`gpu: true` asks for `gpu=true`).
//! - With SQLite (one daemon) there is nothing to choose from: labels are not asked for.

use std::collections::BTreeMap;

/// Labels, by key (sorted: shown and stored in one order).
pub type Labels = BTreeMap<String, String>;

/// Checks a label's key; the message says what a key may be.
pub fn check_key(key: &str) -> Result<(), String> {
    let fits = (1..=63).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if fits {
        Ok(())
    } else {
        Err(format!("{key:?} is not a label key: give 1 to 63 letters, digits, `.`, `_`, `-` or `/`, starting with a letter or digit"))
    }
}

/// Checks a label's value; the message says what a value may be.
pub fn check_value(value: &str) -> Result<(), String> {
    let fits = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a label value: give at most 63 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// Parses `--label` values (`KEY=VALUE` each; a value of `$SUNDIAL_LABELS` may hold
/// several separated by commas). The error names the flag and says what to write.
pub fn parse_flags(values: &[String]) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "--label: {item:?} is not KEY=VALUE (e.g. --label gpu=true)"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        check_key(key).map_err(|e| format!("--label: {e}"))?;
        check_value(value).map_err(|e| format!("--label: {e}"))?;
        if let Some(before) = labels.insert(key.to_string(), value.to_string()) {
            if before != value {
                return Err(format!(
                    "--label: {key} is given twice ({key}={before} and {key}={value}); give each key once"
                ));
            }
        }
    }
    Ok(labels)
}

/// Whether a node carrying `have` may run a deployment asking for `wanted`.
pub fn satisfies(have: &Labels, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// `k=v,k2=v2`, as stored and shown.
pub fn text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The labels of [`text`]'s form (what the store holds); items that are not
/// `KEY=VALUE` are skipped.
pub fn from_text(text: &str) -> Labels {
    text.split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_parse_one_per_flag_or_several_per_value() {
        let labels = parse_flags(&["gpu=true".into(), "region=eu-west, disk=ssd".into()]).unwrap();
        assert_eq!(text(&labels), "disk=ssd,gpu=true,region=eu-west");
        assert_eq!(from_text(&text(&labels)), labels);
        assert_eq!(parse_flags(&[]).unwrap(), Labels::new());
        assert_eq!(
            parse_flags(&["empty=".into()]).unwrap()["empty"],
            "",
            "an empty value is a value"
        );
    }

    #[test]
    fn bad_flags_name_the_flag_and_the_rule() {
        for (flag, says) in [
            ("gpu", "is not KEY=VALUE"),
            ("=x", "is not a label key"),
            ("-gpu=x", "is not a label key"),
            ("gpu=a b", "is not a label value"),
            ("gpu=a,gpu=b", "is given twice"),
        ] {
            let e = parse_flags(&[flag.into()]).unwrap_err();
            assert!(
                e.starts_with("--label: ") && e.contains(says),
                "{flag}: {e}"
            );
        }
        assert!(parse_flags(&["gpu=a".into(), "gpu=a".into()]).is_ok());
        assert!(check_key(&"k".repeat(64)).is_err());
        assert!(check_key("example.com/zone").is_ok());
        assert!(check_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn a_node_satisfies_a_deployment_carrying_every_label_it_asks_for() {
        let have = parse_flags(&["gpu=true,region=eu".into()]).unwrap();
        assert!(satisfies(&have, &[]));
        assert!(satisfies(&have, &wanted(&[("gpu", "true")])));
        assert!(satisfies(
            &have,
            &wanted(&[("gpu", "true"), ("region", "eu")])
        ));
        assert!(!satisfies(&have, &wanted(&[("gpu", "false")])));
        assert!(!satisfies(
            &have,
            &wanted(&[("gpu", "true"), ("disk", "ssd")])
        ));
        assert!(!satisfies(&Labels::new(), &wanted(&[("gpu", "true")])));
    }
}
