//! Timestamps of a reproducible build: every entry of a tree gets `mtime = min(mtime, epoch)`
//! and `atime = mtime`, the reproducible-builds "clamp" (files a stage wrote carry the epoch,
//! files unpacked with an older date keep theirs). osbuild HEAD clamps at commit too, deciding
//! by the object's creation time instead of by the epoch.
//!
//! A change time (`ctime`) cannot be set; the assemblers that record one write the epoch
//! instead (see `assemblers/src/image/reproducible.rs`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::StoreError;

/// Clamps the times of `root` and of everything below it to `epoch` (seconds since 1970).
/// Symlinks are clamped themselves, never followed.
pub(crate) fn clamp_times(root: &Path, epoch: u64) -> Result<(), StoreError> {
    let epoch = i64::try_from(epoch).unwrap_or(i64::MAX);
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| StoreError::io("read", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("read", &dir, e))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match is_dir {
                true => dirs.push(entry.path()),
                false => clamp_entry(&entry.path(), epoch)?,
            }
        }
        // After reading it: reading a directory may update its atime.
        clamp_entry(&dir, epoch)?;
    }
    Ok(())
}

/// Clamps the times of one entry.
fn clamp_entry(path: &Path, epoch: i64) -> Result<(), StoreError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| StoreError::io("stat", path, e))?;
    let mtime = clamped(meta.mtime(), meta.mtime_nsec(), epoch);
    let unchanged =
        (meta.mtime(), meta.mtime_nsec()) == mtime && (meta.atime(), meta.atime_nsec()) == mtime;
    if !unchanged {
        let t = TimeSpec::new(mtime.0, mtime.1);
        match utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink) {
            // An immutable file keeps its times (as HEAD does).
            Ok(()) | Err(Errno::EPERM) => {}
            Err(e) => return Err(StoreError::io("set the times of", path, e.into())),
        }
    }
    Ok(())
}

/// `min((secs, nsecs), (epoch, 0))`.
fn clamped(secs: i64, nsecs: i64, epoch: i64) -> (i64, i64) {
    if secs >= epoch {
        (epoch, 0)
    } else {
        (secs, nsecs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_times_become_the_epoch_earlier_ones_stay() {
        assert_eq!(clamped(1_800_000_000, 5, 1_700_000_000), (1_700_000_000, 0));
        assert_eq!(clamped(1_700_000_000, 5, 1_700_000_000), (1_700_000_000, 0));
        assert_eq!(clamped(1_600_000_000, 5, 1_700_000_000), (1_600_000_000, 5));
    }

    #[test]
    fn a_tree_is_clamped_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/new"), "x").unwrap();
        std::fs::write(tree.join("old"), "y").unwrap();
        let old = TimeSpec::new(1_000_000_000, 7);
        utimensat(
            AT_FDCWD,
            &tree.join("old"),
            &old,
            &old,
            UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("link")).unwrap();
        let before = std::fs::metadata(outside.path()).unwrap().mtime();

        clamp_times(&tree, 1_700_000_000).unwrap();

        for p in ["", "a", "a/b", "a/b/new", "link"] {
            let m = std::fs::symlink_metadata(tree.join(p)).unwrap();
            assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 0), "{p}");
            assert_eq!((m.atime(), m.atime_nsec()), (1_700_000_000, 0), "{p}");
        }
        let m = std::fs::symlink_metadata(tree.join("old")).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 7));
        assert_eq!((m.atime(), m.atime_nsec()), (1_000_000_000, 7));
        assert_eq!(std::fs::metadata(outside.path()).unwrap().mtime(), before);
    }
}
