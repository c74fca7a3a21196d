//! Copy-on-write working objects: an [`Object`] (empty or a lazy copy of a committed one), its
//! readers/writer state machine, the bind mounts that give access to it ([`ReadGuard`],
//! [`WriteGuard`]), [`Store::commit`], and the read-only [`HostTree`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::lock::{remove_tree, sync_dir, ObjectLock, TempDir};
use super::refs::ObjectKind;
use super::{clamp, copy, treesum, Store, StoreError};
use crate::id::{ObjectId, Treesum};
use crate::mount::BindMount;

/// The committed object a working object is based on, locked against prune.
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
    /// Empty mountpoints in the work directory that unmounted views left: the next view takes
    /// one instead of making a directory (removing one waits for a discard on a filesystem
    /// mounted with `discard`, about 0.1-0.6 ms, once per stage otherwise).
    spare: Vec<PathBuf>,
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
            .field("workdir", &self.workdir.path())
            .finish()
    }
}

impl Store {
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
        let tree = workdir.path().join("tree");
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
                spare: Vec::new(),
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
            (Some(base), false) => self.committed_base(base)?,
            _ => self.hash_and_publish(&obj.tree)?,
        };
        self.set_ref(&obj.workdir, id, &ts, kind, size)?;

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

    /// An object unchanged since its base: the content is already in the store. Its treesum,
    /// size and a fresh lock on it.
    fn committed_base(&self, base: &Base) -> Result<(Treesum, u64, ObjectLock), StoreError> {
        let size = self.read_meta(&base.id).map(|m| m.size);
        let lock = self
            .lock_object(&base.treesum)?
            .ok_or_else(|| StoreError::NoSuchObject(base.id.clone()))?;
        let size = match size {
            Some(s) => s,
            None => treesum::treesum_and_size(&self.object_path(&base.treesum))?.1,
        };
        Ok((base.treesum.clone(), size, lock))
    }

    /// Hashes `tree` and moves it to `objects/<ts>` ([`Self::publish_tree`]); its treesum,
    /// size and a lock on the object now in the store.
    ///
    /// Durable before it is named: after a power cut, objects/<ts> is whole or absent. One
    /// syncfs writes back the tree's data (stages never fsync: dpkg runs with unsafe-io). It
    /// runs while the tree is hashed, as nothing writes to the tree during a commit: a commit
    /// takes the longer of the two, not their sum.
    fn hash_and_publish(&self, tree: &Path) -> Result<(Treesum, u64, ObjectLock), StoreError> {
        let ours = ObjectLock::on_tree(tree)?;
        let (hashed, synced) = std::thread::scope(|s| {
            let sync = std::thread::Builder::new()
                .name("store-sync".into())
                .spawn_scoped(s, || ours.sync_filesystem());
            let hashed = treesum::treesum_and_size(tree);
            let synced = match sync {
                Ok(t) => t.join().map_err(|_| StoreError::Panic("syncfs thread")),
                // No thread to spare: write back after hashing.
                Err(_) => Ok(ours.sync_filesystem()),
            };
            (hashed, synced)
        });
        let (ts, size) = hashed?;
        synced?.map_err(|e| StoreError::io("flush the tree to disk", tree, e))?;
        let lock = self.publish_tree(tree, &ts, ours)?;
        Ok((ts, size, lock))
    }

    /// Moves `tree` (locked by `ours`, written back) to `objects/<ts>`, or discards it when
    /// that object exists already. Returns a lock on the object that is now in the store.
    fn publish_tree(
        &self,
        tree: &Path,
        ts: &Treesum,
        ours: ObjectLock,
    ) -> Result<ObjectLock, StoreError> {
        let dest = self.object_path(ts);
        loop {
            match std::fs::rename(tree, &dest) {
                Ok(()) => {
                    sync_dir(&self.inner.objects)?;
                    return Ok(ours);
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
}

impl Object {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clamps the times of the working tree to `epoch` for a reproducible build (see
    /// [`super::clamp`]); an object unchanged since its committed base was clamped before
    /// that commit. Not while a writer is active.
    pub fn clamp_times(&self, epoch: u64) -> Result<(), StoreError> {
        let st = self.state();
        if st.writer {
            return Err(StoreError::Busy("a writer is active"));
        }
        if st.initialized {
            clamp::clamp_times(&self.tree, epoch)?;
        }
        Ok(())
    }

    /// Where the committed object this one still is lies in the store (no view mounted):
    /// `None` once it was written to, or when it has no base.
    pub fn committed_path(&self) -> Option<PathBuf> {
        let st = self.state();
        match (&st.base, st.initialized) {
            (Some(b), false) => Some(self.store.object_path(&b.treesum)),
            _ => None,
        }
    }

    /// The committed object this one is (or will be) a copy of.
    pub fn base(&self) -> Option<ObjectId> {
        self.state().base.as_ref().map(|b| b.id.clone())
    }

    /// An empty directory to mount a view on: a spare one, or a new one named after the view.
    fn mountpoint(&self, kind: &str, seq: u64) -> Result<PathBuf, StoreError> {
        if let Some(mp) = self.state().spare.pop() {
            return Ok(mp);
        }
        let mp = self.workdir.path().join(format!("{kind}-{seq}"));
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
        ObjectMount::unmounted(self).mount(&src, seq)
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
        // Owns the writer's place from here on: dropping it on an error gives the place back.
        let guard = ObjectMount::unmounted(self);
        if let Some(src) = copy_from {
            if let Err(e) = copy::copy_tree(&src, &self.tree) {
                // Leave an empty tree behind, still to be initialised.
                remove_tree(&self.tree);
                let _ = std::fs::create_dir(&self.tree);
                return Err(e);
            }
            self.state().initialized = true;
        }
        guard.mount(&self.tree, seq)
    }
}

/// Unmounts `m`; its mountpoint, empty again, unless unmounting failed (logged).
fn unmount(m: BindMount) -> Option<PathBuf> {
    let mp = m.path().to_owned();
    match m.unmount() {
        Ok(()) => Some(mp),
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    }
}

fn unmount_and_rmdir(mount: Option<BindMount>) {
    if let Some(mp) = mount.and_then(unmount) {
        let _ = std::fs::remove_dir(&mp);
    }
}

/// A bind mount of an object's content, read-write for its writer (`WRITABLE`) and read-only
/// for a reader; unmounted on drop, which also gives the reader's or writer's place back.
#[derive(Debug)]
pub struct ObjectMount<'a, const WRITABLE: bool> {
    obj: &'a Object,
    mount: Option<BindMount>,
}

/// A read-only bind mount of an object's content; unmounted on drop.
pub type ReadGuard<'a> = ObjectMount<'a, false>;

/// A read-write bind mount of an object's working tree; unmounted on drop.
pub type WriteGuard<'a> = ObjectMount<'a, true>;

impl<'a, const WRITABLE: bool> ObjectMount<'a, WRITABLE> {
    /// Takes over the reader's or writer's place `obj`'s state already counts.
    fn unmounted(obj: &'a Object) -> Self {
        ObjectMount { obj, mount: None }
    }

    /// Mounts `src` on a fresh mountpoint in the object's work directory.
    fn mount(mut self, src: &Path, seq: u64) -> Result<Self, StoreError> {
        let kind = if WRITABLE { "writer" } else { "reader" };
        let mp = self.obj.mountpoint(kind, seq)?;
        match BindMount::new(src, &mp, !WRITABLE) {
            Ok(mount) => {
                self.mount = Some(mount);
                Ok(self)
            }
            Err(e) => {
                self.obj.state().spare.push(mp);
                Err(e.into())
            }
        }
    }

    /// Where the content is mounted.
    pub fn path(&self) -> &Path {
        self.mount.as_ref().expect("mounted until drop").path()
    }
}

impl<const WRITABLE: bool> Drop for ObjectMount<'_, WRITABLE> {
    fn drop(&mut self) {
        let spare = self.mount.take().and_then(unmount);
        let mut st = self.obj.state();
        st.spare.extend(spare);
        if WRITABLE {
            st.writer = false;
        } else {
            st.readers -= 1;
        }
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
        let mp = dir.path().join("root");
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
