//! Removing a whole tree (a build's working tree, a temporary directory) with several threads.
//!
//! Removing a file mostly waits: for the inode and directory blocks to be written, and on a
//! filesystem mounted `discard`, for the device to discard the freed blocks. Several threads
//! waiting at once remove a Debian tree (600 MB, 20 000 files) in 0.45 s where one takes
//! 1.1 s (`rm -rf` against `xargs -P 8 rm` on this project's CI machine).
//!
//! Every step is relative to an open directory (`openat`, `unlinkat` with `O_NOFOLLOW`), as
//! std's `remove_dir_all` does: a symlink is removed, never followed. A directory is removed
//! once everything below it is; a directory's descriptor stays open only while its entries
//! are being removed, so the descriptors open are about the tree's depth times the threads.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use nix::dir::{Dir, Type};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Threads that remove at once; they mostly wait on the device, not on a core.
const THREADS: usize = 8;

/// Directories removed by the calling thread alone before the others start: most trees
/// removed (a build's temporary directories) are small, and starting threads would cost them
/// more than it saves.
const ALONE: usize = 32;

/// A directory whose entries are being removed.
struct Node {
    fd: OwnedFd,
    /// The parent and this directory's name in it; `None` for the top, which the caller removes.
    parent: Option<(Arc<Node>, CString)>,
    /// Listing this directory (1) plus its subdirectories not yet removed.
    pending: AtomicUsize,
}

/// Work: a subdirectory to open and empty.
type Task = (Arc<Node>, CString);

struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    tasks: Vec<Task>,
    /// Tasks queued or being worked on; the removal is over when it reaches 0.
    open: usize,
    error: Option<nix::Error>,
}

/// Removes `path` and everything below it (a symlink or file at `path` is simply removed).
pub(super) fn remove_dir_all(path: &Path) -> std::io::Result<()> {
    let top = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => path,
        Ok(_) => return std::fs::remove_file(path),
        Err(e) => return Err(e),
    };
    let fd = open_dir(nix::fcntl::AT_FDCWD, top)?;
    let root = Arc::new(Node {
        fd,
        parent: None,
        pending: AtomicUsize::new(1),
    });
    let queue = Queue {
        state: Mutex::new(QueueState {
            tasks: Vec::new(),
            open: 1,
            error: None,
        }),
        ready: Condvar::new(),
    };
    std::thread::scope(|s| {
        queue.done(empty(&root, &queue));
        let mut removed = 0;
        while let Some(task) = queue.next() {
            queue.done(remove_subdir(task, &queue));
            removed += 1;
            if removed == ALONE {
                for _ in 1..THREADS {
                    s.spawn(|| work(&queue));
                }
            }
        }
    });
    drop(root);
    if let Some(e) = queue
        .state
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .error
    {
        return Err(e.into());
    }
    std::fs::remove_dir(path)
}

impl Queue {
    fn push(&self, task: Task) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.tasks.push(task);
        state.open += 1;
        self.ready.notify_one();
    }

    /// Marks one task done, recording its error.
    fn done(&self, result: nix::Result<()>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.open -= 1;
        if let Err(e) = result {
            state.error.get_or_insert(e);
        }
        // Either ends the waiting of every thread (see `next`).
        if state.open == 0 || state.error.is_some() {
            self.ready.notify_all();
        }
    }

    /// The next task, or `None` when there is no more work (or an error stopped it).
    fn next(&self) -> Option<Task> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.error.is_some() || state.open == 0 {
                return None;
            }
            if let Some(task) = state.tasks.pop() {
                return Some(task);
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A helper thread: removes subdirectories until there are none left (an error leaves tasks
/// queued: their nodes and descriptors go with the queue).
fn work(queue: &Queue) {
    while let Some(task) = queue.next() {
        queue.done(remove_subdir(task, queue));
    }
}

/// Opens the subdirectory of `task` and empties it (see [`empty`]).
fn remove_subdir((parent, name): Task, queue: &Queue) -> nix::Result<()> {
    let fd = open_dir(parent.fd.as_fd(), name.as_c_str())?;
    let node = Arc::new(Node {
        fd,
        parent: Some((parent, name)),
        pending: AtomicUsize::new(1),
    });
    empty(&node, queue)
}

/// Removes the files in `node`, queues its subdirectories, and removes it when nothing is
/// pending below it any more.
fn empty(node: &Arc<Node>, queue: &Queue) -> nix::Result<()> {
    // A descriptor of its own: reading moves it, and the node's stays for unlinkat.
    let mut dir = Dir::from_fd(open_dir(node.fd.as_fd(), c".")?)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == Type::Directory,
            None => is_dir_at(node, name)?,
        };
        if is_dir {
            node.pending.fetch_add(1, Ordering::AcqRel);
            queue.push((node.clone(), name.to_owned()));
        } else {
            unlinkat(node.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
        }
    }
    finish(node)
}

/// One thing less pending in `node`: when nothing is, it is removed from its parent, which then
/// has one thing less pending.
fn finish(node: &Arc<Node>) -> nix::Result<()> {
    if node.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
        return Ok(());
    }
    match &node.parent {
        Some((parent, name)) => {
            unlinkat(parent.fd.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir)?;
            finish(parent)
        }
        None => Ok(()),
    }
}

fn is_dir_at(node: &Node, name: &CStr) -> nix::Result<bool> {
    let st = fstatat(node.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Opens the directory `path` at `at`, never through a symlink.
fn open_dir<P: ?Sized + nix::NixPath>(at: impl AsFd, path: &P) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(at, path, flags, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removes_a_deep_wide_tree_and_never_follows_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep").unwrap();
        let parent = tempfile::tempdir().unwrap();
        let top = parent.path().join("tree");
        for i in 0..40 {
            let dir = top.join(format!("d{i}/a/b/c"));
            std::fs::create_dir_all(&dir).unwrap();
            for j in 0..25 {
                std::fs::write(dir.join(format!("f{j}")), "x").unwrap();
            }
            symlink(outside.path(), top.join(format!("d{i}/a/to-outside"))).unwrap();
            symlink(outside.path().join("precious"), dir.join("to-file")).unwrap();
        }
        std::fs::create_dir_all(top.join("empty/dirs/only")).unwrap();
        remove_dir_all(&top).unwrap();
        assert!(!top.exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_symlink_or_file_at_the_top_is_removed_itself() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "keep").unwrap();
        let parent = tempfile::tempdir().unwrap();
        let link = parent.path().join("link");
        symlink(outside.path(), &link).unwrap();
        remove_dir_all(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(outside.path().join("precious").exists());
        let missing = remove_dir_all(&parent.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }

    /// A directory that cannot be removed (a mount point, busy) ends the removal with its
    /// error, promptly, whatever else is queued.
    #[test]
    fn an_error_ends_the_removal_with_that_error() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let parent = tempfile::tempdir().unwrap();
        let top = parent.path().join("tree");
        for i in 0..200 {
            std::fs::create_dir_all(top.join(format!("d{i}/sub"))).unwrap();
        }
        let empty = tempfile::tempdir().unwrap();
        let _busy = crate::mount::BindMount::new(empty.path(), &top.join("d7/sub"), true).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = top.clone();
        std::thread::spawn(move || tx.send(remove_dir_all(&t)));
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the removal ends");
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBUSY));
        assert!(top.join("d7/sub").is_dir());
    }
}
