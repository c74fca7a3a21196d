//! Our treesum against an independent Python implementation of the v10 algorithm, on trees
//! with odd modes, owners and names. Needs python3; ownership changes need root (skipped
//! otherwise, with a printed reason).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use osbuild::store::{treesum, StoreError};
use osbuild_sys::is_root as root;

/// The v10 algorithm, written from its description: sorted entries, per-entry metadata JSON,
/// then content / link target / recursion.
const PYTHON: &str = r#"
import hashlib, json, os, stat, sys

def walk(h, path):
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        st = os.lstat(full)
        meta = {"name": name, "mode": st.st_mode, "uid": st.st_uid,
                "gid": st.st_gid, "size": st.st_size}
        try:
            meta["selinux"] = os.fsdecode(os.getxattr(full, "security.selinux", follow_symlinks=False))
        except OSError:
            pass
        h.update(json.dumps(meta, sort_keys=True).encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(full).encode())
        elif stat.S_ISDIR(st.st_mode):
            walk(h, full)
        elif stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                while True:
                    block = f.read(65536)
                    if not block:
                        break
                    h.update(block)
        else:
            raise ValueError("unexpected file type")

h = hashlib.sha256()
walk(h, sys.argv[1])
print(h.hexdigest())
"#;

fn python_treesum(path: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYTHON)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("osbuild-treesum-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn file(dir: &Path, name: &[u8], content: &[u8], mode: u32) {
    let p = dir.join(OsStr::from_bytes(name));
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn treesum_matches_python_on_odd_trees() {
    let dir = scratch();
    let t = dir.path();
    // Names Python sorts differently from bytes: U+E000 after an undecodable 0xff byte.
    let cases: Vec<(&[u8], &[u8], u32)> = vec![
        (b"a", b"hello\n", 0o644),
        (b"empty", b"", 0o600),
        (b"setuid", b"#!/bin/true\n", 0o4755),
        (b"nothing", b"0000", 0o000),
        (b"caf\xc3\xa9 \xf0\x9f\x98\x80", b"unicode", 0o644),
        (b"bad\xff", b"latin1", 0o644),
        (b"\xee\x80\x80private", b"pua", 0o644),
        (b"quote\"back\\slash\ttab\x7f", b"esc", 0o640),
    ];
    for (name, content, mode) in &cases {
        file(t, name, content, *mode);
    }
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    file(t, b"big", &big, 0o644);
    std::os::unix::fs::symlink("a", t.join("l")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", t.join("dangling")).unwrap();
    std::fs::create_dir_all(t.join("sub/deeper")).unwrap();
    file(&t.join("sub/deeper"), b"x", b"x", 0o644);
    std::fs::create_dir(t.join("sticky")).unwrap();
    std::fs::set_permissions(t.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(t.join("emptydir")).unwrap();
    if root() {
        std::os::unix::fs::chown(t.join("a"), Some(1000), Some(2000)).unwrap();
        std::os::unix::fs::lchown(t.join("l"), Some(7), Some(8)).unwrap();
        std::os::unix::fs::chown(t.join("sub"), Some(65534), Some(65534)).unwrap();
    } else {
        eprintln!("not root: owners other than the current user are not covered");
    }
    let ours = treesum(t).unwrap();
    assert_eq!(ours.as_str(), python_treesum(t));
}

#[test]
fn treesum_vectors() {
    let dir = scratch();
    let t = dir.path();
    file(t, b"a", b"hello\n", 0o644);
    file(t, b"empty", b"", 0o600);
    std::os::unix::fs::symlink("a", t.join("l")).unwrap();
    if root() {
        // The vectors were made by root: all uid/gid 0.
        assert_eq!(
            treesum(t).unwrap().as_str(),
            "a772e1fa90503073dac848105a156bab71004db2f3c5310fb7372ab116ec037d"
        );
        file(t, b"b", b"x", 0o644);
        assert_eq!(
            treesum(t).unwrap().as_str(),
            "dc1c640168cb787827e4bb059d64d66fe264f9722af6cf5b566b66d0eb5afea7"
        );
    } else {
        eprintln!("skipped the vector values: they need files owned by uid 0");
    }
    assert_eq!(treesum(t).unwrap().as_str(), python_treesum(t));
}

#[test]
fn treesum_rejects_fifo_naming_the_path() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("dev")).unwrap();
    let fifo = dir.path().join("dev/pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = treesum(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::UnexpectedFileType { kind: "fifo", .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "unexpected file type (fifo) at {}: a committed tree may only hold directories, regular files and symlinks",
            fifo.display()
        )
    );
}

/// Sparse files (holes at the start, between data, at the end, nothing but a hole) and a
/// directory of many files of mixed sizes, hashed in parallel: the same digest as Python's,
/// which reads every byte in order.
#[test]
fn treesum_matches_python_on_sparse_files_and_many_entries() {
    use std::os::unix::fs::FileExt;
    let dir = scratch();
    let t = dir.path();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let sparse = |name: &str, parts: &[(u64, &[u8])], len: u64| {
        let f = std::fs::File::create(t.join(name)).unwrap();
        for (at, bytes) in parts {
            f.write_all_at(bytes, *at).unwrap();
        }
        f.set_len(len).unwrap();
    };
    const MIB: u64 = 1 << 20;
    sparse("holes", &[(3 * MIB, &data), (9 * MIB, b"middle")], 20 * MIB);
    sparse("only-a-hole", &[], 5 * MIB);
    sparse("data-then-hole", &[(0, &data)], 4 * MIB);
    sparse(
        "hole-then-data",
        &[(7 * MIB + 5, &data)],
        7 * MIB + 5 + 300_000,
    );
    std::fs::create_dir(t.join("many")).unwrap();
    for i in 0..400u32 {
        let len = (i as usize * 997) % 70_000;
        file(
            &t.join("many"),
            format!("f{i:03}").as_bytes(),
            &data[..len],
            0o644,
        );
        if i % 50 == 0 {
            std::fs::create_dir(t.join(format!("many/d{i:03}"))).unwrap();
            file(
                &t.join(format!("many/d{i:03}")),
                b"x",
                &data[i as usize..],
                0o600,
            );
        }
    }
    let ours = treesum(t).unwrap();
    assert_eq!(ours.as_str(), python_treesum(t));
}

/// Files around the sizes where the readers cut their chunks (256 KiB) and a file larger than
/// the read-ahead (16 MiB) before many small ones: the same digest as Python's, and (as root,
/// all files owned by uid 0) a fixed value, so a change of how files are read cannot move a
/// single byte of what is hashed.
#[test]
fn treesum_pinned_across_chunk_and_read_ahead_sizes() {
    let dir = scratch();
    let t = dir.path();
    let pattern = |len: usize, seed: u32| -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    };
    const CHUNK: usize = 256 * 1024;
    for (i, len) in [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 70]
        .into_iter()
        .enumerate()
    {
        file(
            t,
            format!("c{i}").as_bytes(),
            &pattern(len, i as u32),
            0o644,
        );
    }
    file(t, b"d-big", &pattern(20 << 20, 99), 0o600);
    for i in 0..300u32 {
        let len = (i as usize * 331) % 5000;
        file(t, format!("e{i:03}").as_bytes(), &pattern(len, i), 0o644);
    }
    let ours = treesum(t).unwrap();
    assert_eq!(ours.as_str(), python_treesum(t));
    if root() {
        // The value of the implementation before the read-ahead work, and of Python.
        assert_eq!(
            ours.as_str(),
            "9c2152be329b0f3c5edf44153f70a6e1db0cfcd5f15d4a0674e06ff9fc676c05"
        );
    } else {
        eprintln!("skipped the pinned value: it needs files owned by uid 0");
    }
}

/// Batches (up to 64 entries of one directory) bigger than the read-ahead (16 MiB), one behind
/// the other, and small files after them: readers far ahead wait for the hasher at every
/// chunk while it takes an earlier batch. The digest is Python's, and it comes within a
/// deadline.
#[test]
fn treesum_of_batches_bigger_than_the_read_ahead() {
    let dir = scratch();
    let t = dir.path();
    for (d, seed) in [("a", 1u32), ("b", 2), ("c", 3)] {
        std::fs::create_dir(t.join(d)).unwrap();
        let data: Vec<u8> = (0..(18u32 << 20))
            .map(|i| (i.wrapping_mul(2_246_822_519).wrapping_add(seed) >> 11) as u8)
            .collect();
        file(&t.join(d), b"big", &data, 0o644);
        for i in 0..100u32 {
            let len = (i as usize * 7919) % 40_000;
            file(
                &t.join(d),
                format!("s{i:03}").as_bytes(),
                &data[..len],
                0o644,
            );
        }
    }
    let root = t.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(treesum(&root)));
    let ours = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("treesum finishes within two minutes")
        .unwrap();
    assert_eq!(ours.as_str(), python_treesum(t));
}
