//! Reproducible builds as root: the same manifest built twice, in two empty stores, more than a
//! second apart, with `SOURCE_DATE_EPOCH` in `osbuild`'s environment, gives the same tree
//! (treesum), the same tar archive, the same ext4 filesystem image and the same qcow2 and raw
//! disks with a GPT, an ESP and an ext4 root (sha256 of each file); the qcow2 (our own writer's)
//! passes `qemu-img check` and holds the raw disk's bytes. Built the same way without an epoch,
//! the images differ: the comparison can fail.

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
                {"start": 4096, "size": 204800, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                 "filesystem": {"type": "vfat", "uuid": "7B77-95E7", "label": "ESP", "mountpoint": "/boot/efi"}},
                {"start": 208896, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
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

    // The qcow2 is a clean image of the very disk the raw assembler wrote.
    let (qcow2, raw) = (
        committed_file(&env_a, "disk.qcow2"),
        committed_file(&env_a, "disk.raw"),
    );
    let check = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&qcow2)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let compare = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .args([&raw, &qcow2])
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "{}{}",
        String::from_utf8_lossy(&compare.stdout),
        String::from_utf8_lossy(&compare.stderr)
    );

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

/// The committed output `file` of one of `env`'s builds.
fn committed_file(env: &Env, file: &str) -> std::path::PathBuf {
    std::fs::read_dir(env.store.join("refs"))
        .unwrap()
        .map(|e| e.unwrap().path().join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no output holds {file}"))
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

/// Every regular file and symlink below `root` with its sha256 (files) or target (symlinks),
/// mode and owner, sorted: what two trees are compared by when their treesums differ.
fn listing(root: &Path) -> Vec<String> {
    let out = output(
        Command::new("find")
            .arg(root)
            .args(["-printf", "%P\t%M\t%U:%G\t%s\t%l\n"]),
    );
    let mut lines: Vec<String> = out
        .lines()
        .map(|l| {
            let rel = l.split('\t').next().unwrap();
            let path = root.join(rel);
            let sum = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {
                    use sha2::Digest;
                    let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
                    digest.iter().map(|b| format!("{b:02x}")).collect()
                }
                _ => String::new(),
            };
            format!("{l}\t{sum}")
        })
        .collect();
    lines.sort();
    lines
}

/// The bootable Debian image of `osbuild-mkmanifest-debian --image`, built twice with an
/// epoch: the second store gets the first one's downloaded .debs, so only the build repeats.
#[test]
fn privileged_debian_image_is_reproducible() {
    let name = "privileged_debian_image_is_reproducible";
    if !privileged(name) {
        return;
    }
    let a = Env::new();
    let manifest_path = a.dir.path().join("image.json");
    if !common::debian_image_manifest(name, "repro", &manifest_path) {
        return;
    }
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let build = |env: &Env| {
        let mut inspect = env.osbuild_cmd(&["--inspect", "-"]);
        inspect.env("SOURCE_DATE_EPOCH", EPOCH);
        let described: Value =
            serde_json::from_slice(&common::run_with_stdin(inspect, &text).stdout).unwrap();
        let stages = described["pipeline"]["stages"].as_array().unwrap();
        let tree_id = stages.last().unwrap()["id"].as_str().unwrap().to_owned();
        let mut cmd = env.osbuild_cmd(&["--json", "--checkpoint", &tree_id, "-"]);
        cmd.env("SOURCE_DATE_EPOCH", EPOCH);
        let out = common::run_with_stdin(cmd, &text);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        });
        if result["success"] != true {
            // A machine without the mirror: nothing to compare.
            return None;
        }
        let output_id = result["output_id"].as_str().unwrap().to_owned();
        Some((tree_id, output_id))
    };
    let Some((tree_a, out_a)) = build(&a) else {
        eprintln!("skipping {name}: the image did not build here (no mirror?)");
        return;
    };
    let b = Env::new();
    std::fs::create_dir_all(&b.store).unwrap();
    output(
        Command::new("cp")
            .arg("-a")
            .arg(a.store.join("sources"))
            .arg(b.store.join("sources")),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (tree_b, out_b) = build(&b).expect("the second build, with the same .debs");
    assert_eq!((&tree_a, &out_a), (&tree_b, &out_b), "the same ids");
    let treesum = |env: &Env| std::fs::read_link(env.store.join("refs").join(&tree_a)).unwrap();
    if treesum(&a) != treesum(&b) {
        let (la, lb) = (
            listing(&a.committed(&tree_a, "")),
            listing(&b.committed(&tree_b, "")),
        );
        let only_a: Vec<&String> = la.iter().filter(|l| !lb.contains(l)).collect();
        let only_b: Vec<&String> = lb.iter().filter(|l| !la.contains(l)).collect();
        panic!(
            "the trees differ:\nfirst build only:\n{only_a:#?}\nsecond build only:\n{only_b:#?}"
        );
    }
    assert_eq!(
        sha256(&a.committed(&out_a, "disk.qcow2")),
        sha256(&b.committed(&out_b, "disk.qcow2")),
        "the same qcow2"
    );
}
