//! osbuildd building v2 manifests end to end, as root: a private system-type bus, the real
//! polkitd, a throwaway user allowed to build by the group rule, and `osbuildctl build
//! --export NAME --output DIR`. The exported trees arrive owned by the user, an identical
//! Build runs no stage, a failing stage gives its owner HEAD's error result and everyone else
//! only ids and names, and an unknown export is refused before any job exists.
//!
//! The fixture (tests/common/service.rs) changes system files, so these tests run one at a time,
//! also across processes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::privileged;
use common::service::*;
use serde_json::{json, Value};

fn head_stage(options: Value) -> Value {
    json!({"type": "org.osbuild.test.head", "options": options})
}

/// base -> image (base's tree as an input); "unused" is never exported.
fn two_pipelines() -> Value {
    let mut image = head_stage(json!({"name": "image"}));
    image["inputs"] = json!({
        "tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline",
                 "references": ["name:base"]}
    });
    json!({
        "version": "2",
        "pipelines": [
            {"name": "base", "stages": [head_stage(json!({"name": "base", "write": {"hello": "world"}}))]},
            {"name": "image", "stages": [image]},
            {"name": "unused", "stages": [head_stage(json!({"name": "unused"}))]}
        ]
    })
}

/// A user of the granted group, an outsider watching the bus, and a directory of the user's.
fn granted_and_watched() -> (Fixture, Installed, Proc, std::path::PathBuf) {
    let f = Fixture::new();
    let rule = f.grant_group();
    // polkitd notices new rules within a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let monitor = watch_as_outsider(&f);
    let out = f.env.dir.path().join("user-out");
    std::fs::create_dir(&out).unwrap();
    let uid = nix::unistd::Uid::from_raw(uid_of(BUILDER));
    nix::unistd::chown(&out, Some(uid), None).unwrap();
    (f, rule, monitor, out)
}

/// Every file and directory under `dir` (itself included) is owned by `uid`.
fn assert_owned_by(dir: &Path, uid: u32) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!(meta.uid(), uid, "{} is not the user's", dir.display());
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            assert_owned_by(&entry.unwrap().path(), uid);
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn job_count(f: &Fixture) -> usize {
    let o = f.ctl(None, &["jobs"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn privileged_service_v2_exports_to_the_user_and_rebuilds_from_the_cache() {
    if !privileged("privileged_service_v2_exports_to_the_user_and_rebuilds_from_the_cache") {
        return;
    }
    let (f, _rule, monitor, out) = granted_and_watched();
    let m = f.manifest("v2.json", &two_pipelines());
    let out_arg = out.to_str().unwrap();
    let limit = Duration::from_secs(120);
    let args = [
        "build", &m, "--export", "image", "--export", "base", "--output", out_arg,
    ];
    let o = f.ctl_within(Some(BUILDER), &args, limit);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("image: done"),
        "the owner sees output: {stdout}"
    );
    assert!(stdout.contains("base: org.osbuild.test.head"), "{stdout}");

    // Each export's tree in DIR/NAME, every file the user's; nothing of "unused".
    assert_eq!(read(&out.join("base/hello")), "world");
    let listing = read(&out.join("image/inputs-image-tree.txt"));
    assert!(listing.contains("hello='world'"), "{listing}");
    assert!(out.join("image/args/image.json").is_file());
    assert!(!out.join("unused").exists() && !out.join("image/hello").exists());
    assert_owned_by(&out, uid_of(BUILDER));

    // The same Build again: served from the store, no stage runs.
    let o = f.ctl_within(
        Some(BUILDER),
        &["build", &m, "--export", "image", "--json"],
        limit,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let again: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(again["type"], "result", "{again}");
    assert_eq!(
        again["log"],
        json!({}),
        "a cached rebuild runs nothing: {again}"
    );
    assert_eq!(
        again["metadata"]["image"]["org.osbuild.test.head"],
        json!({"name": "image", "inputs": ["tree"]})
    );

    std::thread::sleep(Duration::from_millis(500));
    let seen = monitor_output(monitor);
    assert_eq!(
        seen.matches("StageStarted").count(),
        2,
        "two stages ran, once: {seen}"
    );
    // StageStarted (job, id, type, index, total, pipeline): base's stage, then image's.
    assert!(seen.contains("uint32 0, uint32 2, 'base')"), "{seen}");
    assert!(seen.contains("uint32 1, uint32 2, 'image')"), "{seen}");
    assert!(
        seen.contains("'image')"),
        "StageFinished names the pipeline: {seen}"
    );
    assert_eq!(seen.matches("JobFinished").count(), 2, "{seen}");
    assert!(
        !seen.contains("image: done"),
        "output is the owner's only: {seen}"
    );
}

#[test]
fn privileged_service_v2_failure_is_the_owners_and_unknown_exports_are_refused() {
    if !privileged("privileged_service_v2_failure_is_the_owners_and_unknown_exports_are_refused") {
        return;
    }
    let (f, _rule, monitor, out) = granted_and_watched();
    let mut broken = two_pipelines();
    broken["pipelines"][1]["stages"][0]["options"]["fail"] = json!("FAIL-MARKER");
    let m = f.manifest("broken.json", &broken);
    let limit = Duration::from_secs(120);

    // Unknown exports: refused with their names, no job, nothing written.
    let o = f.ctl_within(
        Some(BUILDER),
        &["build", &m, "--export", "image", "--export", "nope"],
        limit,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("UnknownExport"), "{err}");
    assert!(err.contains("export 'nope' is not a pipeline"), "{err}");
    assert!(err.contains("base, image, unused"), "{err}");
    assert_eq!(job_count(&f), 0);

    // The failing stage: HEAD's error result for the owner (--json), the stage and what it
    // raised on stderr otherwise; the output directory stays empty.
    let o = f.ctl_within(
        Some(BUILDER),
        &["build", &m, "--export", "image", "--json"],
        limit,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(
        (r["type"].as_str(), r["success"].as_bool()),
        (Some("error"), Some(false))
    );
    assert_eq!(r["error"]["type"], "org.osbuild.error.stage", "{r}");
    let stage = &r["error"]["details"]["stage"];
    assert_eq!(stage["type"], "org.osbuild.test.head");
    assert_eq!(stage["error"]["data"]["value"], "FAIL-MARKER", "{r}");
    assert!(
        stage["output"]
            .as_str()
            .unwrap()
            .contains("image: failing with FAIL-MARKER"),
        "{r}"
    );
    let o = f.ctl_within(
        Some(BUILDER),
        &[
            "build",
            &m,
            "--export",
            "image",
            "--output",
            out.to_str().unwrap(),
        ],
        limit,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("build failed: stage org.osbuild.test.head (")
            && err.contains("failed: RuntimeError: FAIL-MARKER"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing exported"
    );

    // Everyone else: success, names and ids only.
    std::thread::sleep(Duration::from_millis(500));
    let seen = monitor_output(monitor);
    assert_eq!(seen.matches("JobFinished").count(), 2, "{seen}");
    assert!(
        seen.contains("pipelines") && seen.contains("exports"),
        "{seen}"
    );
    assert!(
        !seen.contains("FAIL-MARKER"),
        "an option, output or error leaked: {seen}"
    );
    assert!(
        !seen.contains("RuntimeError"),
        "the exception leaked: {seen}"
    );
}
