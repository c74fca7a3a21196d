//! Reproducible builds as root: the same manifest built twice, in two empty stores, more than a
//! second apart, with `SOURCE_DATE_EPOCH` in `osbuild`'s environment, gives the same tree
//! (treesum), the same tar archive, the same ext4 filesystem image and the same qcow2 and raw
//! disks (sha256 of each file). Built the same way without an epoch, the images differ: the
//! comparison can fail.

mod common;

use std::path::Path;
use std::process::Command;

use common::{output, privileged, Env};
use serde_json::{json, Value};

const EPOCH: &str = "1700000000";
const ROOT_UUID: &str = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";

/// A small tree of new files (host tools, fstab, hostname, files the epoch stage writes), then
/// `assembler`.
fn manifest(assembler: Value) -> String {
    json!({"pipeline": {
        "stages": [
            {"name": "org.osbuild.test.minimal-root"},
            {"name": "org.osbuild.fstab", "options": {"filesystems": [
                {"uuid": ROOT_UUID, "vfs_type": "ext4", "path": "/"}]}},
            {"name": "org.osbuild.hostname", "options": {"hostname": "repro"}},
            {"name": "org.osbuild.test.epoch"}
        ],
        "assembler": assembler
    }})
    .to_string()
}

fn assemblers() -> Vec<(&'static str, Value)> {
    let disk = |format: &str, filename: &str| {
        json!({"name": "org.osbuild.qemu", "options": {"format": format, "filename": filename,
            "ptuuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "size": 256u64 << 20, "pttype": "gpt",
            "partitions": [
                {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649"},
                {"start": 4096, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                 "filesystem": {"type": "ext4", "uuid": ROOT_UUID, "label": "root", "mountpoint": "/"}}]}})
    };
    vec![
        (
            "t.tar.gz",
            json!({"name": "org.osbuild.tar", "options": {"filename": "t.tar.gz", "compression": "gzip"}}),
        ),
        (
            "root.ext4",
            json!({"name": "org.osbuild.rawfs", "options": {"filename": "root.ext4",
                "root_fs_uuid": ROOT_UUID, "size": 64u64 << 20}}),
        ),
        ("disk.qcow2", disk("qcow2", "disk.qcow2")),
        ("disk.raw", disk("raw", "disk.raw")),
    ]
}

fn sha256(path: &Path) -> String {
    output(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// One build of every assembler in a new store: (tree's treesum, [(file, sha256)]), and the
/// env, so that its files can be read.
fn build_all(epoch: Option<&str>) -> (String, Vec<(String, String)>, Env) {
    let env = Env::new();
    let mut treesum = String::new();
    let mut sums = Vec::new();
    for (file, assembler) in assemblers() {
        let text = manifest(assembler);
        let mut inspect = env.osbuild_cmd(&["--inspect", "-"]);
        if let Some(e) = epoch {
            inspect.env("SOURCE_DATE_EPOCH", e);
        }
        let described: Value =
            serde_json::from_slice(&common::run_with_stdin(inspect, &text).stdout).unwrap();
        let tree_id = described["pipeline"]["stages"][3]["id"].as_str().unwrap();
        let mut cmd = env.osbuild_cmd(&["--json", "--checkpoint", tree_id, "-"]);
        if let Some(e) = epoch {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let out = common::run_with_stdin(cmd, &text);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        assert_eq!(result["success"], true, "{result}");
        assert_eq!(result["tree_id"], tree_id, "{result}");
        let output_id = result["output_id"].as_str().unwrap();
        sums.push((file.to_owned(), sha256(&env.committed(output_id, file))));
        let target = std::fs::read_link(env.store.join("refs").join(tree_id)).unwrap();
        treesum = target.file_name().unwrap().to_string_lossy().into_owned();
    }
    (treesum, sums, env)
}

#[test]
fn privileged_the_same_manifest_and_epoch_give_the_same_bytes() {
    if !privileged("privileged_the_same_manifest_and_epoch_give_the_same_bytes") {
        return;
    }
    let (tree_a, sums_a, env_a) = build_all(Some(EPOCH));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (tree_b, sums_b, _env_b) = build_all(Some(EPOCH));
    assert_eq!(tree_a, tree_b, "the same treesum");
    assert_eq!(sums_a, sums_b, "the same tar, ext4, qcow2 and raw bytes");

    // The epoch reached the stage, and the tree's times are clamped to it.
    let tree_id = {
        let raw = sums_a.iter().find(|(f, _)| f == "root.ext4").unwrap();
        assert!(!raw.1.is_empty());
        std::fs::read_dir(env_a.store.join("refs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("etc/epoch").exists())
            .unwrap()
    };
    assert_eq!(
        std::fs::read_to_string(tree_id.join("etc/epoch")).unwrap(),
        format!("SOURCE_DATE_EPOCH={EPOCH}\n")
    );
    let mtime = std::fs::symlink_metadata(tree_id.join("etc/epoch.d/sub/file1"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        EPOCH.parse::<u64>().unwrap()
    );
}

#[test]
fn privileged_without_an_epoch_images_differ() {
    if !privileged("privileged_without_an_epoch_images_differ") {
        return;
    }
    let (_, sums_a, _a) = build_all(None);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, sums_b, _b) = build_all(None);
    for ((file, a), (_, b)) in sums_a.iter().zip(&sums_b) {
        assert_ne!(
            a, b,
            "{file} is reproducible even without an epoch: the test proves nothing"
        );
    }
}
