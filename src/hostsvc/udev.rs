//! Keeping udev off the loop devices of a build, as osbuild HEAD does: while a device is held,
//! `/run/osbuild/locks/udev/device-MAJOR:MINOR` exists, and the rules file
//! `udev/10-osbuildd-inhibitor.rules` (installed into udev's rules directory) sees it and sets
//! the flags that stop the persistent-storage rules (`/dev/disk/by-label` links of the image's
//! filesystems on the host, which clash between concurrent builds) and device-mapper/LVM
//! activation on what the image holds. The path is HEAD's, so HEAD's own rules file works too.
//!
//! Two builds can hold the same device number one after the other, the second attaching it as
//! soon as the first detached it, before the first removed its file: each holder therefore
//! puts its own file in place (a rename, which replaces the other's) and removes the file only
//! while it is still its own, both under an flock on the directory.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use osbuild_sys::lock::{Flock, LockMode};

/// Where the lock files are (HEAD's directory).
pub const LOCK_DIR: &str = "/run/osbuild/locks/udev";

/// The lock file of one device; removed when dropped, unless another holder's replaced it.
#[derive(Debug)]
pub struct UdevInhibitor {
    dir: PathBuf,
    path: PathBuf,
    /// `(st_dev, st_ino)` of our file.
    ours: (u64, u64),
}

impl UdevInhibitor {
    /// Puts the lock file of block device `rdev` in `dir`.
    pub fn for_device(dir: &Path, rdev: u64) -> io::Result<UdevInhibitor> {
        std::fs::create_dir_all(dir)?;
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let name = format!("device-{major}:{minor}");
        let path = dir.join(&name);
        let _dir_lock = lock_dir(dir)?;
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(dir)?;
        let meta = file.as_file().metadata()?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(UdevInhibitor {
            dir: dir.to_owned(),
            path,
            ours: (meta.dev(), meta.ino()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove_if_ours(&self) -> io::Result<()> {
        let _dir_lock = lock_dir(&self.dir)?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.ours => std::fs::remove_file(&self.path),
            Ok(_) => Ok(()), // another holder's now
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// An exclusive flock on the lock directory: placing and removing a file are one step each.
fn lock_dir(dir: &Path) -> io::Result<Flock> {
    let fd = std::fs::File::open(dir)?;
    Flock::lock(fd.into(), LockMode::Exclusive)
}

impl Drop for UdevInhibitor {
    fn drop(&mut self) {
        if let Err(e) = self.remove_if_ours() {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_named_by_the_device_and_goes_with_the_guard() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks/udev");
        let rdev = nix::sys::stat::makedev(7, 12);
        let guard = UdevInhibitor::for_device(&locks, rdev).unwrap();
        assert_eq!(guard.path(), locks.join("device-7:12"));
        assert!(guard.path().is_file());
        drop(guard);
        assert!(!locks.join("device-7:12").exists());
    }

    /// The device went from one holder to the next before the first let go of its file: the
    /// first's release leaves the second's file alone.
    #[test]
    fn a_release_leaves_the_next_holders_file() {
        let dir = tempfile::tempdir().unwrap();
        let rdev = nix::sys::stat::makedev(7, 3);
        let first = UdevInhibitor::for_device(dir.path(), rdev).unwrap();
        let second = UdevInhibitor::for_device(dir.path(), rdev).unwrap();
        drop(first);
        assert!(second.path().is_file(), "the second holder's file stays");
        drop(second);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "nothing left: {left:?}");
    }
}
