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

mod copy;
mod treesum;

pub use self::treesum::treesum;

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use osbuild_sys::lock::{Flock, LockMode};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::id::{ObjectId, Treesum};
use crate::mount::{BindMount, MountError};

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

/// What a ref names: a stage's tree or an assembler's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// The tree after a stage (checkpoint).
    Tree,
    /// An assembler's output directory.
    Output,
}

/// One ref of the store, as [`Store::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stage or output id.
    pub id: ObjectId,
    /// The content it names.
    pub treesum: Treesum,
    /// Tree or output.
    pub kind: ObjectKind,
    /// Disk usage of the object in bytes (`st_blocks * 512`, hard links once).
    pub size: u64,
    /// When it was committed.
    pub created: SystemTime,
    /// When it was last committed or used as a base.
    pub last_used: SystemTime,
}

/// What [`Store::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Refs removed, least recently used first.
    pub removed: Vec<ObjectId>,
    /// Refs kept although over budget, because a build holds their object.
    pub in_use: Vec<ObjectId>,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes the remaining objects use.
    pub remaining: u64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    kind: ObjectKind,
    size: u64,
    created: u64,
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

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn open_dir_fd(path: &Path) -> Result<OwnedFd, Errno> {
    openat(
        AT_FDCWD,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
}

/// Removes a directory tree that may have had mounts below it: detaches them first and refuses
/// to delete anything if that fails.
fn remove_tree(path: &Path) {
    if let Err(e) = crate::mount::detach_all_under(path) {
        tracing::error!("not removing {}: {e}", path.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// A directory under `STORE/tmp/`, locked by its owner and removed when dropped (or by the next
/// [`Store::open`] if the owner dies).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    _lock: Flock,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// A shared lock on `objects/<treesum>`: while it is held, prune leaves the object alone.
#[derive(Debug)]
struct ObjectLock {
    _lock: Flock,
}

impl Store {
    /// Opens (creating if needed) the store at `root` and removes what dead processes left in
    /// `tmp/`. Entries of live processes (locked) are left alone.
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
        Ok(store)
    }

    fn tmp_lock(&self, mode: LockMode) -> Result<Flock, StoreError> {
        let path = &self.inner.tmp_lock;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("open the lock", path, e))?;
        Flock::lock(f.into(), mode).map_err(|e| StoreError::io("lock", path, e))
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

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether `id` has a ref whose object exists.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.treesum_of(id).is_some()
    }

    /// The treesum `id` refers to, if the ref and its object exist.
    pub fn treesum_of(&self, id: &ObjectId) -> Option<Treesum> {
        let ts = self.read_ref(id)?;
        self.object_path(&ts).is_dir().then_some(ts)
    }

    fn read_ref(&self, id: &ObjectId) -> Option<Treesum> {
        let target = std::fs::read_link(self.inner.refs.join(id.as_str())).ok()?;
        let name = target.strip_prefix("../objects").ok()?.to_str()?;
        Treesum::parse(name).ok()
    }

    fn object_path(&self, ts: &Treesum) -> PathBuf {
        self.inner.objects.join(ts.as_str())
    }

    fn meta_path(&self, id: &ObjectId) -> PathBuf {
        self.inner.meta_refs.join(format!("{id}.json"))
    }

    /// Takes a shared lock on `objects/<ts>`, waiting for a prune of it to finish. `None` if the
    /// object does not exist (any more).
    fn lock_object(&self, ts: &Treesum) -> Result<Option<ObjectLock>, StoreError> {
        let path = self.object_path(ts);
        let fd = match open_dir_fd(&path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path, e.into())),
        };
        let lock =
            Flock::lock(fd, LockMode::Shared).map_err(|e| StoreError::io("lock", &path, e))?;
        // A prune may have moved it away while we waited: it must still be the same directory.
        let held = nix::sys::stat::fstat(lock.as_fd()).map_err(errno_io("stat", &path))?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.dev() == held.st_dev && m.ino() == held.st_ino => {
                Ok(Some(ObjectLock { _lock: lock }))
            }
            _ => Ok(None),
        }
    }

    /// Marks `id` as used now (for least-recently-used pruning).
    fn touch(&self, id: &ObjectId) {
        let path = self.meta_path(id);
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let now = SystemTime::now();
            let times = std::fs::FileTimes::new()
                .set_accessed(now)
                .set_modified(now);
            if let Err(e) = f.set_times(times) {
                tracing::warn!("cannot update {}: {e}", path.display());
            }
        }
    }

    /// Creates a locked directory `tmp/<prefix>-XXXXXXXX`, removed when the guard is dropped.
    pub fn tempdir(&self, prefix: &str) -> Result<TempDir, StoreError> {
        if !valid_name(prefix) {
            return Err(StoreError::InvalidName {
                what: "temporary directory prefix",
                name: prefix.to_owned(),
            });
        }
        // Keeps a concurrent `open` from sweeping the directory before it is locked.
        let _creating = self.tmp_lock(LockMode::Shared)?;
        let tmp = &self.inner.tmp;
        let path = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .rand_bytes(10)
            .tempdir_in(tmp)
            .map_err(|e| StoreError::io("create a directory in", tmp, e))?
            .keep();
        let fd = match open_dir_fd(&path) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                return Err(StoreError::io("open", &path, e.into()));
            }
        };
        match Flock::try_lock(fd, LockMode::Exclusive) {
            Ok(lock) => Ok(TempDir { path, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(StoreError::io("lock", &path, e))
            }
        }
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

    /// Read-only access to the host's `/`.
    pub fn host_tree(&self) -> HostTree {
        HostTree {
            store: self.clone(),
        }
    }

    /// A new working object, empty or (lazily) a copy of the committed `base`.
    pub fn new_object(&self, base: Option<&ObjectId>) -> Result<Object, StoreError> {
        let base = match base {
            None => None,
            Some(id) => Some(self.hold(id)?),
        };
        let workdir = self.tempdir("object")?;
        let tree = workdir.path.join("tree");
        std::fs::create_dir(&tree).map_err(|e| StoreError::io("create", &tree, e))?;
        let initialized = base.is_none();
        Ok(Object {
            store: self.clone(),
            tree,
            workdir,
            state: Mutex::new(State {
                base,
                initialized,
                readers: 0,
                writer: false,
                seq: 0,
            }),
        })
    }

    /// Resolves `id` and locks its object so that prune keeps it.
    fn hold(&self, id: &ObjectId) -> Result<Base, StoreError> {
        for _ in 0..3 {
            let Some(ts) = self.read_ref(id) else { break };
            let Some(lock) = self.lock_object(&ts)? else {
                continue;
            };
            // The ref may have been replaced meanwhile; lock what it names now.
            if self.read_ref(id).as_ref() == Some(&ts) {
                self.touch(id);
                return Ok(Base {
                    id: id.clone(),
                    treesum: ts,
                    _lock: lock,
                });
            }
        }
        Err(StoreError::NoSuchObject(id.clone()))
    }

    /// Commits the object's current content under `id` and returns its treesum. The object
    /// stays usable: it is now based on `id`, and a later [`Object::write`] copies it again.
    pub fn commit(
        &self,
        obj: &Object,
        id: &ObjectId,
        kind: ObjectKind,
    ) -> Result<Treesum, StoreError> {
        if !Arc::ptr_eq(&obj.store.inner, &self.inner) && obj.store.root() != self.root() {
            return Err(StoreError::ForeignObject(obj.store.root().to_owned()));
        }
        let mut state = obj.state();
        if state.writer {
            return Err(StoreError::Busy("a writer is active"));
        }
        if state.readers > 0 {
            return Err(StoreError::Busy("readers are active"));
        }
        let (ts, size, lock) = match (&state.base, state.initialized) {
            (Some(base), false) => {
                // Unchanged since its base: the content is already in the store.
                let size = self.read_meta(&base.id).map(|m| m.size);
                let lock = self
                    .lock_object(&base.treesum)?
                    .ok_or_else(|| StoreError::NoSuchObject(base.id.clone()))?;
                let size = match size {
                    Some(s) => s,
                    None => treesum::treesum_and_size(&self.object_path(&base.treesum))?.1,
                };
                (base.treesum.clone(), size, lock)
            }
            _ => {
                let (ts, size) = treesum::treesum_and_size(&obj.tree)?;
                let lock = self.publish_tree(&obj.tree, &ts)?;
                (ts, size, lock)
            }
        };
        self.write_meta(&obj.workdir, id, kind, size)?;
        let link = obj.workdir.path.join("ref");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../objects").join(ts.as_str()), &link)
            .map_err(|e| StoreError::io("create", &link, e))?;
        let ref_path = self.inner.refs.join(id.as_str());
        std::fs::rename(&link, &ref_path).map_err(|e| StoreError::io("replace", &ref_path, e))?;

        if !obj.tree.exists() {
            std::fs::create_dir(&obj.tree).map_err(|e| StoreError::io("create", &obj.tree, e))?;
        }
        state.base = Some(Base {
            id: id.clone(),
            treesum: ts.clone(),
            _lock: lock,
        });
        state.initialized = false;
        Ok(ts)
    }

    /// Moves `tree` to `objects/<ts>`, or discards it when that object exists already.
    /// Returns a lock on the object that is now in the store.
    fn publish_tree(&self, tree: &Path, ts: &Treesum) -> Result<ObjectLock, StoreError> {
        let dest = self.object_path(ts);
        let fd = open_dir_fd(tree).map_err(errno_io("open", tree))?;
        let ours =
            Flock::lock(fd, LockMode::Shared).map_err(|e| StoreError::io("lock", tree, e))?;
        loop {
            match std::fs::rename(tree, &dest) {
                Ok(()) => {
                    // Objects are directories anyone may read, like v10's 0755 trees.
                    return Ok(ObjectLock { _lock: ours });
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    if let Some(lock) = self.lock_object(ts)? {
                        drop(ours);
                        remove_tree(tree);
                        return Ok(lock);
                    }
                    // Pruned while we looked: try to put ours there again.
                }
                Err(e) => return Err(StoreError::io("move the tree to", &dest, e)),
            }
        }
    }

    fn read_meta(&self, id: &ObjectId) -> Option<Meta> {
        let bytes = std::fs::read(self.meta_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_meta(
        &self,
        staging: &TempDir,
        id: &ObjectId,
        kind: ObjectKind,
        size: u64,
    ) -> Result<(), StoreError> {
        let meta = Meta {
            kind,
            size,
            created: now_unix(),
        };
        let tmp = staging.path.join("meta.json");
        let json = serde_json::to_vec(&meta).expect("plain struct serializes");
        std::fs::write(&tmp, json).map_err(|e| StoreError::io("write", &tmp, e))?;
        let dest = self.meta_path(id);
        std::fs::rename(&tmp, &dest).map_err(|e| StoreError::io("replace", &dest, e))
    }

    /// Every ref whose object exists, sorted by id.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        let refs = &self.inner.refs;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(refs).map_err(|e| StoreError::io("list", refs, e))? {
            let entry = entry.map_err(|e| StoreError::io("list", refs, e))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| ObjectId::parse(n).ok())
            else {
                continue;
            };
            let Some(ts) = self.treesum_of(&id) else {
                continue;
            };
            let meta_path = self.meta_path(&id);
            let (kind, size, created, last_used) = match (
                self.read_meta(&id),
                std::fs::metadata(&meta_path).and_then(|m| m.modified()),
            ) {
                (Some(m), Ok(used)) => (
                    m.kind,
                    m.size,
                    UNIX_EPOCH + Duration::from_secs(m.created),
                    used,
                ),
                _ => {
                    // No metadata (a store written by another tool): measure, and date by the ref.
                    let size = treesum::treesum_and_size(&self.object_path(&ts))?.1;
                    let t = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(UNIX_EPOCH);
                    (ObjectKind::Tree, size, t, t)
                }
            };
            out.push(Entry {
                id,
                treesum: ts,
                kind,
                size,
                created,
                last_used,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes objects, least recently used first, until the store's objects use at most
    /// `budget` bytes. Objects held by a live [`Object`] (as its base) or being read are kept.
    pub fn prune(&self, budget: u64) -> Result<PruneReport, StoreError> {
        struct Group {
            treesum: Treesum,
            ids: Vec<ObjectId>,
            size: u64,
            last_used: SystemTime,
        }
        let mut groups: Vec<Group> = Vec::new();
        for e in self.list()? {
            match groups.iter_mut().find(|g| g.treesum == e.treesum) {
                Some(g) => {
                    g.ids.push(e.id);
                    g.size = g.size.max(e.size);
                    g.last_used = g.last_used.max(e.last_used);
                }
                None => groups.push(Group {
                    treesum: e.treesum,
                    ids: vec![e.id],
                    size: e.size,
                    last_used: e.last_used,
                }),
            }
        }
        groups.sort_by_key(|g| g.last_used);
        let mut report = PruneReport {
            remaining: groups.iter().map(|g| g.size).sum(),
            ..PruneReport::default()
        };
        for g in groups {
            if report.remaining <= budget {
                break;
            }
            let path = self.object_path(&g.treesum);
            let fd = match open_dir_fd(&path) {
                Ok(fd) => fd,
                Err(_) => continue,
            };
            let Ok(lock) = Flock::try_lock(fd, LockMode::Exclusive) else {
                report.in_use.extend(g.ids);
                continue;
            };
            let graveyard = self.tempdir("prune")?;
            for id in &g.ids {
                self.remove_ref_if(id, &g.treesum, &graveyard)?;
            }
            let dest = graveyard.path.join("object");
            std::fs::rename(&path, &dest).map_err(|e| StoreError::io("remove", &path, e))?;
            drop(lock);
            drop(graveyard);
            report.freed += g.size;
            report.remaining -= g.size;
            report.removed.extend(g.ids);
        }
        Ok(report)
    }

    /// Removes `refs/<id>` if it still names `ts` (moved aside first, so that a ref a
    /// concurrent commit just replaced is put back, not lost).
    fn remove_ref_if(
        &self,
        id: &ObjectId,
        ts: &Treesum,
        graveyard: &TempDir,
    ) -> Result<(), StoreError> {
        let ref_path = self.inner.refs.join(id.as_str());
        let aside = graveyard.path.join(id.as_str());
        if std::fs::rename(&ref_path, &aside).is_err() {
            return Ok(());
        }
        let target = std::fs::read_link(&aside).ok();
        if target.as_deref() == Some(&Path::new("../objects").join(ts.as_str())) {
            let _ = std::fs::remove_file(self.meta_path(id));
            Ok(())
        } else {
            // Someone re-committed it meanwhile: put it back unless an even newer one exists.
            nix::fcntl::renameat2(
                AT_FDCWD,
                &aside,
                AT_FDCWD,
                &ref_path,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
            .map_err(errno_io("restore", &ref_path))
        }
    }
}

struct Base {
    id: ObjectId,
    treesum: Treesum,
    _lock: ObjectLock,
}

struct State {
    base: Option<Base>,
    /// The working tree holds the content (of the base, or its own).
    initialized: bool,
    readers: usize,
    writer: bool,
    seq: u64,
}

/// A working tree: empty or a lazy copy of a committed object; read through read-only bind
/// mounts, written through one read-write bind mount, and committed with [`Store::commit`].
/// Dropping it removes its working tree.
pub struct Object {
    store: Store,
    tree: PathBuf,
    state: Mutex<State>,
    // Last: dropped after everything that may refer to it.
    workdir: TempDir,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("workdir", &self.workdir.path)
            .finish()
    }
}

impl Object {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed object this one is (or will be) a copy of.
    pub fn base(&self) -> Option<ObjectId> {
        self.state().base.as_ref().map(|b| b.id.clone())
    }

    fn mountpoint(&self, kind: &str, seq: u64) -> Result<PathBuf, StoreError> {
        let mp = self.workdir.path.join(format!("{kind}-{seq}"));
        std::fs::create_dir(&mp).map_err(|e| StoreError::io("create", &mp, e))?;
        Ok(mp)
    }

    /// A read-only view of the content. Many readers may coexist; not with a writer.
    pub fn read(&self) -> Result<ReadGuard<'_>, StoreError> {
        let (src, seq) = {
            let mut st = self.state();
            if st.writer {
                return Err(StoreError::Busy("a writer is active"));
            }
            st.readers += 1;
            st.seq += 1;
            let src = match (&st.base, st.initialized) {
                (Some(b), false) => self.store.object_path(&b.treesum),
                _ => self.tree.clone(),
            };
            (src, st.seq)
        };
        let release = |this: &Self| this.state().readers -= 1;
        let mp = match self.mountpoint("reader", seq) {
            Ok(mp) => mp,
            Err(e) => {
                release(self);
                return Err(e);
            }
        };
        match BindMount::new(&src, &mp, true) {
            Ok(mount) => Ok(ReadGuard {
                obj: self,
                mount: Some(mount),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&mp);
                release(self);
                Err(e.into())
            }
        }
    }

    /// A writable view of the content, copying the base first if that has not happened yet.
    /// Only one writer, and no readers, at a time.
    pub fn write(&self) -> Result<WriteGuard<'_>, StoreError> {
        let (copy_from, seq) = {
            let mut st = self.state();
            if st.writer {
                return Err(StoreError::Busy("a writer is active"));
            }
            if st.readers > 0 {
                return Err(StoreError::Busy("readers are active"));
            }
            st.writer = true;
            st.seq += 1;
            let from = match (&st.base, st.initialized) {
                (Some(b), false) => Some(self.store.object_path(&b.treesum)),
                _ => None,
            };
            (from, st.seq)
        };
        let release = |this: &Self| this.state().writer = false;
        if let Some(src) = copy_from {
            if let Err(e) = copy::copy_tree(&src, &self.tree) {
                // Leave an empty tree behind, still to be initialised.
                remove_tree(&self.tree);
                let _ = std::fs::create_dir(&self.tree);
                release(self);
                return Err(e);
            }
            self.state().initialized = true;
        }
        let mp = match self.mountpoint("writer", seq) {
            Ok(mp) => mp,
            Err(e) => {
                release(self);
                return Err(e);
            }
        };
        match BindMount::new(&self.tree, &mp, false) {
            Ok(mount) => Ok(WriteGuard {
                obj: self,
                mount: Some(mount),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&mp);
                release(self);
                Err(e.into())
            }
        }
    }
}

fn unmount_and_rmdir(mount: Option<BindMount>) {
    if let Some(m) = mount {
        let mp = m.path().to_owned();
        match m.unmount() {
            Ok(()) => {
                let _ = std::fs::remove_dir(&mp);
            }
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// A read-only bind mount of an object's content; unmounted on drop.
#[derive(Debug)]
pub struct ReadGuard<'a> {
    obj: &'a Object,
    mount: Option<BindMount>,
}

impl ReadGuard<'_> {
    /// Where the content is mounted.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().expect("mounted until drop").path()
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        unmount_and_rmdir(self.mount.take());
        self.obj.state().readers -= 1;
    }
}

/// A read-write bind mount of an object's working tree; unmounted on drop.
#[derive(Debug)]
pub struct WriteGuard<'a> {
    obj: &'a Object,
    mount: Option<BindMount>,
}

impl WriteGuard<'_> {
    /// Where the tree is mounted.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().expect("mounted until drop").path()
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        unmount_and_rmdir(self.mount.take());
        self.obj.state().writer = false;
    }
}

/// Read-only access to the host's root filesystem, with the same `read()` as an [`Object`]
/// (writing to the host is not offered).
#[derive(Debug, Clone)]
pub struct HostTree {
    store: Store,
}

impl HostTree {
    /// Bind-mounts `/` (not recursively) read-only on a directory under `tmp/`.
    pub fn read(&self) -> Result<HostGuard, StoreError> {
        let dir = self.store.tempdir("host")?;
        let mp = dir.path.join("root");
        std::fs::create_dir(&mp).map_err(|e| StoreError::io("create", &mp, e))?;
        let mount = BindMount::new(Path::new("/"), &mp, true)?;
        Ok(HostGuard {
            mount: Some(mount),
            _dir: dir,
        })
    }
}

/// The host's `/`, mounted read-only; unmounted and removed on drop.
#[derive(Debug)]
pub struct HostGuard {
    mount: Option<BindMount>,
    _dir: TempDir,
}

impl HostGuard {
    /// Where `/` is mounted.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().expect("mounted until drop").path()
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        // Unmount before the directory goes.
        unmount_and_rmdir(self.mount.take());
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

    #[test]
    fn meta_json_shape() {
        let m = Meta {
            kind: ObjectKind::Output,
            size: 4096,
            created: 7,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"kind":"output","size":4096,"created":7}"#
        );
    }
}
