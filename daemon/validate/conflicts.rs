//! Unresolved git merge conflicts. A file committed mid-merge holds `<<<<<<<`, `=======`
//! and `>>>>>>>` lines (and `|||||||` with diff3); a YAML reader sees only a syntax
//! error, usually a line late. They are found before the YAML is read and reported at
//! their own lines as what they are; the rest of the file is not checked, since which
//! side is meant is unknown.

use crate::manifest::{Pos, Span};

/// One marker line: where it is and what it does in the conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub span: Span,
    pub text: String,
    pub role: &'static str,
}

/// The marker lines of `bytes`, or none unless a conflict both opens and closes (so a
/// lone `=======`, a Markdown underline in a text, is no conflict).
pub fn markers(bytes: &[u8]) -> Vec<Marker> {
    let mut found = Vec::new();
    let (mut opens, mut closes) = (false, false);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        // Every marker starts with one of these: other lines are not even decoded.
        if !matches!(line.first(), Some(b'<' | b'|' | b'=' | b'>')) {
            continue;
        }
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let role = match marker_of(line) {
            Some(role) => role,
            None => continue,
        };
        opens |= line.starts_with('<');
        closes |= line.starts_with('>');
        found.push(Marker {
            span: Span {
                start: Pos {
                    line: i + 1,
                    column: 1,
                },
                width: line.chars().count(),
            },
            text: line.to_string(),
            role,
        });
    }
    if opens && closes {
        found
    } else {
        Vec::new()
    }
}

/// What a line is when it is a conflict marker: seven of the marker's character, alone or
/// followed by a space and a label.
fn marker_of(line: &str) -> Option<&'static str> {
    let roles = [
        (
            "<<<<<<<",
            "starts a merge conflict (this side is the current branch's)",
        ),
        (
            "|||||||",
            "starts the common ancestor's side of a merge conflict",
        ),
        ("=======", "separates the two sides of a merge conflict"),
        (
            ">>>>>>>",
            "ends a merge conflict (the side above it is the merged branch's)",
        ),
    ];
    roles.into_iter().find_map(|(marker, role)| {
        let rest = line.strip_prefix(marker)?;
        (rest.is_empty() || rest.starts_with(' ')).then_some(role)
    })
}
