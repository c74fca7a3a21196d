//! What package managers need while they run against a tree: private mount and network
//! namespaces for this stage, and `/proc`, `/sys`, `/dev` (plus, optionally, a read-only
//! directory of input files) mounted into the tree, all released on drop.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use osbuild_sys::mount::{Mount, MountFailed, MsFlags, NamespaceFailed};

use crate::error::StageError;

/// Moves this process into private mount and network namespaces, so nothing mounted below
/// is seen outside and maintainer scripts have no network.
pub fn isolate() -> Result<(), StageError> {
    private_mounts()?;
    no_network()
}

/// Moves this process into a private mount namespace (mounts propagate in, never out).
pub fn private_mounts() -> Result<(), StageError> {
    osbuild_sys::mount::enter_private_namespace().map_err(|failed| {
        StageError::Other(match failed {
            NamespaceFailed::Unshare(e) => {
                format!(
                    "cannot create a private mount namespace: {}",
                    io::Error::from(e)
                )
            }
            NamespaceFailed::MakeSlave(e) => {
                format!("cannot make / a slave mount: {}", io::Error::from(e))
            }
        })
    })
}

/// Moves this process (and what it starts from now on) into a new network namespace with no
/// interface up: no network at all, whatever the sandbox had.
pub fn no_network() -> Result<(), StageError> {
    osbuild_sys::net::unshare_network().map_err(|e| {
        StageError::Other(format!(
            "cannot create a private network namespace: {}",
            io::Error::from(e)
        ))
    })
}

fn mount_err(target: &Path) -> impl Fn(MountFailed) -> StageError + '_ {
    move |failed| StageError::io("cannot mount on", target, failed.errno.into())
}

/// The mounts in the tree; unmounted in reverse order on drop (and gone with the private
/// namespace if the stage dies), then the directory for the input files is removed.
pub struct Mounts {
    points: Vec<Mount>,
    created_dir: Option<PathBuf>,
    /// The input files' directory as seen from inside the tree (`/<name>`), if any.
    pub files_in_tree: String,
}

impl Mounts {
    /// Mounts `/proc`, `/sys` (read-only) and `/dev` into `tree`, and with `files =
    /// Some((dir, name))` binds `dir` read-only at `/<name>` in the tree.
    pub fn setup(tree: &Path, files: Option<(&Path, &str)>) -> Result<Mounts, StageError> {
        let mut m = Mounts {
            points: Vec::new(),
            created_dir: None,
            files_in_tree: String::new(),
        };
        let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let target = real_dir(tree, "proc")?;
        let proc = Mount::filesystem("proc", &target, hidden).map_err(mount_err(&target))?;
        m.points.push(proc);
        let target = real_dir(tree, "sys")?;
        let sys = Mount::filesystem("sysfs", &target, hidden | MsFlags::MS_RDONLY)
            .map_err(mount_err(&target))?;
        m.points.push(sys);
        let target = real_dir(tree, "dev")?;
        let dev = Mount::bind(Path::new("/dev"), &target, true).map_err(mount_err(&target))?;
        m.points.push(dev);
        let Some((files, name)) = files else {
            return Ok(m);
        };
        m.files_in_tree = format!("/{name}");
        let dir = tree.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => m.created_dir = Some(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StageError::io("cannot create", &dir, e)),
        }
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        let dir = real_dir(tree, name)?;
        let bound = Mount::bind(files, &dir, false).map_err(mount_err(&dir))?;
        let read_only = bound.remount_read_only(MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
        m.points.push(bound);
        read_only.map_err(mount_err(&dir))?;
        Ok(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        // Deepest first: the files' directory, then /dev, /sys, /proc.
        while let Some(mount) = self.points.pop() {
            drop(mount);
        }
        if let Some(d) = self.created_dir.take() {
            // Only ever an empty directory: never remove recursively near a mount point.
            let _ = fs::remove_dir(d);
        }
    }
}

/// `dir` in the tree as a real directory (created 0755 when absent, a symlink refused), so a
/// mount can never be redirected outside the tree.
fn real_dir(tree: &Path, dir: &str) -> Result<PathBuf, StageError> {
    let host = tree.join(dir);
    match fs::symlink_metadata(&host) {
        Ok(m) if m.is_dir() => Ok(host),
        Ok(_) => Err(StageError::Other(format!(
            "/{dir} in the tree is not a directory; cannot mount there"
        ))),
        Err(_) => {
            fs::create_dir(&host).map_err(|e| StageError::io("cannot create", &host, e))?;
            Ok(host)
        }
    }
}
