//! The dashboard in real headless Chromium: the rendered DOM shows the deployments, a
//! run's state and an error's file:line, and a log's markup stays text; driven over the
//! DevTools protocol (`support::browser`): the runs list updates live without a reload
//! and keeps its filters in the URL, a custom run goes through the deployment page's
//! form (refused in the page, then by the API's schema check, then run), and the charts
//! draw one bar per run of a known history. Screenshots are saved next to the test
//! binaries (`<target>/dashboard.png`, `dashboard-phone.png`, and `dashboard-`,
//! `deployment-` and `runs-` each `390.png` and `1280.png`) for review. Fails, never
//! skips, when chromium is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::daemon::{wait_until, Daemon, GitRepo};
use crate::support::require_tool;

/// Runs chromium headless with `args` then `url`; returns stdout.
#[track_caller]
fn chromium(args: &[&str], url: &str) -> String {
    let binary = require_tool("chromium");
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let status = wait_until(Duration::from_secs(90), "chromium to finish", || {
        child.try_wait().unwrap()
    });
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "chromium {args:?} {url} failed: {status}");
    out
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_dashboard_renders_deployments_runs_errors_and_escaped_logs_in_chromium() {
    let (_repo, daemon) = crate::api::start();
    let token = daemon.token();
    let (code, body) = daemon.post("/api/deployments/quick/runs", "", Some(&token));
    assert_eq!(code, 201, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = run["id"].as_i64().unwrap();
    wait_until(Duration::from_secs(20), "quick completed", || {
        (daemon.json(&format!("/api/runs/{id}"))["state"] == "Completed").then_some(())
    });

    let dom = chromium(&["--dump-dom"], &format!("{}/", daemon.url));
    for needle in [
        r#"<tr data-deployment="hello">"#,
        "<strong>hello</strong>",
        "<strong>quick</strong>",
        r#"<div title="cron 0 9 * * * (America/Chicago)">At 09:00 every day, America/Chicago</div>"#,
        r#"<span class="badge s-Completed">Completed</span>"#,
        "<code>deployments/bad.yaml:4:5</code> unknown key `schedulez` in a deployment; did you mean `schedules`?",
        "Run now",
    ] {
        assert!(dom.contains(needle), "the dashboard's DOM lacks {needle:?}:\n{dom}");
    }
    assert!(!dom.contains(&token), "the page must never hold the token");

    let page = chromium(&["--dump-dom"], &format!("{}/runs/{id}", daemon.url));
    assert!(page.contains(r#"<dd id="state">Completed</dd>"#), "{page}");
    assert!(
        page.contains("done &lt;script&gt;alert(1)&lt;/script&gt;"),
        "the log is shown as text:\n{page}"
    );
    assert!(
        !page.contains("<script>alert(1)"),
        "a log must not inject markup:\n{page}"
    );
    let missing = daemon.get("/runs/999");
    assert_eq!(missing.0, 404);

    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
        &format!("{}/", daemon.url),
    );
    let phone = target_dir().join("dashboard-phone.png");
    chromium(
        &[
            &format!("--screenshot={}", phone.display()),
            "--window-size=390,844",
            "--hide-scrollbars",
        ],
        &format!("{}/", daemon.url),
    );
    for png in [&shot, &phone] {
        let bytes = std::fs::read(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            png.display()
        );
    }
}

/// `etl` has a parameter schema with every kind of field and a weekday schedule in
/// Madrid; `quick` ends at once; `slow` runs for a minute (to cancel).
const ETL: &str = r#"deployments:
  - name: etl
    description: Loads the day's orders
    parameters: {batch_size: 100, mode: fast}
    parameter_openapi_schema:
      type: object
      properties:
        batch_size: {type: integer, minimum: 1, maximum: 1000, multipleOf: 10, title: Batch size}
        mode: {type: string, enum: [fast, careful]}
        dry_run: {type: boolean, default: false}
        who: {type: string, description: Who asked for it}
        tags: {type: array, items: {type: string}}
      required: [batch_size]
    timeout_seconds: 60
    work_pool:
      job_variables:
        command: python3 -c "print('etl ran')"
    schedules:
      - cron: "0 9 * * 1-5"
        timezone: Europe/Madrid
  - name: quick
    work_pool:
      job_variables:
        command: python3 -c "print('done')"
  - name: slow
    work_pool:
      job_variables:
        command: sleep 60
"#;

fn start_etl() -> (GitRepo, Daemon) {
    let repo = GitRepo::new();
    repo.commit(&[("deployments/etl.yaml", Some(ETL))], "etl");
    let daemon = Daemon::start(repo.path());
    (repo, daemon)
}

/// Triggers a run of `deployment` through the API and waits until it completed.
#[track_caller]
fn completed_run(daemon: &Daemon, deployment: &str, body: &str) -> i64 {
    let (code, answer) = daemon.post(
        &format!("/api/deployments/{deployment}/runs"),
        body,
        Some(&daemon.token()),
    );
    assert_eq!(code, 201, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_until(Duration::from_secs(30), "the run completed", || {
        (daemon.json(&format!("/api/runs/{id}"))["state"] == "Completed").then_some(())
    });
    id
}

fn runs_of(daemon: &Daemon, deployment: &str) -> usize {
    daemon.runs(deployment).len()
}

pub(crate) const LOAD: Duration = Duration::from_secs(30);

#[test]
fn the_runs_list_keeps_its_filters_in_the_url_and_updates_live_without_a_reload() {
    let (repo, daemon) = start_etl();
    let first = completed_run(&daemon, "quick", "");
    let mut browser = Browser::start(1280, 900);
    browser.goto(&format!("{}/runs?deployment=quick", daemon.url));
    assert_eq!(
        browser.eval("document.querySelector('select[name=deployment]').value"),
        "quick"
    );
    // Choosing a filter in the form puts it in the URL.
    browser.eval("document.querySelector('select[name=trigger]').value = 'manual'; document.querySelector('form.filters button').click()");
    browser.wait_for(LOAD, "the filtered list", "location.search.includes('trigger=manual') && document.readyState === 'complete' && !!document.querySelector('#runs')");
    assert_eq!(
        browser.eval("location.search"),
        "?deployment=quick&state=&trigger=manual&since=&until="
    );
    let shown = browser.eval(
        "[...document.querySelectorAll('#runs tr[data-run]')].map(r => Number(r.dataset.run))",
    );
    assert_eq!(shown, serde_json::json!([first]));
    // A filter for another trigger shows nothing of it.
    let url = format!("{}/runs?deployment=quick&trigger=schedule", daemon.url);
    browser.goto(&url);
    assert_eq!(
        browser.eval("document.querySelectorAll('#runs tr[data-run]').length"),
        0
    );

    // Live: a new run and a new commit show up in the open page, which is never reloaded.
    browser.goto(&format!(
        "{}/runs?deployment=quick&trigger=manual",
        daemon.url
    ));
    browser.eval("window.notReloaded = true");
    let second = completed_run(&daemon, "quick", "");
    browser.wait_for(
        LOAD,
        "the new run in the list",
        &format!("window.notReloaded && !!document.querySelector('#runs tr[data-run=\"{second}\"] .s-Completed')"),
    );
    let sha = repo.commit(
        &[(
            "deployments/more.yaml",
            Some("deployments:\n  - name: more\n    entrypoint: x.py:f\n"),
        )],
        "more",
    );
    daemon.wait_applied(&sha);
    browser.wait_for(
        LOAD,
        "the applied commit in the header",
        &format!("window.notReloaded && document.querySelector('#commit').title === '{sha}'"),
    );
    // The poll is conditional: an unchanged page answers 304.
    let (code, etag, _) = get_with_etag(&daemon, "/runs?deployment=quick", None);
    assert_eq!(code, 200);
    let (code, _, body) = get_with_etag(&daemon, "/runs?deployment=quick", etag.as_deref());
    assert_eq!((code, body.as_str()), (304, ""));
    // A filter that does not parse is named, and the page still answers.
    let (code, page) = daemon.get("/runs?state=Done&since=yesterday");
    assert_eq!(code, 400);
    assert!(
        page.contains("unknown state &quot;Done&quot;") && page.contains("is not a time"),
        "{page}"
    );
}

/// GET with `If-None-Match`: (status, ETag, body).
fn get_with_etag(daemon: &Daemon, path: &str, etag: Option<&str>) -> (u16, Option<String>, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut request = agent.get(&format!("{}{path}", daemon.url));
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    let mut response = request.call().unwrap();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let code = response.status().as_u16();
    (
        code,
        etag,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn a_custom_run_is_checked_in_the_page_then_by_the_api_schema_then_runs_from_the_form() {
    let (_repo, daemon) = start_etl();
    let mut browser = Browser::start(1280, 900);
    browser.goto(&format!("{}/deployments/etl", daemon.url));
    let schedules = browser.eval("document.querySelector('#schedules').innerText");
    assert!(
        schedules
            .as_str()
            .unwrap()
            .contains("At 09:00 every weekday, Europe/Madrid"),
        "{schedules}"
    );
    // Ten upcoming runs, all on weekdays at 09:00 Madrid time.
    let upcoming = browser.eval("[...document.querySelectorAll('#upcoming tbody tr td:first-child')].map(td => td.innerText)");
    let upcoming: Vec<&str> = upcoming
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(upcoming.len(), 10, "{upcoming:?}");
    for when in &upcoming {
        assert!(
            when.contains(" 09:00 CE") && !when.starts_with("Sat") && !when.starts_with("Sun"),
            "{upcoming:?}"
        );
    }
    // The form is built from the schema, starting at the defaults.
    let fields = browser.eval("Object.fromEntries([...document.querySelectorAll('#custom-run [data-param]')].map(f => [f.dataset.param, [f.tagName, f.type, f.value, f.required]]))");
    assert_eq!(
        fields,
        serde_json::json!({
            "batch_size": ["INPUT", "number", "100", false],
            "mode": ["SELECT", "select-one", "\"fast\"", false],
            "dry_run": ["SELECT", "select-one", "false", false],
            "who": ["INPUT", "text", "", false],
            "tags": ["TEXTAREA", "textarea", "", false],
        })
    );
    browser.eval(&format!(
        "const t = document.querySelector('#token'); t.value = '{}'; t.dispatchEvent(new Event('input'))",
        daemon.token()
    ));
    let submit = "document.querySelector('#custom-run button[type=submit]').click()";
    // In the page: 5000 is over the schema's maximum, so nothing is sent.
    browser.eval("document.querySelector('[data-param=batch_size]').value = '5000'");
    browser.eval(submit);
    assert_eq!(
        browser.eval("document.querySelector('[data-param=batch_size]').validity.rangeOverflow"),
        true
    );
    assert_eq!(
        browser.eval("document.querySelector('#custom-run output.result').textContent"),
        ""
    );
    // By the API: 15 passes the page's checks but not `multipleOf: 10`; the 422's errors
    // show in the form, beside the field.
    browser.eval("document.querySelector('[data-param=who]').value = 'ann'; document.querySelector('[data-param=batch_size]').value = '15'");
    browser.eval(submit);
    let shown = browser.wait_for(
        LOAD,
        "the schema error in the page",
        "document.querySelector('#custom-run ul.problems').innerText",
    );
    assert!(shown.as_str().unwrap().contains("batch_size"), "{shown}");
    let beside = browser.eval("document.querySelector('output[for=' + document.querySelector('[data-param=batch_size]').id + ']').textContent");
    assert!(
        beside.as_str().unwrap().contains("multiple of 10"),
        "{beside}"
    );
    assert_eq!(runs_of(&daemon, "etl"), 0, "a refused run is not recorded");
    // A valid form runs, typed as the schema says, and the page goes to the run.
    browser.eval("document.querySelector('[data-param=batch_size]').value = '20'; document.querySelector('[data-param=mode]').value = '\"careful\"'; document.querySelector('[data-param=tags]').value = '[\"eu\"]'");
    browser.eval(submit);
    browser.wait_for(
        LOAD,
        "the run's page",
        "location.pathname.startsWith('/runs/') && !!document.querySelector('#parameters')",
    );
    let runs = daemon.runs("etl");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["parameters"],
        serde_json::json!({"batch_size": 20, "mode": "careful", "dry_run": false, "who": "ann", "tags": ["eu"]})
    );
    let parameters = browser.eval("document.querySelector('#parameters').innerText");
    assert!(
        parameters.as_str().unwrap().contains("\"who\": \"ann\""),
        "{parameters}"
    );
    // The run's page follows its state and log live; the log's search shows matching lines.
    browser.wait_for(
        LOAD,
        "the run's end and its log line in the open page",
        "document.querySelector('#state').textContent === 'Completed' && [...document.querySelectorAll('#log .line')].some(l => l.textContent.trim() === 'etl ran')",
    );
    browser.eval("{ const s = document.querySelector('#log-search'); s.value = 'no such text'; s.dispatchEvent(new Event('input')) }");
    let count = browser.eval("document.querySelector('#log-count').textContent");
    assert!(count.as_str().unwrap().starts_with("0 of "), "{count}");
    assert_eq!(
        browser.eval("document.querySelectorAll('#log .line:not([hidden])').length"),
        0
    );
    browser.eval("{ const s = document.querySelector('#log-search'); s.value = 'ETL RAN'; s.dispatchEvent(new Event('input')) }");
    let shown = browser.eval("[...document.querySelectorAll('#log .line:not([hidden])')].map(l => l.textContent.toLowerCase().includes('etl ran'))");
    let shown = shown.as_array().unwrap();
    assert!(
        !shown.is_empty() && shown.iter().all(|hit| hit == true),
        "{shown:?}"
    );
}

#[test]
fn the_charts_draw_one_bar_per_run_of_a_known_history_and_pages_fit_390_and_1280_pixels() {
    let (_repo, daemon) = start_etl();
    for _ in 0..3 {
        completed_run(&daemon, "quick", "");
    }
    let etl_run = completed_run(&daemon, "etl", r#"{"parameters": {"who": "bob"}}"#);
    let mut browser = Browser::start(1280, 900);
    browser.goto(&format!("{}/deployments/quick", daemon.url));
    assert_eq!(
        browser.eval("document.querySelectorAll('#durations g.bar').length"),
        3
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#lateness g.bar').length"),
        0,
        "manual runs are never late"
    );
    let caption = browser.eval("document.querySelector('#durations figcaption').textContent");
    assert_eq!(caption, "Duration of the last 3 ended runs, oldest first");
    browser.goto(&format!("{}/deployments/etl", daemon.url));
    assert_eq!(
        browser.eval("document.querySelectorAll('#durations g.bar').length"),
        1
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#durations line.limit').length"),
        1,
        "the timeout line"
    );
    assert_eq!(
        browser.eval("document.querySelector('#durations a').getAttribute('href')"),
        format!("/runs/{etl_run}")
    );
    // Four runs within the same hour: one stacked bar on the overview.
    browser.goto(&format!("{}/", daemon.url));
    let bars = browser
        .eval("[...document.querySelectorAll('#over-time g.bar title')].map(t => t.textContent)");
    let bars = bars.as_array().unwrap();
    assert!(
        bars.len() == 1 && bars[0].as_str().unwrap().ends_with(": 4 Completed") || bars.len() == 2, // the hour turned between the runs
        "{bars:?}"
    );

    let target = target_dir();
    for (width, height) in [(390, 844), (1280, 900), (1920, 1080)] {
        browser.resize(width, height);
        for (page, name) in [
            ("/", "dashboard"),
            ("/deployments/etl", "deployment"),
            ("/runs", "runs"),
        ] {
            browser.goto(&format!("{}{page}", daemon.url));
            let fits =
                browser.eval("document.documentElement.scrollWidth <= window.innerWidth + 1");
            assert_eq!(fits, true, "{page} is wider than {width} px");
            // Nor does any table scroll sideways: every column is on screen.
            let scrolling = browser.eval("[...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.firstElementChild.id)");
            assert_eq!(scrolling, serde_json::json!([]), "{page} at {width} px");
            if page == "/" {
                // Next fire and Run now are on screen, not past the right edge.
                let right = browser.eval("Math.max(...[...document.querySelectorAll('#deployments button, #deployments td[data-label=Next]')].map(e => e.getBoundingClientRect().right))");
                assert!(
                    right.as_f64().unwrap() <= f64::from(width),
                    "{right} > {width}"
                );
            }
            if width != 1920 {
                browser.screenshot(&target.join(format!("{name}-{width}.png")));
            }
        }
    }
    // Everything is reachable by keyboard: every link and button takes the focus.
    let unreachable = browser.eval("[...document.querySelectorAll('a[href], button, input, select, textarea')].filter(e => e.tabIndex < 0).length");
    assert_eq!(unreachable, 0);
}

#[test]
fn a_run_is_cancelled_from_its_deployment_page_and_its_state_changes_there_live() {
    let (_repo, daemon) = start_etl();
    let (code, answer) = daemon.post("/api/deployments/slow/runs", "", Some(&daemon.token()));
    assert_eq!(code, 201, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut browser = Browser::start(390, 844);
    browser.goto(&format!("{}/deployments/slow", daemon.url));
    browser.eval("window.notReloaded = true");
    let row = format!("#runs tr[data-run=\"{id}\"]");
    assert_eq!(
        browser.eval(&format!(
            "document.querySelector('{row} .badge').textContent"
        )),
        "Running"
    );
    // Without the token the page says what to do and sends nothing.
    browser.eval(&format!(
        "document.querySelector('{row} form.api button').click()"
    ));
    let said = browser.eval(&format!(
        "document.querySelector('{row} form.api output').textContent"
    ));
    assert!(
        said.as_str().unwrap().starts_with("Type the API token"),
        "{said}"
    );
    assert_eq!(daemon.json(&format!("/api/runs/{id}"))["state"], "Running");
    browser.eval(&format!(
        "{{ const t = document.querySelector('#token'); t.value = '{}'; t.dispatchEvent(new Event('input')) }}",
        daemon.token()
    ));
    browser.eval(&format!(
        "document.querySelector('{row} form.api button').click()"
    ));
    browser.wait_for(
        LOAD,
        "the run Cancelled in the open page",
        &format!("window.notReloaded && document.querySelector('{row} .badge').textContent === 'Cancelled' && !document.querySelector('{row} form.api')"),
    );
    assert_eq!(
        daemon.json(&format!("/api/runs/{id}"))["state"],
        "Cancelled"
    );
}
