//! Mounts with an owner, and the private mount namespace they live in.
//!
//! A [`Mount`] unmounts when dropped: synchronously, falling back to a lazy detach only when
//! the mount is busy. It never removes its mountpoint; whoever created that directory removes
//! it (with `remove_dir`, never recursively) once the mount is gone.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};

pub use nix::mount::MsFlags;

/// Which mount call failed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFailed {
    /// What was attempted ("bind-mount", "mount", "make private", "remount read-only").
    pub action: &'static str,
    pub errno: Errno,
}

/// Which step of [`enter_private_namespace`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceFailed {
    /// `unshare(CLONE_NEWNS)`.
    Unshare(Errno),
    /// Making `/` recursively a slave.
    MakeSlave(Errno),
}

/// Moves the calling thread into a new mount namespace whose `/` is recursively a slave of the
/// one it came from: later mounts never propagate out and vanish with the namespace's last
/// user, while host mounts still propagate in. Affects the calling thread only (and what it
/// starts afterwards).
pub fn enter_private_namespace() -> Result<(), NamespaceFailed> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(NamespaceFailed::Unshare)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(NamespaceFailed::MakeSlave)
}

/// Lazily detaches the mount at `target` (for cleanup of mounts nobody owns any more).
pub fn detach(target: &Path) -> nix::Result<()> {
    umount2(target, MntFlags::MNT_DETACH)
}

/// A mount owned by this value: dropping it unmounts.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Bind-mounts `src` on the existing directory `target` (with everything mounted below
    /// `src` when `recursive`).
    pub fn bind(src: &Path, target: &Path, recursive: bool) -> Result<Self, MountFailed> {
        let flags = match recursive {
            true => MsFlags::MS_BIND | MsFlags::MS_REC,
            false => MsFlags::MS_BIND,
        };
        Self::call(Some(src), target, None, flags, "bind-mount")?;
        Ok(Self::owning(target))
    }

    /// Mounts a filesystem of type `fstype` (`proc`, `sysfs`, ...) with `flags` on `target`.
    pub fn filesystem(fstype: &str, target: &Path, flags: MsFlags) -> Result<Self, MountFailed> {
        Self::call(None, target, Some(fstype), flags, "mount")?;
        Ok(Self::owning(target))
    }

    /// Mounts the filesystem of type `fstype` on the block device `device` at `target`.
    pub fn device(device: &Path, fstype: &str, target: &Path) -> Result<Self, MountFailed> {
        Self::device_with(device, fstype, target, MsFlags::empty(), "")
    }

    /// Mounts the filesystem of type `fstype` on `device` at `target` with `flags` and the
    /// filesystem's own options `data` (`"norecovery,uid=0"`; empty for none).
    pub fn device_with(
        device: &Path,
        fstype: &str,
        target: &Path,
        flags: MsFlags,
        data: &str,
    ) -> Result<Self, MountFailed> {
        let data = Some(data).filter(|d| !d.is_empty());
        mount(Some(device), target, Some(fstype), flags, data).map_err(|errno| MountFailed {
            action: "mount",
            errno,
        })?;
        Ok(Self::owning(target))
    }

    /// Makes the mount private, so nothing mounted below it propagates anywhere.
    pub fn make_private(&self) -> Result<(), MountFailed> {
        let flags = MsFlags::MS_PRIVATE;
        Self::call(None, &self.target, None, flags, "make private")
    }

    /// Remounts a bind mount read-only, with `extra` flags (`MS_NOSUID`, ...) added.
    pub fn remount_read_only(&self, extra: MsFlags) -> Result<(), MountFailed> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra;
        Self::call(None, &self.target, None, flags, "remount read-only")
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, lazily detaching if the mount is busy; the error is the detach's.
    pub fn unmount(mut self) -> nix::Result<()> {
        self.release()
    }

    /// For a filesystem that took writes: flushes it (`syncfs`), then unmounts synchronously,
    /// which writes everything back before it returns. Never detaches lazily, which would
    /// hide a failed write-back: if busy, the mount stays (until its namespace ends). The
    /// unmount is tried even when the flush failed; the first failure is the error.
    pub fn flush_and_unmount(mut self) -> nix::Result<()> {
        self.mounted = false;
        let flushed = std::fs::File::open(&self.target)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            .and_then(nix::unistd::syncfs);
        umount2(&self.target, MntFlags::empty())?;
        flushed
    }

    fn owning(target: &Path) -> Self {
        Self {
            target: target.to_owned(),
            mounted: true,
        }
    }

    fn call(
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        action: &'static str,
    ) -> Result<(), MountFailed> {
        mount(src, target, fstype, flags, None::<&str>)
            .map_err(|errno| MountFailed { action, errno })
    }

    fn release(&mut self) -> nix::Result<()> {
        if !std::mem::take(&mut self.mounted) {
            return Ok(());
        }
        umount2(&self.target, MntFlags::empty()).or_else(|_| detach(&self.target))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Callers that must hear of a failure call `unmount`; here nothing is left to try.
        let _ = self.release();
    }
}
