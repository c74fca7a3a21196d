//! Keeping udev off the loop devices of a build, as osbuild HEAD does: while a device is held,
//! `/run/osbuild/locks/udev/device-MAJOR:MINOR` exists, and the rules file
//! `udev/10-osbuildd-inhibitor.rules` (installed into udev's rules directory) sees it and sets
//! the flags that stop the persistent-storage rules (`/dev/disk/by-label` links of the image's
//! filesystems on the host, which clash between concurrent builds) and device-mapper/LVM
//! activation on what the image holds. The path is HEAD's, so HEAD's own rules file works too.

use std::io;
use std::path::{Path, PathBuf};

/// Where the lock files are (HEAD's directory).
pub const LOCK_DIR: &str = "/run/osbuild/locks/udev";

/// The lock file of one device; removed when dropped.
#[derive(Debug)]
pub struct UdevInhibitor {
    path: PathBuf,
}

impl UdevInhibitor {
    /// Creates the lock file of block device `rdev` in `dir`.
    pub fn for_device(dir: &Path, rdev: u64) -> io::Result<UdevInhibitor> {
        std::fs::create_dir_all(dir)?;
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let path = dir.join(format!("device-{major}:{minor}"));
        std::fs::File::create(&path)?;
        Ok(UdevInhibitor { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UdevInhibitor {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("removing {}: {e}", self.path.display());
            }
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
}
