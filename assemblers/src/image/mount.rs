//! The library's one mount: a device mounted on a fresh directory under `$TMPDIR`, inside the
//! sandbox's private mount namespace, owned by [`Mount`] (on the syscall layer's owner).
//!
//! The filesystem takes writes, so it is never detached lazily: unmounting flushes it
//! (`syncfs`, then a plain unmount, which writes everything back before it returns) and only
//! then removes the directory. A mount that cannot be unmounted keeps its directory.

use std::path::{Path, PathBuf};

use crate::AssemblerError;

/// A mounted filesystem; unmounted (synchronously) when dropped or by [`Mount::unmount`].
#[derive(Debug)]
pub struct Mount {
    mounted: Option<osbuild_sys::mount::Mount>,
    dir: PathBuf,
}

impl Mount {
    /// Mounts `device` (a filesystem of type `fstype`) on a new directory.
    pub fn new(device: &Path, fstype: &str) -> Result<Mount, AssemblerError> {
        let dir = std::env::temp_dir().join(format!("osbuild-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| AssemblerError::Tool(format!("creating {}: {e}", dir.display())))?;
        match osbuild_sys::mount::Mount::device(device, fstype, &dir) {
            Ok(mounted) => Ok(Mount {
                mounted: Some(mounted),
                dir,
            }),
            Err(failed) => {
                let _ = std::fs::remove_dir(&dir);
                Err(AssemblerError::Tool(format!(
                    "mounting {} ({fstype}) on {}: {}",
                    device.display(),
                    dir.display(),
                    std::io::Error::from(failed.errno)
                )))
            }
        }
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Flushes and unmounts the filesystem, then removes the directory; a failure is an error
    /// (the filesystem may not hold what was written).
    pub fn unmount(mut self) -> Result<(), AssemblerError> {
        self.release()
    }

    /// Flush and unmount, then remove the directory (which fails, keeping it, while the
    /// filesystem is still mounted there).
    fn release(&mut self) -> Result<(), AssemblerError> {
        let Some(mounted) = self.mounted.take() else {
            return Ok(());
        };
        let dir = self.dir.display();
        let unmounted = mounted.flush_and_unmount().map_err(|e| {
            AssemblerError::Tool(format!("unmounting {dir}: {}", std::io::Error::from(e)))
        });
        let removed = std::fs::remove_dir(&self.dir)
            .map_err(|e| AssemblerError::Tool(format!("removing {dir}: {e}")));
        unmounted.and(removed)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
