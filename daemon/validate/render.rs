//! One renderer per output format of `sundial validate`: human (rustc-style, with the
//! source line and a caret), json (DESIGN.md's shape) and github (workflow commands that
//! annotate the pull request). Renderers only format; they decide nothing.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::json;

use super::diagnostic::{Diagnostic, Severity};
use super::Validation;

/// Renders for people: every diagnostic with its source line, then a one-line summary.
pub fn human<S: AsRef<str>>(validation: &Validation, sources: &HashMap<String, S>) -> String {
    let mut out = String::new();
    for d in validation.diagnostics() {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{level}[{}]: {}", d.code.as_str(), d.message);
        let source_line = sources
            .get(&d.file)
            .and_then(|text| text.as_ref().lines().nth(d.line.wrapping_sub(1)));
        match source_line {
            Some(line) if d.line > 0 => {
                let gutter = " ".repeat(d.line.to_string().len());
                let _ = writeln!(out, "{gutter}--> {}:{}:{}", d.file, d.line, d.column);
                let _ = writeln!(out, "{gutter} |");
                let (shown, column) = excerpt(&line.replace('\t', " "), d.column);
                let _ = writeln!(out, "{} | {shown}", d.line);
                let available = shown.chars().count().saturating_sub(column - 1).max(1);
                let caret = "^".repeat(d.width.clamp(1, available));
                let _ = writeln!(out, "{gutter} | {}{caret}", " ".repeat(column - 1));
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

/// How many characters of a source line are shown at most.
const EXCERPT: usize = 100;

/// The part of a source line to show under a diagnostic at `column` (1-based, in
/// characters), with `…` where it was cut, and the column within it: a hostile file can
/// be one line of 100 KB.
fn excerpt(line: &str, column: usize) -> (String, usize) {
    let length = line.chars().count();
    if length <= EXCERPT {
        return (line.to_string(), column.max(1));
    }
    let start = column.saturating_sub(1 + EXCERPT / 3).min(length - EXCERPT);
    let mut shown: String = line.chars().skip(start).take(EXCERPT).collect();
    let mut column = column.max(1) - start;
    if start > 0 {
        shown.insert(0, '…');
        column += 1;
    }
    if start + EXCERPT < length {
        shown.push('…');
    }
    (shown, column)
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

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn long_lines_are_cut_around_the_column() {
        assert_eq!(excerpt("short", 3), ("short".to_string(), 3));
        let long = "- ".repeat(5_000);
        let (shown, column) = excerpt(&long, 129);
        assert_eq!(shown.chars().count(), 102);
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert_eq!(column, 129 - 95 + 1);
        assert_eq!(shown.chars().nth(column - 1), Some('-'));
        let (shown, column) = excerpt(&"x".repeat(200), 200);
        assert_eq!((shown.chars().count(), column), (101, 101));
        let (shown, column) = excerpt(&"x".repeat(200), 1);
        assert_eq!((shown.chars().count(), column), (101, 1));
    }
}
