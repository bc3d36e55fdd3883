//! `notifications:` (sundial's own key; Prefect has automations on its server instead):
//! at a manifest's top level, the default for its deployments; on a deployment, its own
//! list, which replaces that default (`[]` for none). The schema checks the shape (one of
//! `webhook`, `command` or `healthchecks` per entry); this checks what it cannot: URLs,
//! the words of a command, the events asked for, and that the only placeholders are
//! `{{ $NAME }}` (resolved from the daemon's environment at each delivery, so secrets stay
//! out of git and out of the state database).

use crate::manifest::{pointer, Node, Value};
use crate::notify::{Event, Notification, Target};
use crate::template::{placeholders, split_command, Placeholder};

use super::diagnostic::Code;
use super::report::FileReport;

/// Checks a `notifications:` list; returns the entries without errors.
pub fn check(report: &mut FileReport<'_>, list: &Node, at: &str) -> Vec<Notification> {
    let mut out = Vec::new();
    for (i, entry) in list.items().iter().enumerate() {
        let here = pointer(at, i);
        let errors_before = report.error_count();
        // In the order written, so a second kind is reported where it is.
        let kinds: Vec<&str> = entry
            .entries()
            .iter()
            .filter(|e| {
                ["webhook", "command", "healthchecks"].contains(&e.key.as_str())
                    && !e.value.is_null()
            })
            .map(|e| e.key.as_str())
            .collect();
        match kinds.as_slice() {
            [_] => {}
            [] => {
                report.error(
                    &here,
                    false,
                    Code::Notification,
                    "a notification needs one of `webhook`, `command` or `healthchecks`",
                    Some(
                        "e.g. `- webhook: https://hooks.slack.com/services/{{ $SLACK_HOOK }}`"
                            .into(),
                    ),
                );
                continue;
            }
            [_, second, ..] => {
                report.error(&pointer(&here, second), true, Code::Notification, format!("a notification is one of `webhook`, `command` or `healthchecks`; this one has `{}` too", kinds.join("` and `")), Some("make each its own entry of the list".into()));
                continue;
            }
        }
        if entry.get("headers").is_some() && kinds != ["webhook"] {
            report.error(
                &pointer(&here, "headers"),
                true,
                Code::Notification,
                "`headers` belong to a `webhook`",
                None,
            );
        }
        let target = if let Some(url) = entry.text_of("webhook") {
            let url_at = pointer(&here, "webhook");
            check_url(report, &url_at, &url);
            let mut headers = Vec::new();
            for h in entry.get("headers").map(Node::entries).unwrap_or_default() {
                let h_at = pointer(&pointer(&here, "headers"), &h.key);
                if !is_header_name(&h.key) {
                    report.error(
                        &h_at,
                        true,
                        Code::Notification,
                        format!("`{}` is not an HTTP header name", h.key),
                        Some("use letters, digits and `-`, e.g. `X-Token`".into()),
                    );
                }
                match h.value.scalar_text() {
                    Some(v) => {
                        check_placeholders(report, &h_at, &v);
                        headers.push((h.key.clone(), v));
                    }
                    None => report.error(
                        &h_at,
                        false,
                        Code::Notification,
                        "a header's value is text",
                        None,
                    ),
                }
            }
            Target::Webhook { url, headers }
        } else if let Some(url) = entry.text_of("healthchecks") {
            let url_at = pointer(&here, "healthchecks");
            check_url(report, &url_at, &url);
            if entry.get("events").is_some_and(|n| !n.is_null()) {
                report.error(
                    &pointer(&here, "events"),
                    true,
                    Code::Notification,
                    "a healthchecks ping has no `events:`: it is pinged at each start (`/start`), success (the URL) and failure after the last retry (`/fail`)",
                    Some("remove `events:`, or use a `webhook` for other events".into()),
                );
            }
            Target::Healthchecks { url }
        } else if let Some(command) = entry.get("command") {
            let command_at = pointer(&here, "command");
            let argv = match &command.value {
                Value::Seq(words) => words.iter().filter_map(Node::scalar_text).collect(),
                _ => match command.scalar_text().map(|c| split_command(&c)) {
                    Some(Ok(words)) => words,
                    Some(Err(e)) => {
                        report.error(
                            &command_at,
                            false,
                            Code::Notification,
                            format!("`command` cannot be split into words: {e}"),
                            Some(
                                "write it as a list of words: `command: [notify, --to, ops]`"
                                    .into(),
                            ),
                        );
                        Vec::new()
                    }
                    None => Vec::new(),
                },
            };
            if argv.is_empty() && report.error_count() == errors_before {
                report.error(
                    &command_at,
                    false,
                    Code::Notification,
                    "`command` is empty",
                    Some("name a program and its arguments; it runs without a shell".into()),
                );
            }
            for word in &argv {
                check_placeholders(report, &command_at, word);
            }
            Target::Command { argv }
        } else {
            continue; // the schema reported it
        };
        if entry.get("true").is_some() {
            report.error(
                &pointer(&here, "true"),
                true,
                Code::Notification,
                "`on:` is read as the key `true` (YAML 1.1, as Prefect's PyYAML reads it)",
                Some("write the events under `events:`, e.g. `events: [failure, recovery]`".into()),
            );
        }
        let on = match entry.get("events").filter(|n| !n.is_null()) {
            None => Event::DEFAULT.to_vec(),
            Some(list) => {
                let mut on = Vec::new();
                let events_at = pointer(&here, "events");
                for (j, item) in list.items().iter().enumerate() {
                    if report.has_error_under(&events_at) {
                        break; // the schema said which values are allowed
                    }
                    let word = item.scalar_text().unwrap_or_default();
                    match Event::parse(&word).filter(|e| Event::CHOOSABLE.contains(e)) {
                        Some(event) => on.push(event),
                        None => report.error(
                            &pointer(&events_at, j),
                            false,
                            Code::Notification,
                            format!("`{word}` is not an event a notification can ask for"),
                            Some(format!(
                                "choose from {}",
                                Event::CHOOSABLE
                                    .map(|e| format!("`{}`", e.as_str()))
                                    .join(", ")
                            )),
                        ),
                    }
                }
                if list.items().is_empty() {
                    report.warning(
                        &pointer(&here, "events"),
                        true,
                        Code::Notification,
                        "`events: []` asks for no event: this notification is never sent",
                        Some("list events, or remove the entry".into()),
                    );
                }
                on
            }
        };
        if report.error_count() == errors_before {
            out.push(Notification { target, on });
        }
    }
    out
}

fn check_url(report: &mut FileReport<'_>, at: &str, url: &str) {
    check_placeholders(report, at, url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        report.error(
            at,
            false,
            Code::Notification,
            format!("`{url}` is not an http(s) URL"),
            Some(
                "write the whole URL, e.g. `https://hooks.slack.com/services/{{ $SLACK_HOOK }}`"
                    .into(),
            ),
        );
    }
}

/// Only `{{ $NAME }}` resolves in a notification: there is no run or step to ask.
fn check_placeholders(report: &mut FileReport<'_>, at: &str, text: &str) {
    for p in placeholders(text) {
        if !matches!(p, Placeholder::Env(_)) {
            report.error(at, false, Code::Template, format!("`{}` cannot be resolved in a notification", shown(&p)), Some("only `{{ $NAME }}` (the daemon's environment) is resolved here; the payload already carries the run's details".into()));
        }
    }
}

fn shown(p: &Placeholder) -> String {
    let inner = match p {
        Placeholder::Env(name) => format!("${name}"),
        Placeholder::StepOutput { step, field } => format!("{step}.{field}"),
        Placeholder::PrefectServer(x) | Placeholder::FlowRun(x) | Placeholder::Other(x) => {
            x.clone()
        }
    };
    format!("{{{{ {inner} }}}}")
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}
