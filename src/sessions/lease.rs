//! A session's lease: with `--shared-sessions`, several replicas serve one session directory,
//! and whichever holds a session's lease is the only one that may run, change or remove it.
//!
//! The lease is an exclusive `flock` on `<session>/lease`, held for one operation (a turn, a
//! file write, a fork, a close), never between calls. The kernel (or, on NFSv4, the
//! server's lock manager) releases it when its holder dies, SIGKILL included, so a crashed
//! replica cannot keep a session locked, and no expiry clock has to be trusted across
//! machines. A lease on a directory that another replica removed meanwhile is taken on an
//! orphan file; callers therefore read `meta.json` again once they hold it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

const LEASE: &str = "lease";

/// Held while it lives; dropping it releases the lock.
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

impl Lease {
    /// The lease of the session in `dir` if nobody holds it now. A missing directory is
    /// `NotFound` (the session was removed).
    pub fn try_take(dir: &Path) -> io::Result<Option<Lease>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LEASE))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lease { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }

    /// The lease, waiting up to `wait` for its holder (another replica's turn, or a sweep's
    /// look) to let it go. `None` when it is still held after that.
    pub async fn take(dir: &Path, wait: Duration) -> io::Result<Option<Lease>> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(lease) = Self::try_take(dir)? {
                return Ok(Some(lease));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("omcp-lease-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = Lease::try_take(&dir).unwrap().expect("free at first");
        // A second open file description conflicts, as another replica's would.
        assert!(Lease::try_take(&dir).unwrap().is_none());
        drop(first);
        assert!(Lease::try_take(&dir).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            Lease::try_take(&dir).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
