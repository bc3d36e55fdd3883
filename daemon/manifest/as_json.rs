//! The node tree read as JSON where it stands, without the copy [`Node::to_json`] makes.
//!
//! Two readers, for the two consumers of a manifest as JSON:
//!
//! - [`YamlJson`]: the tree as a JSON representation for the `jsonschema` crate
//!   (`jsonschema::options_for::<YamlJson>()`), so the schema checks the nodes themselves;
//! - [`from_node`]: serde deserialization straight from a node (the raw model of a
//!   deployment).
//!
//! Contract: each reads exactly the value `to_json` would build (null, booleans, `i64` and
//! finite `f64` numbers, non-finite floats as their text, strings, lists, mappings in file
//! order), so a finding or a deserialized value is the same as with the copy. Where the
//! serde reader meets what it does not mirror (an enum written as a mapping) or any error,
//! [`from_node`] answers by the copy, so every error message is serde_json's own.

use std::borrow::Cow;

use jsonschema::json::{Array, Json, Node as JsonNode, NodeIdentity, Object};
use jsonschema::JsonType;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Number, Value as JsonValue};

use super::yaml::{Entry, Node, Value};

/// The node tree as a `jsonschema` representation.
pub struct YamlJson;

/// A name node for `propertyNames`, reused between names.
pub struct NameBuffer(Node);

impl Default for NameBuffer {
    fn default() -> Self {
        NameBuffer(Node {
            value: Value::Null,
            span: Default::default(),
        })
    }
}

impl Json for YamlJson {
    type Node<'a> = &'a Node;
    type PreparedKey = String;
    type StringBuffer = NameBuffer;

    // Lookups scan the entries, as serde_json's ordered map does for small objects.
    const KEYS_PER_LOOKUP: usize = 2;
    // Aliases are expanded as copies: no node is shared, none is its own descendant.
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>(buffer: &mut NameBuffer, string: &str, f: impl FnOnce(&Node) -> T) -> T {
        let mut text = match std::mem::replace(&mut buffer.0.value, Value::Null) {
            Value::Str { text, .. } => text,
            _ => String::new(),
        };
        text.clear();
        text.push_str(string);
        buffer.0.value = Value::Str { text, plain: false };
        f(&buffer.0)
    }
}

/// A float JSON can hold; `to_json` writes the others as text.
fn finite(f: f64) -> Option<Number> {
    Number::from_f64(f)
}

impl<'a> JsonNode<'a, YamlJson> for &'a Node {
    type Object = &'a [Entry];
    type Array = &'a [Node];
    type Number = Number;

    fn as_object(&self) -> Option<&'a [Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&'a [Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match &self.value {
            Value::Str { text, .. } => Some(Cow::Borrowed(text)),
            Value::Float(f) if finite(*f).is_none() => Some(Cow::Owned(f.to_string())),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<Number> {
        match &self.value {
            Value::Int(i) => Some((*i).into()),
            Value::Float(f) => finite(*f),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match &self.value {
            Value::Bool(b) => Some(b.value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    fn json_type(&self) -> JsonType {
        match &self.value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Int(_) => JsonType::Number,
            Value::Float(f) if finite(*f).is_some() => JsonType::Number,
            Value::Float(_) | Value::Str { .. } => JsonType::String,
            Value::Seq(_) => JsonType::Array,
            Value::Map(_) => JsonType::Object,
        }
    }

    fn to_value(&self) -> Cow<'a, JsonValue> {
        Cow::Owned(self.to_json())
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(std::ptr::from_ref::<Node>(self) as usize))
    }
}

/// The members of a mapping node as name and value.
pub struct Members<'a>(std::slice::Iter<'a, Entry>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|e| (e.key.as_str(), &e.value))
    }
}

impl<'a> Object<'a, YamlJson> for &'a [Entry] {
    type Node = &'a Node;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        <[Entry]>::len(self)
    }

    fn get(&self, key: &String) -> Option<&'a Node> {
        self.iter().find(|e| e.key == *key).map(|e| &e.value)
    }

    fn members(&self) -> Members<'a> {
        Members(self.iter())
    }
}

impl<'a> Array<'a, YamlJson> for &'a [Node] {
    type Node = &'a Node;
    type ElementsIter = std::slice::Iter<'a, Node>;

    fn len(&self) -> usize {
        <[Node]>::len(self)
    }

    fn elements(&self) -> std::slice::Iter<'a, Node> {
        self.iter()
    }
}

/// `T` deserialized from `node` as `serde_json::from_value(node.to_json())` would, without
/// the copy when nothing goes wrong; any error is the copy's own.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, serde_json::Error> {
    T::deserialize(Reader(node)).or_else(|_| serde_json::from_value(node.to_json()))
}

/// A node as a serde deserializer, mirroring serde_json's reader of a `&Value`.
#[derive(Clone, Copy)]
struct Reader<'de>(&'de Node);

/// The error that sends [`from_node`] to the copy (its message is never shown).
fn unmirrored() -> serde_json::Error {
    de::Error::custom("read by the JSON copy")
}

impl<'de> de::Deserializer<'de> for Reader<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b.value),
            // serde_json keeps a non-negative integer as unsigned.
            Value::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) if finite(*f).is_some() => visitor.visit_f64(*f),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Str { text, .. } => visitor.visit_borrowed_str(text),
            Value::Seq(items) => {
                let mut seq = Items(items.iter());
                let value = visitor.visit_seq(&mut seq)?;
                if seq.0.len() == 0 {
                    Ok(value)
                } else {
                    Err(unmirrored())
                }
            }
            Value::Map(entries) => {
                let mut map = Entries {
                    entries: entries.iter(),
                    value: None,
                };
                let value = visitor.visit_map(&mut map)?;
                if map.entries.len() == 0 {
                    Ok(value)
                } else {
                    Err(unmirrored())
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match &self.0.value {
            Value::Str { text, .. } => {
                visitor.visit_enum(BorrowedStrDeserializer::<serde_json::Error>::new(text))
            }
            _ => Err(unmirrored()),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|node| seed.deserialize(Reader(node)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: std::slice::Iter<'de, Entry>,
    value: Option<&'de Node>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(&entry.value);
        seed.deserialize(BorrowedStrDeserializer::new(&entry.key))
            .map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        match self.value.take() {
            Some(node) => seed.deserialize(Reader(node)),
            None => Err(unmirrored()),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests;
