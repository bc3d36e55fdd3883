//! What a manifest file says, before anyone has judged it.
//!
//! [`yaml`] turns bytes into a tree of spanned nodes; this module adds the lookups the
//! checks need (by JSON Pointer, as JSON) and [`model`] is the raw serde view of a
//! deployment; [`as_json`] reads the tree as JSON (for the schema and for serde) without
//! copying it. Nothing here decides what is valid: that is `validate`'s job, and only
//! `validate` builds the trusted `DesiredState`.

pub mod as_json;
pub mod discover;
pub mod limits;
pub mod model;
mod scalar;
pub mod yaml;

use serde_json::{Map, Number, Value as Json};

pub use yaml::{Entry, Node, Pos, Span, Value};

impl Node {
    /// The value of `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The entry of `key` (with the key's own span) when this node is a mapping.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A scalar as text (`yes` read as a boolean gives `true`); `None` for null, a list or
    /// a mapping.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str { text, .. } => Some(text.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.value.to_string()),
            _ => None,
        }
    }

    /// The scalar text of `key` when this node is a mapping.
    pub fn text_of(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Node::scalar_text)
    }

    /// Whether the node says nothing: null, an empty list or mapping, or a mapping whose
    /// values all say nothing (what `prefect init` leaves behind).
    pub fn is_placeholder(&self) -> bool {
        match &self.value {
            Value::Null => true,
            Value::Seq(items) => items.is_empty(),
            Value::Map(entries) => entries.iter().all(|e| e.value.is_placeholder()),
            _ => false,
        }
    }

    /// The node a JSON Pointer (RFC 6901) names, if it exists.
    pub fn at(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for token in pointer_tokens(pointer) {
            node = match &node.value {
                Value::Map(entries) => &entries.iter().find(|e| e.key == token)?.value,
                Value::Seq(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The span to point at for a pointer: the key for a mapping entry when `at_key` (an
    /// unknown or misplaced key), else the value; falls back to the nearest existing parent.
    pub fn span_of(&self, pointer: &str, at_key: bool) -> Span {
        if at_key {
            if let Some((parent, last)) = split_pointer(pointer) {
                if let Some(entry) = self.at(&parent).and_then(|p| p.entry(&last)) {
                    return entry.key_span;
                }
            }
        }
        let mut pointer = pointer.to_string();
        loop {
            if let Some(node) = self.at(&pointer) {
                return node.span;
            }
            match split_pointer(&pointer) {
                Some((parent, _)) => pointer = parent,
                None => return self.span,
            }
        }
    }

    /// The node as JSON, for the schema and for serde. Non-finite floats, which JSON cannot
    /// hold, become strings so the schema reports them as the wrong type.
    pub fn to_json(&self) -> Json {
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b.value),
            Value::Int(i) => Json::Number((*i).into()),
            Value::Float(f) => {
                Number::from_f64(*f).map_or_else(|| Json::String(f.to_string()), Json::Number)
            }
            Value::Str { text, .. } => Json::String(text.clone()),
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for e in entries {
                    map.insert(e.key.clone(), e.value.to_json());
                }
                Json::Object(map)
            }
        }
    }
}

/// Escapes one reference token of a JSON Pointer.
pub fn escape_token(token: &str) -> String {
    let mut escaped = String::with_capacity(token.len());
    push_escaped(&mut escaped, token);
    escaped
}

/// `base` + `/token`, escaped: one allocation, sized for the result.
pub fn pointer(base: &str, token: impl std::fmt::Display) -> String {
    use std::fmt::Write as _;
    /// Writes what it is given escaped as one pointer token.
    struct Escaped<'a>(&'a mut String);
    impl std::fmt::Write for Escaped<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            push_escaped(self.0, s);
            Ok(())
        }
    }
    let mut buf = String::with_capacity(base.len() + 24);
    buf.push_str(base);
    buf.push('/');
    let _ = write!(Escaped(&mut buf), "{token}");
    buf
}

/// Appends `/token`, escaped, to the pointer `buf`: for walks that extend one buffer and
/// cut it back (`String::truncate`) instead of building a pointer per node.
pub fn push_token(buf: &mut String, token: &str) {
    buf.push('/');
    push_escaped(buf, token);
}

/// Appends `token` escaped (`~` as `~0`, `/` as `~1`) without a copy when it needs none.
fn push_escaped(buf: &mut String, token: &str) {
    if !token.contains(['~', '/']) {
        buf.push_str(token);
        return;
    }
    for c in token.chars() {
        match c {
            '~' => buf.push_str("~0"),
            '/' => buf.push_str("~1"),
            c => buf.push(c),
        }
    }
}

/// One step down a tree: a mapping's key or a list's index. Walks that visit every node
/// keep a stack of steps and write a pointer ([`pointer_from`]) only for a finding.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The pointer `base` followed by `steps`, escaped.
pub fn pointer_from(base: &str, steps: &[Step<'_>]) -> String {
    let mut buf = String::with_capacity(base.len() + 16 * steps.len());
    buf.push_str(base);
    for step in steps {
        match step {
            Step::Key(key) => push_token(&mut buf, key),
            Step::Index(i) => push_index(&mut buf, *i),
        }
    }
    buf
}

/// Appends `/index` to the pointer `buf`, as [`push_token`] does.
pub fn push_index(buf: &mut String, index: usize) {
    use std::fmt::Write as _;
    let _ = write!(buf, "/{index}");
}

fn pointer_tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// Splits a pointer into its parent and its last (unescaped) token.
pub fn split_pointer(pointer: &str) -> Option<(String, String)> {
    let cut = pointer.rfind('/')?;
    let last = pointer[cut + 1..].replace("~1", "/").replace("~0", "~");
    Some((pointer[..cut].to_string(), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_find_nodes_and_keys() {
        let root = yaml::load(b"deployments:\n  - name: a\n    a/b: 1\n")
            .root
            .unwrap();
        assert_eq!(
            root.at("/deployments/0/name").unwrap().span.start,
            Pos {
                line: 2,
                column: 11
            }
        );
        assert_eq!(
            root.span_of("/deployments/0/a~1b", true).start,
            Pos { line: 3, column: 5 }
        );
        assert_eq!(
            root.span_of("/deployments/0/missing", false).start,
            Pos { line: 2, column: 5 }
        );
        let mut buf = "/deployments".to_string();
        push_index(&mut buf, 0);
        push_token(&mut buf, "a/b~c");
        assert_eq!(buf, pointer(&pointer("/deployments", 0), "a/b~c"));
        assert_eq!(
            root.to_json(),
            serde_json::json!({"deployments": [{"name": "a", "a/b": 1}]})
        );
    }
}
