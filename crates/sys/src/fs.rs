//! File-level syscalls the store and the sources need beyond std: extended attributes,
//! reflinks (`FICLONE`), `copy_file_range`, and reading into a vector's spare capacity.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// Calls `get(buffer)` with ever larger buffers while it answers `ERANGE`.
fn grow(
    mut size: usize,
    mut get: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> nix::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; size];
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => size *= 4,
            Err(e) => return Err(errno(e)),
        }
    }
}

/// The names of the extended attributes of `fd`.
pub fn xattr_names(fd: impl AsFd) -> nix::Result<Vec<Vec<u8>>> {
    let fd = fd.as_fd();
    let size = rustix::fs::flistxattr(fd, &mut [0u8; 0][..]).map_err(errno)?;
    let list = grow(size + 256, |buf| rustix::fs::flistxattr(fd, buf))?;
    Ok(list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of the extended attribute `name` of `fd`.
pub fn get_xattr(fd: impl AsFd, name: &CStr) -> nix::Result<Vec<u8>> {
    let fd = fd.as_fd();
    grow(256, |buf| rustix::fs::fgetxattr(fd, name, buf))
}

/// The value of the extended attribute `name` of `path` itself (a symlink is not followed).
pub fn get_xattr_nofollow(path: &CStr, name: &CStr) -> nix::Result<Vec<u8>> {
    grow(256, |buf| rustix::fs::lgetxattr(path, name, buf))
}

/// Sets the extended attribute `name` of `fd` to `value`.
pub fn set_xattr(fd: impl AsFd, name: &CStr, value: &[u8]) -> nix::Result<()> {
    rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty()).map_err(errno)
}

/// Makes `to` share the data of `from` (a reflink, `FICLONE`).
pub fn reflink(from: impl AsFd, to: impl AsFd) -> nix::Result<()> {
    rustix::fs::ioctl_ficlone(to, from).map_err(errno)
}

/// Copies up to `len` bytes from `from` to `to` at their file positions, in the kernel.
pub fn copy_file_range(from: impl AsFd, to: impl AsFd, len: usize) -> nix::Result<usize> {
    rustix::fs::copy_file_range(from, None, to, None, len).map_err(errno)
}

/// Opens `path` (relative) below the directory `dir` without ever leaving it: `..` above
/// `dir`, absolute symlinks and symlinks leading out fail with `EXDEV`, `/proc` magic links
/// with `ELOOP` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`). Read-write unless
/// `read_only`; close-on-exec.
pub fn open_beneath(
    dir: impl AsFd,
    path: &std::path::Path,
    read_only: bool,
) -> nix::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let access = if read_only {
        OFlags::RDONLY
    } else {
        OFlags::RDWR
    };
    let flags = access | OFlags::CLOEXEC | OFlags::NOCTTY;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve).map_err(errno)
}

/// Reads once from `fd` into the spare capacity of `buf` (at most `max` bytes), extending its
/// length by what was read. Returns that count; 0 at end of file.
pub fn read_appending(fd: impl AsFd, buf: &mut Vec<u8>, max: usize) -> nix::Result<usize> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = rustix::io::read(fd, spare).map_err(errno)?.0.len();
    let len = buf.len();
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Like [`read_appending`], but at `offset` (pread(2)): the file position stays where it is.
pub fn pread_appending(
    fd: impl AsFd,
    buf: &mut Vec<u8>,
    max: usize,
    offset: u64,
) -> nix::Result<usize> {
    buf.reserve(max);
    let spare = &mut buf.spare_capacity_mut()[..max];
    let n = rustix::io::pread(fd, spare, offset).map_err(errno)?.0.len();
    let len = buf.len();
    // SAFETY: pread(2) initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Where the first data at or after `offset` starts (lseek(2) `SEEK_DATA`); `None` when only
/// a hole follows up to the end of the file. Moves the file position.
pub fn seek_data(fd: impl AsFd, offset: u64) -> nix::Result<Option<u64>> {
    match rustix::fs::seek(fd, rustix::fs::SeekFrom::Data(offset)) {
        Ok(at) => Ok(Some(at)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Where the first hole at or after `offset` starts (lseek(2) `SEEK_HOLE`; the end of the
/// file counts as one). Moves the file position.
pub fn seek_hole(fd: impl AsFd, offset: u64) -> nix::Result<u64> {
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Hole(offset)).map_err(errno)
}

/// Opens `path` read-only as if `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`): `..`
/// and symlinks, even absolute ones, resolve inside `root`, so a name from a manifest cannot
/// reach a file outside the tree it names.
pub fn open_in_root(root: &std::path::Path, path: &std::path::Path) -> nix::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let fd = rustix::fs::openat2(
        &dir,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(errno)?;
    Ok(std::fs::File::from(fd))
}

/// Gives the open file `file` the new name `dest` (`linkat` with `AT_EMPTY_PATH`, which
/// needs `CAP_DAC_READ_SEARCH`): no data is copied, holes stay holes. Both must be on one
/// mount (`EXDEV` otherwise).
pub fn link_open_file(file: impl AsFd, dest: &std::path::Path) -> nix::Result<()> {
    rustix::fs::linkat(
        file,
        "",
        rustix::fs::CWD,
        dest,
        rustix::fs::AtFlags::EMPTY_PATH,
    )
    .map_err(errno)
}
