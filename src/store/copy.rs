//! Initialising an object's working tree from a committed tree, like `cp -a --reflink=auto`.
//!
//! Three passes: a walk creates directories, symlinks and special files (device nodes, fifos,
//! sockets) and lists the regular files; worker threads then copy the files (a reflink with
//! `FICLONE` where the filesystem has them, `copy_file_range` otherwise, plain read/write as a
//! last resort); finally hard links are recreated as links and directory metadata is applied
//! deepest first. Owner, mode (set after the owner so setuid bits survive), extended
//! attributes of files and directories, and timestamps are preserved. Holes in sparse files are
//! not preserved.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;

use super::treesum::{file_type_name, list_names, open_dir};
use super::StoreError;

/// Copies the content of the directory `src` into the existing, empty directory `dst`, and
/// gives `dst` the owner, mode and times of `src`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), StoreError> {
    let src_root = open_dir(None, src, src)?;
    let dst_root = open_dir(None, dst, dst)?;
    let root_st = fstat(src_root.as_fd(), src)?;
    let mut plan = Plan::default();
    walk(
        src_root.as_fd(),
        dst_root.as_fd(),
        Path::new(""),
        src,
        &mut plan,
    )?;

    let ctx = FileCopy {
        src_root: src_root.as_fd(),
        dst_root: dst_root.as_fd(),
        src,
        reflink: AtomicBool::new(true),
        copy_range: AtomicBool::new(true),
    };
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<StoreError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((rel, st)) = plan.files.get(i) else {
                    break;
                };
                if let Err(e) = ctx.copy_file(rel, st) {
                    // Stop every worker; keep the first error.
                    next.store(plan.files.len(), Ordering::Relaxed);
                    failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    break;
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }

    for (first, other) in &plan.links {
        nix::unistd::linkat(
            dst_root.as_fd(),
            first.as_path(),
            dst_root.as_fd(),
            other.as_path(),
            AtFlags::empty(),
        )
        .map_err(|e| StoreError::io("create the hard link", &src.join(other), e.into()))?;
    }
    for (rel, st) in &plan.dirs {
        let fd = if rel.as_os_str().is_empty() {
            nix::unistd::dup(dst_root.as_fd()).map_err(|e| StoreError::io("open", dst, e.into()))?
        } else {
            open_dir(Some(dst_root.as_fd()), rel, &dst.join(rel))?
        };
        let from = if rel.as_os_str().is_empty() {
            nix::unistd::dup(src_root.as_fd()).map_err(|e| StoreError::io("open", src, e.into()))?
        } else {
            open_dir(Some(src_root.as_fd()), rel, &src.join(rel))?
        };
        apply_metadata(from.as_fd(), fd.as_fd(), st, &dst.join(rel))?;
    }
    apply_metadata(src_root.as_fd(), dst_root.as_fd(), &root_st, dst)
}

#[derive(Default)]
struct Plan {
    /// Regular files to copy, relative to the roots.
    files: Vec<(PathBuf, FileStat)>,
    /// (existing, new) hard links to create after the files.
    links: Vec<(PathBuf, PathBuf)>,
    /// Directories below the root, children before their parents.
    dirs: Vec<(PathBuf, FileStat)>,
    /// First path seen for each (dev, ino) with more than one link.
    inodes: HashMap<(u64, u64), PathBuf>,
}

fn walk(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    rel: &Path,
    src_root: &Path,
    plan: &mut Plan,
) -> Result<(), StoreError> {
    for name in list_names(src, &src_root.join(rel))? {
        let name = OsStr::from_bytes(&name);
        let rel_path = rel.join(name);
        let shown = || src_root.join(&rel_path);
        let st = fstatat(src, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| StoreError::io("stat", &shown(), e.into()))?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = plan.inodes.get(&(st.st_dev, st.st_ino)) {
                plan.links.push((first.clone(), rel_path));
                continue;
            }
            plan.inodes.insert((st.st_dev, st.st_ino), rel_path.clone());
        }
        match fmt {
            libc::S_IFREG => plan.files.push((rel_path, st)),
            libc::S_IFDIR => {
                mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                    .map_err(|e| StoreError::io("create the directory", &shown(), e.into()))?;
                let s = open_dir(Some(src), Path::new(name), &shown())?;
                let d = open_dir(Some(dst), Path::new(name), &shown())?;
                walk(s.as_fd(), d.as_fd(), &rel_path, src_root, plan)?;
                plan.dirs.push((rel_path, st));
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(src, name)
                    .map_err(|e| StoreError::io("read the link", &shown(), e.into()))?;
                nix::unistd::symlinkat(target.as_os_str(), dst, name)
                    .map_err(|e| StoreError::io("create the symlink", &shown(), e.into()))?;
                set_owner_times_at(dst, name, &st, false, &shown())?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {
                nix::sys::stat::mknodat(
                    dst,
                    name,
                    SFlag::from_bits_truncate(fmt),
                    Mode::from_bits_truncate(st.st_mode & 0o7777),
                    st.st_rdev,
                )
                .map_err(|e| StoreError::io(file_type_create_action(fmt), &shown(), e.into()))?;
                set_owner_times_at(dst, name, &st, true, &shown())?;
            }
            _ => {
                return Err(StoreError::UnexpectedFileType {
                    path: shown(),
                    kind: file_type_name(fmt),
                })
            }
        }
    }
    Ok(())
}

fn file_type_create_action(fmt: libc::mode_t) -> &'static str {
    match fmt {
        libc::S_IFCHR => "create the character device",
        libc::S_IFBLK => "create the block device",
        libc::S_IFIFO => "create the fifo",
        _ => "create the socket",
    }
}

fn fstat(fd: BorrowedFd<'_>, path: &Path) -> Result<FileStat, StoreError> {
    nix::sys::stat::fstat(fd).map_err(|e| StoreError::io("stat", path, e.into()))
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    )
}

/// Owner, mode (unless a symlink) and times of an entry created by path.
fn set_owner_times_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
    chmod: bool,
    shown: &Path,
) -> Result<(), StoreError> {
    nix::unistd::fchownat(
        dir,
        name,
        Some(st.st_uid.into()),
        Some(st.st_gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| StoreError::io("set the owner of", shown, e.into()))?;
    if chmod {
        nix::sys::stat::fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| StoreError::io("set the mode of", shown, e.into()))?;
    }
    let (a, m) = times(st);
    nix::sys::stat::utimensat(
        dir,
        name,
        &a,
        &m,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| StoreError::io("set the times of", shown, e.into()))
}

/// Owner, then mode, then extended attributes, then times, from `src` onto `dst`.
fn apply_metadata(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    st: &FileStat,
    shown: &Path,
) -> Result<(), StoreError> {
    nix::unistd::fchown(dst, Some(st.st_uid.into()), Some(st.st_gid.into()))
        .map_err(|e| StoreError::io("set the owner of", shown, e.into()))?;
    nix::sys::stat::fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(|e| StoreError::io("set the mode of", shown, e.into()))?;
    copy_xattrs(src, dst, shown)?;
    let (a, m) = times(st);
    nix::sys::stat::futimens(dst, &a, &m)
        .map_err(|e| StoreError::io("set the times of", shown, e.into()))
}

fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, shown: &Path) -> Result<(), StoreError> {
    let err = |e: Errno| StoreError::io("copy the extended attributes of", shown, e.into());
    let names = match osbuild_sys::fs::xattr_names(src) {
        Ok(names) => names,
        Err(Errno::ENOTSUP) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    for name in names {
        let cname = CString::new(name).expect("split on NUL");
        let value = osbuild_sys::fs::get_xattr(src, &cname).map_err(err)?;
        match osbuild_sys::fs::set_xattr(dst, &cname, &value) {
            Ok(()) | Err(Errno::ENOTSUP) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

struct FileCopy<'a> {
    src_root: BorrowedFd<'a>,
    dst_root: BorrowedFd<'a>,
    src: &'a Path,
    /// Cleared once the filesystem refuses reflinks, so later files skip the attempt.
    reflink: AtomicBool,
    /// Cleared once copy_file_range is unavailable.
    copy_range: AtomicBool,
}

impl FileCopy<'_> {
    fn copy_file(&self, rel: &Path, st: &FileStat) -> Result<(), StoreError> {
        let shown = self.src.join(rel);
        let from = openat(
            self.src_root,
            rel,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| StoreError::io("open", &shown, e.into()))?;
        let to: OwnedFd = openat(
            self.dst_root,
            rel,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| StoreError::io("create the copy of", &shown, e.into()))?;
        self.copy_data(from.as_fd(), to.as_fd(), st.st_size as u64)
            .map_err(|e| StoreError::io("copy", &shown, e.into()))?;
        apply_metadata(from.as_fd(), to.as_fd(), st, &shown)
    }

    fn copy_data(&self, from: BorrowedFd<'_>, to: BorrowedFd<'_>, size: u64) -> Result<(), Errno> {
        if size == 0 {
            return Ok(());
        }
        if self.reflink.load(Ordering::Relaxed) {
            match osbuild_sys::fs::reflink(from, to) {
                Ok(_) => return Ok(()),
                Err(
                    Errno::EOPNOTSUPP
                    | Errno::ENOTTY
                    | Errno::EXDEV
                    | Errno::EINVAL
                    | Errno::ENOSYS,
                ) => self.reflink.store(false, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        let mut done = 0u64;
        if self.copy_range.load(Ordering::Relaxed) {
            loop {
                let want = (size - done).clamp(1 << 20, 1 << 30) as usize;
                match osbuild_sys::fs::copy_file_range(from, to, want) {
                    Ok(0) => return Ok(()),
                    Ok(n) => done += n as u64,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EXDEV | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EINVAL)
                        if done == 0 =>
                    {
                        self.copy_range.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match nix::unistd::read(from, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while off < n {
                match nix::unistd::write(to, &buf[off..n]) {
                    Ok(w) => off += w,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
