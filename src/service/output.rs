//! Getting committed objects to a client without root writing into a path the client names:
//! a read-only descriptor of one file, or a tar stream into a descriptor the client passes.
//!
//! Paths inside an object are walked one component at a time with `O_NOFOLLOW`, so neither
//! `..` nor a symlink inside the object can lead outside it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::error::{Error, Result};
use crate::id::ObjectId;
use crate::store::Store;

/// The committed directory of `id`, or NoSuchObject.
fn object_dir(store: &Store, id: &str) -> Result<(ObjectId, PathBuf)> {
    let oid = ObjectId::parse(id).map_err(|e| Error::NoSuchObject(e.to_string()))?;
    if !store.contains(&oid) {
        return Err(Error::NoSuchObject(format!(
            "no object {oid} in the store (osbuildctl objects lists them)"
        )));
    }
    let dir = store.root().join("refs").join(oid.as_str());
    Ok((oid, dir))
}

/// The components of a relative path, refusing anything that could leave the object.
pub(crate) fn components(path: &str) -> Result<Vec<&str>> {
    let bad = |why: &str| Error::NoSuchObject(format!("invalid path '{path}': {why}"));
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative to the object"));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for c in &parts {
        if *c == "." || *c == ".." {
            return Err(bad("'.' and '..' are not allowed"));
        }
    }
    if parts.is_empty() {
        return Err(bad("names no file"));
    }
    Ok(parts)
}

/// Opens the regular file `path` of object `id` read-only.
pub fn open(store: &Store, id: &str, path: &str) -> Result<OwnedFd> {
    let parts = components(path)?;
    let (oid, dir) = object_dir(store, id)?;
    let missing = || Error::NoSuchObject(format!("no regular file '{path}' in {oid}"));
    let mut fd = openat(
        AT_FDCWD,
        &dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| missing())?;
    let (last, dirs) = parts.split_last().ok_or_else(missing)?;
    for c in dirs {
        fd = openat(
            &fd,
            *c,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| missing())?;
    }
    let file = openat(
        &fd,
        *last,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|_| missing())?;
    let st = fstat(&file).map_err(|_| missing())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(missing());
    }
    Ok(file)
}

/// Starts `tar` writing object `id` into `fd`. The caller waits for it with [`wait`].
pub fn export(store: &Store, id: &str, fd: OwnedFd) -> Result<Child> {
    let (oid, dir) = object_dir(store, id)?;
    tracing::debug!("tar of {oid} into fd {}", fd.as_raw_fd());
    let mut cmd = Command::new("tar");
    // Only the client's descriptor (as stdout): not another client's, received meanwhile.
    osbuild_sys::process::inherit_only(&mut cmd, Vec::new());
    cmd.arg("--create")
        .arg("--numeric-owner")
        .arg("--file=-")
        .arg("--directory")
        .arg(&dir)
        .arg(".")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::from(fd))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run tar: {e}")))
}

/// Waits for an export.
pub fn wait(child: Child) -> Result<()> {
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Failed(format!("waiting for tar: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        tracing::warn!("export failed: tar {}: {err}", out.status);
        Err(Error::Failed(format!(
            "the export stopped ({}); was the reading end closed?",
            out.status
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_object_are_refused() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("disk.img", Some(&["disk.img"])),
            ("a/b/c.txt", Some(&["a", "b", "c.txt"])),
            ("a//b", Some(&["a", "b"])),
            ("", None),
            ("/etc/shadow", None),
            ("../../etc/shadow", None),
            ("a/../b", None),
            ("./a", None),
            ("/", None),
        ];
        for (path, want) in cases {
            match (components(path), want) {
                (Ok(got), Some(want)) => assert_eq!(&got[..], *want, "{path}"),
                (Err(Error::NoSuchObject(m)), None) => {
                    assert!(m.starts_with(&format!("invalid path '{path}'")), "{m}")
                }
                (got, want) => panic!("{path}: {got:?} vs {want:?}"),
            }
        }
    }
}
