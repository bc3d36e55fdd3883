//! The nesting bound holds on the whole path (YAML → tree → JSON → schema → model →
//! semantic checks): a manifest exactly [`MAX_DEPTH`] levels deep, in every place a deep
//! value can sit, validates on a 2 MiB thread stack (what tokio gives `spawn_blocking`,
//! where the daemon validates commits) in a debug build; one level more is one error at
//! the line and column where the bound is crossed.

use crate::manifest::limits::MAX_DEPTH;
use crate::validate::{validate, Code, Diagnostic, SourceFile, Validation};

/// The stack of a tokio blocking or worker thread.
const TOKIO_STACK: usize = 2 << 20;

/// Validates `text` as `prefect.yaml` on a thread with tokio's stack size.
fn validate_on_small_stack(text: String) -> Validation {
    std::thread::Builder::new()
        .name("two-mib-stack".into())
        .stack_size(TOKIO_STACK)
        .spawn(move || {
            validate(&[SourceFile {
                display: "prefect.yaml".into(),
                repo_path: "prefect.yaml".into(),
                bytes: text.into_bytes().into(),
            }])
        })
        .expect("spawn a thread")
        .join()
        .expect("validation panicked")
}

/// `n` flow mappings nested in each other around `leaf`: `{a: {a: leaf}}` for 2.
fn maps(n: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", "{a: ".repeat(n), "}".repeat(n))
}

/// `n` flow lists nested in each other around `leaf`.
fn lists(n: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", "[".repeat(n), "]".repeat(n))
}

/// A deployment whose extra keys (indented under it) are `extra`.
fn deployment(extra: &str) -> String {
    format!("deployments:\n  - name: deep\n    entrypoint: flows/etl.py:run\n{extra}")
}

/// The manifests with a value exactly `depth` levels deep (the top mapping is level 1),
/// each in another place the checks walk. A deployment's keys sit at level 3.
fn shapes(depth: usize) -> Vec<(&'static str, String)> {
    let under_deployment = depth - 3;
    vec![
        (
            "flow mappings in parameters",
            deployment(&format!(
                "    parameters: {}\n",
                maps(under_deployment, "1")
            )),
        ),
        (
            "flow lists in parameters",
            deployment(&format!(
                "    parameters: {{p: {}}}\n",
                lists(under_deployment - 1, "1")
            )),
        ),
        ("block mappings in parameters", {
            let mut text = deployment("    parameters:\n");
            for level in 0..under_deployment - 1 {
                text += &format!("{}a:\n", " ".repeat(6 + 2 * level));
            }
            text += &format!("{}a: 1\n", " ".repeat(6 + 2 * (under_deployment - 1)));
            text
        }),
        (
            "a parameter schema as deep as the parameter it checks",
            deployment(&format!(
                "    parameters: {{p: {}}}\n    parameter_openapi_schema: {{properties: {{p: {}}}}}\n",
                lists(under_deployment - 3, "1"),
                maps(under_deployment - 3, "{type: integer}").replace("{a: ", "{items: ")
            )),
        ),
        (
            "schedule parameters merged into the defaults",
            deployment(&format!(
                "    parameter_openapi_schema: {{type: object}}\n    schedules:\n      - interval: 60\n        parameters: {}\n",
                maps(depth - 5, "1")
            )),
        ),
        (
            "a pull step's arguments, with a placeholder at the bottom",
            deployment(&format!(
                "    pull:\n      - prefect.deployments.steps.run_shell_script:\n          script: echo hi\n          extra: {}\n",
                maps(depth - 6, "\"echo {{ $HOME }}\"")
            )),
        ),
        (
            "block lists under an ignored top-level key",
            format!("definitions:\n  {}x\n", "- ".repeat(depth - 1)),
        ),
        (
            "an alias pasting a deep anchor into parameters",
            format!(
                "definitions: &deep {}\n{}",
                maps(depth - 4, "1"),
                deployment("    parameters: {p: *deep}\n")
            ),
        ),
        (
            "an environment value that is wrongly a mapping",
            deployment(&format!(
                "    work_pool:\n      job_variables:\n        env: {{X: {}}}\n",
                maps(depth - 6, "1")
            )),
        ),
    ]
}

fn too_deep(validation: &Validation) -> Vec<&Diagnostic> {
    validation
        .diagnostics()
        .filter(|d| d.code == Code::TooDeep)
        .collect()
}

#[test]
fn every_shape_at_the_depth_limit_validates_on_a_tokio_sized_stack() {
    for (shape, text) in shapes(MAX_DEPTH) {
        let validation = validate_on_small_stack(text.clone());
        assert!(
            too_deep(&validation).is_empty(),
            "{shape}: {:?}\n{text}",
            too_deep(&validation)
        );
        let file = &validation.files[0];
        if shape.contains("wrongly") {
            assert!(!file.is_valid(), "{shape}: the env mapping must be refused");
        } else {
            assert!(file.is_valid(), "{shape}: {:#?}\n{text}", file.diagnostics);
        }
    }
}

#[test]
fn one_level_past_the_limit_is_one_error_where_it_is_crossed() {
    for (shape, text) in shapes(MAX_DEPTH + 1) {
        let validation = validate_on_small_stack(text.clone());
        let found = too_deep(&validation);
        assert_eq!(found.len(), 1, "{shape}: {found:?}\n{text}");
        assert!(!validation.is_valid(), "{shape}");
        // The error points into the deep value, never at the document's start.
        let d = found[0];
        assert!(
            d.line >= 1 && (d.line, d.column) != (1, 1),
            "{shape}: {d:?}"
        );
    }
}

#[test]
fn a_deep_file_is_refused_at_the_first_level_too_many() {
    // `- - - … x` 5,000 deep in 10 KB used to overflow the daemon's stack at every start.
    let validation = validate_on_small_stack(format!("{}x\n", "- ".repeat(5_000)));
    let found = too_deep(&validation);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].column), (1, 2 * MAX_DEPTH + 1));
    assert_eq!(
        found[0].message,
        "lists and mappings nest deeper than 64 levels here"
    );
}

/// Runs `work` on a tokio-sized stack and fails the test if it takes longer than `limit`.
pub(super) fn within<T: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(TOKIO_STACK)
        .spawn(move || {
            let _ = tx.send(work());
        })
        .expect("spawn a thread");
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} took longer than {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

#[test]
fn a_mapping_of_100000_keys_loads_in_linear_time() {
    // Each key used to be compared with every earlier one: 120,000 keys took 139 s.
    let text: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
    let loaded = within(
        std::time::Duration::from_secs(20),
        "loading 100,000 keys",
        move || crate::manifest::yaml::load(text.as_bytes()),
    );
    assert!(loaded.errors.is_empty(), "{:?}", &loaded.errors[..1]);
    assert_eq!(loaded.root.expect("a tree").entries().len(), 100_000);
}

#[test]
fn a_file_lists_at_most_1000_problems_and_says_how_many_more() {
    let keys: String = (0..1_500).map(|i| format!("    k{i}: 1\n")).collect();
    let validation = validate_on_small_stack(deployment(&keys));
    let file = &validation.files[0];
    assert!(!file.is_valid());
    assert_eq!(file.diagnostics.len(), 1_001);
    let last = file.diagnostics.last().expect("the summary");
    assert_eq!(
        (last.code, last.severity, last.line),
        (Code::TooManyProblems, crate::validate::Severity::Error, 0)
    );
    assert_eq!(
        last.message,
        "500 more problems (500 errors, 0 warnings) are not listed: a file lists at most 1000"
    );

    // An error found after a thousand warnings is not listed, and still makes the file
    // invalid (a cron expression is checked after the keys).
    let warnings: String = (0..1_000).map(|i| format!("x{i}: 1\n")).collect();
    let text = format!(
        "{warnings}{}    schedules: [{{cron: \"61 * * * *\"}}]\n",
        deployment("")
    );
    let validation = validate_on_small_stack(text);
    let file = &validation.files[0];
    assert!(!file.is_valid(), "{:?}", file.diagnostics.last());
    assert!(file.diagnostics[..1_000].iter().all(|d| !d.is_error()));
    assert_eq!(
        file.diagnostics[1_000].message,
        "1 more problem (1 error, 0 warnings) is not listed: a file lists at most 1000"
    );
}
