//! One daemon per state directory: `<state-dir>/lock`, held with an exclusive `flock` for
//! the daemon's whole life. A second daemon on the same directory (by any path, symlinks
//! included: the lock is on the file, not its name) stops at once with who holds it,
//! before it reads the database, recovers runs or writes `url`, so it can never end the
//! first daemon's jobs. The kernel drops the lock when the holder dies, however it dies,
//! and the file is opened close-on-exec, so no job inherits it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The state directory is locked by another live daemon.
#[derive(Debug, thiserror::Error)]
#[error("--state-dir: state directory `{}` is in use by {holder}; stop that daemon first, or give this one another --state-dir", dir.display())]
pub struct InUse {
    pub dir: PathBuf,
    /// `pid N since T`, as the holder wrote it (or "another process" when unreadable).
    pub holder: String,
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Takes the lock of `dir` or says who holds it.
pub fn lock(dir: &Path) -> anyhow::Result<StateLock> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("--state-dir: cannot open `{}`: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(InUse {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    holder.to_string()
                },
            }
            .into());
        }
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("--state-dir: cannot lock `{}`: {e}", path.display())
        }
    }
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "pid {} since {since}", std::process::id()));
    if let Err(e) = written {
        anyhow::bail!("--state-dir: cannot write `{}`: {e}", path.display());
    }
    Ok(StateLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        let in_use = err.downcast_ref::<InUse>().expect("an InUse error");
        assert!(
            in_use
                .holder
                .starts_with(&format!("pid {} since ", std::process::id())),
            "{}",
            in_use.holder
        );
    }
}
