//! The object store: committed trees named by content, refs naming them by stage or output id,
//! copy-on-write working objects, and the download cache of sources.
//!
//! On-disk layout (the first four are the **contract**, DESIGN.md §4.2):
//! ```text
//! STORE/objects/<treesum>/            committed trees (v10 treesum), never modified
//! STORE/refs/<id> -> ../objects/<treesum>
//! STORE/tmp/                          working objects, mountpoints, staging; each entry a
//!                                     directory flock()ed by its owner
//! STORE/sources/<source>/<checksum>   download cache
//! STORE/meta/refs/<id>.json           {"kind": "tree"|"output", "size": bytes, "created": unix
//!                                     seconds}; the file's mtime is the last use
//! STORE/meta/tmp.lock                 shared while a tmp/ entry is created and locked,
//!                                     exclusive while `Store::open` sweeps dead entries
//! STORE/setups/<key>/                 a build root's `/etc` after the runner's set-up, kept
//!                                     for later builds on that build root (`setups`)
//! ```
//!
//! Locking (flock, so it covers threads of one process and separate processes alike):
//! - every `tmp/` entry is locked exclusively by its owner for its lifetime; [`Store::open`]
//!   removes the entries nobody holds (left behind by a dead process), detaching any mount
//!   still found below them first;
//! - an [`Object`] based on a committed tree holds a shared lock on `objects/<treesum>` (the
//!   directory itself); [`Store::prune`] only removes an object it can lock exclusively, so a
//!   running build's base, readers and freshly committed objects are never pruned.
//!
//! Publishing is atomic: a tree is renamed into `objects/` (when an identical tree is already
//! there, that one wins and ours is discarded) and a ref is a symlink created under a temporary
//! name and renamed over `refs/<id>`.
//!
//! Mounts ([`Object::read`], [`Object::write`], [`HostTree::read`]) should be made in a private
//! mount namespace, see [`crate::mount::enter_private_namespace`].

mod clamp;
mod copy;
mod lock;
mod object;
mod prune;
mod refs;
mod remove;
mod setups;
mod stage_meta;
mod treesum;
mod verify;

pub(crate) use self::copy::copy_tree;
pub use self::lock::TempDir;
pub use self::object::{HostGuard, HostTree, Object, ObjectMount, ReadGuard, WriteGuard};
pub use self::prune::PruneReport;
pub use self::refs::{Entry, ObjectKind};
pub use self::treesum::treesum;
pub use self::verify::{Corrupt, VerifyReport};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use osbuild_sys::lock::{Flock, LockMode};

use self::lock::{open_dir_fd, remove_tree};
use crate::id::{ObjectId, Treesum};
use crate::mount::MountError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// A tree holds a device node, fifo or socket where only files, directories and symlinks
    /// may be committed.
    #[error("unexpected file type ({kind}) at {}: a committed tree may only hold directories, regular files and symlinks", .path.display())]
    UnexpectedFileType {
        /// The offending entry.
        path: PathBuf,
        /// "fifo", "socket", "character device", ...
        kind: &'static str,
    },
    /// The id has no ref in the store.
    #[error("no object {0} in the store")]
    NoSuchObject(ObjectId),
    /// Readers and a writer, or two writers, at once.
    #[error("object is busy: {0}; release it first")]
    Busy(&'static str),
    /// A name given by a caller (source name, temporary prefix) is not usable as a file name.
    #[error("invalid {what} name '{name}': use letters, digits, '.', '_' and '-' only, not starting with '.'")]
    InvalidName {
        /// What the name is for.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The object belongs to another store.
    #[error("the object belongs to the store at {}, not this one", .0.display())]
    ForeignObject(PathBuf),
    /// A mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A helper thread panicked.
    #[error("internal error: the {0} thread panicked")]
    Panic(&'static str),
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

fn errno_io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> StoreError + 'a {
    move |e| StoreError::io(action, path, e.into())
}

struct Inner {
    root: PathBuf,
    objects: PathBuf,
    refs: PathBuf,
    tmp: PathBuf,
    sources: PathBuf,
    meta_refs: PathBuf,
    tmp_lock: PathBuf,
}

/// An object store rooted at a directory. Cheap to clone; usable from many threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Store {
    /// Opens (creating if needed) the store at `root` and removes what dead processes left:
    /// `tmp/` entries, objects no ref names, partial downloads. What live processes hold
    /// (locked) is left alone.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::io("create the store directory", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::io("resolve", root, e))?;
        let inner = Inner {
            objects: root.join("objects"),
            refs: root.join("refs"),
            tmp: root.join("tmp"),
            sources: root.join("sources"),
            meta_refs: root.join("meta").join("refs"),
            tmp_lock: root.join("meta").join("tmp.lock"),
            root,
        };
        for dir in [
            &inner.objects,
            &inner.refs,
            &inner.tmp,
            &inner.sources,
            &inner.meta_refs,
        ] {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        }
        let store = Store {
            inner: Arc::new(inner),
        };
        store.sweep_tmp()?;
        store.sweep_unreachable()?;
        Ok(store)
    }

    fn sweep_tmp(&self) -> Result<(), StoreError> {
        let _sweeping = self.tmp_lock(LockMode::Exclusive)?;
        let tmp = &self.inner.tmp;
        let entries = std::fs::read_dir(tmp).map_err(|e| StoreError::io("list", tmp, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", tmp, e))?;
            let path = entry.path();
            match open_dir_fd(&path) {
                Ok(fd) => {
                    if let Ok(_held) = Flock::try_lock(fd, LockMode::Exclusive) {
                        tracing::info!("removing {} left behind by a dead process", path.display());
                        remove_tree(&path);
                    }
                }
                // Not a directory: a stray file (never created by us); remove it.
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Makes the store's root directory accessible to its owner only (0700), whatever created
    /// it: objects hold other users' build results, and sources their downloads.
    pub fn restrict_to_owner(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let root = &self.inner.root;
        let mode = std::fs::metadata(root)
            .map_err(|e| StoreError::io("stat", root, e))?
            .permissions()
            .mode()
            & 0o7777;
        if mode != 0o700 {
            tracing::warn!("{}: mode {mode:04o}, setting 0700", root.display());
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io("restrict the permissions of", root, e))?;
        }
        Ok(())
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn object_path(&self, ts: &Treesum) -> PathBuf {
        self.inner.objects.join(ts.as_str())
    }

    /// The download cache directory of `source` (`STORE/sources/<source>`), created if needed.
    pub fn sources_dir(&self, source: &str) -> Result<PathBuf, StoreError> {
        if !valid_name(source) {
            return Err(StoreError::InvalidName {
                what: "source",
                name: source.to_owned(),
            });
        }
        let dir = self.inner.sources.join(source);
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_safe_as_one_path_component() {
        let cases = [
            ("org.osbuild.files", true),
            ("object", true),
            ("a_b-1", true),
            ("", false),
            (".", false),
            ("..", false),
            (".hidden", false),
            ("a/b", false),
            ("a b", false),
            ("caf\u{e9}", false),
        ];
        for (name, ok) in cases {
            assert_eq!(valid_name(name), ok, "{name:?}");
        }
    }
}
