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
//! Speed: a walker thread reads the tree into large buffers (1 MiB reads, many small files
//! packed into one buffer) while the calling thread hashes them in order; `sha2` uses the
//! CPU's SHA extensions when present.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstatat, FileStat, Mode};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::id::Treesum;

const BUF_SIZE: usize = 1 << 20;
const IN_FLIGHT: usize = 8;

/// The v10 treesum of the tree at `path` (a directory).
pub fn treesum(path: &Path) -> Result<Treesum, StoreError> {
    treesum_and_size(path).map(|(sum, _)| sum)
}

/// The treesum and the disk usage in bytes (`st_blocks * 512`, hard links counted once).
pub(crate) fn treesum_and_size(path: &Path) -> Result<(Treesum, u64), StoreError> {
    let root = open_dir(None, path, path)?;
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..IN_FLIGHT + 2 {
        empty_tx
            .send(Vec::with_capacity(BUF_SIZE))
            .expect("receiver is alive");
    }
    let root_path = path.to_owned();
    let walker = std::thread::Builder::new()
        .name("treesum-walk".into())
        .spawn(move || {
            let mut w = Walker {
                out: Sink {
                    buf: Vec::new(),
                    full: full_tx,
                    empty: empty_rx,
                },
                size: 0,
                seen_links: std::collections::HashSet::new(),
            };
            w.out.buf = w.out.next_buf();
            w.dir(root.as_fd(), &root_path)?;
            w.out.flush();
            Ok::<u64, StoreError>(w.size)
        })
        .map_err(|e| StoreError::io("start the treesum thread", path, e))?;
    let mut hasher = Sha256::new();
    for buf in full_rx {
        hasher.update(&buf);
        // The walker may be gone after an error; then the buffer is simply dropped.
        let _ = empty_tx.send(buf);
    }
    let size = walker
        .join()
        .map_err(|_| StoreError::Panic("treesum walker"))??;
    Ok((Treesum::from_digest(&hasher.finalize()), size))
}

struct Sink {
    buf: Vec<u8>,
    full: mpsc::SyncSender<Vec<u8>>,
    empty: mpsc::Receiver<Vec<u8>>,
}

impl Sink {
    fn next_buf(&self) -> Vec<u8> {
        let mut b = self
            .empty
            .try_recv()
            .or_else(|_| self.empty.recv())
            .unwrap_or_else(|_| Vec::with_capacity(BUF_SIZE));
        b.clear();
        b
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let next = self.next_buf();
            let full = std::mem::replace(&mut self.buf, next);
            // The hashing side only goes away when it is done; nothing to do then.
            let _ = self.full.send(full);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > BUF_SIZE {
            self.flush();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Appends the whole content of `fd`, reading straight into the buffers.
    fn read_from(&mut self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        loop {
            if self.buf.len() >= BUF_SIZE {
                self.flush();
            }
            let spare = BUF_SIZE - self.buf.len();
            match osbuild_sys::fs::read_appending(fd, &mut self.buf, spare) {
                Ok(0) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

struct Walker {
    out: Sink,
    size: u64,
    seen_links: std::collections::HashSet<(u64, u64)>,
}

impl Walker {
    fn dir(&mut self, dir: BorrowedFd<'_>, dir_path: &Path) -> Result<(), StoreError> {
        let mut names = list_names(dir, dir_path)?;
        sort_like_python(&mut names);
        let mut json = Vec::with_capacity(256);
        for name in &names {
            let path = dir_path.join(std::ffi::OsStr::from_bytes(name));
            let st = fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| StoreError::io("stat", &path, e.into()))?;
            self.account(&st);
            let fmt = st.st_mode & libc::S_IFMT;
            match fmt {
                libc::S_IFLNK => {
                    let label = selinux_label_nofollow(dir, name, &path)?;
                    metadata_json(&mut json, &st, name, label.as_deref());
                    self.out.push(&json);
                    let target = nix::fcntl::readlinkat(dir, name.as_slice())
                        .map_err(|e| StoreError::io("read the link", &path, e.into()))?;
                    self.out.push(target.as_bytes());
                }
                libc::S_IFDIR | libc::S_IFREG => {
                    let flags = if fmt == libc::S_IFDIR {
                        OFlag::O_DIRECTORY
                    } else {
                        OFlag::empty()
                    };
                    let fd = open_at(dir, name, flags, &path)?;
                    let label = selinux_label(fd.as_fd(), &path)?;
                    metadata_json(&mut json, &st, name, label.as_deref());
                    self.out.push(&json);
                    if fmt == libc::S_IFDIR {
                        self.dir(fd.as_fd(), &path)?;
                    } else {
                        self.out
                            .read_from(fd.as_fd())
                            .map_err(|e| StoreError::io("read", &path, e.into()))?;
                    }
                }
                _ => {
                    return Err(StoreError::UnexpectedFileType {
                        path,
                        kind: file_type_name(fmt),
                    })
                }
            }
        }
        Ok(())
    }

    fn account(&mut self, st: &FileStat) {
        if st.st_nlink > 1
            && st.st_mode & libc::S_IFMT != libc::S_IFDIR
            && !self.seen_links.insert((st.st_dev, st.st_ino))
        {
            return;
        }
        self.size += (st.st_blocks as u64) * 512;
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
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY | flags,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("open", path, e.into()))
}

/// The names in a directory (without `.` and `..`), in directory order.
pub(crate) fn list_names(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<Vec<u8>>, StoreError> {
    // nix's Dir owns its descriptor; give it a fresh one (its own offset) for the same directory.
    let own = openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("read the directory", path, e.into()))?;
    let mut d = nix::dir::Dir::from_fd(own)
        .map_err(|e| StoreError::io("read the directory", path, e.into()))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| StoreError::io("read the directory", path, e.into()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Sorts names as Python sorts the `str`s `os.fsdecode` makes of them.
pub(crate) fn sort_like_python(names: &mut [Vec<u8>]) {
    if names.iter().all(|n| std::str::from_utf8(n).is_ok()) {
        // UTF-8 byte order is code point order.
        names.sort_unstable();
    } else {
        names.sort_by_cached_key(|n| decode_surrogateescape(n));
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
    label_or_none(osbuild_sys::fs::get_xattr(fd, SELINUX_XATTR), path)
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
    label_or_none(
        osbuild_sys::fs::get_xattr_nofollow(&c_path, SELINUX_XATTR),
        path,
    )
}

fn label_or_none(
    label: Result<Vec<u8>, Errno>,
    path: &Path,
) -> Result<Option<Vec<u8>>, StoreError> {
    match label {
        Ok(label) => Ok(Some(label)),
        Err(Errno::ENODATA | Errno::ENOTSUP) => Ok(None),
        Err(e) => Err(StoreError::io("read the SELinux label of", path, e.into())),
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
