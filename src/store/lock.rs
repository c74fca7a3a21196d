//! The store's flocks and what they own: `STORE/meta/tmp.lock`, the locked [`TempDir`]s under
//! `STORE/tmp/` (and the removal of a tree that may have mounts below it), and the shared
//! [`ObjectLock`] on `objects/<treesum>` that keeps a prune away.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use osbuild_sys::lock::{Flock, LockMode};

use super::{errno_io, valid_name, Store, StoreError};
use crate::id::Treesum;

pub(super) fn open_dir_fd(path: &Path) -> Result<OwnedFd, Errno> {
    openat(
        AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
}

/// Makes the entries of directory `path` (a rename into it) durable: fsync(2) of the directory.
pub(super) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    let fd = open_dir_fd(path).map_err(errno_io("open", path))?;
    nix::unistd::fsync(fd).map_err(errno_io("flush to disk", path))
}

/// Removes a directory tree that may have had mounts below it: detaches them first and refuses
/// to delete anything if that fails.
pub(super) fn remove_tree(path: &Path) {
    if let Err(e) = crate::mount::detach_all_under(path) {
        tracing::error!("not removing {}: {e}", path.display());
        return;
    }
    if let Err(e) = super::remove::remove_dir_all(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// A directory under `STORE/tmp/`, locked by its owner and removed when dropped (or by the next
/// [`Store::open`] if the owner dies).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _lock: Flock,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// A shared lock on `objects/<treesum>`: while it is held, prune leaves the object alone.
#[derive(Debug)]
pub(super) struct ObjectLock {
    _lock: Flock,
}

impl ObjectLock {
    /// Writes back every dirty page of the filesystem holding the locked tree (syncfs(2)).
    pub(super) fn sync_filesystem(&self) -> io::Result<()> {
        Ok(nix::unistd::syncfs(self._lock.as_fd())?)
    }

    /// Takes a shared lock on the directory `tree`, which is about to become an object.
    pub(super) fn on_tree(tree: &Path) -> Result<ObjectLock, StoreError> {
        let fd = open_dir_fd(tree).map_err(errno_io("open", tree))?;
        let lock =
            Flock::lock(fd, LockMode::Shared).map_err(|e| StoreError::io("lock", tree, e))?;
        Ok(ObjectLock { _lock: lock })
    }
}

impl Store {
    /// Locks `STORE/meta/tmp.lock`: shared while a `tmp/` entry is created and locked,
    /// exclusive while dead entries are swept.
    pub(super) fn tmp_lock(&self, mode: LockMode) -> Result<Flock, StoreError> {
        let path = &self.inner.tmp_lock;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open the lock", path, e))?;
        Flock::lock(f.into(), mode).map_err(|e| StoreError::io("lock", path, e))
    }

    /// Takes a shared lock on `objects/<ts>`, waiting for a prune of it to finish. `None` if the
    /// object does not exist (any more).
    pub(super) fn lock_object(&self, ts: &Treesum) -> Result<Option<ObjectLock>, StoreError> {
        let path = self.object_path(ts);
        let fd = match open_dir_fd(&path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path, e.into())),
        };
        let lock =
            Flock::lock(fd, LockMode::Shared).map_err(|e| StoreError::io("lock", &path, e))?;
        // A prune may have moved it away while we waited: it must still be the same directory.
        let held = nix::sys::stat::fstat(lock.as_fd()).map_err(errno_io("stat", &path))?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.dev() == held.st_dev && m.ino() == held.st_ino => {
                Ok(Some(ObjectLock { _lock: lock }))
            }
            _ => Ok(None),
        }
    }

    /// Creates a locked directory `tmp/<prefix>-XXXXXXXX`, removed when the guard is dropped.
    pub fn tempdir(&self, prefix: &str) -> Result<TempDir, StoreError> {
        if !valid_name(prefix) {
            return Err(StoreError::InvalidName {
                what: "temporary directory prefix",
                name: prefix.to_owned(),
            });
        }
        // Keeps a concurrent `open` from sweeping the directory before it is locked.
        let _creating = self.tmp_lock(LockMode::Shared)?;
        let tmp = &self.inner.tmp;
        let path = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .rand_bytes(10)
            .tempdir_in(tmp)
            .map_err(|e| StoreError::io("create a directory in", tmp, e))?
            .keep();
        let fd = match open_dir_fd(&path) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(StoreError::io("open", &path, e.into()));
            }
        };
        match Flock::try_lock(fd, LockMode::Exclusive) {
            Ok(lock) => Ok(TempDir { path, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(StoreError::io("lock", &path, e))
            }
        }
    }
}
