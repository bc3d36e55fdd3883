//! Collects the diagnostics of one file, turning JSON Pointers into positions.

use crate::manifest::{Node, Span};

use super::diagnostic::{Code, Diagnostic, Severity};

/// The diagnostics of one file under construction; every check writes through this.
pub struct FileReport<'a> {
    pub file: &'a str,
    root: Option<&'a Node>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> FileReport<'a> {
    pub fn new(file: &'a str, root: Option<&'a Node>) -> Self {
        FileReport {
            file,
            root,
            diagnostics: Vec::new(),
        }
    }

    /// Records an error at the node `pointer` names (its key when `at_key`).
    pub fn error(
        &mut self,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(Severity::Error, pointer, at_key, code, message.into(), help);
    }

    pub fn warning(
        &mut self,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.push(
            Severity::Warning,
            pointer,
            at_key,
            code,
            message.into(),
            help,
        );
    }

    /// Records an error at an explicit span (for problems found before a tree exists).
    pub fn error_at(&mut self, span: Span, code: Code, message: String, help: Option<String>) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_string(),
            line: span.start.line,
            column: span.start.column,
            width: span.width,
            pointer: String::new(),
            code,
            message,
            help,
        });
    }

    fn push(
        &mut self,
        severity: Severity,
        pointer: &str,
        at_key: bool,
        code: Code,
        message: String,
        help: Option<String>,
    ) {
        let span = self
            .root
            .map(|r| r.span_of(pointer, at_key))
            .unwrap_or_default();
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            line: span.start.line,
            column: span.start.column,
            width: span.width,
            pointer: pointer.to_string(),
            code,
            message,
            help,
        });
    }

    /// Whether an error was already recorded at `pointer` or below it.
    pub fn has_error_under(&self, pointer: &str) -> bool {
        self.diagnostics.iter().any(|d| {
            d.is_error() && (d.pointer == pointer || d.pointer.starts_with(&format!("{pointer}/")))
        })
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}
