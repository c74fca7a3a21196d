//! [`Store::prune`]: removing least recently used objects (with their refs) and cached downloads
//! until the store fits a budget, leaving alone every object a build or reader holds locked and
//! every download cache a source is using.
//!
//! A download's last use is its modification time: the sources touch a cache entry each time
//! they hand it out. A source holds a shared flock(2) on its cache directory while it runs; a
//! prune removes files of a cache directory only under an exclusive one.

use std::collections::BTreeMap;
use std::time::SystemTime;

use osbuild_sys::lock::{Flock, LockMode};

use super::lock::open_dir_fd;
use super::refs::Entry;
use super::{Store, StoreError};
use crate::id::{ObjectId, Treesum};

/// What [`Store::prune`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Refs removed, least recently used first.
    pub removed: Vec<ObjectId>,
    /// Refs kept although over budget, because a build holds their object.
    pub in_use: Vec<ObjectId>,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes the remaining objects and downloads use.
    pub remaining: u64,
    /// Cached downloads removed (`sources/<source>/<checksum>`).
    pub downloads_removed: Vec<String>,
}

/// One object and every ref naming it.
struct Group {
    treesum: Treesum,
    ids: Vec<ObjectId>,
    size: u64,
    last_used: SystemTime,
}

/// Groups the refs by the object they name, least recently used object first.
fn by_object(entries: Vec<Entry>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for e in entries {
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
    groups
}

/// One cached download.
struct Download {
    source: String,
    name: String,
    size: u64,
    last_used: SystemTime,
}

/// What may go, in the order it goes.
enum Candidate {
    Object(Group),
    Download(Download),
}

impl Candidate {
    fn last_used(&self) -> SystemTime {
        match self {
            Candidate::Object(g) => g.last_used,
            Candidate::Download(d) => d.last_used,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Candidate::Object(g) => g.size,
            Candidate::Download(d) => d.size,
        }
    }
}

impl Store {
    /// Removes objects and cached downloads, least recently used first, until the store uses at
    /// most `budget` bytes for them. Objects held by a live [`super::Object`] (as its base) or
    /// being read, and the caches of running sources, are kept.
    pub fn prune(&self, budget: u64) -> Result<PruneReport, StoreError> {
        let mut candidates: Vec<Candidate> = by_object(self.list()?)
            .into_iter()
            .map(Candidate::Object)
            .chain(self.downloads()?.into_iter().map(Candidate::Download))
            .collect();
        candidates.sort_by_key(Candidate::last_used);
        let mut report = PruneReport {
            remaining: candidates.iter().map(Candidate::size).sum(),
            ..PruneReport::default()
        };
        // Exclusive locks on the cache directories emptied so far; None: a source uses it.
        let mut caches: BTreeMap<String, Option<Flock>> = BTreeMap::new();
        for c in candidates {
            if report.remaining <= budget {
                break;
            }
            let size = c.size();
            let removed = match c {
                Candidate::Object(g) => self.remove_object(g, &mut report)?,
                Candidate::Download(d) => self.remove_download(d, &mut caches, &mut report),
            };
            if removed {
                report.freed += size;
                report.remaining -= size;
            }
        }
        Ok(report)
    }

    fn remove_object(&self, g: Group, report: &mut PruneReport) -> Result<bool, StoreError> {
        let path = self.object_path(&g.treesum);
        let Ok(fd) = open_dir_fd(&path) else {
            return Ok(false);
        };
        let Ok(lock) = Flock::try_lock(fd, LockMode::Exclusive) else {
            report.in_use.extend(g.ids);
            return Ok(false);
        };
        let graveyard = self.tempdir("prune")?;
        for id in &g.ids {
            self.remove_ref_if(id, &g.treesum, &graveyard)?;
        }
        let dest = graveyard.path().join("object");
        std::fs::rename(&path, &dest).map_err(|e| StoreError::io("remove", &path, e))?;
        drop(lock);
        report.removed.extend(g.ids);
        Ok(true)
    }

    fn remove_download(
        &self,
        d: Download,
        caches: &mut BTreeMap<String, Option<Flock>>,
        report: &mut PruneReport,
    ) -> bool {
        let dir = self.inner.sources.join(&d.source);
        let lock = caches.entry(d.source.clone()).or_insert_with(|| {
            let fd = open_dir_fd(&dir).ok()?;
            Flock::try_lock(fd, LockMode::Exclusive).ok()
        });
        if lock.is_none() || std::fs::remove_file(dir.join(&d.name)).is_err() {
            return false;
        }
        report
            .downloads_removed
            .push(format!("{}/{}", d.source, d.name));
        true
    }

    /// Every verified download of the cache (`sources/<source>/<checksum>` regular files).
    fn downloads(&self) -> Result<Vec<Download>, StoreError> {
        let mut out = Vec::new();
        let sources = &self.inner.sources;
        let entries = std::fs::read_dir(sources).map_err(|e| StoreError::io("list", sources, e))?;
        for source in entries.flatten() {
            let Ok(files) = std::fs::read_dir(source.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Ok(meta) = file.metadata() else {
                    continue;
                };
                if name.starts_with('.') || !meta.is_file() {
                    continue;
                }
                out.push(Download {
                    source: source.file_name().to_string_lossy().into_owned(),
                    name,
                    size: meta.len(),
                    last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }
}

/// The file and key osbuild HEAD keeps its cache's size limit in (`osbuild --cache-max-size`):
/// `STORE/cache.info` = `{"maximum-size": BYTES | "unlimited"}`.
const CACHE_INFO: &str = "cache.info";

impl Store {
    /// The size limit `osbuild --cache-max-size` set last: `Some(bytes)`, or `None` for none
    /// (never set, or `unlimited`).
    pub fn maximum_size(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.root().join(CACHE_INFO)).ok()?;
        let info: serde_json::Value = serde_json::from_str(&text).ok()?;
        info.get("maximum-size")?.as_u64()
    }

    /// Keeps `bytes` (`None`: unlimited) as the store's size limit, for later builds too.
    pub fn set_maximum_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        let value = bytes.map_or(serde_json::json!("unlimited"), serde_json::Value::from);
        let path = self.root().join(CACHE_INFO);
        let tmp = self
            .root()
            .join(format!(".{CACHE_INFO}.tmp-{}", std::process::id()));
        let text = serde_json::json!({"maximum-size": value}).to_string();
        std::fs::write(&tmp, text).map_err(|e| StoreError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))
    }
}
