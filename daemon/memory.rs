//! Giving back memory after a large piece of work (loading a commit of thousands of
//! deployments), so the daemon's resident size is what it keeps, not what it once used.
//!
//! Two things stay resident after such work although nothing needs them:
//! - the heap's free space: glibc's `malloc` keeps memory freed inside its arenas (the
//!   parse trees of every manifest, the previous state) until `malloc_trim` returns its
//!   free pages to the system;
//! - the pages of code and read-only data that start-up and loading touched (argument
//!   parsing, the JSON Schema's compilation, the store's migrations, validation): they stay
//!   mapped into the process although the daemon's idle loop and its runs use a small part
//!   of them.
//!
//! Contract: [`release`] changes nothing the program can observe. The heap's free pages are
//! handed back (their contents were garbage). Only file-backed mappings that were never
//! written (no private copy of any page: the `Anonymous` count of `/proc/self/smaps` is
//! zero) and cannot be written (no `w` permission) are dropped from the mapping: their pages
//! stay in the kernel's page cache, and the next use maps them again from there (a minor
//! fault). Mappings holding relocated data (RELRO), writable data and every anonymous
//! mapping are left alone. Outside Linux with glibc it does nothing.

/// Hands the heap's free pages back and unmaps read-only file pages (see the module docs).
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::release();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod linux {
    use std::ffi::{c_int, c_void};

    extern "C" {
        fn malloc_trim(pad: usize) -> c_int;
        fn madvise(addr: *mut c_void, length: usize, advice: c_int) -> c_int;
    }

    /// `MADV_DONTNEED` on Linux.
    const MADV_DONTNEED: c_int = 4;

    pub(super) fn release() {
        // SAFETY: malloc_trim only returns free memory of the allocator's own arenas.
        unsafe {
            malloc_trim(0);
        }
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return;
        };
        for (start, end) in clean_read_only(&smaps) {
            // SAFETY: the range is a whole mapping of a file that is not writable and has
            // no private (written) page, so dropping its pages loses nothing: the next
            // access maps the same file contents again.
            unsafe {
                madvise(start as *mut c_void, end - start, MADV_DONTNEED);
            }
        }
    }

    /// The address ranges of file mappings without `w` permission and without any
    /// anonymous (copied-on-write) page, from `/proc/self/smaps` text.
    pub(super) fn clean_read_only(smaps: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut current: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else {
                continue;
            };
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    let perms = fields.next().unwrap_or("");
                    let path = fields.nth(3).unwrap_or("");
                    current = (perms.starts_with('r')
                        && !perms.contains('w')
                        && perms.ends_with('p')
                        && path.starts_with('/'))
                    .then_some((start, end));
                    continue;
                }
            }
            if first == "Anonymous:" {
                let anonymous = fields.next().and_then(|kb| kb.parse::<u64>().ok());
                if let (Some(range), Some(0)) = (current.take(), anonymous) {
                    out.push(range);
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_clean_read_only_file_mappings_are_dropped() {
            let smaps = "\
55d0a0000000-55d0a0100000 r--p 00000000 08:01 123 /usr/bin/sundial
Rss:                 800 kB
Anonymous:             0 kB
55d0a0100000-55d0a0900000 r-xp 00100000 08:01 123 /usr/bin/sundial
Anonymous:             0 kB
55d0a0900000-55d0a0a00000 r--p 00900000 08:01 123 /usr/bin/sundial
Anonymous:          1024 kB
55d0a0a00000-55d0a0a10000 rw-p 00a00000 08:01 123 /usr/bin/sundial
Anonymous:            64 kB
55d0a1000000-55d0a2000000 rw-p 00000000 00:00 0 [heap]
Anonymous:          4096 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0
Anonymous:             0 kB
7f0000010000-7f0000020000 r-xp 00000000 08:01 9 /usr/lib/libc.so.6
Anonymous:             4 kB
7fff00000000-7fff00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
            assert_eq!(
                clean_read_only(smaps),
                [
                    (0x55d0a0000000, 0x55d0a0100000),
                    (0x55d0a0100000, 0x55d0a0900000)
                ]
            );
        }

        #[test]
        fn the_program_runs_on_after_its_pages_are_dropped() {
            let before = format!("{:?}", (1..200).map(|i| i * i).collect::<Vec<u64>>());
            super::release();
            let after = format!("{:?}", (1..200).map(|i| i * i).collect::<Vec<u64>>());
            assert_eq!(before, after);
        }
    }
}
