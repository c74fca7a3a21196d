//! Build roots' set-ups, kept: the `/etc` a runner's set-up left in a build root (ldconfig's
//! cache, the users systemd-sysusers made, what systemd-tmpfiles made in `/etc`), under
//! `STORE/setups/<key>/`, so that later builds on the same build root copy a few small files
//! instead of running those tools again. The caller's key names everything the set-up read
//! ([`SetUpKey`], made by `buildroot::setup`). A kept set-up is written once, complete, by a rename, and never
//! changed; the least recently used go first once more than [`MAX_KEPT`] are kept.

use std::path::{Path, PathBuf};

use super::copy::copy_tree;
use super::lock::{remove_tree, sync_dir};
use super::{Store, StoreError};
use crate::id::SetUpKey;

/// How many set-ups are kept (each a few hundred KiB at most: one per build root in use).
pub const MAX_KEPT: usize = 16;

impl Store {
    fn set_up_path(&self, key: &SetUpKey) -> PathBuf {
        self.root().join("setups").join(key.as_str())
    }

    /// Copies the set-up kept under `key` into the empty directory `etc`; false when there is
    /// none.
    pub fn restore_set_up(&self, key: &SetUpKey, etc: &Path) -> Result<bool, StoreError> {
        let kept = self.set_up_path(key);
        if !kept.is_dir() {
            return Ok(false);
        }
        copy_tree(&kept, etc)?;
        mark_used(&kept);
        Ok(true)
    }

    /// Keeps a copy of `etc` under `key`. Another build that kept the same set-up first wins;
    /// the oldest set-ups beyond [`MAX_KEPT`] are removed.
    pub fn keep_set_up(&self, key: &SetUpKey, etc: &Path) -> Result<(), StoreError> {
        let kept = self.set_up_path(key);
        let parent = kept.parent().expect("setups/<key> has a parent");
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io("create", parent, e))?;
        let staging = self.tempdir("setup")?;
        let copy = staging.path().join("etc");
        std::fs::create_dir(&copy).map_err(|e| StoreError::io("create", &copy, e))?;
        copy_tree(etc, &copy)?;
        // Durable before it is named, as an object is: a set-up cut short by a power loss
        // would otherwise be copied into every later build on this build root. (Rare: once
        // per build root.)
        let fd = std::fs::File::open(&copy).map_err(|e| StoreError::io("open", &copy, e))?;
        nix::unistd::syncfs(&fd).map_err(|e| StoreError::io("flush to disk", &copy, e.into()))?;
        match std::fs::rename(&copy, &kept) {
            Ok(()) => {
                sync_dir(parent)?;
                mark_used(&kept);
            }
            // Kept meanwhile by another build (a directory is not replaced by a rename).
            Err(e) if kept.is_dir() => tracing::debug!("set-up {key} kept already: {e}"),
            Err(e) => return Err(StoreError::io("keep the set-up as", &kept, e)),
        }
        self.evict_set_ups(parent);
        Ok(())
    }

    /// Removes the least recently used set-ups beyond [`MAX_KEPT`] (best effort: a set-up that
    /// goes while a build copies it only makes that build set up again).
    fn evict_set_ups(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if kept.len() <= MAX_KEPT {
            return;
        }
        kept.sort();
        let excess = kept.len() - MAX_KEPT;
        for (_, path) in kept.into_iter().take(excess) {
            let Ok(graveyard) = self.tempdir("setup") else {
                return;
            };
            let grave = graveyard.path().join("old");
            if std::fs::rename(&path, &grave).is_ok() {
                remove_tree(&grave);
            }
        }
    }
}

/// Sets the directory's times to now: its mtime is its last use, for the eviction (the times
/// of a kept `etc` itself mean nothing to a build).
fn mark_used(kept: &Path) {
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        kept,
        &now,
        &now,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> SetUpKey {
        SetUpKey::parse(&format!("{i:064x}")).unwrap()
    }

    #[test]
    fn a_kept_set_up_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(etc.join("ssl")).unwrap();
        std::fs::write(etc.join("ld.so.cache"), b"cache").unwrap();
        std::fs::write(etc.join("ssl/x"), b"x").unwrap();
        std::os::unix::fs::symlink("/proc/self/mounts", etc.join("mtab")).unwrap();

        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        assert!(
            !store.restore_set_up(&key(1), &into).unwrap(),
            "nothing kept yet"
        );
        store.keep_set_up(&key(1), &etc).unwrap();
        // Kept twice (two builds at once): the first stays.
        store.keep_set_up(&key(1), &etc).unwrap();
        assert!(store.restore_set_up(&key(1), &into).unwrap());
        assert_eq!(std::fs::read(into.join("ld.so.cache")).unwrap(), b"cache");
        assert_eq!(std::fs::read(into.join("ssl/x")).unwrap(), b"x");
        assert_eq!(
            std::fs::read_link(into.join("mtab")).unwrap(),
            Path::new("/proc/self/mounts")
        );
        let tmp: Vec<_> = std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "nothing left in tmp: {tmp:?}");
    }

    #[test]
    fn only_the_most_recently_used_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let keys: Vec<SetUpKey> = (0..MAX_KEPT + 2).map(key).collect();
        for key in &keys {
            store.keep_set_up(key, &etc).unwrap();
            // Distinct times, whatever the filesystem's timestamp granularity.
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
        let left: std::collections::BTreeSet<String> =
            std::fs::read_dir(store.root().join("setups"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
        let want: std::collections::BTreeSet<String> =
            keys[2..].iter().map(|k| k.to_string()).collect();
        assert_eq!(left, want);
    }
}
