//! YAML text → a tree of [`Node`]s that remember where they came from.
//!
//! Every node and every mapping key keeps its 1-based line and column so any later check
//! can point at it. The tree is built from saphyr-parser's spanned events because the
//! ready-made loaders either lose spans (serde_yaml, archived) or silently accept what a
//! GitOps manifest must reject: duplicate keys (the last one wins without a word) and tabs
//! in indentation. Aliases are expanded, `<<` merge keys are applied as PyYAML (and so
//! Prefect) applies them, and plain scalars are typed by YAML 1.1's rules, which PyYAML
//! uses, so `version: 1.10` and `on: yes` mean here what they mean to Prefect.
//!
//! Bounds (`limits`): the tree is never deeper than `MAX_DEPTH` levels of lists and
//! mappings, aliases included, nor larger than `MAX_NODES` values or the expanded-text
//! budget; loading stops with an error at the first value that crosses one, before
//! anything is copied. Every recursive walk of a [`Node`] relies on the depth bound.
//!
//! Non-goals: multiple documents in one file (a manifest is one document), custom tags.

use saphyr_parser::{Parser, Span as RawSpan};

use super::limits::expanded_bytes_limit;

/// A position in a file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: &saphyr_parser::Marker) -> Pos {
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Where a node sits in its file: its start and the width to underline on its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub width: usize,
}

impl Span {
    fn from_raw(raw: &RawSpan) -> Span {
        let start = Pos::from_marker(&raw.start);
        let width = if raw.end.line() == raw.start.line() {
            raw.end.col().saturating_sub(raw.start.col()).max(1)
        } else {
            1
        };
        Span { start, width }
    }
}

/// One YAML value with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A YAML value after YAML 1.1 scalar resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(Boolean),
    Int(i64),
    Float(f64),
    /// A string; `plain` is true when it was written unquoted.
    Str {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A boolean and the word it was written as (`true`, `yes`, `On`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Boolean {
    pub value: bool,
    pub word: String,
}

impl Boolean {
    /// Whether the word is one of YAML 1.1's extra spellings (`yes`, `no`, `on`, `off`) that
    /// YAML 1.2 tools read as strings.
    pub fn is_yaml11_word(&self) -> bool {
        !matches!(self.word.to_ascii_lowercase().as_str(), "true" | "false")
    }
}

/// A mapping entry: the key as text with its own span, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

/// What can go wrong while loading; each carries the position to point at.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    Syntax,
    Tab,
    DuplicateKey,
    NotUtf8,
    /// Aliases expand the document past the node or text budget (`limits`).
    TooLarge,
    /// Lists and mappings nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// The outcome of loading one file: the tree if the file parsed, and every error found.
/// A duplicate key is reported yet still yields a tree (the first value is kept) so the
/// rest of the file is checked too.
#[derive(Debug, Default)]
pub struct Loaded {
    pub root: Option<Node>,
    pub errors: Vec<LoadError>,
    /// What building the tree cost, aliases expanded, up to where it stopped.
    pub cost: Cost,
}

/// The size of a tree (or of the part built before an error) with aliases expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Values: scalars (keys included), lists and mappings.
    pub nodes: usize,
    /// Bytes of scalar and key text.
    pub bytes: usize,
    /// The deepest nesting of lists and mappings (a collection at the top is 1).
    pub depth: usize,
}

/// Loads YAML bytes. Never panics, whatever the bytes; an empty file loads as `Null`.
/// Stops with a [`LoadErrorKind::TooDeep`] or [`LoadErrorKind::TooLarge`] error where the
/// document crosses one of the bounds of [`super::limits`].
pub fn load(bytes: &[u8]) -> Loaded {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return not_utf8(bytes, e.valid_up_to()),
    };
    let mut loaded = Loaded::default();
    let tab_lines = find_tab_indentation(text, &mut loaded.errors);
    let mut builder = Builder::new(expanded_bytes_limit(bytes.len()));
    match builder.build(Parser::new_from_str(text)) {
        Ok(root) => loaded.root = Some(root),
        Err(mut err) => {
            err.span = inside(text, err.span);
            // A tab makes the parser stumble at or just before its line; the tab error
            // already says what is wrong there.
            let caused_by_tab = err.kind == LoadErrorKind::Syntax
                && tab_lines
                    .first()
                    .is_some_and(|first| err.span.start.line + 1 >= *first);
            if !caused_by_tab {
                loaded.errors.push(err);
            }
        }
    }
    loaded.errors.append(&mut builder.errors);
    loaded.errors.sort_by_key(|e| e.span.start);
    loaded.cost = builder.cost;
    loaded
}

/// `span`, or the end of the text when `span` is past its last line: the parser puts an
/// error at the end of a file without a final newline on the line after it.
fn inside(text: &str, span: Span) -> Span {
    let lines = text.split('\n').count();
    if span.start.line <= lines {
        return span;
    }
    let last = text.rsplit('\n').next().unwrap_or_default();
    Span {
        start: Pos {
            line: lines,
            column: last.chars().count() + 1,
        },
        width: 1,
    }
}

fn not_utf8(bytes: &[u8], valid_up_to: usize) -> Loaded {
    let before = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Loaded {
        root: None,
        errors: vec![LoadError {
            kind: LoadErrorKind::NotUtf8,
            span: Span {
                start: Pos { line, column },
                width: 1,
            },
            message: format!("the file is not valid UTF-8 (byte {valid_up_to})"),
            help: Some("save the manifest as UTF-8 text".into()),
        }],
        cost: Cost::default(),
    }
}

/// YAML forbids tabs in indentation; PyYAML rejects them too. Reports each such line once
/// and returns their numbers so the parser's vaguer complaint about the same line is dropped.
fn find_tab_indentation(text: &str, errors: &mut Vec<LoadError>) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_block_scalar = false;
    for (i, line) in text.lines().enumerate() {
        let rest = line.trim_start_matches([' ', '\t']);
        let indent = &line[..line.len() - rest.len()];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        // Tabs inside a `|` or `>` block scalar's content are text, not indentation.
        if in_block_scalar && indent.starts_with(' ') {
            continue;
        }
        in_block_scalar = false;
        if let Some(tab_at) = indent.find('\t') {
            lines.push(i + 1);
            errors.push(LoadError {
                kind: LoadErrorKind::Tab,
                span: Span {
                    start: Pos {
                        line: i + 1,
                        column: tab_at + 1,
                    },
                    width: 1,
                },
                message: "tab character in indentation".into(),
                help: Some(
                    "YAML allows only spaces for indentation; replace the tab with spaces".into(),
                ),
            });
        }
        let trimmed = rest.trim_end();
        if trimmed.ends_with('|')
            || trimmed.ends_with('>')
            || trimmed.ends_with("|-")
            || trimmed.ends_with(">-")
        {
            in_block_scalar = true;
        }
    }
    lines
}

mod builder;
#[cfg(test)]
mod tests;

use builder::Builder;
