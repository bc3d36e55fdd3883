//! The tree builder: saphyr-parser's events into [`Node`]s, with anchors, aliases and `<<`
//! merges expanded, duplicate keys refused, and every bound of [`super::super::limits`]
//! checked before anything is copied.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as RawSpan};

use super::super::limits::{format_bytes, MAX_DEPTH, MAX_NODES};
use super::super::scalar::resolve_scalar;
use super::{Cost, Entry, LoadError, LoadErrorKind, Node, Pos, Span, Value};

/// Builds the node tree from parser events, keeping count of what it costs.
///
/// A loop over the events with an explicit stack of the lists and mappings still open, so
/// reading uses the same small stack at any depth; [`MAX_DEPTH`] bounds that stack, and
/// the depth of every later (recursive) walk of the tree. An alias is checked against
/// every bound before its value is copied.
pub(super) struct Builder {
    anchors: HashMap<usize, Anchored>,
    /// The items of every open list, innermost last: a list's items are moved from here
    /// into a vector of their exact number when it closes (no growth, no spare room).
    items: Vec<Node>,
    /// The entries of every open mapping, the same way.
    entries: Vec<Entry>,
    pub(super) cost: Cost,
    byte_limit: usize,
    pub(super) errors: Vec<LoadError>,
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
    /// Its items are `Builder::items[start..]`.
    Seq { start: usize },
    Map {
        /// Its entries are `Builder::entries[start..]`.
        start: usize,
        /// Where each key of `entries` is, so a mapping of many keys costs linear time;
        /// kept only once the mapping has [`INDEXED`] keys (below that a scan is cheaper).
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

/// How many keys a mapping has when its keys start being indexed.
const INDEXED: usize = 16;

/// Where `key` is in `entries`: by the index once there is one, else by a scan.
fn position(entries: &[Entry], index: &HashMap<String, usize>, key: &str) -> Option<usize> {
    if entries.len() < INDEXED {
        entries.iter().position(|e| e.key == key)
    } else {
        index.get(key).copied()
    }
}

fn depth_help() -> String {
    format!("a prefect.yaml rarely nests more than 10 levels; sundial reads at most {MAX_DEPTH}, so that no file can exhaust the stack of the daemon that reads it; flatten this value")
}

impl Builder {
    pub(super) fn new(byte_limit: usize) -> Builder {
        Builder {
            anchors: HashMap::new(),
            items: Vec::new(),
            entries: Vec::new(),
            cost: Cost::default(),
            byte_limit,
            errors: Vec::new(),
        }
    }

    pub(super) fn build(&mut self, mut parser: Events<'_>) -> Result<Node, LoadError> {
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
                        OpenKind::Seq {
                            start: self.items.len(),
                        }
                    } else {
                        OpenKind::Map {
                            start: self.entries.len(),
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
        let (start, index, merged, merged_keys, pending) = match &mut parent.kind {
            OpenKind::Seq { .. } => {
                self.items.push(node);
                return Ok(());
            }
            OpenKind::Map {
                start,
                index,
                merged,
                merged_keys,
                key,
            } => (*start, index, merged, merged_keys, key),
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
        let key = key_text(key.node);
        if !key_is_text {
            // `yes:` is stored as `true`, `[a]:` as `<complex key>`: charge the stored text
            // too, so the count stays an upper bound of what the tree holds.
            self.charge(key_span, 0, key.len())?;
        }
        let entries = &mut self.entries;
        if let Some(first) = position(&entries[start..], index, &key).map(|i| &entries[start + i]) {
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
        let count = entries.len() - start;
        if count + 1 == INDEXED {
            index.extend(
                entries[start..]
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.key.clone(), i)),
            );
        }
        if count + 1 >= INDEXED {
            index.insert(key.clone(), count);
        }
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
            OpenKind::Seq { start } => Value::Seq(self.items.drain(start..).collect()),
            OpenKind::Map {
                start,
                index,
                merged,
                ..
            } => {
                let explicit = &self.entries[start..];
                let merged: Vec<Entry> = merged
                    .into_iter()
                    .filter(|e| position(explicit, &index, &e.key).is_none())
                    .collect();
                let mut entries = Vec::with_capacity(explicit.len() + merged.len());
                entries.extend(self.entries.drain(start..));
                entries.extend(merged);
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
fn key_text(node: Node) -> String {
    match node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.value.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str { text, .. } => text,
        Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
    }
}
