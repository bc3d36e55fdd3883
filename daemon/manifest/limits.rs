//! What reading one manifest may cost, whoever wrote it (README "Limits").
//!
//! A manifest is committed by anyone with push access, and the daemon reads every commit,
//! so a file must never be able to exhaust the stack or the memory of the process that
//! reads it. Four bounds, each reported as an ordinary diagnostic of that file:
//!
//! - **file size**: [`DEFAULT_MAX_FILE_SIZE`], changed with `--max-file-size` on
//!   `sundial validate` and `sundial daemon`; checked before the content is read (the
//!   daemon reads a blob's size from git's object header first);
//! - **nesting**: lists and mappings nest at most [`MAX_DEPTH`] levels, counting what
//!   aliases paste in, so every recursive walk of the tree stays shallow;
//! - **expanded text**: the bytes of every scalar and key, counted as aliases copy them,
//!   stay under [`expanded_bytes_limit`];
//! - **nodes**: at most [`MAX_NODES`] values after aliases are expanded.
//!
//! Non-goal: limits on what a valid manifest may declare (deployments, schedules); those
//! are checks, not bounds.

/// The default of `--max-file-size`: far above any real prefect.yaml (a few KiB), far
/// below what would hurt the daemon.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 20;

/// How deep lists and mappings may nest; a collection at the top of the file is level 1.
/// Real prefect.yaml files stay under 10 (a parameter schema adds a few). The bound keeps
/// every recursive walk on the path YAML → tree → JSON → schema → model → checks well
/// inside a 2 MiB thread stack in a debug build, and JSON made from a manifest well under
/// serde_json's own limit of 128 levels even when an API response wraps it.
pub const MAX_DEPTH: usize = 64;

/// How many values (scalars and keys, lists, mappings) a document may hold once aliases are
/// expanded (a "billion laughs" guard against aliases of aliases). A large real manifest
/// holds a few thousand; each value costs a few hundred bytes on its way through the
/// checks, so this bounds a file's cost near 100 MB.
pub const MAX_NODES: usize = 250_000;

/// The expanded-text budget of a small file: aliases may repeat text up to this much.
pub const MIN_EXPANDED_BYTES: usize = 16 << 20;

/// How many bytes of scalar and key text a document of `file_len` bytes may expand to:
/// [`MIN_EXPANDED_BYTES`], or four times the file's size for a larger file (without
/// aliases, the text of a file is never longer than the file).
pub fn expanded_bytes_limit(file_len: usize) -> usize {
    MIN_EXPANDED_BYTES.max(file_len.saturating_mul(4))
}

/// A size for people: `4 MiB`, `1.5 KiB`, `700 bytes`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            let whole = bytes / unit;
            let tenths = (bytes % unit) * 10 / unit;
            return if tenths == 0 {
                format!("{whole} {name}")
            } else {
                format!("{whole}.{tenths} {name}")
            };
        }
    }
    if bytes == 1 {
        "1 byte".into()
    } else {
        format!("{bytes} bytes")
    }
}

/// Parses a size as written on the command line: bytes (`4194304`) or a whole number with
/// a binary unit (`512K`, `512KiB`, `4M`, `4MiB`, `1G`, `1GiB`; case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(size_help(text)),
    };
    let number: u64 = number.parse().map_err(|_| size_help(text))?;
    number
        .checked_mul(1 << shift)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| size_help(text))
}

fn size_help(text: &str) -> String {
    format!("`{text}` is not a size; write bytes or a whole number with K, M or G (binary: 4M is 4 MiB)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_and_print_in_binary_units() {
        assert_eq!(parse_size("4194304"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4.5M").is_err());
        assert!(parse_size("4 MB").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(format_bytes(4 << 20), "4 MiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(700), "700 bytes");
        assert_eq!(format_bytes(1), "1 byte");
    }

    #[test]
    fn the_expansion_budget_grows_with_large_files_only() {
        assert_eq!(expanded_bytes_limit(100), MIN_EXPANDED_BYTES);
        assert_eq!(expanded_bytes_limit(8 << 20), 32 << 20);
        assert_eq!(expanded_bytes_limit(usize::MAX), usize::MAX);
    }
}
