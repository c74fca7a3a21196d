//! The sandbox's private `/dev`: a small tmpfs with only the basic nodes.
//!
//! It is a tmpfs of our own (not bubblewrap's `--dev`, which is `nodev`) so that loop device
//! nodes can be added at run time by the remoteloop API, as in osbuild.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::{io_err, BuildRootError};

/// Character devices every module gets: (name, major, minor).
const NODES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A mounted private `/dev`; unmounted on drop.
pub struct DevDir {
    path: PathBuf,
}

impl DevDir {
    /// Mounts a tmpfs on the (existing, empty) directory `path` and fills it.
    pub fn new(path: &Path) -> Result<Self, BuildRootError> {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=1m"),
        )
        .map_err(|e| io_err(format!("mounting a tmpfs on {}", path.display()))(e.into()))?;
        let dev = Self {
            path: path.to_owned(),
        };
        dev.populate()?;
        Ok(dev)
    }

    fn populate(&self) -> Result<(), BuildRootError> {
        let p = &self.path;
        for (name, major, minor) in NODES {
            mknod(
                &p.join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(*major, *minor),
            )
            .map_err(|e| io_err(format!("creating /dev/{name}"))(e.into()))?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            symlink(target, p.join(link)).map_err(io_err(format!("creating /dev/{link}")))?;
        }
        for dir in ["pts", "shm"] {
            std::fs::create_dir(p.join(dir)).map_err(io_err(format!("creating /dev/{dir}")))?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        if umount2(&self.path, MntFlags::empty()).is_err() {
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
    }
}
