//! The `org.osbuild.fat` mount in v2 builds, as root: a manifest partitions a disk, makes a
//! FAT filesystem on a loopback device over the partition (mkfs.fat), makes nested directories
//! and copies files onto it through the fat mount in three stages (each stage reads what the
//! one before wrote), and the exported image is read back with mtools: every name (long, mixed
//! case, brackets, nested), size and byte, and the filesystem's label and serial. On a kernel
//! without vfat (our CI's) the mount stages through mtools; elsewhere it is the kernel's.
//! A stage failing with the fat mount leaves no mount, loop device or staging directory, and
//! a staged tree FAT cannot hold is refused by name when the mount is released; a read-only
//! fat mount refuses writes and writes nothing back.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{loops_backed_under, mounts_under, output, privileged, Env};
use osbuild::hostsvc::StageServices;
use osbuild::manifest::{self, Document};
use serde_json::{json, Value};

/// The FAT partition: 1 MiB in, 63 MiB long, on a 64 MiB disk.
const FAT: (u64, u64) = (2048, 129_024);
const VOLID: &str = "4A0B1C2D";

/// What the build puts on the filesystem: (path, bytes), the last grub.cfg winning.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    // A deterministic pseudo-random payload bigger than a cluster chain of a few entries.
    let mut x: u32 = 0x9e37_79b9;
    let efi: Vec<u8> = (0..300_001)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    vec![
        ("EFI/BOOT/BOOTX64.EFI", efi),
        ("EFI/debian/grub.cfg", b"search --fs-uuid first\n".to_vec()),
        ("deep/a/b/c/empty", Vec::new()),
        ("Long Mixed Name [1].txt", "Grüße\n".as_bytes().to_vec()),
        ("lower.txt", b"lower\n".to_vec()),
        (
            "EFI/debian/grub.cfg",
            b"configfile $prefix/grub.cfg\n".to_vec(),
        ),
    ]
}

fn stage(kind: &str, options: Value) -> Value {
    json!({"type": format!("org.osbuild.{kind}"), "options": options})
}

fn on_fat(mut stage: Value) -> Value {
    stage["devices"] = common::loopback_devices(&[("efi", FAT)]);
    stage["mounts"] = json!([{"name": "efi", "type": "org.osbuild.fat", "source": "efi",
                              "target": "/", "options": {"umask": "077"}}]);
    stage
}

/// The `org.osbuild.inline` item of `bytes`: its checksum (`sha256:...`, by coreutils'
/// `sha256sum`) and its base64 (by `base64`).
fn inline_item(dir: &Path, bytes: &[u8]) -> (String, String) {
    let file = dir.join("inline-item");
    std::fs::write(&file, bytes).unwrap();
    let sum = output(Command::new("sha256sum").arg(&file));
    let hex = sum.split(' ').next().unwrap();
    let encoded = output(Command::new("base64").arg("-w0").arg(&file));
    (format!("sha256:{hex}"), encoded)
}

/// A copy stage through the fat mount of `files` (input checksums and destinations).
fn copy(files: &[(&str, String)]) -> Value {
    let paths: Vec<Value> = files
        .iter()
        .map(|(to, sum)| json!({"from": format!("input://files/{sum}"), "to": format!("mount://efi/{to}")}))
        .collect();
    let refs: Vec<&String> = files.iter().map(|(_, sum)| sum).collect();
    let mut copy = on_fat(stage("copy", json!({"paths": paths})));
    copy["inputs"] = json!({"files": {"type": "org.osbuild.files",
                                     "origin": "org.osbuild.source", "references": refs}});
    copy
}

/// The image pipeline: disk, partition, mkfs.fat, mkdir and two copies through the fat mount.
fn manifest(dir: &Path) -> Value {
    let mut items = serde_json::Map::new();
    let mut files = Vec::new();
    for (path, data) in self::files() {
        let (sum, encoded) = inline_item(dir, &data);
        items.insert(sum.clone(), json!({"encoding": "base64", "data": encoded}));
        files.push((path, sum));
    }
    let mut sfdisk = stage(
        "sfdisk",
        json!({"label": "dos", "uuid": "2a3b4c5d", "partitions": [{"start": FAT.0, "size": FAT.1, "type": "ef"}]}),
    );
    sfdisk["devices"] = json!({"device": {"type": "org.osbuild.loopback",
                                          "options": {"filename": "disk.raw", "lock": true}}});
    let mut mkfs = stage("mkfs.fat", json!({"volid": VOLID, "label": "TESTFAT"}));
    mkfs["devices"] = json!({"device": common::loopback_devices(&[("d", FAT)])["d"]});
    let mkdir = on_fat(stage(
        "mkdir",
        json!({"paths": [
            {"path": "mount://efi/EFI/BOOT", "parents": true},
            {"path": "mount://efi/EFI/debian"},
            {"path": "mount://efi/deep/a/b/c", "parents": true}
        ]}),
    ));
    let (first, last) = files.split_at(files.len() - 1);
    json!({
        "version": "2",
        "sources": {"org.osbuild.inline": {"items": items}},
        "pipelines": [{"name": "image", "stages": [
            stage("truncate", json!({"filename": "disk.raw", "size": "64M"})),
            sfdisk, mkfs, mkdir, copy(first), copy(last)
        ]}]
    })
}

/// `mtools args... -i disk.raw@@OFFSET ...`: stdout, or a panic with stderr.
fn mtools(program: &str, disk: &Path, args: &[&str]) -> Vec<u8> {
    let image = format!("{}@@{}", disk.display(), FAT.0 * 512);
    let out = Command::new(program)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LC_ALL", "C.UTF-8")
        .arg("-i")
        .arg(image)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every file and directory below `dir` named `fat-staging-*`.
fn staging_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = e.file_type().unwrap();
            if e.file_name().to_string_lossy().starts_with("fat-staging-") {
                found.push(e.path());
            } else if kind.is_dir() && !kind.is_symlink() {
                todo.push(e.path());
            }
        }
    }
    found
}

fn assert_nothing_left(env: &Env) {
    assert_eq!(mounts_under(env.dir.path()), Vec::<String>::new());
    assert_eq!(loops_backed_under(env.dir.path()), Vec::<String>::new());
    assert_eq!(staging_dirs(env.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn privileged_fat_mount_files_reach_the_image() {
    if !privileged("privileged_fat_mount_files_reach_the_image") {
        return;
    }
    let env = Env::new();
    let m = manifest(env.dir.path());
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["image"], &out, &[], &m.to_string());
    assert_eq!(code, 0, "{result:#}");
    assert_nothing_left(&env);
    let disk = out.join("image/disk.raw");

    // The filesystem mkfs.fat made, kept: its label and serial.
    let blkid = output(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg((FAT.0 * 512).to_string())
            .arg(&disk),
    );
    assert!(blkid.contains("LABEL=TESTFAT\n"), "{blkid}");
    assert!(blkid.contains("UUID=4A0B-1C2D\n"), "{blkid}");

    // Exactly these names, directories as the mkdir stage made them.
    let listing = String::from_utf8(mtools("mdir", &disk, &["-/", "-a", "-b", "::/"])).unwrap();
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    let want = [
        "::/EFI/",
        "::/EFI/BOOT/",
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/debian/",
        "::/EFI/debian/grub.cfg",
        "::/Long Mixed Name [1].txt",
        "::/deep/",
        "::/deep/a/",
        "::/deep/a/b/",
        "::/deep/a/b/c/",
        "::/deep/a/b/c/empty",
        "::/lower.txt",
    ];
    assert_eq!(names, want);
    // Every file's bytes (the later grub.cfg replaced the earlier one) and size.
    let mut last = std::collections::BTreeMap::new();
    for (path, data) in files() {
        last.insert(path, data);
    }
    for (path, data) in &last {
        // mtools reads brackets as a pattern: escape them.
        let fat = format!("::/{}", path.replace('[', "\\[").replace(']', "\\]"));
        let got = mtools("mcopy", &disk, &["-n", &fat, "-"]);
        assert_eq!(got.len(), data.len(), "{path}: size");
        assert!(got == *data, "{path}: contents differ");
    }
    let dir = String::from_utf8(mtools("mdir", &disk, &["::/EFI/BOOT"])).unwrap();
    assert!(dir.contains("300 001"), "{dir}");
}

#[test]
fn privileged_fat_mount_a_failing_stage_leaves_nothing() {
    if !privileged("privileged_fat_mount_a_failing_stage_leaves_nothing") {
        return;
    }
    let env = Env::new();
    let mut m = manifest(env.dir.path());
    // The last copy reads a file its input does not have: it fails with the mount made.
    let stages = m["pipelines"][0]["stages"].as_array_mut().unwrap();
    let last = stages.last_mut().unwrap();
    last["options"]["paths"][0]["from"] = json!("input://files/missing");
    let out = env.dir.path().join("out");
    let (result, code) = env.export_json(&["image"], &out, &[], &m.to_string());
    assert_eq!(code, 1, "{result:#}");
    assert_eq!(result["success"], false, "{result:#}");
    let log = result["log"].to_string();
    assert!(log.contains("missing"), "{result:#}");
    assert_nothing_left(&env);
    assert_eq!(env.store_entries("tmp"), Vec::<String>::new());
}

/// The host service directly: a staged tree FAT cannot hold (a symlink) is refused when the
/// mount is released, naming the mount and the path, and nothing is left.
#[test]
fn privileged_fat_mount_refuses_what_fat_cannot_hold() {
    if !privileged("privileged_fat_mount_refuses_what_fat_cannot_hold") {
        return;
    }
    common::in_private_namespace(|| {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-fat-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let (tree, dev, mounts) = (
            dir.path().join("tree"),
            dir.path().join("dev"),
            dir.path().join("mounts"),
        );
        for d in [&tree, &dev, &mounts] {
            std::fs::create_dir(d).unwrap();
        }
        let disk = tree.join("disk.raw");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        output(Command::new("mkfs.fat").arg("-n").arg("KEEP").arg(&disk));
        let stage = |mounts: Value| {
            let doc = json!({"version": "2", "pipelines": [{"name": "p", "stages": [{
                "type": "org.osbuild.test", "mounts": mounts,
                "devices": {"d": {"type": "org.osbuild.loopback",
                                  "options": {"filename": "disk.raw"}}}}]}]});
            match manifest::parse_document(&doc.to_string()).unwrap() {
                Document::V2(m) => m.pipelines[0].stages[0].clone(),
                Document::V1(_) => unreachable!(),
            }
        };
        let fat = json!([{"name": "esp", "type": "org.osbuild.fat", "source": "d", "target": "/"}]);
        let services = StageServices::open(&stage(fat.clone()), &tree, &dev, &mounts).unwrap();
        std::fs::write(mounts.join("kept"), "kept\n").unwrap();
        services.release().unwrap();
        // Read-only: the stage cannot write, and nothing is written back.
        let mut read_only = fat.clone();
        read_only[0]["options"] = json!({"readonly": true});
        let services = StageServices::open(&stage(read_only), &tree, &dev, &mounts).unwrap();
        let refused = std::fs::write(mounts.join("new"), "x").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
        services.release().unwrap();
        let services = StageServices::open(&stage(fat), &tree, &dev, &mounts).unwrap();
        assert_eq!(
            std::fs::read_to_string(mounts.join("kept")).unwrap(),
            "kept\n"
        );
        assert!(!mounts.join("new").exists());
        match std::os::unix::fs::symlink("kept", mounts.join("link")) {
            // The kernel's vfat refuses at once.
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                services.release().unwrap();
            }
            Ok(()) => {
                let err = services.release().unwrap_err().to_string();
                assert!(
                    err.starts_with("mount \"esp\": org.osbuild.fat: ")
                        && err.ends_with("/link: FAT cannot hold a symlink"),
                    "{err}"
                );
            }
        }
        assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
        assert_eq!(loops_backed_under(dir.path()), Vec::<String>::new());
        assert_eq!(staging_dirs(dir.path()), Vec::<PathBuf>::new());
        // Refused before anything was deleted: the filesystem still holds the earlier file.
        let kept = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&disk)
            .arg("::/kept")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&kept.stdout), "kept\n");
    });
}
