//! `.deb` files with their data uncompressed, made ahead of the dpkg run that unpacks them.
//!
//! dpkg spends about half of a kernel image's unpack decompressing it (411 MB of modules out
//! of 70 MB of xz). The kernels are unpacked last (see `kernels_last`), after the other
//! packages are configured: a serial run of maintainer scripts that leaves a core idle. That
//! core rewrites each kernel `.deb` with the same members but `data.tar` stored plain (the
//! same tar, byte for byte, as `dpkg-deb --fsys-tarfile` gives it), so that the later unpack
//! only writes files. dpkg records nothing of the archive itself, so the tree is the same.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::JoinHandle;

use crate::command;
use crate::error::StageError;

/// The `ar` archive's magic and the length of a member header.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

/// Plain copies of some `.deb`s, written on a thread of their own into a directory that is
/// removed (with whatever is in it) when this is dropped.
pub struct Ahead {
    dir: PathBuf,
    work: Option<JoinHandle<Vec<String>>>,
}

impl Ahead {
    /// Starts writing `dir/NAME` for each `(NAME, source .deb)` of `debs`; `dir` is created.
    pub fn start(dir: PathBuf, debs: Vec<(String, PathBuf)>) -> Result<Self, StageError> {
        fs::create_dir(&dir)
            .map_err(|e| StageError::Other(format!("creating {}: {e}", dir.display())))?;
        let out = dir.clone();
        let work = std::thread::spawn(move || {
            debs.into_iter()
                .filter(|(name, src)| match repack(src, &out.join(name)) {
                    Ok(()) => true,
                    Err(e) => {
                        // Only a loss of time: dpkg unpacks the original instead.
                        println!("unpacking {name} from its compressed archive: {e}");
                        let _ = fs::remove_file(out.join(name));
                        false
                    }
                })
                .map(|(name, _)| name)
                .collect()
        });
        Ok(Self {
            dir,
            work: Some(work),
        })
    }

    /// Waits until every copy is written: the names of those that were.
    pub fn finish(&mut self) -> Vec<String> {
        self.work
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.finish();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Writes `dst`: the `.deb` `src` with its `data.tar.*` member replaced by the plain tar.
pub fn repack(src: &Path, dst: &Path) -> Result<(), String> {
    let members = members(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    let data = members
        .iter()
        .position(|m| m.name.starts_with("data.tar"))
        .ok_or_else(|| format!("{} has no data.tar member", src.display()))?;
    let mut input = File::open(src).map_err(|e| e.to_string())?;
    let mut out = File::create(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
    let write_err = |e: io::Error| format!("writing {}: {e}", dst.display());
    out.write_all(AR_MAGIC).map_err(write_err)?;
    for m in &members[..data] {
        input
            .seek(SeekFrom::Start(m.offset))
            .map_err(|e| e.to_string())?;
        let padded = AR_HEADER as u64 + m.size + m.size % 2;
        io::copy(&mut (&mut input).take(padded), &mut out).map_err(write_err)?;
    }
    // The plain tar's size is known once it is written: its header is written again then.
    let header_at = out.stream_position().map_err(write_err)?;
    out.write_all(&header("data.tar", &members[data].date, 0))
        .map_err(write_err)?;
    let size = plain_tar(src, &mut out)?;
    if size % 2 == 1 {
        out.write_all(b"\n").map_err(write_err)?;
    }
    out.seek(SeekFrom::Start(header_at)).map_err(write_err)?;
    out.write_all(&header("data.tar", &members[data].date, size))
        .map_err(write_err)?;
    Ok(())
}

/// `dpkg-deb --fsys-tarfile SRC` into `out`: the number of bytes.
fn plain_tar(src: &Path, out: &mut File) -> Result<u64, String> {
    let mut cmd = command::tool("dpkg-deb");
    cmd.arg("--fsys-tarfile")
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("dpkg-deb: {e}"))?;
    let copied = child
        .stdout
        .take()
        .map(|mut tar| io::copy(&mut tar, out))
        .unwrap_or(Ok(0));
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "dpkg-deb --fsys-tarfile: {}: {}",
            command::describe_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    copied.map_err(|e| format!("writing the plain tar: {e}"))
}

/// One member of an `ar` archive: its name, its header's date field, where its header
/// starts and its size.
struct Member {
    name: String,
    date: [u8; 12],
    offset: u64,
    size: u64,
}

/// The members of the `ar` archive `path`, in order.
fn members(path: &Path) -> io::Result<Vec<Member>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < AR_MAGIC.len() as u64 {
        return Err(bad("not an ar archive"));
    }
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic)?;
    if &magic != AR_MAGIC {
        return Err(bad("not an ar archive"));
    }
    let mut found = Vec::new();
    let mut offset = AR_MAGIC.len() as u64;
    while offset + (AR_HEADER as u64) <= len {
        let mut h = [0u8; AR_HEADER];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut h)?;
        if &h[58..60] != b"`\n" {
            return Err(bad("a member header without its end mark"));
        }
        let field = |r: std::ops::Range<usize>| String::from_utf8_lossy(&h[r]).trim().to_owned();
        let size: u64 = field(48..58)
            .parse()
            .map_err(|_| bad("a member size that is not a number"))?;
        let name = field(0..16).trim_end_matches('/').to_owned();
        let mut date = [0u8; 12];
        date.copy_from_slice(&h[16..28]);
        found.push(Member {
            name,
            date,
            offset,
            size,
        });
        offset += AR_HEADER as u64 + size + size % 2;
    }
    Ok(found)
}

/// An `ar` member header: `name`, the date field given, owner 0:0, mode 100644, `size`.
fn header(name: &str, date: &[u8; 12], size: u64) -> [u8; AR_HEADER] {
    let mut h = [b' '; AR_HEADER];
    let mut put = |at: usize, width: usize, value: &[u8]| {
        h[at..at + value.len().min(width)].copy_from_slice(&value[..value.len().min(width)]);
    };
    put(0, 16, name.as_bytes());
    put(16, 12, date);
    put(28, 6, b"0");
    put(34, 6, b"0");
    put(40, 8, b"100644");
    put(48, 10, size.to_string().as_bytes());
    put(58, 2, b"`\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dpkg_deb(args: &[&std::ffi::OsStr]) -> Vec<u8> {
        let out = std::process::Command::new("dpkg-deb")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A package built by dpkg-deb (xz data, odd-sized members), repacked: the same control
    /// fields and the same data tar, byte for byte, now stored plain.
    #[test]
    fn a_repacked_deb_holds_the_same_tar_uncompressed() {
        if std::process::Command::new("dpkg-deb")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipping: no dpkg-deb");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pkg");
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc/t")).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: x <x@y>\nDescription: t\n",
        )
        .unwrap();
        fs::write(root.join("usr/share/doc/t/odd"), "seven\n\n").unwrap();
        fs::write(root.join("usr/share/doc/t/big"), "x".repeat(100_001)).unwrap();
        let deb = dir.path().join("t.deb");
        dpkg_deb(&[
            "-Zxz".as_ref(),
            "--build".as_ref(),
            root.as_os_str(),
            deb.as_os_str(),
        ]);
        let plain = dir.path().join("t-plain.deb");
        repack(&deb, &plain).unwrap();

        let names: Vec<String> = members(&plain)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar"]);
        let tar = |p: &Path| dpkg_deb(&["--fsys-tarfile".as_ref(), p.as_os_str()]);
        assert_eq!(tar(&plain), tar(&deb));
        let control = |p: &Path| dpkg_deb(&["--field".as_ref(), p.as_os_str()]);
        assert_eq!(control(&plain), control(&deb));
        // The plain member is the tar itself.
        let m = members(&plain).unwrap();
        assert_eq!(m[2].size, tar(&deb).len() as u64);
    }

    #[test]
    fn what_is_not_a_deb_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let not = dir.path().join("not.deb");
        fs::write(&not, "hello").unwrap();
        let err = repack(&not, &dir.path().join("out.deb")).unwrap_err();
        assert!(err.contains("not an ar archive"), "{err}");
    }
}
