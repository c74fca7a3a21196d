//! Paths from the manifest below the directory they belong to (the tree being built, the
//! stage's mounts directory): checked by their words first (no `..`), then on disk, one
//! component at a time without following symlinks, because `mount(2)` follows them and a
//! symlink in a filesystem image may point anywhere on the host.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::HostError;

/// `path` as components below its base: `..` is refused, and a leading `/` too unless
/// `absolute_ok` (mount targets are written `/boot`; HEAD strips the slash).
pub(super) fn relative(
    module: &str,
    what: &'static str,
    path: &str,
    absolute_ok: bool,
) -> Result<PathBuf, HostError> {
    let escapes = |why: &str| HostError::Escapes {
        module: module.to_owned(),
        what,
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => rel.push(c),
            Component::CurDir => {}
            Component::RootDir if absolute_ok => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(escapes("is absolute: it must be relative to the tree"))
            }
            Component::ParentDir => return Err(escapes("contains \"..\"")),
        }
    }
    Ok(rel)
}

/// How HEAD's `os.path.relpath` writes `rel`: `.` for the base itself.
pub(super) fn display(rel: &Path) -> String {
    match rel.as_os_str().is_empty() {
        true => ".".to_owned(),
        false => rel.to_string_lossy().into_owned(),
    }
}

/// The directory `base/rel`, made where missing. Returns it and the directories this call
/// created on the scratch filesystem `base` lives on (deepest last): those are scratch and go again with the
/// mount; a directory made inside a mounted filesystem (`boot` in the image's `/`) is part of
/// the image, as in HEAD, and stays.
pub(super) fn make_dirs(
    module: &str,
    base: &Path,
    rel: &Path,
) -> Result<(PathBuf, Vec<PathBuf>), HostError> {
    // `base` itself may be a mountpoint already (`/` mounted before `/boot`): its scratch
    // filesystem is the one of the directory holding it.
    let holder = base.parent().unwrap_or(base);
    let base_dev = std::fs::metadata(holder)
        .map_err(HostError::io(
            module,
            format!("reading {}", holder.display()),
        ))?
        .dev();
    let mut dir = base.to_owned();
    let mut created = Vec::new();
    for component in rel.components() {
        let parent_dev = std::fs::symlink_metadata(&dir)
            .map_err(HostError::io(module, format!("reading {}", dir.display())))?
            .dev();
        dir.push(component);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) => check_dir(module, rel, &dir, &meta)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir)
                    .map_err(HostError::io(module, format!("creating {}", dir.display())))?;
                if parent_dev == base_dev {
                    created.push(dir.clone());
                }
            }
            Err(e) => {
                return Err(HostError::io(module, format!("reading {}", dir.display()))(
                    e,
                ))
            }
        }
    }
    Ok((dir, created))
}

/// The existing `base/rel`, with no symlink on the way (the last component may be a file).
pub(super) fn existing(
    module: &str,
    what: &'static str,
    base: &Path,
    rel: &Path,
) -> Result<PathBuf, HostError> {
    let mut path = base.to_owned();
    for component in rel.components() {
        path.push(component);
        let meta = std::fs::symlink_metadata(&path).map_err(HostError::io(
            module,
            format!("the {what} {}", path.display()),
        ))?;
        if meta.file_type().is_symlink() {
            return Err(through_symlink(module, what, rel, &path));
        }
    }
    Ok(path)
}

fn check_dir(
    module: &str,
    rel: &Path,
    dir: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), HostError> {
    if meta.file_type().is_symlink() {
        return Err(through_symlink(module, "target", rel, dir));
    }
    if !meta.is_dir() {
        let message = format!("the mountpoint {} is not a directory", dir.display());
        return Err(HostError::options(module, message));
    }
    Ok(())
}

fn through_symlink(module: &str, what: &'static str, rel: &Path, at: &Path) -> HostError {
    HostError::Escapes {
        module: module.to_owned(),
        what,
        path: rel.to_string_lossy().into_owned(),
        why: format!(
            "passes through the symlink {}, which could lead out",
            at.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_below_their_base() {
        let ok = |p, abs| relative("m", "target", p, abs).map(|r| display(&r));
        assert_eq!(ok("/", true).unwrap(), ".");
        assert_eq!(ok("/boot/", true).unwrap(), "boot");
        assert_eq!(ok("./boot//efi", true).unwrap(), "boot/efi");
        assert_eq!(ok("disk.img", false).unwrap(), "disk.img");
        let err = ok("/disk.img", false).unwrap_err().to_string();
        assert_eq!(
            err,
            "m: target \"/disk.img\" is absolute: it must be relative to the tree"
        );
        let err = ok("a/../../etc", true).unwrap_err().to_string();
        assert_eq!(err, "m: target \"a/../../etc\" contains \"..\"");
    }

    #[test]
    fn make_dirs_refuses_symlinks_and_keeps_what_existed() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("boot")).unwrap();
        std::os::unix::fs::symlink("/etc", base.path().join("link")).unwrap();
        let (dir, created) = make_dirs("m", base.path(), Path::new("boot/efi/x")).unwrap();
        assert_eq!(dir, base.path().join("boot/efi/x"));
        assert_eq!(
            created,
            [base.path().join("boot/efi"), base.path().join("boot/efi/x")]
        );
        let err = make_dirs("m", base.path(), Path::new("link/x")).unwrap_err();
        assert!(
            err.to_string().contains("passes through the symlink"),
            "{err}"
        );
        assert!(!Path::new("/etc/x").exists());
        let err = existing("m", "source", base.path(), Path::new("link")).unwrap_err();
        assert!(
            err.to_string().contains("passes through the symlink"),
            "{err}"
        );
    }
}
