//! Refs and their meta files: `STORE/refs/<id>` symlinks naming objects by stage or output id,
//! `STORE/meta/refs/<id>.json` saying what they are (the file's mtime is the last use), and
//! [`Store::list`] of them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use serde::{Deserialize, Serialize};

use super::lock::{sync_dir, TempDir};
use super::{errno_io, treesum, Store, StoreError};
use crate::id::{ObjectId, Treesum};

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

/// The content of `meta/refs/<id>.json`.
#[derive(Serialize, Deserialize)]
pub(super) struct Meta {
    pub(super) kind: ObjectKind,
    pub(super) size: u64,
    created: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Whether `id` has a ref whose object exists.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.treesum_of(id).is_some()
    }

    /// The treesum `id` refers to, if the ref and its object exist.
    pub fn treesum_of(&self, id: &ObjectId) -> Option<Treesum> {
        let ts = self.read_ref(id)?;
        self.object_path(&ts).is_dir().then_some(ts)
    }

    pub(super) fn read_ref(&self, id: &ObjectId) -> Option<Treesum> {
        let target = std::fs::read_link(self.ref_path(id)).ok()?;
        let name = target.strip_prefix("../objects").ok()?.to_str()?;
        Treesum::parse(name).ok()
    }

    fn ref_path(&self, id: &ObjectId) -> PathBuf {
        self.inner.refs.join(id.as_str())
    }

    fn meta_path(&self, id: &ObjectId) -> PathBuf {
        self.inner.meta_refs.join(format!("{id}.json"))
    }

    /// Marks `id` as used now (for least-recently-used pruning).
    pub(super) fn touch(&self, id: &ObjectId) {
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

    pub(super) fn read_meta(&self, id: &ObjectId) -> Option<Meta> {
        let bytes = std::fs::read(self.meta_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Points `refs/<id>` at `objects/<ts>` with fresh metadata, each file written in `staging`
    /// first and renamed over the old one.
    pub(super) fn set_ref(
        &self,
        staging: &TempDir,
        id: &ObjectId,
        ts: &Treesum,
        kind: ObjectKind,
        size: u64,
    ) -> Result<(), StoreError> {
        self.write_meta(staging, id, kind, size)?;
        let link = staging.path().join("ref");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(Path::new("../objects").join(ts.as_str()), &link)
            .map_err(|e| StoreError::io("create", &link, e))?;
        let ref_path = self.ref_path(id);
        std::fs::rename(&link, &ref_path).map_err(|e| StoreError::io("replace", &ref_path, e))?;
        sync_dir(&self.inner.refs)
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
        let tmp = staging.path().join("meta.json");
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
            let (kind, size, created, last_used) = match (
                self.read_meta(&id),
                std::fs::metadata(self.meta_path(&id)).and_then(|m| m.modified()),
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

    /// Removes `refs/<id>` if it still names `ts` (moved aside first, so that a ref a
    /// concurrent commit just replaced is put back, not lost).
    pub(super) fn remove_ref_if(
        &self,
        id: &ObjectId,
        ts: &Treesum,
        graveyard: &TempDir,
    ) -> Result<(), StoreError> {
        let ref_path = self.ref_path(id);
        let aside = graveyard.path().join(id.as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

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
