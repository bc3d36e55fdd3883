//! Prefect compatibility: real-world prefect.yaml shapes validate as DESIGN.md "Keys",
//! "Pull steps" and "Templating" say, and run unchanged under the daemon.

use std::time::Duration;

use serde_json::Value;
use sundial::store::RunState;

use crate::support::daemon::{soon, wait_until, Daemon, GitRepo};
use crate::support::Project;

/// (severity, code, line) of every finding.
fn findings(text: &str) -> Vec<(String, String, u64)> {
    let project = Project::new()
        .file("prefect.yaml", text)
        .file("requirements.txt", "requests\n")
        .file("flows/nightly.py", "@flow\ndef nightly():\n    pass\n")
        .file("flows/orders.py", "async def sync_orders():\n    pass\n");
    let run = project.run(&["validate", "--format", "json", "prefect.yaml"]);
    let json = run.json();
    let mut out = Vec::new();
    for (severity, list) in [("error", &json["errors"]), ("warning", &json["warnings"])] {
        for d in list.as_array().unwrap() {
            out.push((
                severity.to_string(),
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
            ));
        }
    }
    out.sort_by_key(|f| f.2);
    out
}

fn f(severity: &str, code: &str, line: u64) -> (String, String, u64) {
    (severity.to_string(), code.to_string(), line)
}

/// A Prefect 2.19 `prefect deploy` file with its historical keys.
const PREFECT_2_19: &str = r#"name: legacy
prefect-version: 2.19.3
build: null
push: null
pull:
- prefect.deployments.steps.set_working_directory:
    directory: /opt/prefect/legacy
deployments:
- name: nightly
  version: 1.2
  tags: [legacy]
  description: null
  entrypoint: flows/nightly.py:nightly
  parameters: {}
  work_pool:
    name: default-agent-pool
    work_queue_name: default
    job_variables: {}
  schedule:
    cron: 0 2 * * *
    timezone: America/New_York
    day_or: true
    max_active_runs: null
    catchup: false
  is_schedule_active: true
"#;

#[test]
fn a_prefect_2_19_file_with_legacy_keys_is_valid_with_warnings() {
    assert_eq!(
        findings(PREFECT_2_19),
        vec![
            f("warning", "pull-step", 7),
            f("warning", "ignored-key", 25),
        ]
    );
}

/// A docker-style template: build and push steps, a git_clone pull step whose output
/// names the working directory, pip requirements, and other pools' job variables.
const DOCKER_TEMPLATE: &str = r#"name: shop
prefect-version: 3.0.0
build:
- prefect_docker.deployments.steps.build_docker_image:
    id: build_image
    requires: prefect-docker>=0.3.1
    image_name: "{{ $REGISTRY }}/shop"
    tag: latest
    dockerfile: auto
push:
- prefect_docker.deployments.steps.push_docker_image:
    requires: prefect-docker>=0.3.1
    image_name: "{{ build_image.image_name }}"
    tag: "{{ build_image.tag }}"
pull:
- prefect.deployments.steps.git_clone:
    id: clone-step
    repository: https://example.invalid/shop.git
    branch: main
- prefect.deployments.steps.set_working_directory:
    directory: "{{ clone-step.directory }}/shop"
- prefect.deployments.steps.pip_install_requirements:
    directory: "{{ clone-step.directory }}"
    requirements_file: requirements.txt
deployments:
- name: orders
  entrypoint: flows/orders.py:sync_orders
  work_pool:
    name: docker-pool
    job_variables:
      image: "{{ build_image.image }}"
      python: .venv/bin/python
      env:
        API_TOKEN: "{{ $SHOP_API_TOKEN }}"
  schedules:
  - interval: PT15M
"#;

#[test]
fn a_docker_template_validates_and_resolves_the_clone_directory() {
    let found = findings(DOCKER_TEMPLATE);
    assert_eq!(
        found,
        vec![
            f("warning", "ignored-key", 3),
            f("warning", "ignored-key", 10),
            f("warning", "pull-step", 16),
            f("warning", "ignored-key", 31),
            // `interval: PT15M` without `anchor_date`: anchored at its introducing commit.
            f("warning", "prefect-difference", 36)
        ]
    );
}

#[test]
fn unresolvable_placeholders_are_errors_with_a_hint_for_their_kind() {
    let text = r#"deployments:
- name: etl
  entrypoint: flows/etl.py:run
  version: "{{ build_image.tag }}"
  parameters:
    run: "{{ flow_run.id }}"
  work_pool:
    job_variables:
      env:
        SECRET: "{{ prefect.blocks.secret.db-password }}"
        TOKEN: "{{ $TOKEN }}"
"#;
    let project = Project::new().file("prefect.yaml", text);
    let run = project.run(&["validate", "prefect.yaml"]).code(1);
    assert!(
        run.stdout
            .contains("error[template]: `{{ flow_run.id }}` is not resolved in a prefect.yaml: Prefect 3 drops it too"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("EnvironmentFile="), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "warning[template]: `{{ build_image.tag }}`: no earlier step has id `build_image`"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(
        findings(text)
            .iter()
            .filter(|(s, _, _)| s == "error")
            .count(),
        2
    );
}

#[test]
fn a_shell_operator_in_run_shell_script_is_an_error_with_the_sh_c_hint() {
    let text = "pull:\n- prefect.deployments.steps.run_shell_script:\n    script: |\n      echo preparing\n      cat data.csv | sort > sorted.csv\ndeployments:\n- name: etl\n  entrypoint: flows/etl.py:run\n";
    let project = Project::new().file("prefect.yaml", text);
    project
        .run(&["validate", "prefect.yaml"])
        .code(1)
        .stdout_has("uses the shell operator `|`")
        .stdout_has("sh -c 'cat data.csv | sort > sorted.csv'");
}

#[test]
fn manifests_globs_replace_the_default_discovery() {
    let project = Project::new()
        .file(
            "ops/jobs.yaml",
            "deployments:\n- name: a\n  entrypoint: a.py:f\n",
        )
        .file("prefect.yaml", "deployments:\n- name: b\n  retries: -1\n");
    project
        .run(&["validate", "--manifests", "ops/*.yaml"])
        .code(0)
        .stdout_has("1 file, 1 deployment valid");
    project.run(&["validate"]).code(1);
}

/// Writes a minimal wheel of a package `localpkg` (no build backend, no network).
fn write_wheel(path: &std::path::Path) {
    let script = format!(
        "import zipfile\nwith zipfile.ZipFile({:?}, 'w') as z:\n    z.writestr('localpkg/__init__.py', 'def greet(name):\\n    return \"hello \" + name\\n')\n    z.writestr('localpkg-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: localpkg\\nVersion: 0.1\\n')\n    z.writestr('localpkg-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n    z.writestr('localpkg-0.1.dist-info/RECORD', '')\n",
        path.display().to_string()
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn pip_install_requirements_installs_a_local_package_into_a_venv_before_the_run() {
    let repo = GitRepo::new();
    let venv = repo.path().join("venv");
    let out = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 -m venv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir_all(repo.path().join("dist")).unwrap();
    write_wheel(&repo.path().join("dist/localpkg-0.1-py3-none-any.whl"));
    let result = repo.path().join("result.txt");
    let flow = format!(
        "from localpkg import greet\n\ndef run(name):\n    open({:?}, 'w').write(greet(name))\n",
        result.display().to_string()
    );
    let text = format!(
        "pull:\n- prefect.deployments.steps.pip_install_requirements:\n    requirements_file: requirements.txt\ndeployments:\n- name: greeter\n  entrypoint: flows/greet.py:run\n  parameters: {{name: sundial}}\n  work_pool:\n    job_variables:\n      python: {}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        venv.join("bin/python").display(),
        soon(5)
    );
    repo.commit(
        &[
            (
                "requirements.txt",
                Some("--no-index\n./dist/localpkg-0.1-py3-none-any.whl\n"),
            ),
            ("flows/greet.py", Some(&flow)),
            ("prefect.yaml", Some(&text)),
        ],
        "greeter",
    );
    crate::support::git_ok(repo.path(), &["add", "dist"]);
    crate::support::git_ok(repo.path(), &["commit", "-q", "-m", "wheel"]);
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("greeter", Duration::from_secs(90));
    let log = daemon.run_log(run.id);
    assert_eq!(run.state, RunState::Completed, "{log}");
    assert!(log.contains("pull step 1:"), "{log}");
    assert_eq!(std::fs::read_to_string(&result).unwrap(), "hello sundial");
}

#[test]
fn module_and_file_entrypoints_run_with_their_parameters_and_env_placeholders_resolve() {
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let module = format!(
        "import json, os\n\ndef run(a, b=2):\n    open(os.path.join({:?}, 'module.json'), 'w').write(json.dumps({{'sum': a + b, 'home': os.environ['HOME_SEEN']}}))\n",
        out.display().to_string()
    );
    let file = format!(
        "import json, os\n\nasync def run(word):\n    open(os.path.join({:?}, 'file.json'), 'w').write(json.dumps({{'word': word}}))\n",
        out.display().to_string()
    );
    // Far enough ahead that a slow start (a loaded machine) still applies the commit
    // before the slot: a slot due before its schedule is applied is not run.
    let anchor = soon(6);
    let text = format!(
        "deployments:\n- name: by-module\n  entrypoint: pkg.jobs:run\n  parameters: {{a: 40}}\n  work_pool:\n    job_variables:\n      env: {{HOME_SEEN: \"{{{{ $HOME }}}}\"}}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{anchor}\"\n- name: by-file\n  entrypoint: scripts/job.py:run\n  parameters: {{word: hi}}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{anchor}\"\n- name: unset-var\n  work_pool:\n    job_variables:\n      command: echo {{{{ $SUNDIAL_TEST_SURELY_UNSET }}}}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{anchor}\"\n"
    );
    repo.commit(
        &[
            ("pkg/__init__.py", Some("")),
            ("pkg/jobs.py", Some(&module)),
            ("scripts/job.py", Some(&file)),
            ("prefect.yaml", Some(&text)),
        ],
        "entrypoints",
    );
    let daemon = Daemon::start(repo.path());
    for name in ["by-module", "by-file", "unset-var"] {
        wait_until(Duration::from_secs(40), name, || {
            daemon
                .stored_runs(name)
                .into_iter()
                .find(|r| r.state.is_final())
        });
    }
    let module: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("module.json")).unwrap()).unwrap();
    assert_eq!(module["sum"], 42);
    assert_eq!(
        module["home"].as_str(),
        std::env::var("HOME").ok().as_deref()
    );
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("file.json")).unwrap()).unwrap();
    assert_eq!(file["word"], "hi");
    let unset = &daemon.stored_runs("unset-var")[0];
    assert_eq!(unset.state, RunState::Failed);
    assert!(
        unset
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("SUNDIAL_TEST_SURELY_UNSET"),
        "{unset:?}"
    );
}

/// `prefect deploy` at the repository root writes `flows/prefect.yaml` with paths from the
/// root: sundial used to look for `flows/flows/job.py`, and every run failed.
#[test]
fn a_subfolder_manifest_with_root_relative_entrypoints_runs_them() {
    let repo = GitRepo::new();
    let out = repo.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let writer = |name: &str| {
        format!(
            "import os\n\n\ndef run(word):\n    open(os.path.join({:?}, {name:?}), 'w').write(word + ' in ' + os.path.basename(os.getcwd()))\n",
            out.display().to_string()
        )
    };
    // Far enough ahead that a slow start still applies the commit before the slot.
    let anchor = soon(6);
    let text = format!(
        "# written by `prefect deploy` at the repository root\nname: jobs\nprefect-version: 3.1.0\nbuild: null\npush: null\npull: null\ndeployments:\n- name: root-file\n  description: null\n  entrypoint: flows/job.py:run\n  parameters: {{word: file}}\n  work_pool:\n    name: local\n    job_variables:\n      working_dir: flows\n  schedules:\n  - interval: 3600\n    anchor_date: \"{anchor}\"\n- name: root-module\n  entrypoint: lib.tasks:run\n  parameters: {{word: module}}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{anchor}\"\n"
    );
    repo.commit(
        &[
            ("flows/job.py", Some(&writer("file.txt"))),
            ("lib/__init__.py", Some("")),
            ("lib/tasks.py", Some(&writer("module.txt"))),
            ("flows/prefect.yaml", Some(&text)),
        ],
        "root-relative entrypoints",
    );
    let daemon = Daemon::start(repo.path());
    for name in ["root-file", "root-module"] {
        let run = daemon.ended_run(name, Duration::from_secs(40));
        assert_eq!(
            run.state,
            RunState::Completed,
            "{name}: {}",
            daemon.run_log(run.id)
        );
    }
    // Both from the repository root: `working_dir: flows` is `flows`, not `flows/flows`.
    assert_eq!(
        std::fs::read_to_string(out.join("file.txt")).unwrap(),
        "file in flows"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("module.txt")).unwrap(),
        "module in flows"
    );
    let log = daemon.run_log(daemon.ended_run("root-file", Duration::from_secs(1)).id);
    assert!(
        log.contains("# sundial: working directory `flows` was found from the repository root, not from the manifest's folder `flows`\n# sundial: entrypoint file `flows/job.py` was found from the repository root, not from the manifest's folder `flows`\n"),
        "{log}"
    );
    let log = daemon.run_log(daemon.ended_run("root-module", Duration::from_secs(1)).id);
    assert!(
        log.contains("# sundial: entrypoint module `lib/tasks.py` was found from the repository root, not from the manifest's folder `flows`\n"),
        "{log}"
    );
}

#[test]
fn a_naive_anchor_in_a_zone_warns_that_prefect_reads_it_as_utc() {
    let text = "deployments:\n- name: a\n  entrypoint: a.py:f\n  schedules:\n  - interval: 86400\n    anchor_date: \"2026-01-01T09:00:00\"\n    timezone: America/Chicago\n";
    assert_eq!(findings(text), vec![f("warning", "prefect-difference", 6)]);
}

#[test]
fn a_requirements_file_missing_from_the_repository_is_an_error() {
    let text = "pull:\n- prefect.deployments.steps.pip_install_requirements:\n    requirements_file: requirements.txt\ndeployments:\n- name: a\n  entrypoint: a.py:f\n  work_pool:\n    job_variables:\n      python: .venv/bin/python\n";
    let project = Project::new().file("prefect.yaml", text);
    crate::support::git_ok(project.path(), &["init", "-q"]);
    let run = project
        .run(&["validate", "--format", "json", "prefect.yaml"])
        .code(1);
    assert_eq!(run.json()["errors"][0]["message"], "requirements file `requirements.txt` is not in the repository: looked for `requirements.txt`; commit it, or fix `requirements_file` (relative to the step's directory, or to the repository root)");
    let project = project.file("requirements.txt", "requests\n");
    project.run(&["validate", "prefect.yaml"]).code(0);
}

/// The Python of `target/prefect-venv`, which the test command installs prefect into.
fn prefect_python() -> std::path::PathBuf {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/prefect-venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import prefect"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import prefect; run `./scripts/test.sh`, which installs it",
        python.display()
    );
    python
}

#[test]
fn a_prefect_flow_runs_unchanged_under_the_bootstrap() {
    let python = prefect_python();
    let repo = GitRepo::new();
    let out = repo.path().join("flow.txt");
    let flow = format!(
        "from prefect import flow\n\n@flow(log_prints=True)\ndef hello(name: str = 'world'):\n    print(f'hello {{name}}')\n    open({:?}, 'w').write(name)\n",
        out.display().to_string()
    );
    let text = format!(
        "deployments:\n- name: prefect-flow\n  entrypoint: flows/hello.py:hello\n  parameters: {{name: sundial}}\n  timeout_seconds: 240\n  work_pool:\n    job_variables:\n      python: {}\n      env: {{PREFECT_HOME: {}, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: \"180\"}}\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        python.display(),
        repo.path().join(".prefect").display(),
        soon(5)
    );
    repo.commit(
        &[
            ("flows/hello.py", Some(&flow)),
            ("prefect.yaml", Some(&text)),
        ],
        "a prefect flow",
    );
    let daemon = Daemon::start(repo.path());
    // Prefect starts a temporary API server for the flow: slow on a loaded machine.
    let run = daemon.ended_run("prefect-flow", Duration::from_secs(280));
    let log = daemon.run_log(run.id);
    assert_eq!(run.state, RunState::Completed, "{log}");
    assert!(log.contains("hello sundial"), "{log}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "sundial");
}

#[test]
fn a_failing_pull_step_fails_the_attempt_with_its_output_in_the_log() {
    let repo = GitRepo::new();
    let text = format!(
        "pull:\n- prefect.deployments.steps.run_shell_script:\n    script: |\n      echo preparing\n      python3 -c \"import sys; print('step broke'); sys.exit(3)\"\ndeployments:\n- name: prepared\n  work_pool:\n    job_variables:\n      command: echo never\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        soon(5)
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "a failing step");
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("prepared", Duration::from_secs(30));
    let log = daemon.run_log(run.id);
    assert_eq!(
        (run.state, run.exit_code),
        (RunState::Failed, Some(3)),
        "{log}"
    );
    assert!(
        log.contains("preparing\n") && log.contains("step broke\n"),
        "{log}"
    );
    assert!(log.contains("pull step 1 failed"), "{log}");
    assert!(
        !log.lines().any(|l| l == "never"),
        "the command ran after a failed step: {log}"
    );
}

#[test]
fn a_quoted_sh_c_and_a_shell_true_pipe_run_before_the_command() {
    let repo = GitRepo::new();
    let text = format!(
        "# pull steps as uv projects write them\npull:\n- prefect.deployments.steps.run_shell_script:\n    script: sh -c \"mkdir -p build && echo quoted > build/a.txt\"\n- prefect.deployments.steps.run_shell_script:\n    script: echo piped | tr a-z A-Z > build/b.txt\n    shell: true\ndeployments:\n- name: prepared\n  description: null\n  work_pool:\n    job_variables:\n      command: cat build/a.txt build/b.txt\n  schedules:\n  - interval: 3600\n    anchor_date: \"{}\"\n",
        soon(5)
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "shell steps");
    let daemon = Daemon::start(repo.path());
    let run = daemon.ended_run("prepared", Duration::from_secs(30));
    let log = daemon.run_log(run.id);
    assert_eq!(run.state, RunState::Completed, "{log}");
    assert!(log.lines().any(|l| l == "quoted"), "{log}");
    assert!(log.lines().any(|l| l == "PIPED"), "{log}");
}
