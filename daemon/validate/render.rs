//! One renderer per output format of `sundial validate`: human (rustc-style, with the
//! source line and a caret), json (DESIGN.md's shape) and github (workflow commands that
//! annotate the pull request). Renderers only format; they decide nothing.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::json;

use super::diagnostic::{Diagnostic, Severity};
use super::Validation;

/// Renders for people: every diagnostic with its source line, then a one-line summary.
pub fn human(validation: &Validation, sources: &HashMap<String, String>) -> String {
    let mut out = String::new();
    for d in validation.diagnostics() {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{level}[{}]: {}", d.code.as_str(), d.message);
        let source_line = sources
            .get(&d.file)
            .and_then(|text| text.lines().nth(d.line.wrapping_sub(1)));
        match source_line {
            Some(line) if d.line > 0 => {
                let gutter = " ".repeat(d.line.to_string().len());
                let _ = writeln!(out, "{gutter}--> {}:{}:{}", d.file, d.line, d.column);
                let _ = writeln!(out, "{gutter} |");
                let shown = line.replace('\t', " ");
                let _ = writeln!(out, "{} | {shown}", d.line);
                let available = shown.chars().count().saturating_sub(d.column - 1).max(1);
                let caret = "^".repeat(d.width.clamp(1, available));
                let _ = writeln!(out, "{gutter} | {}{caret}", " ".repeat(d.column - 1));
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "{gutter} = help: {help}");
                }
            }
            _ => {
                let _ = writeln!(out, " --> {}", location(d));
                if let Some(help) = &d.help {
                    let _ = writeln!(out, "  = help: {help}");
                }
            }
        }
        out.push('\n');
    }
    let (errors, warnings) = counts(validation);
    let files = plural(validation.files.len(), "file");
    let warned = if warnings > 0 {
        format!(", {}", plural(warnings, "warning"))
    } else {
        String::new()
    };
    if errors > 0 {
        let _ = writeln!(out, "error: {} in {files}{warned}", plural(errors, "error"));
    } else {
        let _ = writeln!(
            out,
            "ok: {files}, {} valid{warned}",
            plural(validation.declared(), "deployment")
        );
    }
    out
}

/// Renders DESIGN.md's JSON shape.
pub fn json(validation: &Validation) -> String {
    let entry = |d: &Diagnostic| {
        json!({
            "file": d.file,
            "line": d.line,
            "column": d.column,
            "pointer": d.pointer,
            "code": d.code.as_str(),
            "message": d.message_with_help(),
        })
    };
    let errors: Vec<_> = validation
        .diagnostics()
        .filter(|d| d.is_error())
        .map(entry)
        .collect();
    let warnings: Vec<_> = validation
        .diagnostics()
        .filter(|d| !d.is_error())
        .map(entry)
        .collect();
    let value = json!({
        "valid": validation.is_valid(),
        "files": validation.files.len(),
        "deployments": validation.declared(),
        "errors": errors,
        "warnings": warnings,
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// Renders GitHub Actions workflow commands, one line per diagnostic.
pub fn github(validation: &Validation) -> String {
    let mut out = String::new();
    for d in validation.diagnostics() {
        let level = if d.is_error() { "error" } else { "warning" };
        let _ = writeln!(
            out,
            "::{level} file={},line={},col={},title={}::{}",
            escape_property(&d.file),
            d.line,
            d.column,
            escape_property(&format!("sundial {}", d.code.as_str())),
            escape_data(&d.message_with_help()),
        );
    }
    out
}

fn location(d: &Diagnostic) -> String {
    if d.line == 0 {
        d.file.clone()
    } else {
        format!("{}:{}:{}", d.file, d.line, d.column)
    }
}

fn counts(validation: &Validation) -> (usize, usize) {
    let errors = validation.diagnostics().filter(|d| d.is_error()).count();
    let warnings = validation.diagnostics().count() - errors;
    (errors, warnings)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
