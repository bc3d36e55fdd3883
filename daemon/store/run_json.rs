//! A run row written straight from SQLite as the API's JSON of a run (`api::types::RunJson`
//! as serde writes it), for `GET /api/runs`: no [`Run`](super::Run), no `RunJson`, no
//! `serde_json::Value` on the way.
//!
//! Contract: [`write_row`] writes exactly the text `serde_json::to_string(&RunJson::from(&run))`
//! gives for the [`Run`](super::Run) that [`read_row`](super::run::read_row) reads from the
//! same row (same fields in the same order, same escapes, nulls and time formats), and
//! fails where `read_row` fails. The tests hold it to that, row by row.
//!
//! How it stays cheap: a stored time in the exact form sundial writes
//! ([`time_text`](super::time_text): `YYYY-MM-DDTHH:MM:SS.mmmZ`) and naming a real instant is
//! already the answer's text, so it is copied, not parsed and printed again; stored
//! parameters that are already in serde's compact form (see [`canonical_json`]) are copied
//! too. Anything else (an older or hand-edited row) takes the slow way: parsed, then written
//! as serde writes it.

use std::fmt::Write;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::Row;

use super::run::{text_of, text_ref, write_cause, RunState, Trigger};
use super::{parse_time, time_text, StoreError};

/// Appends the JSON object of the run in `row` (selected with `run::COLUMNS`) to `out`.
/// `cause` is room for the run's cause, reused from row to row.
pub(super) fn write_row(
    row: &Row<'_>,
    out: &mut String,
    cause: &mut String,
) -> Result<(), StoreError> {
    let id: i64 = row.get(0)?;
    let deployment = text_of(row, 1)?;
    let schedule_id = text_ref(row, 2)?;
    let scheduled_for = time_or_null(text_ref(row, 3)?)?;
    let trigger = text_of(row, 4)?;
    let trigger = Trigger::parse(trigger)
        .ok_or_else(|| StoreError::Corrupt(format!("trigger {trigger:?}")))?;
    let state = text_of(row, 5)?;
    let state =
        RunState::parse(state).ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
    let reason = text_ref(row, 6)?;
    let attempt: u32 = row.get(7)?;
    let commit = text_of(row, 8)?;
    let parameters = text_of(row, 9)?;
    let started_at = time_or_null(text_ref(row, 11)?)?;
    let ended_at = time_or_null(text_ref(row, 12)?)?;
    let exit_code: Option<i32> = row.get(13)?;
    let retry_of: Option<i64> = row.get(17)?;
    let node = text_ref(row, 18)?;
    let epoch: Option<i64> = row.get(19)?;
    // Not in the answer, but a row `read_row` refuses is refused here too.
    Time::read(text_of(row, 10)?)?;
    let _: Option<u32> = row.get(14)?;
    time_or_null(text_ref(row, 15)?)?;
    let _: bool = row.get(16)?;

    // Writing into a String cannot fail.
    let _ = write!(out, "{{\"id\":{id},\"deployment\":");
    push_json_str(out, deployment);
    out.push_str(",\"state\":\"");
    out.push_str(state.as_str());
    out.push_str("\",\"trigger\":\"");
    out.push_str(trigger.as_str());
    out.push_str("\",\"scheduled_for\":");
    push_time(out, scheduled_for.as_ref());
    out.push_str(",\"started_at\":");
    push_time(out, started_at.as_ref());
    out.push_str(",\"ended_at\":");
    push_time(out, ended_at.as_ref());
    let _ = write!(out, ",\"attempt\":{attempt},\"commit\":");
    push_json_str(out, commit);
    out.push_str(",\"exit_code\":");
    match exit_code {
        Some(code) => {
            let _ = write!(out, "{code}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"parameters\":");
    if canonical_json(parameters) {
        out.push_str(parameters);
    } else {
        let value: serde_json::Value = serde_json::from_str(parameters)
            .map_err(|e| StoreError::Corrupt(format!("parameters: {e}")))?;
        let _ = write!(out, "{value}");
    }
    out.push_str(",\"reason\":");
    push_json_str_or_null(out, reason);
    out.push_str(",\"retry_of\":");
    match retry_of {
        Some(of) => {
            let _ = write!(out, "{of}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"schedule_id\":");
    push_json_str_or_null(out, schedule_id);
    out.push_str(",\"cause\":");
    cause.clear();
    let slot = scheduled_for.as_ref().map(Time::secs);
    let slot = slot.as_ref().map(Secs::as_str);
    write_cause(cause, trigger, schedule_id, slot, attempt, retry_of);
    push_json_str(out, cause);
    out.push_str(",\"node\":");
    push_json_str_or_null(out, node);
    out.push_str(",\"epoch\":");
    match epoch {
        Some(epoch) => {
            let _ = write!(out, "{epoch}");
        }
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(())
}

fn time_or_null(text: Option<&str>) -> Result<Option<Time<'_>>, StoreError> {
    text.map(Time::read).transpose()
}

fn push_time(out: &mut String, time: Option<&Time<'_>>) {
    match time {
        Some(time) => time.write_json(out),
        None => out.push_str("null"),
    }
}

fn push_json_str_or_null(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_json_str(out, text),
        None => out.push_str("null"),
    }
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it: `"` and `\`, the
/// five control characters with a short escape (`\b \t \n \f \r`), every other one below
/// U+0020 as `\u00xx` (lowercase hex); everything else as it is.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut from = 0;
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // The escaped bytes are ASCII: `i` is a character boundary.
        out.push_str(&text[from..i]);
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(short);
        }
        from = i + 1;
    }
    out.push_str(&text[from..]);
    out.push('"');
}

/// A stored instant: its stored text when that is already [`time_text`]'s, else parsed.
enum Time<'r> {
    Stored(&'r str),
    Parsed(DateTime<Utc>),
}

impl<'r> Time<'r> {
    fn read(text: &'r str) -> Result<Time<'r>, StoreError> {
        if is_time_text(text) {
            Ok(Time::Stored(text))
        } else {
            parse_time(text).map(Time::Parsed)
        }
    }

    /// As `time_text` writes it (milliseconds), quoted.
    fn write_json(&self, out: &mut String) {
        out.push('"');
        match self {
            Time::Stored(text) => out.push_str(text),
            Time::Parsed(at) => out.push_str(&time_text(*at)),
        }
        out.push('"');
    }

    /// In whole seconds (`YYYY-MM-DDTHH:MM:SSZ`), as [`Run::cause`](super::Run::cause)
    /// writes a slot.
    fn secs(&self) -> Secs {
        match self {
            // Chrono truncates to whole seconds; so does cutting the text.
            Time::Stored(text) => {
                let mut secs = [b'Z'; 20];
                secs[..19].copy_from_slice(&text.as_bytes()[..19]);
                Secs::Stored(secs)
            }
            Time::Parsed(at) => Secs::Parsed(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
    }
}

/// An instant in whole seconds, written without allocating when it comes from its text.
enum Secs {
    /// ASCII: the first 19 bytes of a [`time_text`], then `Z`.
    Stored([u8; 20]),
    Parsed(String),
}

impl Secs {
    fn as_str(&self) -> &str {
        match self {
            Secs::Stored(text) => std::str::from_utf8(text).unwrap_or_default(),
            Secs::Parsed(text) => text,
        }
    }
}

/// Whether `text` is exactly what [`time_text`] writes for some instant: the shape
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` with a real date and time (no leap second). Such a text
/// parses to an instant that `time_text` writes back as the same text.
fn is_time_text(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    if !b.iter().zip(shape).all(|(c, s)| match s {
        b'd' => c.is_ascii_digit(),
        s => c == s,
    }) {
        return false;
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
    hour < 24
        && minute < 60
        && second < 60
        && NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
}

/// The deepest nesting [`canonical_json`] follows (serde_json refuses past 128).
const MAX_DEPTH: usize = 64;

/// The most keys of one object [`canonical_json`] checks for repeats.
const MAX_KEYS: usize = 32;

/// Whether `text` is one JSON value written exactly as serde_json writes the
/// `serde_json::Value` it parses to (compact, keys in their order: `preserve_order`), so it
/// can be copied instead. It says no to whatever it does not prove: white space, numbers
/// other than integers of at most 18 digits (and `-0`), escapes serde would write otherwise
/// (`\/`, `\u0041`, upper-case hex), a key given twice (parsing keeps one), more than
/// [`MAX_KEYS`] keys in an object, nesting past [`MAX_DEPTH`], and text that is not JSON.
fn canonical_json(text: &str) -> bool {
    let mut scan = Scan {
        text: text.as_bytes(),
        at: 0,
    };
    scan.value(0) && scan.at == scan.text.len()
}

struct Scan<'t> {
    text: &'t [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => depth < MAX_DEPTH && self.object(depth + 1),
            Some(b'[') => depth < MAX_DEPTH && self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn word(&mut self, word: &[u8]) -> bool {
        let found = self.text[self.at..].starts_with(word);
        self.at += word.len();
        found
    }

    /// An integer serde reads as an `i64` or `u64` and writes back the same: no leading
    /// zero, not `-0` (read as the float -0.0), at most 18 digits (fits both).
    fn integer(&mut self) -> bool {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let from = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.text[from..self.at];
        let integer = match digits {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            _ => digits.len() <= 18,
        };
        integer && !matches!(self.peek(), Some(b'.' | b'e' | b'E'))
    }

    /// A string with only the escapes serde writes (see `push_json_str`).
    fn string(&mut self) -> bool {
        self.at += 1;
        loop {
            match self.peek() {
                None | Some(0x00..=0x1f) => return false,
                Some(b'"') => {
                    self.at += 1;
                    return true;
                }
                Some(b'\\') => {
                    let escape = self.text.get(self.at + 1..).unwrap_or_default();
                    let length = match escape {
                        [b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't', ..] => 2,
                        [b'u', b'0', b'0', high @ (b'0' | b'1'), low, ..]
                            if matches!(low, b'0'..=b'9' | b'a'..=b'f')
                                && !matches!(
                                    (high, low),
                                    (b'0', b'8' | b'9' | b'a' | b'c' | b'd')
                                ) =>
                        {
                            6
                        }
                        _ => return false,
                    };
                    self.at += length;
                }
                Some(_) => self.at += 1,
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.peek() == Some(b']') {
            self.at += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return true;
        }
        // Each key as it is written: one text per key, as the escapes are serde's.
        let mut keys = [(0, 0); MAX_KEYS];
        let mut count = 0;
        loop {
            let from = self.at;
            if self.peek() != Some(b'"') || !self.string() {
                return false;
            }
            let key = &self.text[from..self.at];
            if count == MAX_KEYS || keys[..count].iter().any(|&(s, e)| &self.text[s..e] == key) {
                return false;
            }
            keys[count] = (from, self.at);
            count += 1;
            if self.peek() != Some(b':') {
                return false;
            }
            self.at += 1;
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests;
