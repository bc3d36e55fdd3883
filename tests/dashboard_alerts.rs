//! What went wrong, in the dashboard (issue 15), in real headless Chromium: a pause after
//! failures with its Resume button, SLA breaches on a deployment's page, failing
//! notification deliveries in the header, and the explain page.

use crate::dashboard::LOAD;
use crate::support::browser::Browser;
use crate::support::daemon::{wait_until, Daemon, GitRepo};

/// Issue 15 in the dashboard: a deployment paused after failures shows it plainly and is
/// resumed by its Resume button; a failing notification delivery shows in the header; the
/// explain page tells each slot's story and a wrong time is a 400 page saying why.
#[test]
fn a_pause_after_failures_is_resumed_from_the_page_and_explain_and_failing_deliveries_show() {
    let repo = GitRepo::new();
    let dead = crate::support::receiver::free_port();
    let text = format!(
        "notifications:
  - webhook: http://127.0.0.1:{dead}/hook
deployments:
  - name: flaky
    pause_after_failures: 2
    sla:
      - name: fresh
        stale_after: 1
    work_pool: {{job_variables: {{command: 'false'}}}}
    schedules:
      - interval: 1
"
    );
    repo.commit(&[("prefect.yaml", Some(&text))], "flaky");
    let daemon = Daemon::start(repo.path());
    wait_until(LOAD, "the pause", || {
        (!daemon.json("/api/deployments")[0]["paused_after_failures"].is_null()).then_some(())
    });
    let mut browser = Browser::start(1280, 900);
    browser.goto(&format!("{}/deployments/flaky", daemon.url));
    // Its SLA breach is listed on its page.
    browser.wait_for(
        LOAD,
        "the frequency breach listed",
        "!!document.querySelector('#breaches tr[data-kind=\"frequency\"]')",
    );
    let note = browser.eval("document.querySelector('#pause').textContent");
    assert!(
        note.as_str()
            .unwrap()
            .contains("paused after 2 failed runs in a row"),
        "{note}"
    );
    // Failing deliveries (nothing listens) show in the header.
    browser.wait_for(
        LOAD,
        "the failing notifications in the header",
        "!!document.querySelector('#notifications') && document.querySelector('#notifications').textContent.includes('waiting after a failed delivery')",
    );
    browser.eval(&format!(
        "{{ const t = document.querySelector('#token'); t.value = '{}'; t.dispatchEvent(new Event('input')) }}",
        daemon.token()
    ));
    // Two slots skipped while paused, then Resume.
    let paused = daemon.runs_when("flaky", LOAD, "two slots skipped while paused", |runs| {
        runs.iter()
            .filter(|r| r.reason.as_deref() == Some("paused after failures"))
            .count()
            >= 2
    });
    let skipped: Vec<_> = paused
        .iter()
        .filter(|r| r.reason.as_deref() == Some("paused after failures"))
        .filter_map(|r| r.scheduled_for)
        .collect();
    browser.eval("document.querySelector('#pause form.api button').click()");
    wait_until(LOAD, "the resume", || {
        daemon.json("/api/deployments")[0]["paused_after_failures"]
            .is_null()
            .then_some(())
    });
    // Explain those slots: skipped while paused, and they say so.
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    browser.goto(&format!(
        "{}/deployments/flaky/explain?from={}&to={}",
        daemon.url,
        stamp(skipped[0]),
        stamp(skipped[1])
    ));
    let whats = browser.eval(
        "[...document.querySelectorAll('#slots tr[data-what]')].map(r => r.dataset.what).join(' ')",
    );
    assert_eq!(whats, "skipped skipped", "{whats}");
    let told = browser.eval("document.querySelector('#slots').textContent");
    assert!(
        told.as_str().unwrap().contains("paused after failures"),
        "the slots skipped while paused say so: {told}"
    );
    let (code, page) = daemon.get("/deployments/flaky/explain?at=2026-02-30T10:00");
    assert_eq!(code, 400, "{page}");
    assert!(page.contains("is not a time"), "{page}");
}
