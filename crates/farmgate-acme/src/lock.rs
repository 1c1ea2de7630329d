//! Lock files: several edges sharing one storage directory order each certificate once.
//!
//! A lock is an advisory `flock` on `NAME.lock` beside the file it guards, held for a whole
//! order (or account registration). The kernel drops it when the holder exits, even by a crash,
//! so there are no stale locks to clean up; over NFS, Linux maps it to NFS byte-range locks. The
//! holder writes its process id and host name into the file, for an operator who wonders who
//! holds it. Whoever takes a lock next re-reads the guarded file first: if another edge renewed
//! the certificate meanwhile, it serves that one instead of ordering again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::AcmeError;

/// How often a waiting edge tries again to take a lock held by another.
const POLL: Duration = Duration::from_secs(1);

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    // Closing the file releases the flock.
    _file: File,
}

/// Take the lock at `path`, waiting for another holder to finish.
pub(crate) async fn acquire(path: &Path) -> Result<FileLock, AcmeError> {
    let fail = |action, source| AcmeError::File {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail("open", e))?;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if !told {
                    tracing::info!(
                        "waiting for {}: another farmgate sharing this storage is ordering",
                        path.display()
                    );
                    told = true;
                }
                tokio::time::sleep(POLL).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail("lock", e)),
        }
    }
    // Who holds it, for people; a failure here does not matter.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "pid {} on {}", std::process::id(), host.trim()));
    Ok(FileLock { _file: file })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Whether the lock at `path` is free right now (taking it for a moment).
    fn is_free(path: &Path) -> bool {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.try_lock().is_ok()
    }

    #[tokio::test]
    async fn a_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("www.example.com.lock");
        let held = acquire(&path).await.unwrap();
        assert!(!is_free(&path), "a second open file sees the lock");
        let contents = std::fs::read_to_string(&path).unwrap();
        assert!(
            contents.starts_with(&format!("pid {}", std::process::id())),
            "{contents}"
        );
        drop(held);
        assert!(is_free(&path));
        drop(acquire(&path).await.unwrap());
    }
}
