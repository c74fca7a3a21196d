//! The host services of v2 stages (`osbuild::hostsvc`) on real loop devices and filesystems:
//! a partitioned sparse disk, loopback devices at each partition's start and size, ext4, xfs,
//! fat and btrfs mounted `/` then `/boot`, the data read back after release from the image
//! itself (debugfs, mtools) and through a fresh partition-scanned device. Also: a mount that
//! fails half-way leaves no mount and no loop device, read-only holds, locks and sector sizes
//! are set, and image names leading out of the tree are refused.
//!
//! Each test runs on a thread of its own in a private mount namespace, so a failing test
//! leaves no mount on the host; loop devices are released by the owners under test.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use osbuild::hostsvc::{HostError, StageServices};
use osbuild::json;
use osbuild::manifest::{self, v2, Document};
use osbuild_sys::mount::{Mount, MsFlags};

const MIB: u64 = 1024 * 1024;

/// Runs `f` on a thread of its own in a private mount namespace, if root.
fn privileged(test: &str, f: impl FnOnce() + Send) {
    if !common::privileged(test) {
        return;
    }
    common::in_private_namespace(f);
}

/// A build's directories: the tree holding `disk.img`, a tmpfs `/dev` and the mounts root.
struct Scratch {
    // Fields drop in this order: the tmpfs goes before the directory it is mounted on.
    _dev: Mount,
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-hostsvc-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        for sub in ["tree", "dev", "mounts"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let dev = Mount::filesystem("tmpfs", &dir.path().join("dev"), MsFlags::MS_NOSUID).unwrap();
        Scratch { _dev: dev, dir }
    }
    fn tree(&self) -> PathBuf {
        self.dir.path().join("tree")
    }
    fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
    fn mounts(&self) -> PathBuf {
        self.dir.path().join("mounts")
    }
    fn image(&self) -> PathBuf {
        self.tree().join("disk.img")
    }

    /// A sparse GPT disk of two partitions (128 MiB, 320 MiB: xfs wants 300), read back as
    /// `(start, size)` in sectors with `sfdisk --json`.
    fn partitioned_disk(&self) -> Vec<(u64, u64)> {
        let file = std::fs::File::create(self.image()).unwrap();
        file.set_len(452 * MIB).unwrap();
        drop(file);
        let table = "label: gpt\nsize=128MiB\nsize=320MiB\n";
        let mut sfdisk = Command::new("sfdisk");
        sfdisk.arg("--quiet").arg(self.image());
        run(sfdisk, table);
        let mut dump = Command::new("sfdisk");
        dump.arg("--json").arg(self.image());
        let table: serde_json::Value = serde_json::from_str(&run(dump, "")).unwrap();
        let parts = table["partitiontable"]["partitions"].as_array().unwrap();
        parts
            .iter()
            .map(|p| (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap()))
            .collect()
    }

    /// Opens the devices and mounts of the stage `{"devices": devices, "mounts": mounts}`.
    fn open(
        &self,
        devices: serde_json::Value,
        mounts: serde_json::Value,
    ) -> Result<StageServices, HostError> {
        let stage = stage(devices, mounts);
        StageServices::open(&stage, &self.tree(), &self.dev(), &self.mounts())
    }

    /// Checks that nothing of a stage is left: no mount, no loop device, no node.
    fn assert_released(&self) {
        assert_eq!(self.mounted(), Vec::<String>::new());
        // Nothing beside the build's directories (a FAT staging directory goes there).
        let mut left: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["dev", "mounts", "tree"]);
        assert_eq!(self.loops_on_disk(), Vec::<String>::new());
        assert_eq!(self.dev_nodes(), Vec::<String>::new());
    }

    /// Opens `devices` alone and makes the filesystem `fs` of each `(name, fs)` on them.
    fn format(&self, devices: &serde_json::Value, filesystems: &[(&str, &str)]) {
        let services = self.open(devices.clone(), serde_json::json!([])).unwrap();
        for (name, fs) in filesystems {
            mkfs(fs, &Path::new("/dev").join(node_of(&services, name)));
        }
    }

    /// Loop devices (`loopN`) whose backing file is this disk.
    fn loops_on_disk(&self) -> Vec<String> {
        let image = self.image().canonicalize().unwrap();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
            let backing = entry.path().join("loop/backing_file");
            if let Ok(text) = std::fs::read_to_string(backing) {
                if Path::new(text.trim()) == image {
                    found.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        let mut losetup = Command::new("losetup");
        losetup.arg("-j").arg(&image);
        let listed = run(losetup, "");
        assert_eq!(
            found.is_empty(),
            listed.trim().is_empty(),
            "sysfs {found:?}, losetup {listed}"
        );
        found
    }

    /// Mount points below the mounts root in this thread's namespace.
    fn mounted(&self) -> Vec<String> {
        let text = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let prefix = self.mounts().to_string_lossy().into_owned();
        text.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The files left in the `/dev` tmpfs besides those of a fresh one (none: it is empty).
    fn dev_nodes(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dev())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The first stage of a one-pipeline v2 manifest with these devices and mounts.
fn stage(devices: serde_json::Value, mounts: serde_json::Value) -> v2::Stage {
    let manifest = serde_json::json!({
        "version": "2",
        "pipelines": [{"name": "image", "stages": [{
            "type": "org.osbuild.test", "devices": devices, "mounts": mounts}]}]
    });
    match manifest::parse_document(&manifest.to_string()).unwrap() {
        Document::V2(m) => m.pipelines[0].stages[0].clone(),
        Document::V1(_) => unreachable!("a v2 manifest"),
    }
}

/// Runs `cmd` with `stdin` (with the tests' deadline); its stdout, or a panic with stderr.
fn run(cmd: Command, stdin: &str) -> String {
    let what = format!("{cmd:?}");
    let out = common::run_with_stdin(cmd, stdin);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mkfs(fs: &str, device: &Path) {
    let mut cmd = match fs {
        "ext4" => Command::new("mkfs.ext4"),
        "xfs" => Command::new("mkfs.xfs"),
        "fat" => Command::new("mkfs.vfat"),
        "btrfs" => Command::new("mkfs.btrfs"),
        _ => unreachable!(),
    };
    match fs {
        "ext4" => cmd.arg("-q").arg("-F"),
        "xfs" | "btrfs" => cmd.arg("-q").arg("-f"),
        _ => &mut cmd,
    };
    cmd.arg(device);
    run(cmd, "");
}

fn loopback(start: u64, size: u64) -> serde_json::Value {
    serde_json::json!({"type": "org.osbuild.loopback",
        "options": {"filename": "disk.img", "start": start, "size": size}})
}

fn fs_mount(
    name: &str,
    fs: &str,
    source: &str,
    target: &str,
    partition: Option<u64>,
) -> serde_json::Value {
    let mut m = serde_json::json!({"name": name, "type": format!("org.osbuild.{fs}"),
        "source": source, "target": target});
    if let Some(p) = partition {
        m["partition"] = p.into();
    }
    m
}

/// Writes `/hello` on a `/` of `root_fs` and `/boot/hello` on a `/boot` of `boot_fs`, both on
/// loopback devices at the partitions' start and size; returns the partitions.
fn write_through_partition_devices(s: &Scratch, root_fs: &str, boot_fs: &str) -> Vec<(u64, u64)> {
    let parts = s.partitioned_disk();
    let devices = serde_json::json!({"boot": loopback(parts[0].0, parts[0].1),
                                     "root": loopback(parts[1].0, parts[1].1)});
    s.format(&devices, &[("boot", boot_fs), ("root", root_fs)]);
    assert!(s.loops_on_disk().is_empty());
    let mounts = serde_json::json!([
        fs_mount("root", root_fs, "root", "/", None),
        fs_mount("boot", boot_fs, "boot", "/boot", None)
    ]);
    let services = s.open(devices, mounts).unwrap();
    let args = services.arguments();
    // HEAD's arguments entries: device nodes by host name, mounts relative to the root.
    let text = json::dumps(&json::Value::Object(args.clone()));
    assert!(
        text.ends_with(r#""mounts": {"boot": {"path": "boot"}, "root": {"path": "."}}}"#),
        "{text}"
    );
    for name in ["boot", "root"] {
        let node = node_of(&services, name);
        let rdev = |dir: &Path| std::fs::metadata(dir.join(&node)).unwrap().rdev();
        let host = rdev(Path::new("/dev"));
        assert_eq!(
            rdev(&s.dev()),
            host,
            "{node} in the build root's /dev is the host's"
        );
        let want = format!(
            "{{\"major\": 7, \"minor\": {}}}",
            nix::sys::stat::minor(host)
        );
        let entry = args["devices"]
            .get(name)
            .and_then(|d| d.get("node"))
            .unwrap();
        assert_eq!(json::dumps(entry), want);
        // udev is kept off the device while it is held (HEAD's lock file).
        let lock = udev_lock(host);
        assert!(lock.is_file(), "no {} while {node} is held", lock.display());
    }
    let held: Vec<_> = ["boot", "root"]
        .iter()
        .map(|n| node_of(&services, n))
        .collect();
    assert_eq!(s.mounted().len(), 2, "{:?}", s.mounted());
    std::fs::write(s.mounts().join("hello"), "root data\n").unwrap();
    std::fs::write(s.mounts().join("boot/hello"), "boot data\n").unwrap();
    // Each lock file by its inode: once released, a device may at once be taken (and
    // locked again) by another test running beside this one.
    let locks: Vec<_> = held
        .iter()
        .map(|node| {
            let lock = udev_lock(
                std::fs::metadata(Path::new("/dev").join(node))
                    .unwrap()
                    .rdev(),
            );
            let ino = std::fs::metadata(&lock).unwrap().ino();
            (lock, ino)
        })
        .collect();
    drop(services);
    s.assert_released();
    for (lock, ino) in locks {
        let ours = std::fs::metadata(&lock).is_ok_and(|m| m.ino() == ino);
        assert!(!ours, "{} outlived its device", lock.display());
    }
    parts
}

/// The lock file that keeps udev off block device `rdev`.
fn udev_lock(rdev: u64) -> std::path::PathBuf {
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    Path::new(osbuild::hostsvc::udev::LOCK_DIR).join(format!("device-{major}:{minor}"))
}

/// Whether the kernel has the filesystem `fs` (`/proc/filesystems`).
fn kernel_has(fs: &str) -> bool {
    let known = std::fs::read_to_string("/proc/filesystems").unwrap();
    known.lines().any(|l| l.split('\t').next_back() == Some(fs))
}

/// Mounts the disk again (partitions 2 and 1 as `/` and `/boot`) through one
/// partition-scanned device, and checks each file is where it was written and nowhere else.
/// A kernel without partition tables gets devices at the partitions' offsets instead.
fn read_back(s: &Scratch, root_fs: &str, boot_fs: &str, parts: &[(u64, u64)]) {
    let disk = serde_json::json!({"disk": {"type": "org.osbuild.loopback",
        "options": {"filename": "disk.img", "partscan": true}}});
    let scanned = {
        let services = s.open(disk.clone(), serde_json::json!([])).unwrap();
        let node = node_of(&services, "disk");
        let nodes = s.dev_nodes();
        if nodes.len() == 1 {
            eprintln!("this kernel reads no GPT (CONFIG_EFI_PARTITION): partscan made no {node}p1; reading back through devices at the partitions' offsets");
            false
        } else {
            assert_eq!(
                nodes,
                [node.clone(), format!("{node}p1"), format!("{node}p2")]
            );
            true
        }
    };
    let (devices, mounts) = match scanned {
        true => (
            disk,
            serde_json::json!([
                fs_mount("root", root_fs, "disk", "/", Some(2)),
                fs_mount("boot", boot_fs, "disk", "/boot", Some(1))
            ]),
        ),
        false => (
            serde_json::json!({"boot": loopback(parts[0].0, parts[0].1),
                               "root": loopback(parts[1].0, parts[1].1)}),
            serde_json::json!([
                fs_mount("root", root_fs, "root", "/", None),
                fs_mount("boot", boot_fs, "boot", "/boot", None)
            ]),
        ),
    };
    let services = s.open(devices, mounts).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.mounts().join("hello")).unwrap(),
        "root data\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.mounts().join("boot/hello")).unwrap(),
        "boot data\n"
    );
    let mut boot_files: Vec<_> = std::fs::read_dir(s.mounts().join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n == "hello" || n == "boot")
        .collect();
    boot_files.sort();
    assert_eq!(
        boot_files,
        ["hello"],
        "the boot partition holds only its own file"
    );
    drop(services);
    s.assert_released();
}

/// The node name (`loop3`) of the stage's device `name`.
fn node_of(services: &StageServices, name: &str) -> String {
    let devices = &services.arguments()["devices"];
    let path = devices.get(name).and_then(|d| d.get("path"));
    path.and_then(json::Value::as_str).unwrap().to_owned()
}

/// `debugfs -R REQUEST` on the ext4 filesystem at `sector` of the image.
fn debugfs(s: &Scratch, sector: u64, request: &str) -> String {
    let mut debugfs = Command::new("debugfs");
    debugfs.args(["-R", request]);
    debugfs.arg(format!("{}?offset={}", s.image().display(), sector * 512));
    run(debugfs, "")
}

#[test]
fn ext4_root_and_btrfs_boot_land_in_their_partitions() {
    privileged("ext4_root_and_btrfs_boot_land_in_their_partitions", || {
        let s = Scratch::new();
        let parts = write_through_partition_devices(&s, "ext4", "btrfs");
        // Straight from the image, at the root partition's offset.
        assert_eq!(debugfs(&s, parts[1].0, "cat /hello"), "root data\n");
        let listing = debugfs(&s, parts[1].0, "ls -p /boot");
        assert!(
            !listing.contains("/hello/"),
            "boot's file is not on the root filesystem: {listing}"
        );
        read_back(&s, "ext4", "btrfs", &parts);
    });
}

#[test]
fn xfs_root_and_fat_boot_land_in_their_partitions() {
    privileged("xfs_root_and_fat_boot_land_in_their_partitions", || {
        // Without vfat in the kernel, the fat mount stages through mtools.
        let boot_fs = "fat";
        if !kernel_has("vfat") {
            eprintln!("vfat is not in this kernel (/proc/filesystems): /boot is staged by mtools");
        }
        let s = Scratch::new();
        let parts = write_through_partition_devices(&s, "xfs", boot_fs);
        let mut mtype = Command::new("mtype");
        mtype
            .arg("-i")
            .arg(format!("{}@@{}", s.image().display(), parts[0].0 * 512));
        mtype.arg("::/hello");
        assert_eq!(run(mtype, ""), "boot data\n");
        read_back(&s, "xfs", boot_fs, &parts);
    });
}

#[test]
fn a_mount_failing_half_way_leaves_no_mount_and_no_loop_device() {
    privileged(
        "a_mount_failing_half_way_leaves_no_mount_and_no_loop_device",
        || {
            let s = Scratch::new();
            let parts = s.partitioned_disk();
            let devices = serde_json::json!({"boot": loopback(parts[0].0, parts[0].1),
                                         "root": loopback(parts[1].0, parts[1].1)});
            s.format(&devices, &[("root", "ext4")]);
            // The boot partition holds no filesystem: its mount fails after `/` succeeded.
            let mounts = serde_json::json!([
                fs_mount("root", "ext4", "root", "/", None),
                fs_mount("boot", "ext4", "boot", "/boot", None)
            ]);
            let err = s.open(devices, mounts).unwrap_err().to_string();
            assert!(
                err.starts_with("mount \"boot\": org.osbuild.ext4: mounting /dev/loop"),
                "{err}"
            );
            assert!(
                err.contains(&format!("(ext4) on {}", s.mounts().join("boot").display())),
                "{err}"
            );
            s.assert_released();
            // `boot` was made inside the image's `/`, so it stays there (as in HEAD's images).
            let stat = debugfs(&s, parts[1].0, "stat /boot");
            assert!(stat.contains("Type: directory"), "/boot: {stat}");
            // A panic while the stage runs releases the same way.
            let devices = serde_json::json!({"root": loopback(parts[1].0, parts[1].1)});
            let mounts = serde_json::json!([fs_mount("root", "ext4", "root", "/", None)]);
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _services = s.open(devices, mounts).unwrap();
                assert_eq!(s.mounted().len(), 1);
                panic!("the stage failed");
            }));
            assert!(panicked.is_err());
            s.assert_released();
        },
    );
}

#[test]
fn read_only_devices_and_mounts_refuse_writes() {
    privileged("read_only_devices_and_mounts_refuse_writes", || {
        let s = Scratch::new();
        let parts = s.partitioned_disk();
        let (start, size) = parts[1];
        s.format(
            &serde_json::json!({"root": loopback(start, size)}),
            &[("root", "ext4")],
        );
        let write = |s: &Scratch| {
            std::fs::write(s.mounts().join("x"), "x")
                .unwrap_err()
                .raw_os_error()
        };
        // The mount's `readonly`: mounted ro (mountinfo says so), writes fail with EROFS.
        let mut ro_mount = fs_mount("root", "ext4", "root", "/", None);
        ro_mount["options"] = serde_json::json!({"readonly": true, "norecovery": true});
        let services = s
            .open(
                serde_json::json!({"root": loopback(start, size)}),
                serde_json::json!([ro_mount]),
            )
            .unwrap();
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(&*s.mounts().to_string_lossy()))
            .unwrap()
            .to_owned();
        assert!(
            line.split(' ')
                .nth(5)
                .unwrap()
                .split(',')
                .any(|o| o == "ro"),
            "{line}"
        );
        assert!(
            line.contains(" ext4 ") && line.contains("norecovery"),
            "{line}"
        );
        assert_eq!(write(&s), Some(libc::EROFS));
        drop(services);
        // The device's `read-only`: the kernel device is read-only; mounting falls back to ro.
        let mut device = loopback(start, size);
        device["options"]["read-only"] = true.into();
        let services = s
            .open(
                serde_json::json!({"root": device}),
                serde_json::json!([fs_mount("root", "ext4", "root", "/", None)]),
            )
            .unwrap();
        let node = node_of(&services, "root");
        assert_eq!(
            std::fs::read_to_string(format!("/sys/block/{node}/ro"))
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(write(&s), Some(libc::EROFS));
        drop(services);
        s.assert_released();
    });
}

#[test]
fn lock_sector_size_and_offsets_reach_the_kernel() {
    privileged("lock_sector_size_and_offsets_reach_the_kernel", || {
        let s = Scratch::new();
        std::fs::File::create(s.image())
            .unwrap()
            .set_len(64 * MIB)
            .unwrap();
        let devices = serde_json::json!({"disk": {"type": "org.osbuild.loopback", "options": {
            "filename": "disk.img", "start": 256, "size": 1024, "sector-size": 4096, "lock": true}}});
        let services = s.open(devices, serde_json::json!([])).unwrap();
        let node = node_of(&services, "disk");
        let sys = |f: &str| {
            std::fs::read_to_string(format!("/sys/block/{node}/{f}"))
                .unwrap()
                .trim()
                .to_owned()
        };
        assert_eq!(sys("queue/logical_block_size"), "4096");
        assert_eq!(sys("loop/offset"), (256 * 4096).to_string());
        assert_eq!(sys("loop/sizelimit"), (1024 * 4096).to_string());
        assert_eq!(sys("loop/autoclear"), "1");
        let other = std::fs::File::open(Path::new("/dev").join(&node)).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "/dev/{node} is flocked"
        );
        drop(other);
        drop(services);
        assert_eq!(s.loops_on_disk(), Vec::<String>::new());
    });
}

#[test]
fn image_names_leading_out_of_the_tree_are_refused() {
    privileged("image_names_leading_out_of_the_tree_are_refused", || {
        let s = Scratch::new();
        let outside = s.dir.path().join("outside.img");
        std::fs::File::create(&outside)
            .unwrap()
            .set_len(MIB)
            .unwrap();
        std::os::unix::fs::symlink(&outside, s.tree().join("abs-link.img")).unwrap();
        std::os::unix::fs::symlink("../outside.img", s.tree().join("rel-link.img")).unwrap();
        let refused = |filename: &str| {
            let devices = serde_json::json!({"disk": {"type": "org.osbuild.loopback",
                "options": {"filename": filename}}});
            s.open(devices, serde_json::json!([]))
                .unwrap_err()
                .to_string()
        };
        let err = refused("../outside.img");
        assert_eq!(
            err,
            "device \"disk\": org.osbuild.loopback: filename \"../outside.img\" contains \"..\""
        );
        let err = refused(&outside.to_string_lossy());
        assert!(
            err.ends_with("is absolute: it must be relative to the tree"),
            "{err}"
        );
        for link in ["abs-link.img", "rel-link.img"] {
            let err = refused(link);
            assert!(
                err.contains("leads out of the tree through a symlink"),
                "{link}: {err}"
            );
        }
        let err = refused("missing.img");
        assert!(err.contains("opening missing.img in the tree"), "{err}");
        let mut losetup = Command::new("losetup");
        losetup.arg("-j").arg(&outside);
        assert_eq!(
            run(losetup, "").trim(),
            "",
            "no loop device on the file outside"
        );
        let err = s
            .open(
                serde_json::json!({"x": {"type": "org.osbuild.luks2"}}),
                serde_json::json!([]),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("device \"x\": unknown device type \"org.osbuild.luks2\""),
            "{err}"
        );
    });
}

#[test]
fn a_bind_mount_shows_a_mounted_filesystem_in_the_tree_until_released() {
    privileged(
        "a_bind_mount_shows_a_mounted_filesystem_in_the_tree_until_released",
        || {
            let s = Scratch::new();
            std::fs::File::create(s.image())
                .unwrap()
                .set_len(64 * MIB)
                .unwrap();
            let devices = serde_json::json!({"disk": {"type": "org.osbuild.loopback",
            "options": {"filename": "disk.img"}}});
            s.format(&devices, &[("disk", "ext4")]);
            std::fs::create_dir(s.tree().join("sysroot")).unwrap();
            let mounts = serde_json::json!([
                fs_mount("root", "ext4", "disk", "/", None),
                {"name": "into-tree", "type": "org.osbuild.bind", "target": "tree://sysroot",
                 "options": {"source": "mount://"}},
                {"name": "scratch", "type": "org.osbuild.noop", "target": "/scratch"}
            ]);
            let services = s.open(devices, mounts).unwrap();
            let args = json::dumps(&services.arguments()["mounts"]);
            let want =
                r#"{"into-tree": {}, "root": {"path": "."}, "scratch": {"path": "scratch"}}"#;
            assert_eq!(args, want);
            std::fs::write(s.tree().join("sysroot/through-the-bind"), "x").unwrap();
            assert!(s.mounts().join("through-the-bind").exists());
            assert!(
                s.tree().join("sysroot/scratch").is_dir(),
                "the bind is recursive"
            );
            drop(services);
            assert_eq!(
                std::fs::read_dir(s.tree().join("sysroot")).unwrap().count(),
                0
            );
            s.assert_released();
            // The file went to the filesystem, not to the tree.
            assert!(debugfs(&s, 0, "stat /through-the-bind").contains("Type: regular"));
            assert!(debugfs(&s, 0, "stat /scratch").contains("Type: directory"));
        },
    );
}
