//! The library's one mount: a device mounted on a fresh directory under `$TMPDIR`, inside the
//! sandbox's private mount namespace, owned by [`Mount`].
//!
//! The filesystem takes writes, so it is never detached lazily: unmounting flushes it
//! (`sync -f`, then a plain `umount`, which writes everything back before it returns) and only
//! then removes the directory. A mount that cannot be unmounted keeps its directory.

use std::path::{Path, PathBuf};

use crate::{tool, AssemblerError};

/// A mounted filesystem; unmounted (synchronously) when dropped or by [`Mount::unmount`].
#[derive(Debug)]
pub struct Mount {
    dir: Option<PathBuf>,
}

impl Mount {
    /// Mounts `device` (a filesystem of type `fstype`) on a new directory.
    pub fn new(device: &Path, fstype: &str) -> Result<Mount, AssemblerError> {
        let dir = std::env::temp_dir().join(format!("osbuild-mnt-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| AssemblerError::Tool(format!("creating {}: {e}", dir.display())))?;
        let args = [
            "-t".as_ref(),
            fstype.as_ref(),
            device.as_os_str(),
            dir.as_os_str(),
        ];
        if let Err(e) = tool::run_args("mount", &args) {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(Mount { dir: Some(dir) })
    }

    /// Where the filesystem is mounted.
    pub fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }

    /// Flushes and unmounts the filesystem, then removes the directory; a failure is an error
    /// (the filesystem may not hold what was written).
    pub fn unmount(mut self) -> Result<(), AssemblerError> {
        match self.dir.take() {
            Some(dir) => release(&dir),
            None => Ok(()),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = release(&dir);
        }
    }
}

/// Flush, unmount, remove the directory; the unmount is tried even when the flush failed.
fn release(dir: &Path) -> Result<(), AssemblerError> {
    let flushed = tool::run_args("sync", &["-f".as_ref(), dir.as_os_str()]);
    tool::run_args("umount", &[dir.as_os_str()])?;
    std::fs::remove_dir(dir)
        .map_err(|e| AssemblerError::Tool(format!("removing {}: {e}", dir.display())))?;
    flushed.map(|_| ())
}
