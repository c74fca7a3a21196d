//! The runner's set-up of a build root, once per build root. osbuild's runners run ldconfig,
//! systemd-sysusers and systemd-tmpfiles (by flavour) in every sandbox; here the engine runs
//! them once, in a sandbox of their own (`RUNNER --set-up`: a [`ModuleKind::Runner`] run),
//! before any module of a pipeline, into the `/etc` its modules share, and keeps that `/etc`
//! in the store for later builds on the same build root. A module's output is then its own
//! alone, its time its own, and a set-up failure is named as such.
//!
//! [`set_up_key`] names what a set-up depends on: the runner (its name and its file, so a new
//! osbuild sets up again) and the build root: a committed object by its id (its content is
//! fixed), the host by the state of the directories the set-up reads (library directories,
//! `sysusers.d`, `tmpfiles.d` and their files, the CA and crypto-policy sources). Package
//! managers replace files by renaming, which changes the directory; a file edited in place in a
//! library directory goes unnoticed until something else there changes.
//!
//! [`ModuleKind::Runner`]: crate::modules::ModuleKind::Runner

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::id::SetUpKey;

/// What the host's set-up reads, relative to the build root (besides every multiarch library
/// directory `usr/lib/*-linux-*` and the files of the `.d` directories).
const READ_BY_SET_UP: &[&str] = &[
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/lib",
    "usr/lib32",
    "usr/lib64",
    "lib",
    "lib64",
    "usr/share/ca-certificates",
    "usr/share/pki/ca-trust-source",
    "usr/share/pki/ca-trust-source/anchors",
    "usr/share/crypto-policies/back-ends/DEFAULT",
];

/// The configuration directories whose files are each part of the key.
const CONFIG_DIRS: &[&str] = &["usr/lib/sysusers.d", "usr/lib/tmpfiles.d"];

/// The build root a set-up is for.
#[derive(Debug, Clone, Copy)]
pub enum SetUpRoot<'a> {
    /// The host's `/` (or any tree read from disk at `path`).
    Host(&'a Path),
    /// A committed object, by its id.
    Object(&'a str),
}

/// The key of the set-up `runner` (a file name in `libdir/runners`) makes in `root`.
pub fn set_up_key(libdir: &Path, runner: &str, root: SetUpRoot<'_>) -> SetUpKey {
    let mut text = String::from("osbuild build root set-up 1\n");
    let _ = writeln!(text, "runner {runner}");
    stamp(&mut text, &libdir.join("runners").join(runner));
    match root {
        SetUpRoot::Object(id) => {
            let _ = writeln!(text, "object {id}");
        }
        SetUpRoot::Host(root) => host_state(&mut text, root),
    }
    SetUpKey::from_digest(&Sha256::digest(text.as_bytes()))
}

/// Appends the state of what the set-up reads under `root`.
fn host_state(text: &mut String, root: &Path) {
    for dir in READ_BY_SET_UP {
        stamp(text, &root.join(dir));
    }
    if let Ok(entries) = std::fs::read_dir(root.join("usr/lib")) {
        let mut multiarch: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.contains("-linux-"))
            .collect();
        multiarch.sort();
        for name in multiarch {
            stamp(text, &root.join("usr/lib").join(name));
        }
    }
    for dir in CONFIG_DIRS {
        let dir = root.join(dir);
        stamp(text, &dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files {
            stamp(text, &file);
        }
    }
}

/// Appends one line naming `path`'s identity and times (symlinks followed), or its absence.
fn stamp(text: &mut String, path: &Path) {
    let _ = match std::fs::metadata(path) {
        Ok(m) => writeln!(
            text,
            "{} {} {} {} {}.{} {}.{}",
            path.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
        Err(_) => writeln!(text, "{} -", path.display()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in ["usr/lib/x86_64-linux-gnu", "usr/lib/sysusers.d", "usr/bin"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("usr/lib/sysusers.d/a.conf"), "u a\n").unwrap();
        root
    }

    #[test]
    fn the_key_follows_what_the_set_up_reads() {
        let lib = tempfile::tempdir().unwrap();
        std::fs::create_dir(lib.path().join("runners")).unwrap();
        let root = fake_root();
        let key = || {
            set_up_key(
                lib.path(),
                "org.osbuild.linux",
                SetUpRoot::Host(root.path()),
            )
        };
        let first = key();
        assert_eq!(first, key(), "same state, same key");

        // A library added (the multiarch directory changes), a sysusers file rewritten in
        // place (its own times change): each is a new set-up.
        std::fs::write(root.path().join("usr/lib/x86_64-linux-gnu/libx.so.1"), "").unwrap();
        let second = key();
        assert_ne!(first, second);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.path().join("usr/lib/sysusers.d/a.conf"), "u b\n").unwrap();
        assert_ne!(second, key());

        // Another runner, or a new runner binary, is another set-up.
        let third = key();
        assert_ne!(
            third,
            set_up_key(
                lib.path(),
                "org.osbuild.debian12",
                SetUpRoot::Host(root.path())
            )
        );
        std::fs::write(lib.path().join("runners/org.osbuild.linux"), "v2").unwrap();
        assert_ne!(third, key());
    }

    #[test]
    fn an_object_is_named_by_its_id() {
        let lib = tempfile::tempdir().unwrap();
        let a = set_up_key(lib.path(), "org.osbuild.linux", SetUpRoot::Object("aa"));
        let b = set_up_key(lib.path(), "org.osbuild.linux", SetUpRoot::Object("bb"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            set_up_key(lib.path(), "org.osbuild.linux", SetUpRoot::Object("aa"))
        );
    }
}
