//! Advisory whole-file locks (`flock(2)`, through std's `File::lock`): [`Flock`] holds one on
//! an open file or directory and releases it when dropped (the descriptor closes).

use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Shared (readers) or exclusive (one writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A descriptor with a `flock` held on it; dropping it closes the descriptor and so unlocks.
#[derive(Debug)]
pub struct Flock {
    file: File,
}

impl Flock {
    /// Waits for the lock on `fd` (a file or a directory).
    pub fn lock(fd: OwnedFd, mode: LockMode) -> io::Result<Self> {
        let file = File::from(fd);
        loop {
            let r = match mode {
                LockMode::Shared => file.lock_shared(),
                LockMode::Exclusive => file.lock(),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(|()| Self { file }),
            }
        }
    }

    /// Takes the lock on `fd` if nobody holds a conflicting one; `WouldBlock` otherwise.
    pub fn try_lock(fd: OwnedFd, mode: LockMode) -> io::Result<Self> {
        let file = File::from(fd);
        loop {
            let r = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match r {
                Ok(()) => return Ok(Self { file }),
                Err(TryLockError::WouldBlock) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl AsFd for Flock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
