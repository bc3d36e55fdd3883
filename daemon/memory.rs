//! Giving back memory after a large piece of work (loading a commit of thousands of
//! deployments, a burst of thousands of runs), so the daemon's resident size is what it
//! keeps, not what it once used.
//!
//! glibc's `malloc` keeps memory freed inside its arenas (the parse trees of every
//! manifest, the previous state, the attempts of a burst) until `malloc_trim` returns their
//! free pages to the system. [`release`] calls it.
//!
//! [`tune`], called once at the daemon's start, fixes two of glibc's settings that would
//! otherwise drift with use:
//! - blocks of 128 KiB and more are always mapped on their own and unmapped when freed. By
//!   default glibc raises that threshold (up to 32 MiB) after freeing a large block, so
//!   the big, short-lived buffers of a scrape of `/metrics` or a page of runs end up in the
//!   heap, where what lives on beside them keeps their pages;
//! - at most two arenas. Each thread that allocates gets an arena of its own up to eight
//!   per core; the blocking threads (git reads, API pages) each kept a few MiB of free,
//!   scattered memory in theirs.
//!
//! Contract: [`release`] changes nothing the program can observe: only free pages of the
//! allocator, whose contents were garbage, are handed back. Outside Linux with glibc it
//! does nothing. The code and read-only data pages that start-up touched are left alone:
//! they are the kernel's page cache, shared and reclaimable, not memory the daemon holds.

/// The allocator settings above; once, before the daemon starts its threads.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's parameters; it takes the main arena's
    // lock, so it is safe at any time, and it is called before other threads exist.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 * 1024);
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Hands the heap's free pages back to the system.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's own arenas; it takes
    // the arenas' locks like malloc itself, so it is safe to call from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_given_back_and_the_heap_still_works() {
        let rss = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        // Many small blocks (below mmap's threshold, so they live in the heap), then one
        // kept above them: freeing the blocks leaves a hole that free() alone keeps.
        let blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
        let pin = std::hint::black_box(Box::new([1u8; 100]));
        let held = rss();
        drop(blocks);
        super::release();
        let after = rss();
        assert!(
            after + 20_000 < held,
            "RSS {held} kB with the blocks, {after} kB after freeing them and releasing"
        );
        let again: Vec<u64> = (1..1000).collect();
        assert_eq!(again.iter().sum::<u64>(), 499_500);
        assert_eq!(pin[99], 1);
    }
}
