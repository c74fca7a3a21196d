//! The store's durability and repair, as root through the `osbuild` binary: objects flushed
//! before they are named, what no one will read swept at open, and `osbuild --verify` finding
//! and quarantining content that no longer matches its name.

mod common;

use std::path::Path;
use std::process::Command;

use common::{privileged, Env};
use serde_json::json;

/// A stage writing one file with `text` into the tree, checkpointed.
fn build_one(env: &Env, text: &str) -> String {
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.record", "options": {"text": text}}]}});
    let id = env.first_stage_id(&manifest);
    let out = env.osbuild(&["--checkpoint", &id], &manifest.to_string());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    id
}

fn verify(env: &Env) -> (i32, String) {
    let out = env
        .osbuild_cmd(&["--verify"])
        .output()
        .expect("running osbuild --verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn object_of(env: &Env, id: &str) -> String {
    let link = std::fs::read_link(env.store.join("refs").join(id)).unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn privileged_verify_quarantines_corrupt_objects_and_downloads() {
    if !privileged("privileged_verify_quarantines_corrupt_objects_and_downloads") {
        return;
    }
    let env = Env::new();
    let (good, bad) = (build_one(&env, "good"), build_one(&env, "bad"));
    let (good_ts, bad_ts) = (object_of(&env, &good), object_of(&env, &bad));
    let (code, text) = verify(&env);
    assert_eq!(
        (code, text.as_str()),
        (
            0,
            "checked 2 object(s) and 0 download(s): all match their names\n"
        )
    );

    // Damage: a byte of a committed file, a cached download, and a ref to a missing object.
    let args = env.store.join("objects").join(&bad_ts).join("args.json");
    let mut content = std::fs::read(&args).unwrap();
    content[0] ^= 0x20;
    std::fs::write(&args, content).unwrap();
    let cache = env.store.join("sources/org.osbuild.files");
    std::fs::create_dir_all(&cache).unwrap();
    let name = format!("sha256:{}", "ab".repeat(32));
    std::fs::write(cache.join(&name), b"not what the name says").unwrap();
    let dangling = "cd".repeat(32);
    std::os::unix::fs::symlink(
        format!("../objects/{}", "ef".repeat(32)),
        env.store.join("refs").join(&dangling),
    )
    .unwrap();

    let (code, text) = verify(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "corrupt: objects/{bad_ts} (its content hashes to "
        )),
        "{text}"
    );
    assert!(text.contains(", 1 ref(s) removed"), "{text}");
    assert!(
        text.contains(&format!(
            "corrupt: sources/org.osbuild.files/{name} (its content hashes to sha256:"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("dangling ref: refs/{dangling}")),
        "{text}"
    );
    assert!(
        text.ends_with("checked 2 object(s) and 1 download(s): 2 corrupt, 1 dangling ref(s)\n"),
        "{text}"
    );
    // Quarantined, refs gone, the good object untouched.
    let quarantine = env.store_entries("quarantine");
    assert_eq!(quarantine.len(), 2, "{quarantine:?}");
    assert!(quarantine
        .iter()
        .any(|q| q.starts_with(&format!("{bad_ts}."))));
    assert!(quarantine
        .iter()
        .any(|q| q.starts_with(&format!("org.osbuild.files-{name}."))));
    assert!(!env.store.join("refs").join(&bad).exists());
    assert!(!env.store.join("refs").join(&dangling).exists());
    assert!(!cache.join(&name).exists());
    assert_eq!(object_of(&env, &good), good_ts);

    // Clean again, and the next build makes the damaged object anew.
    assert_eq!(verify(&env).0, 0);
    build_one(&env, "bad");
    assert_eq!(object_of(&env, &bad), bad_ts);
    assert_eq!(verify(&env).0, 0);
}

#[test]
fn privileged_open_sweeps_unnamed_objects_and_dead_partial_downloads() {
    if !privileged("privileged_open_sweeps_unnamed_objects_and_dead_partial_downloads") {
        return;
    }
    let env = Env::new();
    let id = build_one(&env, "kept");
    // What a crash leaves: an object published but never named, partial downloads.
    let unnamed = env.store.join("objects").join("12".repeat(32));
    std::fs::create_dir(&unnamed).unwrap();
    std::fs::write(unnamed.join("f"), b"x").unwrap();
    let cache = env.store.join("sources/org.osbuild.files");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(".unverified-dead"), b"half").unwrap();
    // A download still going on (its downloader holds the lock) is left alone.
    let live = std::fs::File::create(cache.join(".unverified-live")).unwrap();
    live.lock().unwrap();

    assert_eq!(verify(&env).0, 0);
    assert!(!unnamed.exists(), "an object no ref names is swept");
    assert!(!cache.join(".unverified-dead").exists());
    assert!(cache.join(".unverified-live").exists());
    assert!(env.store.join("refs").join(&id).exists());
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
}

/// An object is flushed (syncfs) before it is renamed to its name, and its directory entry
/// (fsync of objects/) before its ref is written: after a power cut, a name never points at a
/// partly written tree.
#[test]
fn privileged_objects_are_durable_before_they_are_named() {
    if !privileged("privileged_objects_are_durable_before_they_are_named") {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is missing (.ci/run installs it)");
    }
    let env = Env::new();
    let manifest = json!({"pipeline": {"stages": [
        {"name": "org.osbuild.test.record", "options": {"text": "durable"}}]}});
    let id = env.first_stage_id(&manifest);
    let log = env.dir.path().join("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-qq",
        "-e",
        "trace=syncfs,fsync,rename,renameat,renameat2",
        "-o",
    ])
    .arg(&log)
    .arg(env!("CARGO_BIN_EXE_osbuild"))
    .arg("--store")
    .arg(&env.store)
    .arg("--libdir")
    .arg(&env.libdir)
    .args(["--checkpoint", &id, "-"]);
    let out = common::run_with_stdin(cmd, &manifest.to_string());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let ts = object_of(&env, &id);
    let position = |what: &dyn Fn(&str) -> bool, name: &str| {
        calls
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("no {name} in:\n{}", calls.join("\n")))
    };
    let publish = position(
        &|l| l.contains("rename") && l.contains(&format!("objects/{ts}\"")),
        "rename into objects/",
    );
    let flush = position(&|l| l.contains("syncfs(") && l.ends_with("= 0"), "syncfs");
    let name = position(
        &|l| l.contains("rename") && l.contains(&format!("refs/{id}\"")),
        "rename of the ref",
    );
    assert!(
        flush < publish,
        "syncfs before the object is named:\n{}",
        calls.join("\n")
    );
    let dir_sync = calls[publish..name]
        .iter()
        .any(|l| l.contains("fsync(") && l.ends_with("= 0"));
    assert!(
        dir_sync,
        "objects/ fsynced before the ref:\n{}",
        calls.join("\n")
    );
    assert!(Path::new(&env.store.join("objects").join(&ts)).is_dir());
}
