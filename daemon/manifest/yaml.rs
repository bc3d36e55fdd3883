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

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as RawSpan};

use super::limits::{expanded_bytes_limit, format_bytes, MAX_DEPTH, MAX_NODES};
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

/// Builds the node tree from parser events, keeping count of what it costs.
///
/// A loop over the events with an explicit stack of the lists and mappings still open, so
/// reading uses the same small stack at any depth; [`MAX_DEPTH`] bounds that stack, and
/// the depth of every later (recursive) walk of the tree. An alias is checked against
/// every bound before its value is copied.
struct Builder {
    anchors: HashMap<usize, Anchored>,
    cost: Cost,
    byte_limit: usize,
    errors: Vec<LoadError>,
}

/// An anchored value and what one more copy of it costs.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
    /// How many levels of lists and mappings it holds (0 for a scalar).
    height: usize,
}

/// A list or mapping whose end has not been read yet.
struct Open {
    span: Span,
    anchor: usize,
    /// The cost before it opened: what it cost is the difference when it closes.
    before: Cost,
    /// The most levels of lists and mappings any child holds.
    height: usize,
    kind: OpenKind,
}

enum OpenKind {
    Seq(Vec<Node>),
    Map {
        entries: Vec<Entry>,
        /// Where each key of `entries` is, so a mapping of many keys costs linear time.
        index: HashMap<String, usize>,
        /// Entries of `<<` merges, added at the end where no explicit key has them.
        merged: Vec<Entry>,
        merged_keys: HashSet<String>,
        /// A key read whose value has not been.
        key: Option<Key>,
    },
}

struct Key {
    node: Node,
    /// A plain `<<`: the value is merged rather than stored.
    merge: bool,
}

type Events<'a> = Parser<'a, saphyr_parser::StrInput<'a>>;

fn depth_help() -> String {
    format!("a prefect.yaml rarely nests more than 10 levels; sundial reads at most {MAX_DEPTH}, so that no file can exhaust the stack of the daemon that reads it; flatten this value")
}

impl Builder {
    fn new(byte_limit: usize) -> Builder {
        Builder {
            anchors: HashMap::new(),
            cost: Cost::default(),
            byte_limit,
            errors: Vec::new(),
        }
    }

    fn build(&mut self, mut parser: Events<'_>) -> Result<Node, LoadError> {
        let mut root = None;
        let mut documents = 0;
        let mut open: Vec<Open> = Vec::new();
        loop {
            let (event, raw) = next(&mut parser)?;
            let span = Span::from_raw(&raw);
            let before = self.cost;
            let (node, height, merge) = match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(LoadError {
                            kind: LoadErrorKind::Syntax,
                            span,
                            message: "a manifest holds one YAML document; found a second one"
                                .into(),
                            help: Some(
                                "split the documents into separate files or remove the `---` line"
                                    .into(),
                            ),
                        });
                    }
                    continue;
                }
                Event::Alias(id) => {
                    let (node, height) = self.alias(id, span, open.len())?;
                    (node, height, false)
                }
                Event::Scalar(text, style, anchor, tag) => {
                    self.charge(span, 1, text.len())?;
                    let merge = style == ScalarStyle::Plain && text == "<<";
                    let node = Node {
                        value: resolve_scalar(text, style, tag.as_deref()),
                        span,
                    };
                    self.remember(anchor, &node, before, 0);
                    (node, 0, merge)
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    let level = open.len() + 1;
                    if level > MAX_DEPTH {
                        return Err(LoadError {
                            kind: LoadErrorKind::TooDeep,
                            span,
                            message: format!(
                                "lists and mappings nest deeper than {MAX_DEPTH} levels here"
                            ),
                            help: Some(depth_help()),
                        });
                    }
                    self.cost.depth = self.cost.depth.max(level);
                    self.charge(span, 1, 0)?;
                    let kind = if matches!(event, Event::SequenceStart(..)) {
                        OpenKind::Seq(Vec::new())
                    } else {
                        OpenKind::Map {
                            entries: Vec::new(),
                            index: HashMap::new(),
                            merged: Vec::new(),
                            merged_keys: HashSet::new(),
                            key: None,
                        }
                    };
                    open.push(Open {
                        span,
                        anchor,
                        before,
                        height: 0,
                        kind,
                    });
                    continue;
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(closed) = open.pop() else {
                        return Err(unexpected(span, &event));
                    };
                    let (node, height) = self.close(closed);
                    (node, height, false)
                }
            };
            match open.last_mut() {
                Some(parent) => self.add(parent, node, height, merge)?,
                None => root = Some(node),
            }
        }
        Ok(root.unwrap_or_else(|| {
            // An empty document is one null value, and the cost says so.
            self.cost.nodes += 1;
            Node {
                value: Value::Null,
                span: Span {
                    start: Pos { line: 1, column: 1 },
                    width: 1,
                },
            }
        }))
    }

    /// Charges `nodes` values and `bytes` of text to the document at `span`; a charge
    /// that would cross a bound is refused, so the cost never exceeds the bounds.
    fn charge(&mut self, span: Span, nodes: usize, bytes: usize) -> Result<(), LoadError> {
        let total_nodes = self.cost.nodes.saturating_add(nodes);
        let total_bytes = self.cost.bytes.saturating_add(bytes);
        if total_nodes > MAX_NODES {
            return Err(LoadError {
                kind: LoadErrorKind::TooLarge,
                span,
                message: format!("the document expands to more than {MAX_NODES} values"),
                help: Some(
                    "aliases (`*name`) of aliases multiply what they copy; repeat less".into(),
                ),
            });
        }
        if total_bytes > self.byte_limit {
            let limit = format_bytes(self.byte_limit as u64);
            return Err(LoadError {
                kind: LoadErrorKind::TooLarge,
                span,
                message: format!("aliases expand the document to more than {limit} of text"),
                help: Some(format!(
                    "each alias (`*name`) copies its anchor's whole value, and a file may expand to {limit} (or four times its size); anchor smaller values or repeat them less"
                )),
            });
        }
        self.cost.nodes = total_nodes;
        self.cost.bytes = total_bytes;
        Ok(())
    }

    /// Keeps an anchored value for its aliases, with what building it cost since `before`.
    fn remember(&mut self, anchor: usize, node: &Node, before: Cost, height: usize) {
        if anchor == 0 {
            return;
        }
        self.anchors.insert(
            anchor,
            Anchored {
                node: node.clone(),
                nodes: self.cost.nodes - before.nodes,
                bytes: self.cost.bytes - before.bytes,
                height,
            },
        );
    }

    /// A copy of an anchored value placed inside `depth` lists and mappings, once it is
    /// known to fit every bound; returns it with the levels it holds.
    fn alias(&mut self, id: usize, span: Span, depth: usize) -> Result<(Node, usize), LoadError> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(LoadError {
                kind: LoadErrorKind::Syntax,
                span,
                message: "alias to an unknown anchor".into(),
                help: Some("define the anchor (`&name`) before using it (`*name`)".into()),
            });
        };
        let (nodes, bytes, height) = (anchored.nodes, anchored.bytes, anchored.height);
        let level = depth + height;
        if level > MAX_DEPTH {
            return Err(LoadError {
                kind: LoadErrorKind::TooDeep,
                span,
                message: format!(
                    "this alias nests its anchor's value deeper than {MAX_DEPTH} levels of lists and mappings"
                ),
                help: Some(depth_help()),
            });
        }
        self.cost.depth = self.cost.depth.max(level);
        self.charge(span, nodes, bytes)?;
        let node = self.anchors[&id].node.clone();
        Ok((node, height))
    }

    /// Adds a finished value to the open list or mapping `parent`. In a mapping, `<<`
    /// merges apply as PyYAML applies them: explicit keys win over merged ones whatever
    /// their order, and earlier merged mappings win over later ones.
    fn add(
        &mut self,
        parent: &mut Open,
        node: Node,
        height: usize,
        merge: bool,
    ) -> Result<(), LoadError> {
        parent.height = parent.height.max(height);
        let (entries, index, merged, merged_keys, pending) = match &mut parent.kind {
            OpenKind::Seq(items) => {
                items.push(node);
                return Ok(());
            }
            OpenKind::Map {
                entries,
                index,
                merged,
                merged_keys,
                key,
            } => (entries, index, merged, merged_keys, key),
        };
        let Some(key) = pending.take() else {
            *pending = Some(Key { node, merge });
            return Ok(());
        };
        if key.merge {
            return merge_into(merged, merged_keys, node);
        }
        let key_span = key.node.span;
        let key_is_text = matches!(key.node.value, Value::Str { .. });
        let key = key_text(&key.node);
        if !key_is_text {
            // `yes:` is stored as `true`, `[a]:` as `<complex key>`: charge the stored text
            // too, so the count stays an upper bound of what the tree holds.
            self.charge(key_span, 0, key.len())?;
        }
        if let Some(first) = index.get(&key).map(|i| &entries[*i]) {
            self.errors.push(LoadError {
                kind: LoadErrorKind::DuplicateKey,
                span: key_span,
                message: format!("duplicate key `{key}`"),
                help: Some(format!(
                    "`{key}` is already set on line {}; YAML keeps only one of them, so remove or rename one",
                    first.key_span.start.line
                )),
            });
            return Ok(());
        }
        index.insert(key.clone(), entries.len());
        entries.push(Entry {
            key,
            key_span,
            value: node,
        });
        Ok(())
    }

    /// The value of a list or mapping whose end was read, with the levels it holds.
    fn close(&mut self, closed: Open) -> (Node, usize) {
        let value = match closed.kind {
            OpenKind::Seq(items) => Value::Seq(items),
            OpenKind::Map {
                mut entries,
                index,
                merged,
                ..
            } => {
                entries.extend(merged.into_iter().filter(|e| !index.contains_key(&e.key)));
                Value::Map(entries)
            }
        };
        let node = Node {
            value,
            span: closed.span,
        };
        let height = closed.height + 1;
        self.remember(closed.anchor, &node, closed.before, height);
        (node, height)
    }
}

/// Adds the entries of a `<<` value (a mapping or a list of them) whose keys no earlier
/// merged mapping had.
fn merge_into(
    merged: &mut Vec<Entry>,
    merged_keys: &mut HashSet<String>,
    value: Node,
) -> Result<(), LoadError> {
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
            if merged_keys.insert(entry.key.clone()) {
                merged.push(entry);
            }
        }
    }
    Ok(())
}

fn unexpected(span: Span, event: &Event<'_>) -> LoadError {
    LoadError {
        kind: LoadErrorKind::Syntax,
        span,
        message: format!("unexpected YAML event {event:?}"),
        help: None,
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
    use crate::manifest::limits::MIN_EXPANDED_BYTES;

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
    fn an_empty_document_counts_its_null_root() {
        for text in ["", "# only a comment\n", "\n\n"] {
            let loaded = load(text.as_bytes());
            assert_eq!(loaded.root.map(|r| r.value), Some(Value::Null), "{text:?}");
            assert_eq!(loaded.cost.nodes, 1, "{text:?}");
        }
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

    fn only_error(text: &str) -> LoadError {
        let loaded = load(text.as_bytes());
        assert!(loaded.root.is_none(), "no tree past a bound");
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        loaded.errors.into_iter().next().unwrap()
    }

    #[test]
    fn a_list_nested_5000_deep_stops_at_level_65_instead_of_overflowing_the_stack() {
        let err = only_error(&format!("{}x\n", "- ".repeat(5_000)));
        assert_eq!(err.kind, LoadErrorKind::TooDeep);
        assert_eq!(
            err.span.start,
            Pos {
                line: 1,
                column: 129
            }
        );
        let at_limit = load(format!("{}x\n", "- ".repeat(MAX_DEPTH)).as_bytes());
        assert!(at_limit.errors.is_empty(), "{:?}", at_limit.errors);
        assert_eq!(at_limit.cost.depth, MAX_DEPTH);
    }

    #[test]
    fn block_mappings_and_explicit_keys_count_as_levels() {
        let block: String = (0..1_500)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let err = only_error(&block);
        assert_eq!(
            (err.kind, err.span.start),
            (
                LoadErrorKind::TooDeep,
                Pos {
                    line: 65,
                    column: 65
                }
            )
        );
        // `? ? ? x`: each `?` opens a mapping whose key is the next one, two bytes a level.
        let err = only_error(&format!("{}x\n", "? ".repeat(1_500)));
        assert_eq!(
            (err.kind, err.span.start),
            (
                LoadErrorKind::TooDeep,
                Pos {
                    line: 1,
                    column: 129
                }
            )
        );
    }

    #[test]
    fn an_alias_counts_the_levels_of_its_anchor_where_it_is_pasted() {
        // Each line nests the previous anchor 40 levels deeper: 10 lines, 400 levels.
        let mut text = format!("a0: &a0 {}{}\n", "[".repeat(40), "]".repeat(40));
        for i in 1..10 {
            text += &format!(
                "a{i}: &a{i} {}*a{}{}\n",
                "[".repeat(40),
                i - 1,
                "]".repeat(40)
            );
        }
        let err = only_error(&text);
        assert_eq!(err.kind, LoadErrorKind::TooDeep);
        assert_eq!(
            err.span.start,
            Pos {
                line: 2,
                column: 49
            }
        );
        assert_eq!(
            err.message,
            "this alias nests its anchor's value deeper than 64 levels of lists and mappings"
        );
    }

    #[test]
    fn an_alias_bomb_of_strings_stops_at_the_text_budget_before_copying() {
        // 50 aliases of a 20 KB string, repeated 1,000 times: 1 GB once expanded.
        let text = format!(
            "a: &a \"{}\"\nb: &b [{}]\nc: [{}]\n",
            "x".repeat(20_000),
            vec!["*a"; 50].join(","),
            vec!["*b"; 1_000].join(",")
        );
        let loaded = load(text.as_bytes());
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let err = &loaded.errors[0];
        assert_eq!(err.kind, LoadErrorKind::TooLarge);
        // Lines 1 and 2 hold 1,020,003 bytes; the 16th `*b` (1,000,000 more each) crosses
        // 16 MiB, and sits at column 5 + 3 * 15.
        assert_eq!(
            err.span.start,
            Pos {
                line: 3,
                column: 50
            }
        );
        assert_eq!(
            err.message,
            "aliases expand the document to more than 16 MiB of text"
        );
        assert!(
            loaded.cost.bytes <= MIN_EXPANDED_BYTES + 1_000_000,
            "{:?}",
            loaded.cost
        );
    }

    #[test]
    fn cost_counts_what_aliases_copy() {
        let loaded = load(b"a: &x [ab, {c: d}]\nb: *x\nc: [*x, *x]\n");
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        // Values: the top mapping, the keys `a`, `b`, `c`, the list under `c`, and 5 per
        // copy of the anchor (the list, `ab`, the mapping, `c`, `d`); text: `abc` and
        // `abcd` per copy. The copies under `c` reach level 4.
        assert_eq!(
            loaded.cost,
            Cost {
                nodes: 1 + 3 + 1 + 5 * 4,
                bytes: 3 + 4 * 4,
                depth: 4,
            }
        );
    }

    #[test]
    fn an_error_at_the_end_of_a_file_without_a_final_newline_points_into_the_file() {
        // The parser put it on line 2 of this one-line file.
        let err = only_error("a: [b");
        assert_eq!(err.kind, LoadErrorKind::Syntax);
        assert_eq!(err.span.start, Pos { line: 1, column: 6 });
        let err = only_error("a: [b\n");
        assert_eq!(err.span.start, Pos { line: 2, column: 1 });
    }

    #[test]
    fn empty_file_is_null() {
        assert_eq!(root("").value, Value::Null);
        assert_eq!(root("# only a comment\n").value, Value::Null);
    }
}
