//! `sundial validate`: every class of error at its exact line and column, the formats, the
//! exit codes, and files that must never make it panic.

use crate::support::{git_ok, require_tool, Project};

/// A minimal valid deployment list entry, to which tests add one problem.
const GOOD: &str = "deployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n";

/// Validates `text` as `prefect.yaml` and returns (code, line, column) of every error.
#[track_caller]
fn errors(text: &str) -> Vec<(String, u64, u64)> {
    let project = Project::new().file("prefect.yaml", text);
    let run = project.run(&["validate", "--format", "json", "prefect.yaml"]);
    let json = run.json();
    json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["line"].as_u64().unwrap(),
                e["column"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[track_caller]
fn one_error(text: &str) -> (String, u64, u64) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "expected one error, got {found:?}");
    found.into_iter().next().unwrap()
}

fn e(code: &str, line: u64, column: u64) -> (String, u64, u64) {
    (code.to_string(), line, column)
}

#[test]
fn human_output_reads_like_rustc() {
    let project = Project::new().file(
        "deployments/etl.yaml",
        "deployments:\n  - name: etl\n    entrypoint: flows/etl.py:run\n    schedulez:\n      - cron: \"0 9 * * *\"\n",
    );
    let run = project.run(&["validate"]).code(1);
    assert_eq!(
        run.stdout,
        "error[unknown-key]: unknown key `schedulez` in a deployment\n \
         --> deployments/etl.yaml:4:5\n  \
         |\n\
         4 |     schedulez:\n  \
         |     ^^^^^^^^^\n  \
         = help: did you mean `schedules`?\n\
         \n\
         error: 1 error in 1 file\n"
    );
}

#[test]
fn a_valid_file_exits_zero_with_a_summary() {
    Project::new()
        .file("prefect.yaml", GOOD)
        .run(&["validate"])
        .code(0)
        .stdout_has("ok: 1 file, 1 deployment valid");
}

#[test]
fn the_repository_examples_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = crate::support::sundial()
        .args(["validate", "--format", "json"])
        .current_dir(root)
        .output()
        .expect("run");
    let run = crate::support::Run::from(run).code(0);
    let json = run.json();
    assert_eq!(json["valid"], true);
    assert!(json["deployments"].as_u64().unwrap() >= 3);
    assert_eq!(json["warnings"], serde_json::json!([]));
}

#[test]
fn yaml_syntax_error_points_at_the_problem() {
    assert_eq!(
        one_error("deployments:\n  - name: [etl\n"),
        e("yaml-syntax", 3, 1)
    );
}

#[test]
fn duplicate_yaml_keys_point_at_the_second() {
    let text = "deployments:\n  - name: etl\n    entrypoint: a.py:f\n    name: other\n";
    assert_eq!(one_error(text), e("duplicate-key", 4, 5));
}

#[test]
fn tabs_in_indentation_are_errors() {
    let text = "deployments:\n  - name: etl\n\t  entrypoint: a.py:f\n";
    assert_eq!(errors(text)[0], e("tab-indent", 3, 1));
}

#[test]
fn unknown_keys_suggest_the_right_one() {
    let text = format!("{GOOD}    retires: 3\n");
    assert_eq!(one_error(&text), e("unknown-key", 4, 5));
    let text = format!("{GOOD}    work_pool:\n      job_variables:\n        comand: echo\n");
    assert_eq!(one_error(&text), e("unknown-key", 6, 9));
    let text = format!("deploymentz: []\n{GOOD}");
    assert_eq!(one_error(&text), e("unknown-key", 1, 1));
}

#[test]
fn misplaced_keys_name_their_place() {
    let project = Project::new().file(
        "prefect.yaml",
        &format!("{GOOD}    env: {{A: b}}\n    is_paused: true\n"),
    );
    project
        .run(&["validate"])
        .code(1)
        .stdout_has("move it to `work_pool.job_variables.env`")
        .stdout_has("move it to `paused`");
}

#[test]
fn wrong_types_and_ranges() {
    let text = format!("{GOOD}    retries: -1\n    timeout_seconds: 0\n    catchup: sometimes\n    concurrency_limit: 0\n    tags: etl\n");
    assert_eq!(
        errors(&text),
        vec![
            e("out-of-range", 4, 14),
            e("out-of-range", 5, 22),
            e("type", 6, 14),
            // `concurrency_limit: 0` is a whole number, only too small.
            e("out-of-range", 7, 24),
            e("type", 8, 11),
        ]
    );
}

#[test]
fn env_values_must_be_scalars() {
    let text =
        format!("{GOOD}    work_pool:\n      job_variables:\n        env:\n          A: [1, 2]\n");
    assert_eq!(one_error(&text), e("type", 7, 14));
}

#[test]
fn working_dir_must_stay_inside_the_checkout() {
    let text = format!(
        "{GOOD}    work_pool:\n      job_variables:\n        working_dir: ../../elsewhere\n"
    );
    assert_eq!(one_error(&text), e("working-dir", 6, 22));
}

#[test]
fn a_deployment_needs_something_to_run() {
    assert_eq!(
        one_error("deployments:\n  - name: etl\n    tags: [a]\n"),
        e("no-entrypoint", 2, 5)
    );
}

#[test]
fn a_schedule_takes_exactly_one_kind() {
    let text = format!("{GOOD}    schedules:\n      - cron: \"* * * * *\"\n        interval: 60\n");
    assert_eq!(one_error(&text), e("schedule-kind", 5, 9));
}

#[test]
fn schedule_errors_point_at_the_field() {
    let text = format!(
        "{GOOD}    schedules:\n      - cron: \"61 9 * * *\"\n      - cron: \"0 9 * * *\"\n        timezone: America/Chicag\n      - rrule: \"FREQ=SOMETIMES\"\n      - interval: -5\n      - interval: 60\n        anchor_date: not-a-date\n      - cron: \"0 0 30 2 *\"\n"
    );
    assert_eq!(
        errors(&text),
        vec![
            e("invalid-cron", 5, 15),
            e("invalid-timezone", 7, 19),
            e("invalid-rrule", 8, 16),
            e("invalid-interval", 9, 19),
            e("invalid-anchor", 11, 22),
            e("never-fires", 12, 15),
        ]
    );
}

#[test]
fn cron_messages_name_the_field() {
    let project = Project::new().file(
        "prefect.yaml",
        &format!("{GOOD}    schedules:\n      - cron: \"61 9 * * *\"\n"),
    );
    project.run(&["validate"]).code(1).stdout_has("minute");
    let project = Project::new().file(
        "prefect.yaml",
        &format!("{GOOD}    schedules:\n      - cron: \"0 0 9 * * *\"\n"),
    );
    project.run(&["validate"]).code(1).stdout_has("6");
}

#[test]
fn parameters_are_checked_against_the_schema_with_schedule_overrides() {
    let text = format!(
        "{GOOD}    parameters: {{batch_size: 10}}\n    parameter_openapi_schema:\n      type: object\n      properties:\n        batch_size: {{type: integer, minimum: 1}}\n      required: [batch_size]\n    schedules:\n      - cron: \"0 9 * * *\"\n        parameters: {{batch_size: 0}}\n"
    );
    assert_eq!(one_error(&text), e("parameters", 12, 34));
    let text = format!(
        "{GOOD}    parameters: {{batch_size: \"ten\"}}\n    parameter_openapi_schema:\n      properties:\n        batch_size: {{type: integer}}\n"
    );
    assert_eq!(one_error(&text), e("parameters", 4, 30));
    let off = format!(
        "{GOOD}    parameters: {{batch_size: \"ten\"}}\n    enforce_parameter_schema: false\n    parameter_openapi_schema:\n      properties:\n        batch_size: {{type: integer}}\n"
    );
    assert_eq!(errors(&off), vec![]);
}

#[test]
fn legacy_schedule_and_schedules_conflict() {
    let text = format!(
        "{GOOD}    schedule: {{cron: \"0 9 * * *\"}}\n    schedules:\n      - interval: 60\n"
    );
    assert_eq!(one_error(&text), e("schedule-conflict", 4, 5));
}

#[test]
fn duplicate_names_across_files_point_at_the_second() {
    let project = Project::new()
        .file("deployments/a.yaml", GOOD)
        .file("deployments/b.yaml", "# second\ndeployments:\n  - name: other\n    entrypoint: x.py:f\n  - name: etl\n    entrypoint: y.py:g\n");
    let run = project
        .run(&["validate", "--format", "json", "deployments"])
        .code(1);
    let json = run.json();
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"], "deployments/b.yaml");
    assert_eq!(errors[0]["line"], 5);
    assert_eq!(errors[0]["column"], 11);
    assert_eq!(errors[0]["code"], "duplicate-deployment");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("deployments/a.yaml:2"));
}

#[test]
fn several_errors_in_several_files_are_all_reported() {
    let project = Project::new()
        .file(
            "deployments/a.yaml",
            &format!("{GOOD}    retries: x\n    catchup: 3\n"),
        )
        .file("deployments/b.yaml", "deployments:\n  - name: b\n");
    let run = project.run(&["validate", "--format", "json"]).code(1);
    let json = run.json();
    assert_eq!(json["files"], 2);
    assert_eq!(json["deployments"], 2);
    assert_eq!(json["errors"].as_array().unwrap().len(), 3);
}

#[test]
fn json_format_has_the_documented_shape() {
    let project = Project::new().file(
        "prefect.yaml",
        &format!("{GOOD}    retries: -1\n    paused: yes\n"),
    );
    let run = project.run(&["validate", "--format", "json"]).code(1);
    assert_eq!(
        run.json(),
        serde_json::json!({
            "valid": false,
            "files": 1,
            "deployments": 1,
            "errors": [{
                "file": "prefect.yaml", "line": 4, "column": 14, "pointer": "/deployments/0/retries",
                "code": "out-of-range", "message": "must be at least 0"
            }],
            "warnings": [{
                "file": "prefect.yaml", "line": 5, "column": 13, "pointer": "/deployments/0/paused",
                "code": "yaml11-boolean",
                "message": "`yes` is read as true (YAML 1.1), but YAML 1.2 tools read it as a string; write `true`"
            }]
        })
    );
}

#[test]
fn github_format_annotates_lines() {
    let project = Project::new().file("prefect.yaml", &format!("{GOOD}    retries: -1\n"));
    let run = project.run(&["validate", "--format", "github"]).code(1);
    assert_eq!(
        run.stdout,
        "::error file=prefect.yaml,line=4,col=14,title=sundial out-of-range::must be at least 0\n"
    );
}

#[test]
fn exit_two_for_missing_files_and_bad_flags() {
    let project = Project::new();
    project
        .run(&["validate", "nope.yaml"])
        .code(2)
        .stderr_has("cannot read `nope.yaml`");
    project
        .run(&["validate"])
        .code(2)
        .stderr_has("no manifests found");
    project.run(&["validate", "--format", "xml"]).code(2);
}

#[test]
fn anchors_aliases_and_merge_keys_work() {
    let text = "definitions:\n  defaults: &defaults\n    entrypoint: flows/etl.py:run\n    retries: 2\n    schedules:\n      - cron: \"0 9 * * *\"\n        timezone: America/Chicago\ndeployments:\n  - <<: *defaults\n    name: etl-a\n  - <<: *defaults\n    name: etl-b\n    retries: 5\n";
    let project = Project::new().file("prefect.yaml", text);
    let run = project.run(&["validate", "--format", "json"]).code(0);
    assert_eq!(run.json()["deployments"], 2);
    let bad = format!("{text}  - <<: *defaults\n    name: etl-c\n    retries: -3\n");
    assert_eq!(one_error(&bad), e("out-of-range", 16, 14));
}

/// What `prefect init` writes, comments and nulls included, then filled in by hand.
const PREFECT_INIT: &str = r#"# Welcome to your prefect.yaml file! You can use this file for storing and managing
# configuration for deploying your flows. We recommend committing this file to source
# control along with your flow code.

# Generic metadata about this project
name: demo
prefect-version: 3.1.4

# build section allows you to manage and build docker images
build: null

# push section allows you to manage if and how this project is uploaded to remote locations
push: null

# pull section allows you to provide instructions for cloning this project in remote locations
pull:
- prefect.deployments.steps.set_working_directory:
    directory: /home/me/src/demo

# the deployments section allows you to provide configuration for deploying flows
deployments:
- name: null
  version: null
  tags: []
  concurrency_limit: null
  description: null
  entrypoint: null
  parameters: {}
  work_pool:
    name: null
    work_queue_name: null
    job_variables: {}
  schedules: []
- name: hello
  version: null
  tags: []
  concurrency_limit: null
  description: Says hello
  entrypoint: flows/hello.py:hello
  parameters: {}
  work_pool:
    name: local
    work_queue_name: null
    job_variables: {}
  schedules:
  - cron: 0 9 * * *
    timezone: America/Chicago
    day_or: true
    active: true
"#;

#[test]
fn a_prefect_init_file_is_valid_with_warnings() {
    let project = Project::new().file("prefect.yaml", PREFECT_INIT);
    let run = project.run(&["validate", "--format", "json"]).code(0);
    let json = run.json();
    assert_eq!(json["deployments"], 1);
    let codes: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["pull-step", "placeholder-deployment"]);
}

#[test]
fn garbage_bytes_and_empty_files_never_panic() {
    let project = Project::new();
    project.write("empty.yaml", b"");
    project.write("garbage.yaml", b"\x00\xff\xfe\x80 binary \x01\x02");
    project.write("list.yaml", b"- a\n- b\n");
    project.write("braces.yaml", b"{{{{[[[[");
    project.write("alias.yaml", b"a: *nowhere\n");
    project
        .run(&["validate", "empty.yaml"])
        .code(0)
        .stdout_has("the file is empty");
    project
        .run(&["validate", "garbage.yaml"])
        .code(1)
        .stdout_has("not-utf8");
    project
        .run(&["validate", "list.yaml"])
        .code(1)
        .stdout_has("not-a-manifest");
    project
        .run(&["validate", "braces.yaml"])
        .code(1)
        .stdout_has("yaml-syntax");
    project
        .run(&["validate", "alias.yaml"])
        .code(1)
        .stdout_has("yaml-syntax");
}

#[test]
fn a_prefect2_deployment_spec_gets_one_error() {
    let text = "name: etl\nflow_name: etl\nentrypoint: flows/etl.py:etl\nschedule:\n  cron: 0 9 * * *\ninfrastructure:\n  type: process\nstorage: null\n";
    assert_eq!(one_error(text), e("prefect2-spec", 1, 1));
}

#[test]
fn schema_command_prints_the_embedded_schema() {
    let run = Project::new().run(&["schema"]).code(0);
    let schema = run.json();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let on_disk = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/deployment-manifest.schema.json"
    ))
    .unwrap();
    assert_eq!(run.stdout, on_disk);
}

#[test]
fn check_jsonschema_accepts_the_examples_and_rejects_a_typo() {
    let tool = require_tool("check-jsonschema");
    let root = env!("CARGO_MANIFEST_DIR");
    let schema = format!("{root}/schema/deployment-manifest.schema.json");
    let project = Project::new()
        .file("prefect.yaml", PREFECT_INIT)
        .file("bad.yaml", &format!("{GOOD}    retries: many\n"));
    let mut good = vec![project.path().join("prefect.yaml")];
    for entry in std::fs::read_dir(format!("{root}/deployments")).unwrap() {
        good.push(entry.unwrap().path());
    }
    let out = std::process::Command::new(&tool)
        .arg("--schemafile")
        .arg(&schema)
        .args(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = std::process::Command::new(&tool)
        .arg("--schemafile")
        .arg(&schema)
        .arg(project.path().join("bad.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn two_schedules_with_one_identity_are_an_error_at_the_second() {
    // Same slug: the second would share the first's slots and never fire.
    let slugs = format!("{GOOD}    schedules:\n      - cron: \"0 9 * * *\"\n        slug: daily\n      - cron: \"0 18 * * *\"\n        slug: daily\n");
    assert_eq!(one_error(&slugs), e("duplicate-schedule", 8, 15));
    // Same timing and parameters, no slug.
    let same = format!("{GOOD}    schedules:\n      - interval: 60\n        parameters: {{region: eu}}\n      - interval: 60\n        parameters: {{region: eu}}\n");
    assert_eq!(one_error(&same), e("duplicate-schedule", 7, 9));
    // Parameters tell two schedules of one timing apart, whatever their key order.
    let apart = format!("{GOOD}    schedules:\n      - interval: 60\n        parameters: {{region: eu, n: 1}}\n      - interval: 60\n        parameters: {{region: us, n: 1}}\n");
    assert_eq!(errors(&apart), vec![]);
    let reordered = format!("{GOOD}    schedules:\n      - interval: 60\n        parameters: {{region: eu, n: 1}}\n      - interval: 60\n        parameters: {{n: 1, region: eu}}\n");
    assert_eq!(one_error(&reordered), e("duplicate-schedule", 7, 9));
    let project = Project::new().file("prefect.yaml", &slugs);
    project.run(&["validate", "prefect.yaml"]).code(1).stdout_has(
        "error[duplicate-schedule]: this schedule has the same slug as schedule 1 of this deployment: both would claim the same slots, and only one would fire",
    ).stdout_has("= help: give each schedule its own `slug`");
}

#[test]
fn outside_git_a_manifest_finds_its_flows_from_whichever_directory_it_is_named() {
    // Outside a git repository the manifest's folder is its project's root (as for
    // `prefect deploy` run there), however the manifest is named: relative to a sibling
    // directory, absolute, or from its own folder.
    let project = Project::new()
        .file("app/prefect.yaml", GOOD)
        .file("app/flows/etl.py", "def run():\n    pass\n")
        .file("bare/prefect.yaml", GOOD);
    let absolute = project.path().join("app/prefect.yaml");
    let absolute = absolute.to_str().unwrap();
    for (from, manifest) in [
        ("elsewhere", "../app/prefect.yaml"),
        ("elsewhere", absolute),
        ("app", "prefect.yaml"),
        ("app", absolute),
        ("", "app/prefect.yaml"),
    ] {
        project
            .run_from(from, &["validate", manifest])
            .code(0)
            .stdout_has("ok: 1 file, 1 deployment valid");
    }
    // A folder without the flow is still told so, from anywhere, as a folder: there is no
    // repository to commit it to.
    project
        .run_from("elsewhere", &["validate", "../bare/prefect.yaml"])
        .code(1)
        .stdout_has("entrypoint file `flows/etl.py` does not exist: looked for `flows/etl.py`")
        .stdout_has("= help: create it, or fix the path: it is relative to the manifest's folder or to the current directory");
    // In a repository, a missing file is to be committed.
    let gone = "deployments:\n  - name: etl\n    entrypoint: flows/gone.py:run\n";
    let repo = Project::new().file("prefect.yaml", gone);
    git_ok(repo.path(), &["init", "-q"]);
    repo.run(&["validate", "prefect.yaml"])
        .code(1)
        .stdout_has("entrypoint file `flows/gone.py` is not in the repository: looked for `flows/gone.py`")
        .stdout_has("= help: commit it, or fix the path: it is relative to the manifest's folder or to the repository root");
}

#[test]
fn validate_skips_virtual_environments_and_what_gitignore_ignores() {
    let broken = "deployments:\n  - name: x\n    schedulez: []\n";
    let project = Project::new()
        .file("deployments/ok.yaml", GOOD)
        .file("venv/pyvenv.cfg", "home = /usr/bin\n")
        .file(
            "venv/lib/python3.11/site-packages/prefect/templates/prefect.yaml",
            broken,
        )
        .file(".gitignore", "scratch/\n")
        .file("scratch/prefect.yaml", broken);
    let json = project
        .run(&["validate", "--format", "json"])
        .code(0)
        .json();
    assert_eq!(json["files"], 1, "{json}");
    // Named explicitly, an ignored file is still checked.
    project
        .run(&["validate", "scratch/prefect.yaml"])
        .code(1)
        .stdout_has("unknown key `schedulez`");
}
