//! Checking the store against its own names, like `git fsck` or `ostree fsck`
//! (`osbuild --store DIR --verify`, osbuildd's `Verify`): every committed object is hashed again
//! and compared with the treesum it is named by, every ref must name an object, and every
//! cached download must match its checksum.
//!
//! What does not match is moved to `STORE/quarantine/` (for a human to look at; never read
//! again) and the refs naming a corrupt object are removed, so the next build makes it again
//! instead of reusing damaged content. An object a running build holds is reported, not moved.
//!
//! Also here: the sweep of what nobody will ever read, run by [`Store::open`]: objects no ref
//! names (a crash between publishing a tree and writing its ref) and partial downloads
//! (`sources/*/.unverified-*`) whose downloader is gone.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use osbuild_sys::lock::{Flock, LockMode};
use sha2::Digest;

use super::lock::{open_dir_fd, remove_tree};
use super::{treesum, Store, StoreError};
use crate::id::{ObjectId, Treesum};
use osbuild_protocol::source::PARTIAL_DOWNLOAD_PREFIX;

/// What [`Store::verify`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects hashed.
    pub objects: usize,
    /// Cached downloads hashed.
    pub sources: usize,
    /// Content that did not match its name, and what was done with it.
    pub corrupt: Vec<Corrupt>,
    /// Refs whose object is missing (removed).
    pub dangling_refs: Vec<ObjectId>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.dangling_refs.is_empty()
    }

    /// One line per finding, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.corrupt {
            out.push_str(&format!("corrupt: {} ({})", c.path, c.found));
            match &c.quarantined {
                Some(q) => out.push_str(&format!(", moved to {}", q.display())),
                None => out.push_str(", in use by a build: not moved"),
            }
            if !c.refs_removed.is_empty() {
                out.push_str(&format!(", {} ref(s) removed", c.refs_removed.len()));
            }
            out.push('\n');
        }
        for id in &self.dangling_refs {
            out.push_str(&format!(
                "dangling ref: refs/{id} (its object is missing), removed\n"
            ));
        }
        out.push_str(&format!(
            "checked {} object(s) and {} download(s): {}\n",
            self.objects,
            self.sources,
            if self.is_clean() {
                "all match their names".to_owned()
            } else {
                format!(
                    "{} corrupt, {} dangling ref(s)",
                    self.corrupt.len(),
                    self.dangling_refs.len()
                )
            }
        ));
        out
    }
}

/// One piece of content that does not match its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// Relative to the store: `objects/<treesum>` or `sources/<source>/<checksum>`.
    pub path: String,
    /// What it hashes to now (or why it could not be hashed).
    pub found: String,
    /// Where it was moved; `None` when a running build holds it.
    pub quarantined: Option<PathBuf>,
    /// Refs that named it, removed.
    pub refs_removed: Vec<ObjectId>,
}

impl Store {
    /// Hashes every object and cached download again; quarantines what does not match.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        for name in sorted_names(&self.inner.objects)? {
            let Ok(ts) = Treesum::parse(&name) else {
                continue;
            };
            report.objects += 1;
            if let Some(c) = self.verify_object(&ts)? {
                report.corrupt.push(c);
            }
        }
        for id in self.ref_ids()? {
            if self.read_ref(&id).is_some() && self.treesum_of(&id).is_none() {
                let ts = self.read_ref(&id).expect("read above");
                let graveyard = self.tempdir("verify")?;
                self.remove_ref_if(&id, &ts, &graveyard)?;
                report.dangling_refs.push(id);
            }
        }
        for source in sorted_names(&self.inner.sources)? {
            let dir = self.inner.sources.join(&source);
            for name in sorted_names(&dir)? {
                let Some(expected) = Checksum::parse(&name) else {
                    continue;
                };
                let path = dir.join(&name);
                if !path.is_file() {
                    continue;
                }
                report.sources += 1;
                let found = match expected.of_file(&path) {
                    Ok(found) if found == name => continue,
                    Ok(found) => format!("its content hashes to {found}"),
                    Err(e) => e,
                };
                let quarantined = Some(self.quarantine(&path, &format!("{source}-{name}"))?);
                report.corrupt.push(Corrupt {
                    path: format!("sources/{source}/{name}"),
                    found,
                    quarantined,
                    refs_removed: Vec::new(),
                });
            }
        }
        Ok(report)
    }

    /// Hashes `objects/<ts>` under a shared lock (builds may go on using it meanwhile).
    fn verify_object(&self, ts: &Treesum) -> Result<Option<Corrupt>, StoreError> {
        let path = self.object_path(ts);
        let Some(reading) = self.lock_object(ts)? else {
            return Ok(None); // pruned meanwhile
        };
        let found = match treesum::treesum(&path) {
            Ok(found) if &found == ts => return Ok(None),
            Ok(found) => format!("its content hashes to {found}"),
            Err(e) => format!("cannot be hashed: {e}"),
        };
        drop(reading);
        let rel = format!("objects/{ts}");
        let fd = open_dir_fd(&path).map_err(|e| StoreError::io("open", &path, e.into()))?;
        let Ok(_exclusive) = Flock::try_lock(fd, LockMode::Exclusive) else {
            return Ok(Some(Corrupt {
                path: rel,
                found,
                quarantined: None,
                refs_removed: Vec::new(),
            }));
        };
        let graveyard = self.tempdir("verify")?;
        let mut refs_removed = Vec::new();
        for id in self.ref_ids()? {
            if self.read_ref(&id).as_ref() == Some(ts) {
                self.remove_ref_if(&id, ts, &graveyard)?;
                refs_removed.push(id);
            }
        }
        let quarantined = Some(self.quarantine(&path, ts.as_str())?);
        Ok(Some(Corrupt {
            path: rel,
            found,
            quarantined,
            refs_removed,
        }))
    }

    /// Moves `path` to `quarantine/<name>.<unix seconds>`.
    fn quarantine(&self, path: &Path, name: &str) -> Result<PathBuf, StoreError> {
        let dir = self.inner.root.join("quarantine");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dest = dir.join(format!("{name}.{now}"));
        std::fs::rename(path, &dest).map_err(|e| StoreError::io("quarantine", path, e))?;
        Ok(dest)
    }

    fn ref_ids(&self) -> Result<Vec<ObjectId>, StoreError> {
        Ok(sorted_names(&self.inner.refs)?
            .iter()
            .filter_map(|n| ObjectId::parse(n).ok())
            .collect())
    }

    /// Removes objects no ref names and partial downloads nobody writes (see the module doc).
    /// Called by [`Store::open`]; what a live process holds (a lock) is left alone.
    pub(super) fn sweep_unreachable(&self) -> Result<(), StoreError> {
        let named: HashSet<Treesum> = self
            .ref_ids()?
            .iter()
            .filter_map(|id| self.read_ref(id))
            .collect();
        for name in sorted_names(&self.inner.objects)? {
            let Ok(ts) = Treesum::parse(&name) else {
                continue;
            };
            if named.contains(&ts) {
                continue;
            }
            let path = self.object_path(&ts);
            let Ok(fd) = open_dir_fd(&path) else {
                continue;
            };
            // A commit holds its new object (shared) from before it is published until its ref
            // is written, so a lock we get means nobody will ever name it.
            if let Ok(_lock) = Flock::try_lock(fd, LockMode::Exclusive) {
                tracing::info!("removing objects/{ts}: no ref names it");
                let graveyard = self.tempdir("sweep")?;
                let dest = graveyard.path().join("object");
                if std::fs::rename(&path, &dest).is_ok() {
                    remove_tree(&dest);
                }
            }
        }
        for source in sorted_names(&self.inner.sources)? {
            let dir = self.inner.sources.join(&source);
            for name in sorted_names(&dir)? {
                if !name.starts_with(PARTIAL_DOWNLOAD_PREFIX) {
                    continue;
                }
                let path = dir.join(&name);
                // A downloader holds an exclusive lock on its partial file while it writes.
                if let Ok(file) = File::open(&path) {
                    if file.try_lock().is_ok() {
                        tracing::info!(
                            "removing {}: a download that never finished",
                            path.display()
                        );
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The names in `dir`, sorted; none if it does not exist.
fn sorted_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A cache entry's name: `sha256:HEX`, `sha384:HEX` or `sha512:HEX`.
struct Checksum {
    algorithm: &'static str,
}

impl Checksum {
    fn parse(name: &str) -> Option<Checksum> {
        let (algorithm, hex) = name.split_once(':')?;
        let (algorithm, len) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha384" => ("sha384", 96),
            "sha512" => ("sha512", 128),
            _ => return None,
        };
        let hex_ok = hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit());
        hex_ok.then_some(Checksum { algorithm })
    }

    /// `ALGORITHM:HEX` of the file's content, or why it could not be read.
    fn of_file(&self, path: &Path) -> Result<String, String> {
        let mut file = File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
        let hex = match self.algorithm {
            "sha256" => hash_reader::<sha2::Sha256>(&mut file),
            "sha384" => hash_reader::<sha2::Sha384>(&mut file),
            _ => hash_reader::<sha2::Sha512>(&mut file),
        }
        .map_err(|e| format!("cannot be read: {e}"))?;
        Ok(format!("{}:{hex}", self.algorithm))
    }
}

fn hash_reader<D: Digest>(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
