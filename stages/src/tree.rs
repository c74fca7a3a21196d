//! Safe paths inside the tree and the file operations the stages do there.
//!
//! [`tree_path`] resolves a path from a manifest (or a fixed one such as `etc/hostname`)
//! component by component *inside* the tree: absolute symlinks are taken as rooted at the
//! tree, and a `..` that would climb above the tree root (from the path itself or from a
//! relative symlink) is refused, as are symlink loops. Every write helper below goes through
//! it, so no option value can make a stage write outside the tree.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{StageError, TreePathError};

/// How many symlinks one resolution may follow (Linux's own limit).
pub const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute or relative, always taken relative to the tree root) to a host
/// path inside `tree` whose existing components are not symlinks. Components that do not
/// exist yet are kept as they are, so the result can name a file to create.
pub fn tree_path(tree: &Path, path: impl AsRef<Path>) -> Result<PathBuf, TreePathError> {
    let path = path.as_ref();
    let shown = || path.display().to_string();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = Vec::new(); // a stack: the next component is last
    push_components(&mut pending, path);
    let mut followed = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            if resolved.pop().is_none() {
                return Err(TreePathError::Escapes { path: shown() });
            }
            continue;
        }
        let mut candidate = tree.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(TreePathError::Loop { path: shown() });
                }
                let target = fs::read_link(&candidate).map_err(|source| TreePathError::Io {
                    path: shown(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved.clear();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved.push(comp),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                resolved.push(comp)
            }
            Err(source) => {
                return Err(TreePathError::Io {
                    path: shown(),
                    source,
                })
            }
        }
    }
    let mut out = tree.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

/// Pushes the components of `p` onto the `pending` stack so that the first is popped first.
fn push_components(pending: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(comps.into_iter().rev());
}

/// Creates the directory `path` in the tree and any missing parents with `mode`
/// (existing ones are left alone). Returns the host path.
pub fn create_dirs(tree: &Path, path: &str, mode: u32) -> Result<PathBuf, StageError> {
    let host = tree_path(tree, path)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(&host)
        .map_err(|e| StageError::io("cannot create directory", &host, e))?;
    Ok(host)
}

/// Removes the file or symlink at `path` in the tree; returns whether there was one.
pub fn remove_file(tree: &Path, path: &str) -> Result<bool, StageError> {
    // Resolve only the parent: the last component itself is what gets removed,
    // even when it is a symlink.
    let (parent, name) = split(path)?;
    let host = tree_path(tree, parent)?.join(name);
    match fs::remove_file(&host) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StageError::io("cannot remove", &host, e)),
    }
}

/// Writes `contents` to `path` in the tree atomically (a temporary file renamed into place),
/// with `mode`, creating missing parent directories (0755). Returns the host path.
pub fn write_file(
    tree: &Path,
    path: &str,
    contents: &[u8],
    mode: u32,
) -> Result<PathBuf, StageError> {
    let (parent, name) = split(path)?;
    let dir = create_dirs(tree, parent, 0o755)?;
    let host = dir.join(name);
    let tmp = TempName::new(&dir, name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp.0)
        .map_err(|e| StageError::io("cannot create", &tmp.0, e))?;
    f.write_all(contents)
        .and_then(|()| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all())
        .map_err(|e| StageError::io("cannot write", &tmp.0, e))?;
    drop(f);
    tmp.rename_to(&host)?;
    Ok(host)
}

/// Makes `path` in the tree a symlink to `target` (replacing what is there), creating missing
/// parent directories (0755). `target` is stored verbatim. Returns the host path.
pub fn write_symlink(tree: &Path, path: &str, target: &str) -> Result<PathBuf, StageError> {
    let (parent, name) = split(path)?;
    let dir = create_dirs(tree, parent, 0o755)?;
    let host = dir.join(name);
    let tmp = TempName::new(&dir, name);
    std::os::unix::fs::symlink(target, &tmp.0)
        .map_err(|e| StageError::io("cannot create symlink", &tmp.0, e))?;
    tmp.rename_to(&host)?;
    Ok(host)
}

/// Splits `path` into its parent and a plain last component.
fn split(path: &str) -> Result<(&str, &str), StageError> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(StageError::Other(format!(
            "path {path:?} does not name a file in the tree"
        )));
    }
    Ok((parent, name))
}

/// A temporary file name next to the destination, removed on drop unless renamed.
struct TempName(PathBuf);

impl TempName {
    fn new(dir: &Path, name: &str) -> TempName {
        TempName(dir.join(format!(".{name}.osbuild-tmp.{}", std::process::id())))
    }

    fn rename_to(self, dest: &Path) -> Result<(), StageError> {
        fs::rename(&self.0, dest).map_err(|e| StageError::io("cannot replace", dest, e))?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A throwaway directory removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("osbuild-stages-tree-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn tree_path_resolves_inside_the_tree() {
        let d = TempDir::new("resolve");
        let t = d.0.join("tree");
        fs::create_dir_all(t.join("etc/ssh")).unwrap();
        fs::create_dir_all(t.join("home/alice")).unwrap();
        symlink("/", t.join("rootlink")).unwrap();
        symlink("/etc", t.join("abs-etc")).unwrap();
        symlink("../../..", t.join("home/alice/up")).unwrap();
        symlink("../..", t.join("etc/ssh/up2")).unwrap();
        symlink("loop-b", t.join("loop-a")).unwrap();
        symlink("loop-a", t.join("loop-b")).unwrap();
        symlink("self", t.join("self")).unwrap();
        symlink("alice", t.join("home/link")).unwrap();
        symlink("/home/link", t.join("abs-home")).unwrap();
        fs::write(t.join("etc/file"), "x").unwrap();

        let ok = |p: &str, want: &str| {
            assert_eq!(tree_path(&t, p).unwrap(), t.join(want), "{p}");
        };
        ok("", "");
        ok("/", "");
        ok("etc/hostname", "etc/hostname");
        ok("/etc/hostname", "etc/hostname");
        ok("./etc/./hostname", "etc/hostname");
        ok("etc/ssh/../hostname", "etc/hostname");
        ok("rootlink/etc/passwd", "etc/passwd"); // absolute symlink to / is the tree root
        ok("abs-etc/shadow", "etc/shadow");
        ok("abs-home/.ssh", "home/alice/.ssh");
        ok("home/link", "home/alice");
        ok("etc/ssh/up2", ""); // ../.. from etc/ssh is the root itself: allowed
        ok("missing/dir/../file", "missing/file");
        ok("etc/file/below", "etc/file/below"); // ENOTDIR is "does not exist"

        let escapes = |p: &str| match tree_path(&t, p) {
            Err(TreePathError::Escapes { .. }) => {}
            other => panic!("{p}: expected escape, got {other:?}"),
        };
        escapes("..");
        escapes("../../etc");
        escapes("/../etc/passwd");
        escapes("etc/../../etc");
        escapes("home/alice/up"); // relative symlink climbing out
        escapes("home/alice/up/etc/passwd");
        escapes("etc/ssh/up2/..");

        for p in ["loop-a", "self/x", "loop-b/etc"] {
            match tree_path(&t, p) {
                Err(TreePathError::Loop { .. }) => {}
                other => panic!("{p}: expected loop, got {other:?}"),
            }
        }
        let msg = tree_path(&t, "../../etc").unwrap_err().to_string();
        assert_eq!(msg, "path \"../../etc\" points outside the tree");
    }

    #[test]
    fn writes_stay_in_the_tree() {
        let d = TempDir::new("write");
        let t = d.0.join("tree");
        let outside = d.0.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(&t).unwrap();
        // An absolute symlink naming a host directory lands inside the tree.
        symlink(&outside, t.join("etc")).unwrap();
        let host = write_file(&t, "/etc/hostname", b"h\n", 0o644).unwrap();
        assert!(host.starts_with(&t), "{}", host.display());
        assert!(!outside.join("hostname").exists());
        assert_eq!(fs::read(&host).unwrap(), b"h\n");
        assert_eq!(
            fs::metadata(&host).unwrap().permissions().mode() & 0o7777,
            0o644
        );

        let link = write_symlink(&t, "x/localtime", "../usr/share/zoneinfo/UTC").unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from("../usr/share/zoneinfo/UTC")
        );
        // replacing works and leaves no temporary behind
        write_symlink(&t, "x/localtime", "../usr/share/zoneinfo/Europe/Berlin").unwrap();
        let names: Vec<_> = fs::read_dir(t.join("x")).unwrap().collect();
        assert_eq!(names.len(), 1);

        assert!(write_file(&t, "../escape", b"", 0o644).is_err());
        assert!(!d.0.join("escape").exists());
        assert!(write_file(&t, "etc/..", b"", 0o644).is_err());

        assert!(remove_file(&t, "x/localtime").unwrap());
        assert!(!remove_file(&t, "x/localtime").unwrap());
    }
}
