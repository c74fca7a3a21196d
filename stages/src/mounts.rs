//! What package managers need while they run against a tree: private mount and network
//! namespaces for this stage, and `/proc`, `/sys`, `/dev` (plus, optionally, a read-only
//! directory of input files) mounted into the tree, all released on drop.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::StageError;

/// Moves this process into private mount and network namespaces, so nothing mounted below
/// is seen outside and maintainer scripts have no network.
pub fn isolate() -> Result<(), StageError> {
    private_mounts()?;
    no_network()
}

/// Moves this process into a private mount namespace (mounts propagate in, never out).
pub fn private_mounts() -> Result<(), StageError> {
    // SAFETY: unshare and mount take no pointers we own except the static C strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(StageError::Other(format!(
                "cannot create a private mount namespace: {}",
                std::io::Error::last_os_error()
            )));
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(StageError::Other(format!(
                "cannot make / a slave mount: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Moves this process (and what it starts from now on) into a new network namespace with no
/// interface up: no network at all, whatever the sandbox had.
pub fn no_network() -> Result<(), StageError> {
    // SAFETY: unshare takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(StageError::Other(format!(
            "cannot create a private network namespace: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn cstr(p: &Path) -> Result<CString, StageError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| StageError::Other(format!("path {:?} contains NUL", p)))
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> Result<(), StageError> {
    let src_c = src.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fstype_c = fstype
        .map(|f| CString::new(f).map_err(|_| StageError::Other("bad fstype".into())))
        .transpose()?;
    // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(StageError::io(
            "cannot mount on",
            target,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The mounts in the tree; unmounted in reverse order on drop (and gone with the private
/// namespace if the stage dies), then the directory for the input files is removed.
pub struct Mounts {
    points: Vec<PathBuf>,
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
        let table: [(&str, Option<&Path>, Option<&str>, libc::c_ulong); 3] = [
            (
                "proc",
                None,
                Some("proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            ),
            (
                "sys",
                None,
                Some("sysfs"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            ),
            (
                "dev",
                Some(Path::new("/dev")),
                None,
                libc::MS_BIND | libc::MS_REC,
            ),
        ];
        for (dir, src, fstype, flags) in table {
            let target = real_dir(tree, dir)?;
            mount(src, &target, fstype, flags)?;
            m.points.push(target);
        }
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
        mount(Some(files), &dir, None, libc::MS_BIND)?;
        m.points.push(dir.clone());
        mount(
            None,
            &dir,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        )?;
        Ok(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.points.drain(..).rev() {
            if let Ok(c) = cstr(&p) {
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
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
