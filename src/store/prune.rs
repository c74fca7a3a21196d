//! [`Store::prune`]: removing least recently used objects, with their refs, until the store fits
//! a budget, leaving alone every object a build or reader holds locked.

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
    /// Bytes the remaining objects use.
    pub remaining: u64,
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

impl Store {
    /// Removes objects, least recently used first, until the store's objects use at most
    /// `budget` bytes. Objects held by a live [`super::Object`] (as its base) or being read are
    /// kept.
    pub fn prune(&self, budget: u64) -> Result<PruneReport, StoreError> {
        let groups = by_object(self.list()?);
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
            let dest = graveyard.path().join("object");
            std::fs::rename(&path, &dest).map_err(|e| StoreError::io("remove", &path, e))?;
            drop(lock);
            drop(graveyard);
            report.freed += g.size;
            report.remaining -= g.size;
            report.removed.extend(g.ids);
        }
        Ok(report)
    }
}
