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
//! Non-goals: multiple documents in one file (a manifest is one document), custom tags.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as RawSpan};

use super::scalar::resolve_scalar;

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
    TooLarge,
}

/// The outcome of loading one file: the tree if the file parsed, and every error found.
/// A duplicate key is reported yet still yields a tree (the first value is kept) so the
/// rest of the file is checked too.
#[derive(Debug, Default)]
pub struct Loaded {
    pub root: Option<Node>,
    pub errors: Vec<LoadError>,
}

/// Aliases may not expand a file into more nodes than this (a "billion laughs" guard).
const MAX_NODES: usize = 1_000_000;

/// Loads YAML bytes. Never panics, whatever the bytes; an empty file loads as `Null`.
pub fn load(bytes: &[u8]) -> Loaded {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return not_utf8(bytes, e.valid_up_to()),
    };
    let mut loaded = Loaded::default();
    let tab_lines = find_tab_indentation(text, &mut loaded.errors);
    let mut builder = Builder::default();
    match builder.build(Parser::new_from_str(text)) {
        Ok(root) => loaded.root = Some(root),
        Err(err) => {
            // A tab makes the parser stumble at or just before its line; the tab error
            // already says what is wrong there.
            let caused_by_tab = tab_lines
                .first()
                .is_some_and(|first| err.span.start.line + 1 >= *first);
            if !caused_by_tab {
                loaded.errors.push(err);
            }
        }
    }
    loaded.errors.append(&mut builder.errors);
    loaded.errors.sort_by_key(|e| e.span.start);
    loaded
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
    }
}

/// YAML forbids tabs in indentation; PyYAML rejects them too. Reports each such line once
/// and returns their numbers so the parser's vaguer complaint about the same line is dropped.
fn find_tab_indentation(text: &str, errors: &mut Vec<LoadError>) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_block_scalar = false;
    for (i, line) in text.lines().enumerate() {
        let indent: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        let rest = &line[indent.len()..];
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

/// Builds the node tree from parser events.
#[derive(Default)]
struct Builder {
    anchors: HashMap<usize, Node>,
    nodes: usize,
    errors: Vec<LoadError>,
}

type Events<'a> = Parser<'a, saphyr_parser::StrInput<'a>>;

impl Builder {
    fn build(&mut self, mut parser: Events<'_>) -> Result<Node, LoadError> {
        let mut root = None;
        let mut documents = 0;
        loop {
            let (event, span) = next(&mut parser)?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(LoadError {
                            kind: LoadErrorKind::Syntax,
                            span: Span::from_raw(&span),
                            message: "a manifest holds one YAML document; found a second one"
                                .into(),
                            help: Some(
                                "split the documents into separate files or remove the `---` line"
                                    .into(),
                            ),
                        });
                    }
                }
                other => root = Some(self.node(&mut parser, other, span)?),
            }
        }
        Ok(root.unwrap_or(Node {
            value: Value::Null,
            span: Span {
                start: Pos { line: 1, column: 1 },
                width: 1,
            },
        }))
    }

    fn count(&mut self, span: Span) -> Result<(), LoadError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(LoadError {
                kind: LoadErrorKind::TooLarge,
                span,
                message: format!("the document expands to more than {MAX_NODES} nodes"),
                help: Some(
                    "aliases (`*name`) nested this deep are almost certainly a mistake".into(),
                ),
            });
        }
        Ok(())
    }

    fn node(
        &mut self,
        parser: &mut Events<'_>,
        event: Event<'_>,
        raw: RawSpan,
    ) -> Result<Node, LoadError> {
        let span = Span::from_raw(&raw);
        self.count(span)?;
        match event {
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.nodes += size(&node);
                    self.count(span)?;
                    Ok(node)
                }
                None => Err(LoadError {
                    kind: LoadErrorKind::Syntax,
                    span,
                    message: "alias to an unknown anchor".into(),
                    help: Some("define the anchor (`&name`) before using it (`*name`)".into()),
                }),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    value: resolve_scalar(text, style, tag.as_deref()),
                    span,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = next(parser)?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(parser, event, span)?);
                }
                let node = Node {
                    value: Value::Seq(items),
                    span,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, _) => {
                let node = Node {
                    value: Value::Map(self.mapping(parser)?),
                    span,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            other => Err(LoadError {
                kind: LoadErrorKind::Syntax,
                span,
                message: format!("unexpected YAML event {other:?}"),
                help: None,
            }),
        }
    }

    /// Reads key/value pairs up to the mapping's end, applying `<<` merges: explicit keys win
    /// over merged ones whatever their order, and earlier merged mappings win over later ones.
    fn mapping(&mut self, parser: &mut Events<'_>) -> Result<Vec<Entry>, LoadError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut merged: Vec<Entry> = Vec::new();
        loop {
            let (event, raw) = next(parser)?;
            if event == Event::MappingEnd {
                break;
            }
            let key_span = Span::from_raw(&raw);
            let is_merge =
                matches!(&event, Event::Scalar(t, ScalarStyle::Plain, _, _) if t == "<<");
            let key_node = self.node(parser, event, raw)?;
            let (value_event, value_raw) = next(parser)?;
            let value = self.node(parser, value_event, value_raw)?;
            if is_merge {
                self.merge_into(&mut merged, value)?;
                continue;
            }
            let key = key_text(&key_node);
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                self.errors.push(LoadError {
                    kind: LoadErrorKind::DuplicateKey,
                    span: key_span,
                    message: format!("duplicate key `{key}`"),
                    help: Some(format!(
                        "`{key}` is already set on line {}; YAML keeps only one of them, so remove or rename one",
                        first.key_span.start.line
                    )),
                });
                continue;
            }
            entries.push(Entry {
                key,
                key_span,
                value,
            });
        }
        for entry in merged {
            if !entries.iter().any(|e| e.key == entry.key) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn merge_into(&mut self, merged: &mut Vec<Entry>, value: Node) -> Result<(), LoadError> {
        let sources = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => {
                return Err(LoadError {
                    kind: LoadErrorKind::Syntax,
                    span: value.span,
                    message: "a `<<` merge key needs a mapping or a list of mappings".into(),
                    help: Some("write `<<: *anchor` where `&anchor` names a mapping".into()),
                })
            }
        };
        for source in sources {
            let Value::Map(entries) = source.value else {
                return Err(LoadError {
                    kind: LoadErrorKind::Syntax,
                    span: source.span,
                    message: "a `<<` merge list may hold only mappings".into(),
                    help: None,
                });
            };
            for entry in entries {
                if !merged.iter().any(|e| e.key == entry.key) {
                    merged.push(entry);
                }
            }
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }
}

fn next<'a>(parser: &mut Events<'a>) -> Result<(Event<'a>, RawSpan), LoadError> {
    match parser.next_event() {
        Some(Ok(pair)) => Ok(pair),
        Some(Err(e)) => Err(scan_error(&e)),
        None => Err(LoadError {
            kind: LoadErrorKind::Syntax,
            span: Span::default(),
            message: "unexpected end of the YAML stream".into(),
            help: None,
        }),
    }
}

fn scan_error(e: &ScanError) -> LoadError {
    let start = Pos::from_marker(e.marker());
    LoadError {
        kind: LoadErrorKind::Syntax,
        span: Span { start, width: 1 },
        message: format!("invalid YAML: {}", e.info()),
        help: None,
    }
}

fn size(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|e| size(&e.value)).sum::<usize>(),
        _ => 1,
    }
}

/// A mapping key as the text a JSON object would use (PyYAML allows `1:` or `true:` keys).
fn key_text(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.value.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str { text, .. } => text.clone(),
        Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        let loaded = load(text.as_bytes());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.root.expect("a tree")
    }

    fn map(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn spans_are_one_based_and_point_at_the_value() {
        let node = root("a: 1\nb:\n  c: hello\n");
        let b = &map(&node)[1];
        assert_eq!(b.key_span.start, Pos { line: 2, column: 1 });
        let c = &map(&b.value)[0];
        assert_eq!(c.value.span.start, Pos { line: 3, column: 6 });
        assert_eq!(c.value.span.width, 5);
    }

    #[test]
    fn yaml11_scalars_resolve_like_pyyaml() {
        let node = root("a: yes\nb: 1.10\nc: 1e3\nd: 0x1f\ne: ~\nf: '12'\ng: 010\nh: -.5\n");
        let values: Vec<&Value> = map(&node).iter().map(|e| &e.value.value).collect();
        assert!(matches!(values[0], Value::Bool(b) if b.value && b.is_yaml11_word()));
        assert_eq!(values[1], &Value::Float(1.1));
        assert!(matches!(values[2], Value::Str { text, .. } if text == "1e3"));
        assert_eq!(values[3], &Value::Int(31));
        assert_eq!(values[4], &Value::Null);
        assert!(matches!(values[5], Value::Str { text, plain: false } if text == "12"));
        assert_eq!(values[6], &Value::Int(8));
        assert_eq!(values[7], &Value::Float(-0.5));
    }

    #[test]
    fn merge_keys_fill_in_without_overriding_explicit_keys() {
        let node = root("base: &b {x: 1, y: 2}\nother:\n  y: 3\n  <<: *b\n");
        let other = map(&map(&node)[1].value);
        let keys: Vec<&str> = other.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["y", "x"]);
        assert_eq!(other[0].value.value, Value::Int(3));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_one() {
        let loaded = load(b"a: 1\nb: 2\na: 3\n");
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].kind, LoadErrorKind::DuplicateKey);
        assert_eq!(loaded.errors[0].span.start, Pos { line: 3, column: 1 });
    }

    #[test]
    fn tabs_in_indentation_are_reported_once_per_line() {
        let loaded = load(b"a:\n\tb: 1\n");
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert_eq!(loaded.errors[0].kind, LoadErrorKind::Tab);
        assert_eq!(loaded.errors[0].span.start, Pos { line: 2, column: 1 });
    }

    #[test]
    fn garbage_never_panics() {
        for bytes in [
            &b"\xff\xfe\x00"[..],
            b"",
            b"{{{{",
            b"- [a, b\n",
            b"a: *x",
            b"&a [*a]",
        ] {
            let _ = load(bytes);
        }
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        let loaded = load(bomb.as_bytes());
        assert_eq!(loaded.errors[0].kind, LoadErrorKind::TooLarge);
    }

    #[test]
    fn empty_file_is_null() {
        assert_eq!(root("").value, Value::Null);
        assert_eq!(root("# only a comment\n").value, Value::Null);
    }
}
