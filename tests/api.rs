//! The HTTP API over real HTTP against the real daemon: every endpoint and status code,
//! the token, pagination, and real answers checked against the OpenAPI document.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::daemon::{wait_until, Daemon, GitRepo};

/// `hello` runs for a minute (to cancel) and has a parameter schema; `quick` ends at
/// once; `bad.yaml` has an unknown key on line 4.
pub const HELLO: &str = r#"deployments:
  - name: hello
    parameters: {n: 1}
    parameter_openapi_schema:
      type: object
      properties: {n: {type: integer}, who: {type: string}}
      required: [n]
    work_pool:
      job_variables:
        command: python3 -c "import time; print('started', flush=True); time.sleep(60)"
    schedules:
      - cron: "0 9 * * *"
        timezone: America/Chicago
  - name: quick
    work_pool:
      job_variables:
        command: python3 -c "print('done <script>alert(1)</script>')"
"#;
pub const BAD: &str = "deployments:\n  - name: broken\n    work_pool: {job_variables: {command: echo}}\n    schedulez: []\n";

pub fn start() -> (GitRepo, Daemon) {
    let repo = GitRepo::new();
    repo.commit(
        &[
            ("deployments/hello.yaml", Some(HELLO)),
            ("deployments/bad.yaml", Some(BAD)),
        ],
        "hello",
    );
    let daemon = Daemon::start(repo.path());
    (repo, daemon)
}

/// Checks `instance` against `schema` (which may `$ref` the document's components).
#[track_caller]
fn assert_valid(doc: &Value, schema: Value, instance: &Value, what: &str) {
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
    });
    for (k, v) in schema.as_object().unwrap() {
        root[k] = v.clone();
    }
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the OpenAPI document:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{name}")}})
}

#[track_caller]
fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn every_endpoint_answers_its_status_codes_and_matches_the_openapi_document() {
    let (_repo, daemon) = start();
    let token = daemon.token();
    let doc = daemon.json("/api/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");

    assert_eq!(daemon.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(daemon.get("/readyz").0, 200);

    let status = daemon.json("/api/status");
    assert_valid(&doc, schema("Status"), &status, "/api/status");
    assert_eq!(status["ready"], true);
    let error = &status["errors"][0];
    assert_eq!(
        (
            error["file"].as_str(),
            error["line"].as_u64(),
            error["column"].as_u64()
        ),
        (Some("deployments/bad.yaml"), Some(4), Some(5)),
        "{status:#}"
    );

    let deployments = daemon.json("/api/deployments");
    assert_valid(
        &doc,
        array_of("Deployment"),
        &deployments,
        "/api/deployments",
    );
    let names: Vec<&str> = deployments
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "quick"]);
    assert_eq!(
        deployments[0]["schedules"][0]["timezone"],
        "America/Chicago"
    );
    assert_eq!(deployments[0]["last_run"], Value::Null);

    // The token: missing, wrong, right.
    let trigger = "/api/deployments/hello/runs";
    let (code, body) = daemon.post(trigger, "", None);
    assert_eq!(code, 401, "{body}");
    assert_valid(&doc, schema("Error"), &parse(&body), "a 401");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (code, body) = daemon.post(trigger, "", Some("not-the-token"));
    assert_eq!(code, 403, "{body}");
    assert_valid(&doc, schema("Error"), &parse(&body), "a 403");

    // Unknown deployment, bad body, parameters failing the schema (every error listed).
    let (code, body) = daemon.post("/api/deployments/nope/runs", "", Some(&token));
    assert_eq!(
        (code, parse(&body)),
        (404, json!({"error": "no deployment named `nope`"}))
    );
    let (code, body) = daemon.post(trigger, "{not json", Some(&token));
    assert_eq!(code, 400, "{body}");
    let (code, body) = daemon.post(
        trigger,
        r#"{"parameters": {"n": "x", "who": 3}}"#,
        Some(&token),
    );
    assert_eq!(code, 422, "{body}");
    let refused = parse(&body);
    assert_valid(&doc, schema("Error"), &refused, "a 422");
    assert_eq!(
        refused["error"],
        "the parameters do not match the deployment's parameter schema"
    );
    let mut errors: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            r#"`n`: "x" is not of type "integer""#,
            r#"`who`: 3 is not of type "string""#
        ]
    );

    // A manual run: empty body = defaults; a body's parameters override them.
    let (code, body) = daemon.post("/api/deployments/quick/runs", "", Some(&token));
    assert_eq!(code, 201, "{body}");
    let quick = parse(&body);
    assert_valid(&doc, schema("Run"), &quick, "a triggered run");
    assert_eq!(
        (quick["trigger"].as_str(), quick["scheduled_for"].clone()),
        (Some("manual"), Value::Null)
    );
    let (code, body) = daemon.post(trigger, r#"{"parameters": {"n": 5}}"#, Some(&token));
    assert_eq!(code, 201, "{body}");
    let hello = parse(&body);
    assert_eq!(hello["parameters"], json!({"n": 5}));
    assert_eq!(hello["state"], "Running");
    let id = hello["id"].as_i64().unwrap();

    let run = daemon.json(&format!("/api/runs/{id}"));
    assert_valid(&doc, schema("Run"), &run, "/api/runs/{id}");
    assert_eq!(daemon.get("/api/runs/999").0, 404);
    assert_eq!(daemon.get("/api/runs/999/logs").0, 404);
    wait_until(Duration::from_secs(20), "hello's log", || {
        daemon
            .get(&format!("/api/runs/{id}/logs"))
            .1
            .contains("started\n")
            .then_some(())
    });
    let (code, tail) = daemon.get(&format!("/api/runs/{id}/logs?offset=3"));
    assert_eq!(code, 200);
    assert_eq!(tail, daemon.get(&format!("/api/runs/{id}/logs")).1[3..]);

    // Cancel: token, unknown run, running run, then already ended.
    let cancel = format!("/api/runs/{id}/cancel");
    assert_eq!(daemon.post(&cancel, "", None).0, 401);
    assert_eq!(daemon.post(&cancel, "", Some("nope")).0, 403);
    assert_eq!(
        daemon.post("/api/runs/999/cancel", "", Some(&token)),
        (404, r#"{"error":"no run 999"}"#.into())
    );
    let (code, body) = daemon.post(&cancel, "", Some(&token));
    assert_eq!(code, 202, "{body}");
    assert_valid(&doc, schema("Run"), &parse(&body), "a cancelled run");
    wait_until(Duration::from_secs(20), "hello cancelled", || {
        (daemon.json(&format!("/api/runs/{id}"))["state"] == "Cancelled").then_some(())
    });
    let (code, body) = daemon.post(&cancel, "", Some(&token));
    assert_eq!(
        (code, parse(&body)),
        (
            409,
            json!({"error": format!("run {id} already ended (Cancelled)")})
        )
    );

    wait_until(Duration::from_secs(20), "quick completed", || {
        (daemon.json(&format!("/api/runs/{}", quick["id"]))["state"] == "Completed").then_some(())
    });
    let runs = daemon.json("/api/runs");
    assert_valid(&doc, array_of("Run"), &runs, "/api/runs");
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let (code, body) = daemon.get("/api/runs?state=bogus");
    assert_eq!(code, 400, "{body}");
    assert_valid(&doc, schema("Error"), &parse(&body), "a 400");
    let deployments = daemon.json("/api/deployments");
    assert_valid(
        &doc,
        array_of("Deployment"),
        &deployments,
        "/api/deployments with runs",
    );
    assert_eq!(deployments[0]["last_run"]["state"], "Cancelled");

    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200);
    for line in [
        r#"sundial_runs_started_total{deployment="hello",trigger="manual"} 1"#,
        r#"sundial_runs_finished_total{deployment="hello",state="Cancelled"} 1"#,
        r#"sundial_runs_finished_total{deployment="quick",state="Completed"} 1"#,
        "sundial_running_processes 0",
        "sundial_sync_errors 1",
        "sundial_run_start_lateness_seconds_count 0",
        r#"sundial_build_info{version="0.1.0"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "/metrics lacks {line:?}:\n{metrics}"
        );
    }
}

#[test]
fn runs_page_by_limit_and_before_with_a_next_link() {
    let (_repo, daemon) = start();
    let token = daemon.token();
    for _ in 0..3 {
        assert_eq!(
            daemon
                .post("/api/deployments/quick/runs", "", Some(&token))
                .0,
            201
        );
    }
    let (code, link, body) = daemon.get_with_link("/api/runs?deployment=quick&limit=2");
    assert_eq!(code, 200);
    let page: Vec<i64> = parse(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page, [3, 2]);
    assert_eq!(
        link.as_deref(),
        Some(r#"</api/runs?limit=2&deployment=quick&before=2>; rel="next""#)
    );
    let (_, link, body) = daemon.get_with_link("/api/runs?limit=2&deployment=quick&before=2");
    assert_eq!(parse(&body).as_array().unwrap().len(), 1);
    assert_eq!(link, None, "a short page is the last");
}

#[test]
fn the_metrics_count_scheduled_runs_and_their_lateness() {
    let repo = GitRepo::new();
    repo.commit(
        &[(
            "deployments/tick.yaml",
            Some("deployments:\n  - name: tick\n    work_pool:\n      job_variables:\n        command: \"true\"\n    schedules:\n      - interval: 1\n"),
        )],
        "tick",
    );
    let daemon = Daemon::start(repo.path());
    let metrics = wait_until(
        Duration::from_secs(30),
        "two scheduled runs measured",
        || {
            let text = daemon.get("/metrics").1;
            let count = text
                .lines()
                .find_map(|l| l.strip_prefix("sundial_run_start_lateness_seconds_count "))
                .and_then(|n| n.parse::<u64>().ok())?;
            (count >= 2).then_some(text)
        },
    );
    assert!(
        metrics.contains(r#"sundial_runs_started_total{deployment="tick",trigger="schedule"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sundial_run_start_lateness_seconds_bucket{le="+Inf"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE sundial_run_start_lateness_seconds histogram"),
        "{metrics}"
    );
}

/// Found by schemathesis (issue 12): plain-text 400s, 400s the document did not list,
/// `limit` above its maximum silently clamped, a trigger body `[]` accepted.
#[test]
fn bad_query_strings_and_run_ids_are_json_400s_and_limit_is_not_clamped() {
    let (_repo, daemon) = start();
    let token = daemon.token();
    for (path, error) in [
        (
            "/api/runs?limit=1001",
            "limit 1001 is out of range: give 1 to 1000 (and follow the `Link` header for more)",
        ),
        (
            "/api/runs?limit=0",
            "limit 0 is out of range: give 1 to 1000 (and follow the `Link` header for more)",
        ),
        (
            "/api/runs?state=Failed&state=Failed",
            "the query string is not valid: duplicate field `state` (see /api/openapi.json)",
        ),
        (
            "/api/runs?before=99999999999999999999",
            "the query string is not valid: before: number too large to fit in target type (see /api/openapi.json)",
        ),
        (
            "/api/runs/abc",
            "`abc` is not a run id: give an integer from 1 to 9223372036854775807",
        ),
        (
            "/api/runs/1/logs?offset=-1",
            "the query string is not valid: offset: invalid digit found in string (see /api/openapi.json)",
        ),
    ] {
        let (code, body) = daemon.get(path);
        assert_eq!((code, parse(&body)), (400, json!({ "error": error })), "{path}");
    }
    assert_eq!(daemon.post("/api/runs/abc/cancel", "", Some(&token)).0, 400);
    // A negative `before` is an integer like any other: an empty page.
    assert_eq!(daemon.get("/api/runs?before=-5"), (200, "[]".into()));
    for body in ["[]", " ", "\"x\""] {
        let (code, answer) = daemon.post("/api/deployments/quick/runs", body, Some(&token));
        assert_eq!(code, 400, "{body:?}: {answer}");
        let error = parse(&answer)["error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with("the body must be a JSON object like {\"parameters\": {...}}"),
            "{error}"
        );
    }
}
