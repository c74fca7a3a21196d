//! The osbuild v10 treesum: a SHA-256 over a tree's names, security-relevant metadata and
//! contents, byte-compatible with v10's `osbuild/treesum.py`.
//!
//! For every entry of a directory, sorted by name as Python sorts `str` (by code point, after
//! decoding the bytes as UTF-8 with `surrogateescape`), the hash receives the entry's metadata
//! as `json.dumps({"gid", "mode", "name", ["selinux"], "size", "uid"}, sort_keys=True)`
//! (ASCII-only: other characters as `\uXXXX`, undecodable bytes as `\udcXX`), then the symlink
//! target, the file content, or the directory's entries (recursively, with no delimiter).
//! The root directory's own metadata is not hashed; a directory's `st_size` is, so trees with
//! subdirectories hash differently on different filesystems. Device nodes, fifos and sockets
//! are an error.
//!
//! Where v10 raises (a symlink target or SELinux label that is not UTF-8 would fail its
//! `str.encode()`; a filesystem without xattr support fails its `getxattr`), this
//! implementation hashes the raw target bytes and treats the label as absent.
//!
//! Speed: the digest is one SHA-256 stream, so one thread (the caller's) hashes, in order, what
//! the others produce ahead of it: a walker thread lists and sorts the directories and hands
//! the other entries, up to [`BATCH`] consecutive ones of a directory at a time, to a pool of
//! reader threads (open, stat, label, read), each batch's bytes coming back on a channel of
//! its own that the walker queues in tree order. A reader starts a batch, and sends each
//! [`CHUNK`] of it, only while less than [`AHEAD`] bytes wait for the hasher, except for the
//! batch the hasher is taking, which [`BATCH_QUEUE`] bounds instead; so every reader keeps
//! reading ahead (a batch waits for no one but the hasher) and the memory stays bounded. The
//! hasher hands the emptied chunks back for reuse (a new one costs page faults and clearing).
//! Read-ahead by bytes (not by batches) lets the readers list and read thousands of small
//! files while the hasher is busy with a big one. A sparse file's holes are not read: the
//! hasher is fed zeros for them (`SEEK_DATA`/`SEEK_HOLE`). `sha2` uses the CPU's SHA
//! extensions when present.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};

use nix::dir::Type;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::id::Treesum;

/// The most bytes of one entry sent to the hasher at once.
const CHUNK: usize = 256 * 1024;
/// Bytes (of buffer capacity) read but not hashed yet, at most, counting neither the batch
/// the hasher is taking nor one chunk per reader.
const AHEAD: usize = 16 << 20;
/// Messages of one batch queued for the hasher, at most: this bounds the batch it is taking
/// (which [`AHEAD`] does not) to about 2 MiB.
const BATCH_QUEUE: usize = 8;
/// Messages queued for the hasher (the bytes are bounded by [`AHEAD`]; this bounds the walker).
/// One per directory and per batch: the walker of a tree of 5,000 directories and 150,000
/// files lists it all while the hasher is busy with the first big files.
const IN_FLIGHT: usize = 8192;
/// Emptied chunks kept for reuse: as many as can be in flight, so that none is allocated
/// (and its pages faulted in and cleared) again.
const SPARE_CHUNKS: usize = AHEAD / CHUNK + BATCH_QUEUE * (MAX_READERS + 1);
/// Entries of a directory that one reader takes at once (handing each on its own costs more
/// in thread wake-ups than reading a small file).
const BATCH: usize = 64;
/// Reader threads at most (the hasher and the walker are two more).
const MAX_READERS: usize = 4;

/// The v10 treesum of the tree at `path` (a directory).
pub fn treesum(path: &Path) -> Result<Treesum, StoreError> {
    treesum_and_size(path).map(|(sum, _)| sum)
}

/// The treesum and the disk usage in bytes (`st_blocks * 512`, hard links counted once).
pub(crate) fn treesum_and_size(path: &Path) -> Result<(Treesum, u64), StoreError> {
    let root = Arc::new(open_dir(None, path, path)?);
    let readers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, MAX_READERS);
    let (piece_tx, piece_rx) = mpsc::sync_channel::<Msg>(IN_FLIGHT);
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let flow = Flow::default();
    std::thread::scope(|s| {
        let spawn_err = |e| StoreError::io("start a treesum thread", path, e);
        let mut threads = Vec::new();
        for _ in 0..readers {
            let (jobs, flow) = (&job_rx, &flow);
            let t = std::thread::Builder::new()
                .name("treesum-read".into())
                .spawn_scoped(s, move || read_entries(jobs, flow))
                .map_err(spawn_err)?;
            threads.push(t);
        }
        let root_path = Arc::new(path.to_owned());
        let walker = Walker {
            pieces: piece_tx,
            jobs: job_tx,
            flow: &flow,
            batches: Default::default(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("treesum-walk".into())
                .spawn_scoped(s, move || walker.walk(root, root_path))
                .map_err(spawn_err)?,
        );
        let mut hash = Hash::new(&flow);
        let hashed = piece_rx.iter().try_for_each(|m| hash.consume(m));
        // On an error, the walker and readers stop at their next send (or wait for room).
        drop(piece_rx);
        flow.stop();
        for t in threads {
            t.join().map_err(|_| StoreError::Panic("treesum thread"))?;
        }
        hashed?;
        Ok((Treesum::from_digest(&hash.sha.finalize()), hash.size))
    })
}

/// What the hasher receives, in tree order.
enum Msg {
    Bytes(Vec<u8>),
    /// This many zero bytes (a hole of a sparse file).
    Zeros(u64),
    /// Disk usage: bytes of entries that are not hard links, and `((st_dev, st_ino), bytes)`
    /// of those that may be (counted once).
    Usage(u64, Vec<((u64, u64), u64)>),
    /// A directory's metadata JSON and disk usage.
    Dir(Vec<u8>, u64),
    /// The messages of one [`Job`], from a reader thread (never `Entry` again).
    Entry(mpsc::Receiver<Msg>),
    Failed(StoreError),
}

/// How far the readers may read ahead of the hasher, and the chunks it hands back.
struct Flow {
    /// `None` once the hasher stopped.
    ahead: Mutex<Option<Ahead>>,
    hashed: Condvar,
    spare: Mutex<Vec<Vec<u8>>>,
}

/// What the readers have sent and where the hasher is.
#[derive(Default)]
struct Ahead {
    /// Bytes (of buffer capacity) sent to the hasher and not hashed yet.
    queued: usize,
    /// The batch the hasher is taking: batches are numbered from 1 in tree order.
    head: u64,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            ahead: Mutex::new(Some(Ahead::default())),
            hashed: Condvar::new(),
            spare: Mutex::default(),
        }
    }
}

impl Flow {
    fn ahead(&self) -> MutexGuard<'_, Option<Ahead>> {
        self.ahead.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until less than [`AHEAD`] bytes wait for the hasher or it is taking `batch`
    /// (whose reader must never wait for the bytes of later ones); false when it stopped.
    fn wait_for_room(&self, batch: u64) -> bool {
        let mut ahead = self.ahead();
        loop {
            match &*ahead {
                None => return false,
                Some(a) if a.queued < AHEAD || a.head >= batch => return true,
                Some(_) => ahead = self.hashed.wait(ahead).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    fn sent(&self, chunk: &Vec<u8>) {
        if let Some(a) = self.ahead().as_mut() {
            a.queued += chunk.capacity();
        }
    }

    /// The hasher starts on the next batch.
    fn next_batch(&self) {
        if let Some(a) = self.ahead().as_mut() {
            a.head += 1;
        }
        self.hashed.notify_all();
    }

    /// The hasher is done with `chunk`: its bytes leave the queue, the chunk is kept for reuse.
    fn hashed(&self, mut chunk: Vec<u8>) {
        if let Some(a) = self.ahead().as_mut() {
            a.queued = a.queued.saturating_sub(chunk.capacity());
        }
        self.hashed.notify_all();
        if chunk.capacity() >= CHUNK {
            chunk.clear();
            let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.len() < SPARE_CHUNKS {
                spare.push(chunk);
            }
        }
    }

    /// An empty chunk: a reused one when there is one.
    fn chunk(&self) -> Vec<u8> {
        let reused = self.spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// The hasher stopped: readers waiting for room give up.
    fn stop(&self) {
        *self.ahead() = None;
        self.hashed.notify_all();
    }
}

/// The hashing side: the digest, and the disk usage.
struct Hash<'f> {
    sha: Sha256,
    size: u64,
    seen_links: std::collections::HashSet<(u64, u64)>,
    flow: &'f Flow,
}

impl<'f> Hash<'f> {
    fn new(flow: &'f Flow) -> Self {
        Hash {
            sha: Sha256::new(),
            size: 0,
            seen_links: Default::default(),
            flow,
        }
    }

    fn consume(&mut self, msg: Msg) -> Result<(), StoreError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        match msg {
            Msg::Bytes(b) => {
                self.sha.update(&b);
                self.flow.hashed(b);
            }
            Msg::Zeros(mut n) => {
                while n > 0 {
                    let k = n.min(ZEROS.len() as u64) as usize;
                    self.sha.update(&ZEROS[..k]);
                    n -= k as u64;
                }
            }
            Msg::Dir(json, usage) => {
                self.size += usage;
                self.sha.update(&json);
                self.flow.hashed(json);
            }
            Msg::Usage(bytes, links) => {
                self.size += bytes;
                for (key, bytes) in links {
                    if self.seen_links.insert(key) {
                        self.size += bytes;
                    }
                }
            }
            Msg::Entry(rx) => {
                self.flow.next_batch();
                return rx.iter().try_for_each(|m| self.consume(m));
            }
            Msg::Failed(e) => return Err(e),
        }
        Ok(())
    }
}

/// Lists the tree and queues its entries in order: directories itself, the others as [`Job`]s.
struct Walker<'f> {
    pieces: mpsc::SyncSender<Msg>,
    jobs: mpsc::Sender<Job>,
    flow: &'f Flow,
    /// Batches queued so far.
    batches: std::cell::Cell<u64>,
}

impl Walker<'_> {
    fn walk(self, root: Arc<OwnedFd>, root_path: Arc<PathBuf>) {
        if let Err(e) = self.dir(root, root_path) {
            // The hasher reports it once it has hashed everything before it.
            let _ = self.pieces.send(Msg::Failed(e));
        }
    }

    /// Queues the entries of `dir`; `Ok(false)` when the hasher stopped listening.
    fn dir(&self, dir: Arc<OwnedFd>, dir_path: Arc<PathBuf>) -> Result<bool, StoreError> {
        let mut entries = list_typed(dir.as_fd(), &dir_path)?;
        sort_like_python_by(&mut entries, |(name, _)| name);
        let mut batch = Vec::new();
        for (name, kind) in entries {
            let is_dir = match kind {
                Some(kind) => kind == Type::Directory,
                None => {
                    let path = dir_path.join(OsStr::from_bytes(&name));
                    let st = fstatat(&*dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(|e| StoreError::io("stat", &path, e.into()))?;
                    st.st_mode & libc::S_IFMT == libc::S_IFDIR
                }
            };
            let queued = if is_dir {
                self.queue(&dir, &dir_path, &mut batch) && self.subdir(&dir, &dir_path, &name)?
            } else {
                batch.push((name, kind));
                batch.len() < BATCH || self.queue(&dir, &dir_path, &mut batch)
            };
            if !queued {
                return Ok(false);
            }
        }
        Ok(self.queue(&dir, &dir_path, &mut batch))
    }

    /// Hands the entries in `batch` to a reader (if there are any) and queues their place in
    /// the hash; false when the hasher stopped listening.
    fn queue(
        &self,
        dir: &Arc<OwnedFd>,
        dir_path: &Arc<PathBuf>,
        batch: &mut Vec<TypedName>,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let (out, entry) = mpsc::sync_channel(BATCH_QUEUE);
        self.batches.set(self.batches.get() + 1);
        let job = Job {
            number: self.batches.get(),
            dir: dir.clone(),
            dir_path: dir_path.clone(),
            entries: std::mem::take(batch),
            out,
        };
        // The readers outlive the walker; the send fails only if they all panicked, and then
        // the closed entry channel ends the hashing with an error.
        let _ = self.jobs.send(job);
        self.pieces.send(Msg::Entry(entry)).is_ok()
    }

    fn subdir(&self, dir: &OwnedFd, dir_path: &Path, name: &[u8]) -> Result<bool, StoreError> {
        let path = dir_path.join(OsStr::from_bytes(name));
        let fd = open_at(dir.as_fd(), name, OFlag::O_DIRECTORY, &path)?;
        let st = fstat(&fd).map_err(|e| StoreError::io("stat", &path, e.into()))?;
        let label = selinux_label(fd.as_fd(), &path)?;
        let mut json = Vec::with_capacity(128);
        metadata_json(&mut json, &st, name, label.as_deref());
        self.flow.sent(&json);
        let usage = st.st_blocks as u64 * 512;
        let sent = self.pieces.send(Msg::Dir(json, usage)).is_ok();
        Ok(sent && self.dir(Arc::new(fd), Arc::new(path))?)
    }
}

/// Consecutive entries of one directory (none of them a directory) for a reader thread.
struct Job {
    /// Its place in the hash: the hasher takes batch 1 first.
    number: u64,
    dir: Arc<OwnedFd>,
    dir_path: Arc<PathBuf>,
    /// Names, with their types where the directory listing said them.
    entries: Vec<TypedName>,
    out: mpsc::SyncSender<Msg>,
}

/// A reader thread: takes jobs until the walker is done.
fn read_entries(jobs: &Mutex<mpsc::Receiver<Job>>, flow: &Flow) {
    // Kept from one job to the next: a chunk being filled, and a scratch buffer.
    let (mut buf, mut json) = (Vec::new(), Vec::with_capacity(256));
    loop {
        // Wait for room before taking a job, holding the queue: the jobs start in tree order,
        // so the bytes that fill the room are all of jobs started earlier, which the hasher
        // takes first.
        let job = match jobs.lock() {
            Ok(rx) if flow.wait_for_room(u64::MAX) => rx.recv(),
            _ => return,
        };
        let Ok(job) = job else { return };
        let mut out = Out {
            tx: &job.out,
            batch: job.number,
            flow,
            buf: &mut buf,
            json: &mut json,
            usage: 0,
            links: Vec::new(),
        };
        // A panic (a bug) fails this entry's place in the hash instead of ending the thread:
        // a closed entry would be hashed as if complete, and with every reader gone the
        // hasher would wait for the queued jobs forever.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.entries
                .iter()
                .try_fold(true, |open, (name, kind)| match open {
                    true => entry(&job, name, *kind, &mut out),
                    false => Ok(false),
                })
        }))
        .unwrap_or(Err(StoreError::Panic("treesum reader")));
        match done {
            Ok(true) => out.finish(),
            Ok(false) => {}
            Err(e) => {
                let _ = job.out.send(Msg::Failed(e));
            }
        }
    }
}

/// Hashes one entry: its metadata JSON, then the link target or the file's content.
/// `kind` is its type as the directory listing said it. `Ok(false)` when the hasher stopped
/// listening.
fn entry(
    job: &Job,
    name: &[u8],
    kind: Option<Type>,
    out: &mut Out<'_>,
) -> Result<bool, StoreError> {
    let dir = job.dir.as_fd();
    let path = || job.dir_path.join(OsStr::from_bytes(name));
    if kind == Some(Type::File) {
        // Open first and stat the descriptor: one path lookup instead of two. O_NONBLOCK: if
        // it became a fifo since the listing, opening it must not wait for a writer.
        match openat(dir, name, FILE_FLAGS | OFlag::O_NONBLOCK, Mode::empty()) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| StoreError::io("stat", &path(), e.into()))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                    return regular(fd, &st, name, &path, out);
                }
            }
            // Replaced by a symlink since the listing (O_NOFOLLOW).
            Err(Errno::ELOOP) => {}
            Err(e) => return Err(StoreError::io("open", &path(), e.into())),
        }
    }
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| StoreError::io("stat", &path(), e.into()))?;
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFLNK => {
            out.account(&st);
            let label = selinux_label_nofollow(dir, name, &path())?;
            let target = nix::fcntl::readlinkat(dir, name)
                .map_err(|e| StoreError::io("read the link", &path(), e.into()))?;
            Ok(out.metadata(&st, name, label.as_deref()) && out.push(target.as_bytes()))
        }
        libc::S_IFREG => {
            let fd = open_at(dir, name, OFlag::O_NONBLOCK, &path())?;
            regular(fd, &st, name, &path, out)
        }
        _ => Err(StoreError::UnexpectedFileType {
            path: path(),
            kind: file_type_name(fmt),
        }),
    }
}

/// Hashes a regular file `fd` whose status is `st`: its metadata JSON, then its content.
fn regular(
    fd: OwnedFd,
    st: &FileStat,
    name: &[u8],
    path: &dyn Fn() -> PathBuf,
    out: &mut Out<'_>,
) -> Result<bool, StoreError> {
    out.account(st);
    let label = label_or_none(osbuild_sys::fs::get_xattr(fd.as_fd(), SELINUX_XATTR))
        .map_err(|e| StoreError::io("read the SELinux label of", &path(), e.into()))?;
    if !out.metadata(st, name, label.as_deref()) {
        return Ok(false);
    }
    let size = st.st_size as u64;
    let read = if (st.st_blocks as u64) * 512 < size {
        out.sparse(fd.as_fd())
    } else {
        out.dense(fd.as_fd(), size)
    };
    read.map_err(|e| StoreError::io("read", &path(), e.into()))
}

/// What one job sends the hasher: bytes packed into [`CHUNK`]s, zeros for holes, and the disk
/// usage at the end. Each method returns false when the hasher stopped listening.
struct Out<'a> {
    tx: &'a mpsc::SyncSender<Msg>,
    /// The job's number.
    batch: u64,
    flow: &'a Flow,
    /// The chunk being filled.
    buf: &'a mut Vec<u8>,
    /// Scratch space for an entry's metadata JSON.
    json: &'a mut Vec<u8>,
    usage: u64,
    links: Vec<((u64, u64), u64)>,
}

impl Out<'_> {
    fn account(&mut self, st: &FileStat) {
        let bytes = st.st_blocks as u64 * 512;
        if st.st_nlink > 1 {
            self.links.push(((st.st_dev, st.st_ino), bytes));
        } else {
            self.usage += bytes;
        }
    }

    /// Sends an entry's metadata JSON.
    fn metadata(&mut self, st: &FileStat, name: &[u8], label: Option<&[u8]>) -> bool {
        let mut json = std::mem::take(self.json);
        metadata_json(&mut json, st, name, label);
        let sent = self.push(&json);
        *self.json = json;
        sent
    }

    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        if !self.flow.wait_for_room(self.batch) {
            return false;
        }
        let full = std::mem::replace(self.buf, self.flow.chunk());
        self.flow.sent(&full);
        self.tx.send(Msg::Bytes(full)).is_ok()
    }

    /// Room left in the buffer, after sending it when it is full.
    fn room(&mut self) -> Option<usize> {
        if self.buf.len() >= CHUNK && !self.flush() {
            return None;
        }
        if self.buf.capacity() == 0 {
            *self.buf = self.flow.chunk();
        }
        Some(CHUNK - self.buf.len())
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        // A chunk never grows past CHUNK (unless `bytes` alone is bigger).
        if self.buf.len() + bytes.len() > CHUNK && !self.flush() {
            return false;
        }
        if self.buf.capacity() == 0 {
            *self.buf = self.flow.chunk();
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    fn zeros(&mut self, n: u64) -> bool {
        self.flush() && self.tx.send(Msg::Zeros(n)).is_ok()
    }

    fn finish(mut self) {
        if self.flush() {
            let usage = Msg::Usage(self.usage, std::mem::take(&mut self.links));
            let _ = self.tx.send(usage);
        }
    }

    /// Reads `fd`, of `size` bytes when it was stat-ed, to its end. A short read that
    /// completes `size` is the end: no read(2) just to see zero bytes.
    fn dense(&mut self, fd: BorrowedFd<'_>, size: u64) -> Result<bool, Errno> {
        let mut total = 0u64;
        loop {
            let Some(room) = self.room() else {
                return Ok(false);
            };
            match osbuild_sys::fs::read_appending(fd, self.buf, room) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    total += n as u64;
                    if n < room && total == size {
                        return Ok(true);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the data regions of `fd` only; each hole becomes zeros for the hasher.
    fn sparse(&mut self, fd: BorrowedFd<'_>) -> Result<bool, Errno> {
        let mut pos = 0u64;
        loop {
            let data = match osbuild_sys::fs::seek_data(fd, pos) {
                Ok(Some(data)) => data,
                Ok(None) => break,
                // No hole support here after all: read it all.
                Err(Errno::EINVAL | Errno::EOPNOTSUPP) if pos == 0 => {
                    return self.dense(fd, u64::MAX)
                }
                Err(e) => return Err(e),
            };
            let end = osbuild_sys::fs::seek_hole(fd, data)?;
            if data > pos && !self.zeros(data - pos) {
                return Ok(false);
            }
            pos = data;
            while pos < end {
                let Some(room) = self.room() else {
                    return Ok(false);
                };
                let want = (room as u64).min(end - pos) as usize;
                match osbuild_sys::fs::pread_appending(fd, self.buf, want, pos) {
                    // The file shrank: what the hasher has is the file.
                    Ok(0) => return self.sparse_end(fd, pos),
                    Ok(n) => pos += n as u64,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.sparse_end(fd, pos)
    }

    /// Ends a sparse file read up to `pos`: zeros up to its size (a hole at its end).
    fn sparse_end(&mut self, fd: BorrowedFd<'_>, pos: u64) -> Result<bool, Errno> {
        let size = fstat(fd)?.st_size as u64;
        Ok(size <= pos || self.zeros(size - pos))
    }
}

pub(crate) fn file_type_name(fmt: libc::mode_t) -> &'static str {
    match fmt {
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "unknown file type",
    }
}

pub(crate) fn open_dir(
    at: Option<BorrowedFd<'_>>,
    name: &Path,
    path: &Path,
) -> Result<OwnedFd, StoreError> {
    openat(
        at.unwrap_or(AT_FDCWD),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("open the directory", path, e.into()))
}

fn open_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    flags: OFlag,
    path: &Path,
) -> Result<OwnedFd, StoreError> {
    openat(dir, name, FILE_FLAGS | flags, Mode::empty())
        .map_err(|e| StoreError::io("open", path, e.into()))
}

/// How entries of the tree are opened: read-only, never following a symlink.
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NOCTTY);

/// The names in a directory (without `.` and `..`), in directory order.
pub(crate) fn list_names(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(list_typed(dir, path)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// A directory entry's name, and its type where the filesystem says it.
type TypedName = (Vec<u8>, Option<Type>);

/// The names in a directory (without `.` and `..`) and their types where the filesystem says
/// them, in directory order.
fn list_typed(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<TypedName>, StoreError> {
    let own = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("read the directory", path, e.into()))?;
    let mut d = nix::dir::Dir::from_fd(own)
        .map_err(|e| StoreError::io("read the directory", path, e.into()))?;
    let mut entries = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| StoreError::io("read the directory", path, e.into()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            entries.push((name.to_vec(), entry.file_type()));
        }
    }
    Ok(entries)
}

/// Sorts names as Python sorts the `str`s `os.fsdecode` makes of them.
#[cfg(test)]
pub(crate) fn sort_like_python(names: &mut [Vec<u8>]) {
    sort_like_python_by(names, |n| n);
}

/// Sorts items by their names (`name`) as [`sort_like_python`] sorts names.
fn sort_like_python_by<T>(items: &mut [T], name: impl Fn(&T) -> &[u8]) {
    if items.iter().all(|i| std::str::from_utf8(name(i)).is_ok()) {
        // UTF-8 byte order is code point order.
        items.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    } else {
        items.sort_by_cached_key(|i| decode_surrogateescape(name(i)));
    }
}

/// Decodes bytes as UTF-8 into code points, each undecodable byte `b` becoming `0xDC00 + b`
/// (Python's `surrogateescape`).
pub(crate) fn decode_surrogateescape(mut bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend(s.chars().map(u32::from));
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                let good = std::str::from_utf8(good).expect("valid up to here");
                out.extend(good.chars().map(u32::from));
                let bad = e.error_len().unwrap_or(rest.len());
                out.extend(rest[..bad].iter().map(|&b| 0xDC00 + u32::from(b)));
                bytes = &rest[bad..];
            }
        }
    }
}

/// Appends `s` as a JSON string the way Python's `json.dumps` (ensure_ascii) writes it.
pub(crate) fn json_string(out: &mut Vec<u8>, code_points: &[u32]) {
    fn u_escape(out: &mut Vec<u8>, unit: u32) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[((unit >> shift) & 0xf) as usize]);
        }
    }
    out.push(b'"');
    for &c in code_points {
        match c {
            0x22 => out.extend_from_slice(b"\\\""),
            0x5c => out.extend_from_slice(b"\\\\"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x20..=0x7e => out.push(c as u8),
            0x10000.. => {
                let v = c - 0x10000;
                u_escape(out, 0xD800 + (v >> 10));
                u_escape(out, 0xDC00 + (v & 0x3ff));
            }
            _ => u_escape(out, c),
        }
    }
    out.push(b'"');
}

/// `json.dumps({"gid", "mode", "name", ["selinux"], "size", "uid"}, sort_keys=True)`.
fn metadata_json(out: &mut Vec<u8>, st: &FileStat, name: &[u8], selinux: Option<&[u8]>) {
    use std::io::Write;
    out.clear();
    write!(
        out,
        "{{\"gid\": {}, \"mode\": {}, \"name\": ",
        st.st_gid, st.st_mode
    )
    .expect("writing to a Vec cannot fail");
    json_string(out, &decode_surrogateescape(name));
    if let Some(label) = selinux {
        out.extend_from_slice(b", \"selinux\": ");
        json_string(out, &decode_surrogateescape(label));
    }
    write!(out, ", \"size\": {}, \"uid\": {}}}", st.st_size, st.st_uid)
        .expect("writing to a Vec cannot fail");
}

const SELINUX_XATTR: &CStr = c"security.selinux";

/// The SELinux label of `fd`, `None` when it has none or the filesystem has no labels.
fn selinux_label(fd: BorrowedFd<'_>, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    label_or_none(osbuild_sys::fs::get_xattr(fd, SELINUX_XATTR))
        .map_err(|e| StoreError::io("read the SELinux label of", path, e.into()))
}

fn selinux_label_nofollow(
    dir: BorrowedFd<'_>,
    name: &[u8],
    path: &Path,
) -> Result<Option<Vec<u8>>, StoreError> {
    // There is no lgetxattrat; go through /proc like v10 does.
    let mut proc_path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    proc_path.extend_from_slice(name);
    let c_path = std::ffi::CString::new(proc_path)
        .map_err(|_| StoreError::io("read the SELinux label of", path, Errno::EINVAL.into()))?;
    label_or_none(osbuild_sys::fs::get_xattr_nofollow(&c_path, SELINUX_XATTR))
        .map_err(|e| StoreError::io("read the SELinux label of", path, e.into()))
}

/// A label, `None` when there is none or the filesystem has no labels.
fn label_or_none(label: Result<Vec<u8>, Errno>) -> Result<Option<Vec<u8>>, Errno> {
    match label {
        Ok(label) => Ok(Some(label)),
        Err(Errno::ENODATA | Errno::ENOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32, size: i64) -> FileStat {
        let mut st = nix::sys::stat::stat("/").expect("stat /");
        st.st_uid = 0;
        st.st_gid = 0;
        st.st_mode = mode;
        st.st_size = size;
        st
    }

    #[test]
    fn metadata_json_matches_python() {
        type Case<'a> = (FileStat, &'a [u8], Option<&'a [u8]>, &'a str);
        let cases: [Case; 4] = [
            (
                stat(0o100644, 6),
                b"a",
                None,
                r#"{"gid": 0, "mode": 33188, "name": "a", "size": 6, "uid": 0}"#,
            ),
            (
                stat(0o120777, 1),
                b"l",
                None,
                r#"{"gid": 0, "mode": 41471, "name": "l", "size": 1, "uid": 0}"#,
            ),
            (
                stat(0o100600, 0),
                "caf\u{e9} \u{1F600}\"\\\n\x7f".as_bytes(),
                Some(b"system_u:object_r:etc_t:s0\0"),
                r#"{"gid": 0, "mode": 33152, "name": "caf\u00e9 \ud83d\ude00\"\\\n\u007f", "selinux": "system_u:object_r:etc_t:s0\u0000", "size": 0, "uid": 0}"#,
            ),
            (
                stat(0o100644, 0),
                b"bad\xff\xe2\x82",
                None,
                r#"{"gid": 0, "mode": 33188, "name": "bad\udcff\udce2\udc82", "size": 0, "uid": 0}"#,
            ),
        ];
        for (st, name, label, want) in cases {
            let mut out = Vec::new();
            metadata_json(&mut out, &st, name, label);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    /// With the read-ahead full, the batch the hasher takes goes on, a later one waits until
    /// the hasher takes it, and every waiting reader gives up when the hasher stops.
    #[test]
    fn read_ahead_waits_only_for_later_batches() {
        use std::thread::ScopedJoinHandle;
        use std::time::{Duration, Instant};
        let finishes = |t: &ScopedJoinHandle<bool>| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            t.is_finished()
        };
        let flow = Flow::default();
        flow.sent(&Vec::with_capacity(AHEAD));
        flow.next_batch();
        std::thread::scope(|s| {
            // However it fails, the waiting threads are let go (or the scope waits forever).
            struct Stop<'a>(&'a Flow);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.stop();
                }
            }
            let _stop = Stop(&flow);
            let taken = s.spawn(|| flow.wait_for_room(1));
            assert!(finishes(&taken), "the hasher's batch goes on");
            assert!(taken.join().unwrap());
            let later = s.spawn(|| flow.wait_for_room(2));
            let new = s.spawn(|| flow.wait_for_room(u64::MAX));
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !later.is_finished(),
                "batch 2 waits while the hasher takes batch 1"
            );
            assert!(!new.is_finished(), "no new batch starts");
            flow.next_batch();
            assert!(finishes(&later), "batch 2 goes on once the hasher takes it");
            assert!(later.join().unwrap());
            flow.stop();
            assert!(finishes(&new), "a reader gives up when the hasher stops");
            assert!(!new.join().unwrap());
        });
    }

    #[test]
    fn surrogateescape_decoding() {
        let cases: [(&[u8], Vec<u32>); 4] = [
            (b"abc", vec![0x61, 0x62, 0x63]),
            (b"a\xff", vec![0x61, 0xdcff]),
            (b"\xe2\x82\xac\xe2\x82", vec![0x20ac, 0xdce2, 0xdc82]),
            (b"\xed\xa0\x80", vec![0xdced, 0xdca0, 0xdc80]),
        ];
        for (input, want) in cases {
            assert_eq!(decode_surrogateescape(input), want, "{input:?}");
        }
    }

    #[test]
    fn python_sort_order() {
        // U+E000 (ee 80 80) sorts after an escaped 0xff (U+DCFF) in Python, though its first
        // byte is smaller; ASCII sorts first.
        let mut names = vec![
            b"\xee\x80\x80".to_vec(),
            b"\xff".to_vec(),
            b"z".to_vec(),
            b"\xd7\xbf".to_vec(),
        ];
        sort_like_python(&mut names);
        let want: Vec<Vec<u8>> = vec![
            b"z".to_vec(),
            b"\xd7\xbf".to_vec(),
            b"\xff".to_vec(),
            b"\xee\x80\x80".to_vec(),
        ];
        assert_eq!(names, want);
    }
}
