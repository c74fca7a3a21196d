//! Mounts with owners, and the private mount namespace they live in.
//!
//! Every mount the engine makes is a [`BindMount`] guard: dropping it unmounts (falling back to
//! a lazy detach when the mount is busy), so an error path, a cancelled build or a panic
//! releases it the same way. The guard never removes its mountpoint; whoever created the
//! directory removes it after the guard is gone.
//!
//! [`enter_private_namespace`] moves the caller into a mount namespace of its own whose `/` is a
//! recursive slave of the host's: mounts made afterwards never propagate to the host and
//! disappear with the last process (or thread) that uses the namespace, even after `SIGKILL`.
//!
//! [`mounts_under`] reads `/proc/self/mountinfo` so that cleanup code can check that no mount
//! is left below a directory before it deletes it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use osbuild_sys::mount::{Mount, MountFailed, MsFlags, NamespaceFailed};

/// Why a mount operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `unshare(CLONE_NEWNS)` or making `/` a slave failed.
    #[error("cannot enter a private mount namespace ({step}): {errno}; this needs CAP_SYS_ADMIN (run as root)")]
    Namespace {
        /// Which step failed.
        step: &'static str,
        /// The error of that step.
        errno: Errno,
    },
    /// A mount call failed.
    #[error("cannot {action} {src} on {target}: {errno}")]
    Mount {
        /// What was attempted ("bind-mount", "make private", "remount read-only").
        action: &'static str,
        /// The source of the mount.
        src: PathBuf,
        /// The mountpoint.
        target: PathBuf,
        /// The error of the mount call.
        errno: Errno,
    },
    /// Unmounting failed even with a lazy detach.
    #[error("cannot unmount {target}: {errno}")]
    Unmount {
        /// The mountpoint.
        target: PathBuf,
        /// The error of the lazy detach.
        errno: Errno,
    },
    /// `/proc/self/mountinfo` could not be read.
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(#[source] std::io::Error),
}

/// Moves the calling thread into a new mount namespace whose `/` is recursively a slave of the
/// one it came from.
///
/// Mounts made afterwards by this thread (and by threads and processes it starts later) are
/// invisible to the host and vanish when the last user of the namespace exits. Host mount
/// events still propagate in, so new host mounts remain visible.
///
/// `unshare(2)` affects only the calling thread. Call it either at the very start of a process,
/// before any thread is started (then the whole process shares the namespace), or in a
/// dedicated thread that then does all the mount work itself (threads it spawns afterwards
/// inherit the namespace). The tests use the latter. A mount must be unmounted from the
/// namespace it was made in: do not hand mount guards to threads outside it.
pub fn enter_private_namespace() -> Result<(), MountError> {
    osbuild_sys::mount::enter_private_namespace().map_err(|failed| match failed {
        NamespaceFailed::Unshare(errno) => MountError::Namespace {
            step: "unshare(CLONE_NEWNS)",
            errno,
        },
        NamespaceFailed::MakeSlave(errno) => MountError::Namespace {
            step: "make / recursively slave",
            errno,
        },
    })
}

/// A bind mount owned by this value: dropping it unmounts (and logs a failure).
#[derive(Debug)]
pub struct BindMount {
    mount: Option<Mount>,
}

impl BindMount {
    /// Bind-mounts `src` (not recursively) on the existing directory `target`, makes the new
    /// mount private (so nothing mounted below it propagates anywhere), and remounts it
    /// read-only when `readonly` is set.
    pub fn new(src: &Path, target: &Path, readonly: bool) -> Result<Self, MountError> {
        let err = |failed: MountFailed| MountError::Mount {
            action: failed.action,
            src: src.to_owned(),
            target: target.to_owned(),
            errno: failed.errno,
        };
        // From the first step on the mount has an owner, so a failure below unmounts it again.
        let mount = Mount::bind(src, target, false).map_err(err)?;
        mount.make_private().map_err(err)?;
        if readonly {
            mount.remount_read_only(MsFlags::empty()).map_err(err)?;
        }
        Ok(Self { mount: Some(mount) })
    }

    /// The mountpoint.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().expect("mounted until dropped").path()
    }

    /// Unmounts now and reports failure (dropping the guard does the same but can only log).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), MountError> {
        let Some(mount) = self.mount.take() else {
            return Ok(());
        };
        let target = mount.path().to_owned();
        mount
            .unmount()
            .map_err(|errno| MountError::Unmount { target, errno })
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!("{e}");
        }
    }
}

/// Mountpoints at or below `dir` in the calling thread's mount namespace, deepest first (the
/// order in which they can be unmounted). `dir` should be absolute and canonical.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, MountError> {
    let text = std::fs::read("/proc/thread-self/mountinfo").map_err(MountError::MountInfo)?;
    let mut found: Vec<PathBuf> = parse_mountpoints(&text)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Lazily detaches every mount at or below `dir` (deepest first).
pub fn detach_all_under(dir: &Path) -> Result<(), MountError> {
    for m in mounts_under(dir)? {
        match osbuild_sys::mount::detach(&m) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(errno) => return Err(MountError::Unmount { target: m, errno }),
        }
    }
    Ok(())
}

/// The mountpoint column (5th field) of every line of a mountinfo file, with the kernel's octal
/// escapes (`\040` for a space, ...) decoded.
fn parse_mountpoints(text: &[u8]) -> Vec<PathBuf> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(OsString::from_vec(unescape_octal(field))))
        .collect()
}

fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits = field.get(i + 1..i + 4);
        match digits {
            Some(d) if field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mountpoints_are_unescaped() {
        let text = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
            40 22 254:0 /srv/a /var/tmp/my\\040store/tmp/x rw - ext4 /dev/vda rw\n\
            41 22 0:5 / /back\\134slash rw - tmpfs tmpfs rw\n";
        let cases: [(usize, &str); 3] = [
            (0, "/"),
            (1, "/var/tmp/my store/tmp/x"),
            (2, "/back\\slash"),
        ];
        let got = parse_mountpoints(text);
        assert_eq!(got.len(), 3);
        for (i, want) in cases {
            assert_eq!(got[i], Path::new(want));
        }
    }

    #[test]
    fn unescape_leaves_incomplete_escapes() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"a\\040b", b"a b"),
            (b"a\\04", b"a\\04"),
            (b"\\999", b"\\999"),
            (b"plain", b"plain"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape_octal(input), want, "{input:?}");
        }
    }
}
