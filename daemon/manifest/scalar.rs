//! Plain scalars typed by YAML 1.1's rules, as PyYAML (and so Prefect) types them: `yes`
//! is true, `1.10` is the float 1.1, `0755` is octal, `1e3` (no dot) stays a string.
//! Quoted and block scalars, and anything tagged `!!str`, are strings.

use std::borrow::Cow;

use saphyr_parser::{ScalarStyle, Tag};

use super::yaml::{Boolean, Value};

/// Types a scalar as PyYAML's YAML 1.1 resolver would: only plain scalars are typed;
/// quoted and block scalars are strings, and so is anything tagged `!!str`.
pub(super) fn resolve_scalar(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    let text = text.into_owned();
    let forced_str = tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
    if style != ScalarStyle::Plain || forced_str {
        return Value::Str { text, plain: false };
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(Boolean {
                value: true,
                word: text,
            })
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(Boolean {
                value: false,
                word: text,
            })
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(i) = parse_int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(&text) {
        return Value::Float(f);
    }
    Value::Str { text, plain: true }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let clean: Cow<'_, str> = if digits.contains('_') {
        digits
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .into()
    } else {
        digits.into()
    };
    let value = if let Some(hex) = clean.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = clean.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if clean.len() > 1 && clean.starts_with('0') && clean.bytes().all(|b| b.is_ascii_digit())
    {
        // YAML 1.1: a leading zero means octal (`0755`).
        i64::from_str_radix(&clean[1..], 8).ok()?
    } else if !clean.is_empty()
        && clean.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('_')
    {
        clean.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

/// YAML 1.1 floats need a `.` (`1e3` is a string to PyYAML).
fn parse_float(text: &str) -> Option<f64> {
    let body = text.trim_start_matches(['-', '+']);
    if !body.contains('.') || !body.bytes().next()?.is_ascii_digit() && !body.starts_with('.') {
        return None;
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    if !body.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    text.replace('_', "").parse().ok()
}
