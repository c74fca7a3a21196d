//! The object store with real mounts (needs root). Each test runs its mount work in a thread
//! that entered a private mount namespace, so nothing can leak to the host; crash and
//! concurrency tests re-run this binary as child processes (selected by `STORE_TEST_CHILD`).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use osbuild::id::ObjectId;
use osbuild::mount::enter_private_namespace;
use osbuild::store::{treesum, ObjectKind, Store, StoreError};

const CHILD_ENV: &str = "STORE_TEST_CHILD";

fn is_root() -> bool {
    if osbuild_sys::is_root() {
        true
    } else {
        eprintln!("skipped: needs root (mounts and namespaces)");
        false
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("osbuild-store-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn id(n: u8) -> ObjectId {
    ObjectId::parse(&format!("{n:02x}").repeat(32)).unwrap()
}

fn tmp_entries(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn write_file(dir: &Path, name: &str, content: &[u8], mode: u32) {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn vector_tree(dir: &Path) {
    write_file(dir, "a", b"hello\n", 0o644);
    write_file(dir, "empty", b"", 0o600);
    std::os::unix::fs::symlink("a", dir.join("l")).unwrap();
}

const VECTOR_1: &str = "a772e1fa90503073dac848105a156bab71004db2f3c5310fb7372ab116ec037d";
const VECTOR_2: &str = "dc1c640168cb787827e4bb059d64d66fe264f9722af6cf5b566b66d0eb5afea7";

fn mounts_under(dir: &Path, mountinfo: &str) -> Vec<String> {
    let text = std::fs::read_to_string(mountinfo).unwrap();
    let d = dir.to_str().unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(d))
        .map(str::to_owned)
        .collect()
}

#[test]
fn privileged_commit_layout_vectors_and_snapshots() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    common::in_private_namespace(|| {
        let store = Store::open(dir.path()).unwrap();
        for sub in ["objects", "refs", "tmp", "sources"] {
            assert!(store.root().join(sub).is_dir(), "{sub}");
        }
        let obj = store.new_object(None).unwrap();
        {
            let w = obj.write().unwrap();
            vector_tree(w.path());
        }
        let ts1 = store.commit(&obj, &id(1), ObjectKind::Tree).unwrap();
        assert_eq!(ts1.as_str(), VECTOR_1);
        assert_eq!(obj.base(), Some(id(1)));
        let link = std::fs::read_link(store.root().join("refs").join(id(1).as_str())).unwrap();
        assert_eq!(link, Path::new("../objects").join(VECTOR_1));
        assert_eq!(
            std::fs::read(store.root().join("objects").join(VECTOR_1).join("a")).unwrap(),
            b"hello\n"
        );
        assert!(store.contains(&id(1)));
        assert!(!store.contains(&id(2)));
        assert_eq!(store.treesum_of(&id(1)), Some(ts1.clone()));

        // Reading an unmodified committed object shows the committed content, read-only.
        {
            let r = obj.read().unwrap();
            assert_eq!(std::fs::read(r.path().join("a")).unwrap(), b"hello\n");
            let err = std::fs::write(r.path().join("new"), b"x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        }
        // Snapshot semantics: writing again copies the committed tree; the commit is untouched.
        {
            let w = obj.write().unwrap();
            assert_eq!(std::fs::read(w.path().join("a")).unwrap(), b"hello\n");
            assert_eq!(
                std::fs::read_link(w.path().join("l")).unwrap(),
                Path::new("a")
            );
            write_file(w.path(), "b", b"x", 0o644);
        }
        let ts2 = store.commit(&obj, &id(2), ObjectKind::Output).unwrap();
        assert_eq!(ts2.as_str(), VECTOR_2);
        assert!(!store
            .root()
            .join("objects")
            .join(VECTOR_1)
            .join("b")
            .exists());
        assert_eq!(
            treesum(&store.root().join("objects").join(VECTOR_1)).unwrap(),
            ts1
        );

        // A new object based on a committed one.
        let obj2 = store.new_object(Some(&id(1))).unwrap();
        assert_eq!(obj2.base(), Some(id(1)));
        {
            let w = obj2.write().unwrap();
            write_file(w.path(), "b", b"x", 0o644);
        }
        // Same content as id(2): deduplicated into the existing object.
        let ts3 = store.commit(&obj2, &id(3), ObjectKind::Tree).unwrap();
        assert_eq!(ts3, ts2);
        let objects = std::fs::read_dir(store.root().join("objects"))
            .unwrap()
            .count();
        assert_eq!(objects, 2);
        // Committing an unchanged object just adds a ref.
        assert_eq!(store.commit(&obj2, &id(4), ObjectKind::Tree).unwrap(), ts2);

        let entries = store.list().unwrap();
        let ids: Vec<_> = entries.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, vec![id(1), id(2), id(3), id(4)]);
        assert_eq!(entries[1].kind, ObjectKind::Output);
        assert!(entries.iter().all(|e| e.size > 0));

        let missing = store.new_object(Some(&id(9))).unwrap_err();
        assert!(matches!(missing, StoreError::NoSuchObject(_)), "{missing}");
        drop(obj);
        drop(obj2);
        assert_eq!(tmp_entries(&store), Vec::<String>::new());
        assert_eq!(
            mounts_under(store.root(), "/proc/thread-self/mountinfo"),
            Vec::<String>::new()
        );
    });
}

#[test]
fn privileged_readers_xor_writer() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    common::in_private_namespace(|| {
        let store = Store::open(dir.path()).unwrap();
        let obj = store.new_object(None).unwrap();
        let r1 = obj.read().unwrap();
        let r2 = obj.read().unwrap();
        assert_ne!(r1.path(), r2.path());
        let e = obj.write().unwrap_err();
        assert_eq!(
            e.to_string(),
            "object is busy: readers are active; release it first"
        );
        let e = store.commit(&obj, &id(1), ObjectKind::Tree).unwrap_err();
        assert!(matches!(e, StoreError::Busy(_)), "{e}");
        drop(r1);
        drop(r2);
        let w = obj.write().unwrap();
        assert!(matches!(obj.read().unwrap_err(), StoreError::Busy(_)));
        assert!(matches!(obj.write().unwrap_err(), StoreError::Busy(_)));
        let e = store.commit(&obj, &id(1), ObjectKind::Tree).unwrap_err();
        assert_eq!(
            e.to_string(),
            "object is busy: a writer is active; release it first"
        );
        drop(w);
        store.commit(&obj, &id(1), ObjectKind::Tree).unwrap();
        // The host tree: "/" read-only.
        let host = store.host_tree().read().unwrap();
        assert!(host.path().join("etc").is_dir());
        assert_eq!(
            std::fs::write(host.path().join("osbuild-test"), b"x")
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EROFS)
        );
        drop(host);
        drop(obj);
        assert_eq!(tmp_entries(&store), Vec::<String>::new());
        assert!(mounts_under(store.root(), "/proc/thread-self/mountinfo").is_empty());
    });
}

#[test]
fn privileged_failed_and_dropped_objects_leave_nothing() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    common::in_private_namespace(|| {
        let store = Store::open(dir.path()).unwrap();
        let obj = store.new_object(None).unwrap();
        {
            let w = obj.write().unwrap();
            write_file(w.path(), "f", b"data", 0o644);
            nix::unistd::mkfifo(
                &w.path().join("pipe"),
                nix::sys::stat::Mode::from_bits_truncate(0o644),
            )
            .unwrap();
        }
        let e = store.commit(&obj, &id(1), ObjectKind::Tree).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("unexpected file type (fifo) at "), "{msg}");
        assert!(msg.contains("/pipe"), "{msg}");
        assert!(!store.contains(&id(1)));
        assert_eq!(
            std::fs::read_dir(store.root().join("objects"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(store.root().join("refs"))
                .unwrap()
                .count(),
            0
        );
        drop(obj);
        // Dropped while never committed, and dropped while a panic unwinds.
        let obj = store.new_object(None).unwrap();
        write_file(obj.write().unwrap().path(), "f", b"x", 0o644);
        drop(obj);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let obj = store.new_object(None).unwrap();
            let _w = obj.write().unwrap();
            panic!("stage failed");
        }));
        assert!(panicked.is_err());
        let t = store.tempdir("scratch").unwrap();
        assert!(t.path().starts_with(store.root().join("tmp")));
        drop(t);
        assert_eq!(tmp_entries(&store), Vec::<String>::new());
        assert!(mounts_under(store.root(), "/proc/thread-self/mountinfo").is_empty());
        assert!(matches!(
            store.tempdir("../x"),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.sources_dir("../etc"),
            Err(StoreError::InvalidName { .. })
        ));
        assert_eq!(
            store.sources_dir("org.osbuild.files").unwrap(),
            store.root().join("sources/org.osbuild.files")
        );
    });
}

#[test]
fn privileged_copy_preserves_metadata() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    common::in_private_namespace(|| {
        let store = Store::open(dir.path()).unwrap();
        let obj = store.new_object(None).unwrap();
        {
            let w = obj.write().unwrap();
            let p = w.path();
            std::fs::create_dir(p.join("d")).unwrap();
            write_file(&p.join("d"), "suid", b"#!/bin/sh\n", 0o4755);
            write_file(p, "secret", b"s", 0o000);
            std::fs::create_dir(p.join("sticky")).unwrap();
            std::fs::set_permissions(p.join("sticky"), std::fs::Permissions::from_mode(0o1777))
                .unwrap();
            std::os::unix::fs::chown(p.join("secret"), Some(1234), Some(5678)).unwrap();
            std::fs::hard_link(p.join("secret"), p.join("secret-link")).unwrap();
            std::os::unix::fs::symlink("/nowhere", p.join("dangling")).unwrap();
            std::os::unix::fs::lchown(p.join("dangling"), Some(42), Some(43)).unwrap();
        }
        let ts = store.commit(&obj, &id(1), ObjectKind::Tree).unwrap();
        let copy = store.new_object(Some(&id(1))).unwrap();
        let w = copy.write().unwrap();
        let p = w.path();
        let cases: [(&str, u32, u32, u32); 5] = [
            ("d/suid", 0o104755, 0, 0),
            ("secret", 0o100000, 1234, 5678),
            ("sticky", 0o41777, 0, 0),
            ("dangling", 0o120777, 42, 43),
            ("d", 0o40755, 0, 0),
        ];
        for (name, mode, uid, gid) in cases {
            let m = std::fs::symlink_metadata(p.join(name)).unwrap();
            assert_eq!((m.mode(), m.uid(), m.gid()), (mode, uid, gid), "{name}");
        }
        let a = std::fs::metadata(p.join("secret")).unwrap();
        let b = std::fs::metadata(p.join("secret-link")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link kept");
        assert_eq!(treesum(p).unwrap(), ts);
    });
}

#[test]
fn privileged_prune_lru_and_held_objects() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    common::in_private_namespace(|| {
        let store = Store::open(dir.path()).unwrap();
        for n in 1..=3u8 {
            let obj = store.new_object(None).unwrap();
            write_file(obj.write().unwrap().path(), "f", &vec![n; 100_000], 0o644);
            store.commit(&obj, &id(n), ObjectKind::Tree).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Use 1 again: 2 is now the least recently used.
        drop(store.new_object(Some(&id(1))).unwrap());
        let sizes: u64 = store.list().unwrap().iter().map(|e| e.size).sum();
        let one = store.list().unwrap()[0].size;
        let report = store.prune(sizes - one).unwrap();
        assert_eq!(report.removed, vec![id(2)]);
        assert_eq!(report.freed, one);
        assert!(!store.contains(&id(2)));
        assert!(store.contains(&id(1)) && store.contains(&id(3)));

        // Objects held by a live Object (as base) or a reader survive a prune to zero.
        let held = store.new_object(Some(&id(3))).unwrap();
        let reader = held.read().unwrap();
        let report = store.prune(0).unwrap();
        assert_eq!(report.removed, vec![id(1)]);
        assert_eq!(report.in_use, vec![id(3)]);
        assert!(store.contains(&id(3)));
        assert_eq!(
            std::fs::read(reader.path().join("f")).unwrap(),
            vec![3u8; 100_000]
        );
        drop(reader);
        drop(held);
        let report = store.prune(0).unwrap();
        assert_eq!(report.removed, vec![id(3)]);
        assert_eq!(report.remaining, 0);
        assert_eq!(
            std::fs::read_dir(store.root().join("objects"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(tmp_entries(&store), Vec::<String>::new());
    });
}

/// Child side of the crash and concurrency tests; does nothing unless started by them.
#[test]
fn child_helper() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(std::env::var("STORE_TEST_ROOT").unwrap());
    enter_private_namespace().unwrap();
    let store = Store::open(&root).unwrap();
    match role.as_str() {
        "hang-in-write" => {
            let obj = store.new_object(None).unwrap();
            let w = obj.write().unwrap();
            write_file(w.path(), "half", b"written", 0o644);
            println!("READY {}", nix::unistd::gettid());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        worker => {
            let me: u8 = worker.strip_prefix("commit-").unwrap().parse().unwrap();
            for round in 0..20u8 {
                let obj = store.new_object(None).unwrap();
                {
                    let w = obj.write().unwrap();
                    // Shared content and shared ids between the workers, plus own ones.
                    write_file(w.path(), "shared", &[round % 5; 5000], 0o644);
                    if round % 2 == 1 {
                        write_file(w.path(), "own", &[me, round], 0o644);
                    }
                }
                let shared_id = id(100 + round % 5);
                let own_id = id(10 * me + round % 10);
                store.commit(&obj, &own_id, ObjectKind::Tree).unwrap();
                if round % 2 == 0 {
                    store.commit(&obj, &shared_id, ObjectKind::Tree).unwrap();
                }
            }
        }
    }
}

fn child(role: &str, root: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("STORE_TEST_ROOT", root);
    c
}

/// Kills a child that a failing test would otherwise leave hanging.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn privileged_killed_writer_leaves_no_mount_and_next_open_cleans() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    let root = dir.path().canonicalize().unwrap();
    let mut proc = KillOnDrop(
        child("hang-in-write", &root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let proc = &mut proc.0;
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let tid = loop {
        let line = lines.next().expect("child output").unwrap();
        // The harness prints "test child_helper ... " before it on the same line.
        if let Some((_, t)) = line.split_once("READY ") {
            break t.trim().to_owned();
        }
    };
    let child_view = format!("/proc/{}/task/{tid}/mountinfo", proc.id());
    assert_eq!(
        mounts_under(&root, &child_view).len(),
        1,
        "the child's writer mount"
    );
    assert!(mounts_under(&root, "/proc/self/mountinfo").is_empty());
    assert!(mounts_under(&root, "/proc/1/mountinfo").is_empty());
    // A live child's tmp entry survives another process opening the store.
    let store = Store::open(&root).unwrap();
    assert_eq!(tmp_entries(&store).len(), 1);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proc.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    proc.wait().unwrap();
    assert!(mounts_under(&root, "/proc/self/mountinfo").is_empty());
    assert!(mounts_under(&root, "/proc/1/mountinfo").is_empty());
    assert_eq!(
        tmp_entries(&store).len(),
        1,
        "left behind by the dead child"
    );
    let store = Store::open(&root).unwrap();
    assert_eq!(tmp_entries(&store), Vec::<String>::new());
}

#[test]
fn privileged_two_processes_commit_in_parallel() {
    if !is_root() {
        return;
    }
    let dir = scratch();
    let root = dir.path().canonicalize().unwrap();
    let children: Vec<_> = [1, 2]
        .iter()
        .map(|n| child(&format!("commit-{n}"), &root).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let store = Store::open(&root).unwrap();
    let entries = store.list().unwrap();
    // 10 own ids per worker + 5 shared ones.
    assert_eq!(entries.len(), 25);
    for e in &entries {
        let path = root.join("objects").join(e.treesum.as_str());
        assert_eq!(
            treesum(&path).unwrap(),
            e.treesum,
            "object {} intact",
            e.treesum
        );
    }
    let refs = std::fs::read_dir(root.join("refs")).unwrap().count();
    assert_eq!(refs, 25);
    assert_eq!(tmp_entries(&store), Vec::<String>::new());
    assert!(mounts_under(&root, "/proc/self/mountinfo").is_empty());
}
