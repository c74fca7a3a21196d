//! The directory where a module's own directories live (`var/`, `var/tmp`, `api/`, `sources/`,
//! and for HEAD's protocol `inputs/`, `mounts/`, `input-N/`, `meta`): one per build root, used
//! by its modules in turn and emptied before each, instead of made and removed for every
//! module. On a filesystem mounted with `discard`, each removed directory waits for a discard;
//! the five per stage were the largest file-system cost of a stage that does nothing.
//!
//! There are two of them (`module`, and `module-next` made when first needed): the next
//! stage's sandbox is started while the current stage runs, each in its own.
//!
//! A module may change what it was given read-write (`/var`: its content, its mode, its owner,
//! its extended attributes such as a default ACL); what is kept for the next module is only
//! what is exactly as [`ModuleDir::make_dir`] made it, emptied. Anything else is removed and
//! made again.

use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{io_err, BuildRootError};

/// The directories kept from one module to the next (and `var/tmp` in `var`).
const KEPT: &[&str] = &["var", "api", "sources"];

/// The mode of what the engine makes in a module directory (`rel`, relative to it): `/var/tmp`
/// is writable by everyone, with the sticky bit, as on any system.
fn mode_of(rel: &str) -> u32 {
    if rel == "var/tmp" {
        0o1777
    } else {
        0o755
    }
}

/// A build root's module directories (see the module's documentation).
#[derive(Debug)]
pub struct ModuleScratch {
    slots: [Slot; 2],
    /// The owner the engine gives what it makes (the module directory's own, which no module
    /// can change: it is never bound into a sandbox).
    owner: (u32, u32),
}

/// One module directory, held by one module at a time.
#[derive(Debug)]
struct Slot {
    path: PathBuf,
    /// Held while a module uses the directory; whether the directory exists yet.
    made: Mutex<bool>,
}

/// The module directory, empty, held by one module until dropped.
pub struct ModuleDir<'a> {
    path: &'a Path,
    _in_use: MutexGuard<'a, bool>,
}

impl ModuleScratch {
    /// Creates `parent/module` (`parent/module-next` is made when first taken); they go when
    /// `parent` is removed.
    pub fn new(parent: &Path) -> Result<Self, BuildRootError> {
        let path = parent.join("module");
        fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
        let m = fs::symlink_metadata(&path).map_err(io_err(format!("stat {}", path.display())))?;
        let slot = |path, made| Slot {
            path,
            made: Mutex::new(made),
        };
        Ok(Self {
            slots: [slot(path, true), slot(parent.join("module-next"), false)],
            owner: (m.uid(), m.gid()),
        })
    }

    /// A free module directory, emptied of what the previous module left. Two modules at a
    /// time (one running, the next started): a third taker is a bug, reported instead of
    /// waited for.
    pub fn take(&self) -> Result<ModuleDir<'_>, BuildRootError> {
        let (slot, mut made) = self
            .slots
            .iter()
            .find_map(|s| s.made.try_lock().ok().map(|guard| (s, guard)))
            .ok_or_else(|| BuildRootError::Io {
                context: format!(
                    "{} and {} are in use by other modules",
                    self.slots[0].path.display(),
                    self.slots[1].path.display()
                ),
                source: ErrorKind::ResourceBusy.into(),
            })?;
        if !*made {
            fs::create_dir(&slot.path)
                .map_err(io_err(format!("creating {}", slot.path.display())))?;
            *made = true;
        }
        empty(&slot.path, self.owner)?;
        Ok(ModuleDir {
            path: &slot.path,
            _in_use: made,
        })
    }
}

impl ModuleDir<'_> {
    /// The directory on the host.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// `name` below the module directory: made with the mode it is kept with, or the one kept
    /// from the previous module ([`ModuleScratch::take`] left only kept directories exactly as
    /// they were made, emptied, and no module has run since).
    pub fn make_dir(&self, name: &str) -> Result<PathBuf, BuildRootError> {
        let path = self.path.join(name);
        match fs::create_dir(&path) {
            Ok(()) => fs::set_permissions(&path, fs::Permissions::from_mode(mode_of(name)))
                .map_err(io_err(format!("chmod {}", path.display())))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && is_kept_name(name) => {}
            Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
        }
        Ok(path)
    }
}

/// Whether `rel` (relative to the module directory) is one of the directories kept.
fn is_kept_name(rel: &str) -> bool {
    rel == "var/tmp" || KEPT.contains(&rel)
}

/// True when `path` is a directory (not a symlink) of `mode` and `owner` with no extended
/// attribute but the SELinux label every new file gets where SELinux is on.
fn is_kept(path: &Path, mode: u32, owner: (u32, u32)) -> bool {
    let Ok(dir) = open_dir(path) else {
        return false;
    };
    let plain = osbuild_sys::fs::xattr_names(&dir)
        .is_ok_and(|names| names.iter().all(|n| n == b"security.selinux"));
    plain && dir.metadata().is_ok_and(|m| pristine(&m, mode, owner))
}

fn pristine(m: &Metadata, mode: u32, owner: (u32, u32)) -> bool {
    m.file_type().is_dir() && m.mode() & 0o7777 == mode && (m.uid(), m.gid()) == owner
}

/// Opens the directory `path` itself, never through a symlink.
fn open_dir(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Empties the module directory `dir`: the kept directories stay (emptied) when they are as
/// they were made; everything else goes, after any mount left below it is detached.
fn empty(dir: &Path, owner: (u32, u32)) -> Result<(), BuildRootError> {
    let mut doomed = Vec::new();
    for entry in read_dir(dir)? {
        let name = entry.file_name();
        let kept = KEPT.iter().find(|n| name == **n);
        let keep = match kept {
            Some(name) => empty_kept(&entry.path(), name, owner)?,
            None => false,
        };
        if !keep {
            doomed.push(entry.path());
        }
    }
    // Only HEAD's inputs and mounts can have had mounts on the host (the stage's services
    // detach theirs; this is for one that could not).
    if doomed.iter().any(|p| p.is_dir()) {
        crate::mount::detach_all_under(dir)
            .map_err(|e| io_err(format!("emptying {}", dir.display()))(std::io::Error::other(e)))?;
    }
    doomed.iter().try_for_each(|p| remove(p))
}

/// Empties the kept directory `path` (`rel` in the module directory), keeping `var/tmp` the
/// same way, and says whether it stays: false when it is not as it was made (then the caller
/// removes it).
fn empty_kept(path: &Path, rel: &str, owner: (u32, u32)) -> Result<bool, BuildRootError> {
    if !is_kept(path, mode_of(rel), owner) {
        return Ok(false);
    }
    for entry in read_dir(path)? {
        let keep = rel == "var"
            && entry.file_name() == "tmp"
            && empty_kept(&entry.path(), "var/tmp", owner)?;
        if !keep {
            remove(&entry.path())?;
        }
    }
    Ok(true)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, BuildRootError> {
    let context = || format!("reading {}", dir.display());
    fs::read_dir(dir)
        .map_err(io_err(context()))?
        .collect::<Result<_, _>>()
        .map_err(io_err(context()))
}

/// Removes `path` (a directory with all below it, never following a symlink).
fn remove(path: &Path) -> Result<(), BuildRootError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn listing(dir: &Path) -> Vec<String> {
        let mut all = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                all.push(format!("{rel} {:o}", m.mode() & 0o7777));
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        all.sort();
        all
    }

    fn make_module_dirs(d: &ModuleDir) {
        for name in ["var", "var/tmp", "api", "sources", "inputs", "mounts"] {
            d.make_dir(name).unwrap();
        }
    }

    #[test]
    fn each_module_finds_the_directories_as_they_were_made() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ModuleScratch::new(parent.path()).unwrap();
        let fresh = {
            let d = scratch.take().unwrap();
            make_module_dirs(&d);
            listing(d.path())
        };
        assert_eq!(
            fresh,
            [
                "api 755",
                "inputs 755",
                "mounts 755",
                "sources 755",
                "var 755",
                "var/tmp 1777"
            ]
        );
        let root = scratch.take().unwrap().path().to_owned();
        // What a module (or the engine for it) may leave: files, a changed mode, a symlink
        // where a kept directory was, HEAD's extras.
        fs::write(root.join("var/tmp/leftover"), "x").unwrap();
        fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        fs::write(root.join("api/osbuild"), "").unwrap();
        fs::create_dir(root.join("sources/org.osbuild.files")).unwrap();
        fs::write(root.join("meta"), "{}").unwrap();
        fs::set_permissions(root.join("var"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::remove_dir(root.join("sources/org.osbuild.files")).unwrap();
        fs::remove_dir(root.join("sources")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep-me"), "").unwrap();
        symlink(outside.path(), root.join("sources")).unwrap();

        let d = scratch.take().unwrap();
        assert_eq!(listing(d.path()), ["api 755"]);
        make_module_dirs(&d);
        assert_eq!(listing(d.path()), fresh);
        assert!(
            outside.path().join("keep-me").exists(),
            "a symlink is never followed"
        );
    }

    #[test]
    fn a_kept_directory_with_another_mode_is_made_again() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ModuleScratch::new(parent.path()).unwrap();
        make_module_dirs(&scratch.take().unwrap());
        let root = parent.path().join("module");
        fs::set_permissions(root.join("var/tmp"), fs::Permissions::from_mode(0o755)).unwrap();
        let d = scratch.take().unwrap();
        assert_eq!(listing(d.path()), ["api 755", "sources 755", "var 755"]);
        d.make_dir("var/tmp").unwrap();
        assert!(listing(d.path()).contains(&"var/tmp 1777".to_owned()));
    }

    #[test]
    fn a_kept_directory_with_a_default_acl_is_made_again() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ModuleScratch::new(parent.path()).unwrap();
        make_module_dirs(&scratch.take().unwrap());
        let var = parent.path().join("module/var");
        let dir = open_dir(&var).unwrap();
        // A user.* attribute stands for any: tmpfs and ext4 both take it from root.
        if osbuild_sys::fs::set_xattr(&dir, c"user.left", b"by a stage").is_err() {
            return; // a filesystem without user attributes
        }
        drop(dir);
        let d = scratch.take().unwrap();
        assert_eq!(listing(d.path()), ["api 755", "sources 755"]);
        d.make_dir("var").unwrap();
        let names = osbuild_sys::fs::xattr_names(open_dir(&var).unwrap()).unwrap();
        assert!(names.iter().all(|n| n == b"security.selinux"), "{names:?}");
    }

    #[test]
    fn two_modules_at_a_time_each_in_its_own_directory() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ModuleScratch::new(parent.path()).unwrap();
        let first = scratch.take().unwrap();
        let second = scratch.take().unwrap();
        assert_eq!(first.path(), parent.path().join("module"));
        assert_eq!(second.path(), parent.path().join("module-next"));
        fs::write(second.path().join("left"), "").unwrap();
        let third = scratch.take().err().expect("taken three times").to_string();
        assert!(third.contains("in use by other modules"), "{third}");
        drop(second);
        let again = scratch.take().unwrap();
        assert_eq!(again.path(), parent.path().join("module-next"));
        assert_eq!(listing(again.path()), Vec::<String>::new());
        drop(first);
        assert_eq!(scratch.take().unwrap().path(), parent.path().join("module"));
    }
}
