//! Loose objects checked before libgit2 inflates them.
//!
//! Contract: [`check_loose`] reads `<objects>/<xx>/<rest>` of an object id, when that file
//! exists, and answers whether it is a whole object: a complete zlib stream holding
//! `<type> <size>\0` and exactly `size` bytes after it. A loose object that is not whole
//! is [`Damage`]; a missing file (the object is packed, or absent) and a file that cannot
//! be read are left to libgit2, which answers those itself.
//!
//! Why: the bundled libgit2 (1.9.7) loops forever inflating a truncated loose object
//! (libgit2 issue 7342, fixed upstream after that release): a `find_blob` on one never
//! returns. Checking first turns that hang into an error naming the object. It costs one
//! more read and inflate of each loose object the daemon reads; packed objects are not
//! checked here (a read that hangs anyway is bounded by [`super::bounded`]).
//!
//! Non-goals: verifying the object's hash (`git fsck` does), or reading the object for
//! its contents (libgit2 still does that).

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress, Status};
use git2::Oid;

/// Output scratch space; objects are inflated and dropped chunk by chunk.
const CHUNK: usize = 64 * 1024;
/// `commit 18446744073709551615\0` fits in this.
const MAX_HEADER: usize = 32;

/// What is wrong with a loose object file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The zlib stream ends before its end marker: the file was cut short.
    Truncated { bytes: u64 },
    /// The file is not a zlib stream (or its checksum is wrong).
    NotZlib,
    /// The inflated object does not start with `<type> <size>\0`.
    BadHeader,
    /// The header's size disagrees with what follows it.
    WrongSize { declared: u64, found: u64 },
    /// Bytes follow the end of the zlib stream.
    TrailingBytes,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Truncated { bytes } => {
                write!(f, "is truncated (its {bytes} bytes end mid-stream)")
            }
            Damage::NotZlib => write!(f, "is not zlib-compressed data"),
            Damage::BadHeader => write!(f, "has no valid object header"),
            Damage::WrongSize { declared, found } => {
                write!(f, "declares {declared} bytes but holds {found}")
            }
            Damage::TrailingBytes => write!(f, "has bytes after its end"),
        }
    }
}

/// The file a loose object `id` would be stored in under `objects_dir`.
pub fn loose_path(objects_dir: &Path, id: Oid) -> PathBuf {
    let hex = id.to_string();
    objects_dir.join(&hex[..2]).join(&hex[2..])
}

/// Checks the loose object `id` under `objects_dir` (see the module contract): `Ok` when
/// it is whole or not a readable loose file, `Err((path, damage))` otherwise.
pub fn check_loose(objects_dir: &Path, id: Oid) -> Result<(), (PathBuf, Damage)> {
    let path = loose_path(objects_dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        // Out of descriptors, permissions, ...: libgit2's own read reports it.
        Err(_) => return Ok(()),
    };
    check_bytes(&bytes).map_err(|damage| (path, damage))
}

/// Whether `bytes` is a whole loose object.
fn check_bytes(bytes: &[u8]) -> Result<(), Damage> {
    let mut z = Decompress::new(true);
    let mut out = vec![0u8; CHUNK];
    let mut header: Vec<u8> = Vec::new();
    let mut header_len: Option<u64> = None;
    loop {
        let before = (z.total_in(), z.total_out());
        let input = &bytes[z.total_in() as usize..];
        let status = z
            .decompress(input, &mut out, FlushDecompress::None)
            .map_err(|_| Damage::NotZlib)?;
        let produced = (z.total_out() - before.1) as usize;
        if header_len.is_none() {
            header.extend_from_slice(&out[..produced.min(MAX_HEADER + 1)]);
            if let Some(nul) = header.iter().position(|&b| b == 0) {
                header.truncate(nul);
                header_len = Some(nul as u64 + 1);
            } else if header.len() > MAX_HEADER {
                return Err(Damage::BadHeader);
            }
        }
        match status {
            Status::StreamEnd => break,
            // No progress with all input given: the stream was cut short. (This is the
            // state libgit2 1.9.7 retries forever.)
            _ if (z.total_in(), z.total_out()) == before => {
                return Err(Damage::Truncated {
                    bytes: bytes.len() as u64,
                });
            }
            _ => {}
        }
    }
    if (z.total_in() as usize) < bytes.len() {
        return Err(Damage::TrailingBytes);
    }
    let header_len = header_len.ok_or(Damage::BadHeader)?;
    let declared = parse_header(&header).ok_or(Damage::BadHeader)?;
    let found = z.total_out() - header_len;
    if declared != found {
        return Err(Damage::WrongSize { declared, found });
    }
    Ok(())
}

/// The size in `<type> <size>` (without the NUL), for the four object types.
fn parse_header(header: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(header).ok()?;
    let (kind, size) = text.split_once(' ')?;
    if !matches!(kind, "blob" | "tree" | "commit" | "tag") {
        return None;
    }
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    size.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::default(), true);
        let mut out = Vec::with_capacity(data.len() + 64);
        z.compress_vec(data, &mut out, FlushCompress::Finish)
            .unwrap();
        out
    }

    fn object(body: &[u8]) -> Vec<u8> {
        let mut raw = format!("blob {}\0", body.len()).into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    #[test]
    fn a_whole_object_passes() {
        let body = "deployments: []\n".repeat(500);
        assert_eq!(check_bytes(&deflate(&object(body.as_bytes()))), Ok(()));
        assert_eq!(check_bytes(&deflate(&object(b""))), Ok(()));
        // Larger than one chunk of output.
        let big = vec![b'x'; 3 * CHUNK + 17];
        assert_eq!(check_bytes(&deflate(&object(&big))), Ok(()));
    }

    #[test]
    fn a_truncated_object_is_truncated_not_a_hang() {
        let body = "schedules:\n  - interval: 60\n".repeat(200);
        let whole = deflate(&object(body.as_bytes()));
        for cut in [2, whole.len() / 2, whole.len() - 1] {
            let damage = check_bytes(&whole[..cut]).unwrap_err();
            assert_eq!(damage, Damage::Truncated { bytes: cut as u64 });
            assert_eq!(
                damage.to_string(),
                format!("is truncated (its {cut} bytes end mid-stream)")
            );
        }
    }

    #[test]
    fn garbage_wrong_sizes_and_headers_are_damage() {
        assert_eq!(check_bytes(b"not zlib at all"), Err(Damage::NotZlib));
        assert_eq!(check_bytes(b""), Err(Damage::Truncated { bytes: 0 }));
        let mut raw = b"blob 99\0".to_vec();
        raw.extend_from_slice(b"short");
        assert_eq!(
            check_bytes(&deflate(&raw)),
            Err(Damage::WrongSize {
                declared: 99,
                found: 5
            })
        );
        assert_eq!(
            check_bytes(&deflate(b"junk 5\0hello")),
            Err(Damage::BadHeader)
        );
        assert_eq!(check_bytes(&deflate(&[b'a'; 100])), Err(Damage::BadHeader));
        let mut trailing = deflate(&object(b"x"));
        trailing.extend_from_slice(b"more");
        assert_eq!(check_bytes(&trailing), Err(Damage::TrailingBytes));
    }
}
