//! Disk images as root: the qemu assembler run directly (MBR+BIOS, GPT+BIOS-boot, GPT+UEFI,
//! every output format, ESPs of every common size) and through the engine with the grub2 stage and an xfs root, whose
//! loop device comes from the remoteloop API. Each test checks what a user would: the
//! partition table read back with `sfdisk --json`, filesystem UUIDs and labels (`blkid -p`
//! at the partition's offset), files inside (`debugfs`, `mdir`), `qemu-img info`, and that no
//! loop device or mount is left behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{built_libdir, mounts_under, output, privileged, run_with_stdin, Env};
use serde_json::{json, Value};

const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn sfdisk_json(image: &Path) -> Value {
    serde_json::from_str(&output(Command::new("sfdisk").arg("--json").arg(image))).unwrap()
}

/// `blkid -p` of the filesystem at `sector`: (TYPE, UUID, LABEL).
fn blkid(image: &Path, sector: u64) -> (String, String, String) {
    let text = output(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg((sector * 512).to_string())
            .arg(image),
    );
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_owned()
    };
    (get("TYPE"), get("UUID"), get("LABEL"))
}

/// A file's content in the ext4 filesystem at `sector` (`size` sectors long), read with
/// debugfs from a sparse copy of the partition.
fn ext4_cat(image: &Path, sector: u64, size: u64, path: &str, scratch: &Path) -> String {
    let part = scratch.join("part.img");
    output(
        Command::new("dd")
            .arg(format!("if={}", image.display()))
            .arg(format!("of={}", part.display()))
            .args(["bs=512", "conv=sparse", "status=none"])
            .arg(format!("skip={sector}"))
            .arg(format!("count={size}")),
    );
    let text = output(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&part),
    );
    let _ = std::fs::remove_file(&part);
    text
}

/// No loop device backed by a file under `dir` (other tests on the machine may hold their own).
fn assert_no_loop_devices(dir: &Path) {
    let out = output(Command::new("losetup").arg("-a"));
    let ours: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .collect();
    assert_eq!(ours, Vec::<&str>::new(), "no loop device may be left");
}

/// The test tree: a kernel-like /boot, grub.cfg, an ESP directory, /etc/hello.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    for d in ["boot/grub", "boot/efi/EFI/debian", "etc"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("boot/vmlinuz-6.1.0-9-amd64"), "kernel").unwrap();
    std::fs::write(t.join("boot/initrd.img-6.1.0-9-amd64"), "initrd").unwrap();
    std::fs::write(t.join("boot/efi/EFI/debian/grub.cfg"), "esp cfg\n").unwrap();
    std::fs::write(t.join("etc/hello"), "hello\n").unwrap();
    t
}

/// Runs the built qemu assembler directly; returns (exit code, stderr).
fn qemu(tree: &Path, out: &Path, options: &Value) -> (i32, String) {
    qemu_with_env(tree, out, options, &[])
}

/// [`qemu`] with `env` added to the assembler's environment.
fn qemu_with_env(tree: &Path, out: &Path, options: &Value, env: &[(&str, &str)]) -> (i32, String) {
    let args = json!({"tree": tree, "options": options, "output_dir": out});
    let mut cmd = Command::new(built_libdir().join("assemblers/org.osbuild.qemu"));
    cmd.envs(env.iter().copied());
    let res = run_with_stdin(cmd, &args.to_string());
    (
        res.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&res.stderr).into_owned(),
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn privileged_mbr_bios_gpt_bios_boot_and_gpt_uefi() {
    if !privileged("privileged_mbr_bios_gpt_bios_boot_and_gpt_uefi") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let t = tree(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let size: u64 = 256 << 20;
    let root_uuid = "0b0bcafe-0000-4000-8000-000000000001";

    // MBR + BIOS: the legacy single root partition.
    let (code, err) = qemu(
        &t,
        &out,
        &json!({"format": "raw", "filename": "mbr.raw", "ptuuid": "0x0b0bcafe", "size": size,
                "root_fs_uuid": root_uuid}),
    );
    assert_eq!(code, 0, "{err}");
    let img = out.join("mbr.raw");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
    let pt = sfdisk_json(&img);
    assert_eq!(pt["partitiontable"]["label"], "dos");
    assert_eq!(pt["partitiontable"]["id"], "0x0b0bcafe");
    let p = &pt["partitiontable"]["partitions"][0];
    assert_eq!(
        (p["start"].as_u64(), p["type"].as_str()),
        (Some(2048), Some("83"))
    );
    assert_eq!(p["bootable"], true);
    assert_eq!(
        blkid(&img, 2048),
        ("ext4".into(), root_uuid.into(), "".into())
    );
    let bytes = std::fs::read(&img).unwrap();
    let boot_img = std::fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
    assert_eq!(
        &bytes[..0x5a],
        &boot_img[..0x5a],
        "boot.img code in the MBR"
    );
    assert_eq!(
        &bytes[0x5c..0x64],
        &1u64.to_le_bytes(),
        "core image at sector 1"
    );
    assert_eq!(
        &bytes[510..512],
        &[0x55, 0xaa],
        "the partition table survives"
    );
    assert_ne!(
        &bytes[512..1024],
        &[0u8; 512][..],
        "core image after the MBR"
    );
    let size_sectors = p["size"].as_u64().unwrap();
    assert_eq!(
        ext4_cat(&img, 2048, size_sectors, "/etc/hello", dir.path()),
        "hello\n"
    );

    // GPT + BIOS-boot partition.
    let gpt_bios = json!({"format": "raw", "filename": "gpt.raw",
        "ptuuid": "0b0bcafe-0000-4000-8000-0000000000aa", "size": size, "pttype": "gpt",
        "bootloader": {"type": "grub2", "platform": "i386-pc"},
        "partitions": [
            {"start": 2048, "size": 2048, "type": BIOS_BOOT, "name": "bios"},
            {"start": 4096, "size": 200000, "type": LINUX, "name": "root",
             "filesystem": {"type": "ext4", "uuid": root_uuid, "label": "root", "mountpoint": "/"}}]});
    let (code, err) = qemu(&t, &out, &gpt_bios);
    assert_eq!(code, 0, "{err}");
    let img = out.join("gpt.raw");
    let pt = sfdisk_json(&img);
    assert_eq!(pt["partitiontable"]["label"], "gpt");
    assert_eq!(
        pt["partitiontable"]["id"],
        "0B0BCAFE-0000-4000-8000-0000000000AA"
    );
    let parts = pt["partitiontable"]["partitions"].as_array().unwrap();
    let got: Vec<(u64, u64, &str, &str)> = parts
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap(),
                p["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2048, 2048, BIOS_BOOT, "bios"),
            (4096, 200000, LINUX, "root")
        ]
    );
    assert_eq!(
        blkid(&img, 4096),
        ("ext4".into(), root_uuid.into(), "root".into())
    );
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(&bytes[0x5c..0x64], &2048u64.to_le_bytes());
    let core = 2048 * 512;
    assert_eq!(&bytes[core + 500..core + 508], &2049u64.to_le_bytes());

    // GPT + UEFI: an ESP filled with mtools, GRUB as BOOTX64.EFI.
    let uefi = json!({"format": "qcow2", "filename": "uefi.qcow2",
        "ptuuid": "0b0bcafe-0000-4000-8000-0000000000bb", "size": size, "pttype": "gpt",
        "bootloader": {"type": "grub2", "platform": "x86_64-efi"},
        "partitions": [
            {"start": 2048, "size": 65536, "type": ESP,
             "filesystem": {"type": "vfat", "uuid": "7B77-95E7", "label": "ESP", "mountpoint": "/boot/efi"}},
            {"start": 67584, "size": 300000, "type": LINUX,
             "filesystem": {"type": "ext4", "uuid": root_uuid, "mountpoint": "/"}}]});
    let (code, err) = qemu(&t, &out, &uefi);
    assert_eq!(code, 0, "{err}");
    let raw = dir.path().join("uefi.raw");
    qcow2_to_raw(&out.join("uefi.qcow2"), &raw);
    assert_eq!(
        blkid(&raw, 2048),
        ("vfat".into(), "7B77-95E7".into(), "ESP".into())
    );
    let listing = output(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-/", "-i"])
            .arg(format!("{}@@{}", raw.display(), 2048 * 512))
            .arg("::/"),
    );
    assert!(listing.contains("::/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    assert!(listing.contains("::/EFI/debian/grub.cfg"), "{listing}");
    assert_eq!(
        files_in(&out),
        ["gpt.raw", "mbr.raw", "uefi.qcow2"],
        "no temporary file left"
    );
    assert_no_loop_devices(dir.path());
}

#[test]
fn privileged_every_format_has_the_right_virtual_size() {
    if !privileged("privileged_every_format_has_the_right_virtual_size") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let t = tree(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let size: u64 = 64 << 20;
    for (format, driver) in [
        ("raw", "raw"),
        ("qcow2", "qcow2"),
        ("vmdk", "vmdk"),
        ("vdi", "vdi"),
        ("vpc", "vpc"),
    ] {
        let name = format!("d.{format}");
        let (code, err) = qemu(
            &t,
            &out,
            &json!({"format": format, "filename": name, "ptuuid": "0x1", "size": size,
                    "root_fs_uuid": "0b0bcafe-0000-4000-8000-000000000001",
                    "bootloader": {"type": "none"}}),
        );
        assert_eq!(code, 0, "{format}: {err}");
        let info = image_info(&out.join(&name), driver);
        assert_eq!(
            info["virtual-size"].as_u64(),
            Some(size),
            "{format}: {info}"
        );
        if ["qcow2", "vmdk", "vdi"].contains(&format) {
            output(
                Command::new("qemu-img")
                    .args(["check", "-f", driver])
                    .arg(out.join(&name)),
            );
        }
    }
    // raw.xz decompresses to the raw image.
    let (code, err) = qemu(
        &t,
        &out,
        &json!({"format": "raw.xz", "filename": "d.raw.xz", "ptuuid": "0x1", "size": size,
                "root_fs_uuid": "0b0bcafe-0000-4000-8000-000000000001", "bootloader": {"type": "none"}}),
    );
    assert_eq!(code, 0, "{err}");
    let xz = Command::new("xz")
        .args(["-dc"])
        .arg(out.join("d.raw.xz"))
        .output()
        .unwrap();
    assert_eq!(xz.stdout.len() as u64, size);
    assert_no_loop_devices(dir.path());
}

/// `qemu-img info --output=json` of `image`, read with the format `driver`.
fn image_info(image: &Path, driver: &str) -> Value {
    serde_json::from_str(&output(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-f", driver])
            .arg(image),
    ))
    .unwrap()
}

/// `qemu-img info --output=json` of the qcow2 `image`.
fn qcow2_info(image: &Path) -> Value {
    image_info(image, "qcow2")
}

/// `qemu-img convert` of the qcow2 `image` to the raw file `raw`.
fn qcow2_to_raw(image: &Path, raw: &Path) {
    output(
        Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(image)
            .arg(raw),
    );
}

/// `qcow2_compression` zstd: a qcow2 whose header says zstd and whose guest disk is byte for
/// byte the zlib image's (both made under one `SOURCE_DATE_EPOCH`, so the raw disks are the
/// same); without the epoch (the parallel `-W` writer) a clean qcow2 with the partition table
/// and the files; the option with another format or an unknown type is refused by name.
#[test]
fn privileged_qcow2_with_zstd_clusters_holds_the_same_disk() {
    if !privileged("privileged_qcow2_with_zstd_clusters_holds_the_same_disk") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let t = tree(dir.path());
    // Something compressible beyond the metadata: 4 MiB of text.
    let line = "the quick brown fox jumps over the lazy dog\n";
    std::fs::write(t.join("etc/text"), line.repeat((4 << 20) / line.len())).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let root_uuid = "0b0bcafe-0000-4000-8000-000000000001";
    let options = |name: &str, compression: Option<&str>| {
        let mut o = json!({"format": "qcow2", "filename": name, "ptuuid": "0x0b0bcafe",
            "size": 64u64 << 20, "root_fs_uuid": root_uuid});
        if let Some(c) = compression {
            o["qcow2_compression"] = json!(c);
        }
        o
    };
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    for (name, compression) in [("zlib.qcow2", None), ("zstd.qcow2", Some("zstd"))] {
        let (code, err) = qemu_with_env(&t, &out, &options(name, compression), &epoch);
        assert_eq!(code, 0, "{name}: {err}");
    }
    let compression_type =
        |info: &Value| info["format-specific"]["data"]["compression-type"].clone();
    assert_eq!(
        compression_type(&qcow2_info(&out.join("zlib.qcow2"))),
        "zlib"
    );
    assert_eq!(
        compression_type(&qcow2_info(&out.join("zstd.qcow2"))),
        "zstd"
    );
    let (zlib_raw, zstd_raw) = (dir.path().join("zlib.raw"), dir.path().join("zstd.raw"));
    qcow2_to_raw(&out.join("zlib.qcow2"), &zlib_raw);
    qcow2_to_raw(&out.join("zstd.qcow2"), &zstd_raw);
    assert!(
        std::fs::read(&zlib_raw).unwrap() == std::fs::read(&zstd_raw).unwrap(),
        "the zstd image's guest disk differs from the zlib image's"
    );

    // The parallel writer (no epoch): a clean zstd qcow2 holding the table and the files.
    let (code, err) = qemu(&t, &out, &options("fast.qcow2", Some("zstd")));
    assert_eq!(code, 0, "{err}");
    let fast = out.join("fast.qcow2");
    let info = qcow2_info(&fast);
    assert_eq!(compression_type(&info), "zstd", "{info:#}");
    assert_eq!(info["virtual-size"].as_u64(), Some(64 << 20));
    output(
        Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(&fast),
    );
    let raw = dir.path().join("fast.raw");
    qcow2_to_raw(&fast, &raw);
    let table = |raw: &Path| {
        let mut t = sfdisk_json(raw)["partitiontable"].clone();
        t["device"] = Value::Null;
        for p in t["partitions"].as_array_mut().unwrap() {
            p["node"] = Value::Null;
        }
        t
    };
    assert_eq!(table(&raw), table(&zlib_raw), "the same partition table");
    let p = &sfdisk_json(&raw)["partitiontable"]["partitions"][0];
    let (start, size) = (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap());
    assert_eq!(
        ext4_cat(&raw, start, size, "/etc/hello", dir.path()),
        "hello\n"
    );
    let text = ext4_cat(&raw, start, size, "/etc/text", dir.path());
    assert!(
        text.len() > 4_000_000 && text.starts_with(line),
        "/etc/text"
    );

    // Refused by name, with nothing written.
    for (format, compression, want) in [
        (
            "vmdk",
            "zstd",
            r#"invalid option "qcow2_compression": only applies to format "qcow2", not "vmdk""#,
        ),
        (
            "raw",
            "zlib",
            r#"invalid option "qcow2_compression": only applies to format "qcow2", not "raw""#,
        ),
        (
            "qcow2",
            "lz4",
            r#"invalid option "qcow2_compression": "lz4" is not one of zlib, zstd"#,
        ),
    ] {
        let mut o = options("bad", Some(compression));
        o["format"] = json!(format);
        let (code, err) = qemu(&t, &out, &o);
        assert_eq!(code, 1, "{format} {compression}: {err}");
        assert!(err.contains(want), "{format} {compression}: {err}");
    }
    assert_eq!(
        files_in(&out),
        ["fast.qcow2", "zlib.qcow2", "zstd.qcow2"],
        "nothing else written"
    );
    assert_no_loop_devices(dir.path());
}

/// `fsck.vfat -n -v` of a FAT filesystem in `file` (which must be clean): its FAT entry width
/// ("2 FATs, 16 bit entries") and cluster size ("2048 bytes per cluster") lines.
fn fat_geometry(file: &Path) -> Vec<String> {
    let text = output(Command::new("fsck.vfat").args(["-n", "-v"]).arg(file));
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("bit entries") || l.contains("bytes per cluster"))
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    lines
}

/// An ESP of each common size in sparse disks of 0.5 to 20 GiB (where it fits): clean for
/// `fsck.vfat`, the FAT type and cluster size mkfs.fat chooses for a device of the partition's
/// size, the volume id and label asked for, the tree's files inside.
#[test]
fn privileged_esp_sizes_in_disks_of_every_size() {
    if !privileged("privileged_esp_sizes_in_disks_of_every_size") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let t = tree(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let part = dir.path().join("part.img");
    let plain = dir.path().join("plain.img");
    for disk_mib in [512u64, 2 << 10, 10 << 10, 20 << 10] {
        for esp_mib in [100u64, 200, 512, 600] {
            // 1 MiB before the ESP, the backup GPT (33 sectors) after it.
            if (esp_mib + 1) << 20 > (disk_mib << 20) - 33 * 512 {
                continue;
            }
            let case = format!("{esp_mib} MiB ESP in a {disk_mib} MiB disk");
            let sectors = esp_mib << 11;
            let (code, err) = qemu(
                &t,
                &out,
                &json!({"format": "raw", "filename": "esp.raw", "ptuuid": "0b0bcafe-0000-4000-8000-0000000000cc",
                    "size": disk_mib << 20, "pttype": "gpt",
                    "partitions": [{"start": 2048, "size": sectors, "type": ESP,
                        "filesystem": {"type": "vfat", "uuid": "7B77-95E7", "label": "ESP", "mountpoint": "/boot/efi"}}]}),
            );
            assert_eq!(code, 0, "{case}: {err}");
            let img = out.join("esp.raw");
            assert_eq!(
                blkid(&img, 2048),
                ("vfat".into(), "7B77-95E7".into(), "ESP".into()),
                "{case}"
            );
            let cfg = output(
                Command::new("mtype")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .arg("-i")
                    .arg(format!("{}@@{}", img.display(), 2048 * 512))
                    .arg("::/EFI/debian/grub.cfg"),
            );
            assert_eq!(cfg, "esp cfg\n", "{case}");
            output(
                Command::new("dd")
                    .arg(format!("if={}", img.display()))
                    .arg(format!("of={}", part.display()))
                    .args(["bs=1M", "conv=sparse", "status=none", "skip=1"])
                    .arg(format!("count={esp_mib}")),
            );
            let _ = std::fs::remove_file(&plain);
            std::fs::File::create(&plain)
                .unwrap()
                .set_len(esp_mib << 20)
                .unwrap();
            output(Command::new("mkfs.fat").arg(&plain));
            assert_eq!(fat_geometry(&part), fat_geometry(&plain), "{case}");
            eprintln!("{case}: {:?}", fat_geometry(&part));
            std::fs::remove_file(&img).unwrap();
        }
    }
    assert_eq!(
        files_in(&out),
        Vec::<String>::new(),
        "no temporary file left"
    );
}

#[test]
fn privileged_bad_size_and_failure_leave_nothing() {
    if !privileged("privileged_bad_size_and_failure_leave_nothing") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let t = tree(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, err) = qemu(
        &t,
        &out,
        &json!({"format": "raw", "filename": "d.raw", "ptuuid": "0x1", "size": 1000,
                "root_fs_uuid": "u"}),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("\"size\": 1000 is not a multiple of 512 bytes"),
        "{err}"
    );
    // Fails in the middle: mkfs.ext4 rejects the UUID after the table was written.
    let (code, err) = qemu(
        &t,
        &out,
        &json!({"format": "qcow2", "filename": "d.qcow2", "ptuuid": "0x1", "size": 64 << 20,
                "root_fs_uuid": "not-a-uuid"}),
    );
    assert_eq!(code, 1);
    assert!(err.contains("mkfs.ext4 failed"), "{err}");
    assert_eq!(files_in(&out), Vec::<String>::new(), "no partial image");
    assert_no_loop_devices(dir.path());
}

/// Builds `manifest` through the engine and returns a raw copy (`d.raw` in the test's
/// directory) of its output `filename`.
fn build_raw(env: &Env, manifest: &Value, filename: &str) -> PathBuf {
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0, "{result:#}");
    let qcow = env.committed(result["output_id"].as_str().unwrap(), filename);
    let raw = env.dir.path().join("d.raw");
    qcow2_to_raw(&qcow, &raw);
    raw
}

/// Through the engine: grub2 stage on a tree, qemu assembler with an ext4 /boot and an xfs
/// root (loop device from the remoteloop API), MBR + BIOS.
#[test]
fn privileged_engine_builds_xfs_disk_through_remoteloop() {
    if !privileged("privileged_engine_builds_xfs_disk_through_remoteloop") {
        return;
    }
    let env = Env::new();
    let root_uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
    let boot_uuid = "0b0bcafe-0000-4000-8000-000000000001";
    let manifest = |fail: bool| {
        json!({"pipeline": {
            "stages": [
                {"name": "org.osbuild.fstab", "options": {"filesystems": [{"uuid": root_uuid, "vfs_type": "xfs", "path": "/"}]}}
            ],
            "assembler": {"name": "org.osbuild.qemu", "options": {"format": "qcow2", "filename": "d.qcow2",
                "ptuuid": "0x0b0bcafe", "size": 512u64 << 20, "pttype": "dos", "partitions": [
                {"start": 2048, "size": 204800, "bootable": true, "type": "83",
                 "filesystem": {"type": "ext4", "uuid": boot_uuid, "label": "boot", "mountpoint": "/boot"}},
                {"start": 206848, "type": "83",
                 "filesystem": {"type": "xfs", "uuid": if fail { "bad-uuid" } else { root_uuid }, "label": "root", "mountpoint": "/"}}]}}
        }})
    };
    let raw = build_raw(&env, &manifest(false), "d.qcow2");
    let pt = sfdisk_json(&raw);
    let parts = pt["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["bootable"], true);
    assert_eq!(parts[1]["start"], 206848);
    assert_eq!(
        blkid(&raw, 206848),
        ("xfs".into(), root_uuid.into(), "root".into())
    );
    assert_eq!(
        blkid(&raw, 2048),
        ("ext4".into(), boot_uuid.into(), "boot".into())
    );
    // The xfs root holds /etc/fstab: read it back through a read-only loop device of ours.
    let dev = output(
        Command::new("losetup")
            .args(["-f", "--show", "-r", "-o"])
            .arg((206848u64 * 512).to_string())
            .arg(&raw),
    );
    let dev = dev.trim().to_owned();
    let ls = Command::new("xfs_db")
        .args(["-r", "-c", "ls /etc"])
        .arg(&dev)
        .output()
        .unwrap();
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("fstab"),
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );
    assert_no_loop_devices(env.dir.path());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());

    // A failure after the loop device was made: mkfs.xfs rejects the UUID.
    let (result, code) = env.build_json(&[], &manifest(true).to_string());
    assert_eq!(code, 1, "{result}");
    let out = result["assembler"]["output"].as_str().unwrap_or_default();
    assert!(out.contains("mkfs.xfs failed"), "{result}");
    assert_no_loop_devices(env.dir.path());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());
}

/// The host's loop devices are shared by everyone: one assembler gets at most 16 (the
/// remoteloop API refuses more, saying why), and all are detached when it ends.
#[test]
fn privileged_an_assembler_gets_a_bounded_number_of_loop_devices() {
    if !privileged("privileged_an_assembler_gets_a_bounded_number_of_loop_devices") {
        return;
    }
    let env = Env::new();
    // Loop devices over this test's files (other tests attach theirs meanwhile).
    let store = env.store.to_string_lossy().into_owned();
    let attached = || {
        let all = output(Command::new("losetup").arg("-a"));
        all.lines().filter(|l| l.contains(&store)).count()
    };
    let manifest = json!({"pipeline": {
        "assembler": {"name": "org.osbuild.test.loops", "options": {"count": 18}}}});
    let (result, code) = env.build_json(&[], &manifest.to_string());
    assert_eq!(code, 0, "{result}");
    let out = result["assembler"]["output"].as_str().unwrap();
    let replies: Vec<&str> = out.lines().filter(|l| l.starts_with("loop ")).collect();
    assert_eq!(replies.len(), 18, "{out}");
    for (k, reply) in replies.iter().enumerate() {
        if k < 16 {
            assert!(
                reply.contains("\"devname\": \"loop") || reply.contains("\"devname\":\"loop"),
                "{reply}"
            );
        } else {
            assert!(
                reply.contains("this assembler already has 16 loop devices, the most one may have"),
                "{reply}"
            );
        }
    }
    assert_eq!(attached(), 0, "every loop device detached");
}

/// Through the engine, without the network: the layout and the fstab and grub2 stages of
/// `osbuild-mkmanifest-debian --image --boot hybrid` on a tiny tree with a stand-in kernel.
/// The disk read back: GPT with a BIOS boot partition holding GRUB's i386-pc core (and boot
/// code in the protective MBR pointing at it), a 200 MiB FAT ESP with GRUB's EFI program at
/// the removable path and in EFI/debian, and the root's fstab mounting the ESP.
#[test]
fn privileged_engine_builds_hybrid_debian_layout() {
    use osbuild::mkmanifest::debian::{self, Boot, ImageOptions, ManifestOptions};
    if !privileged("privileged_engine_builds_hybrid_debian_layout") {
        return;
    }
    let env = Env::new();
    let img = ImageOptions {
        size: 512 << 20,
        ..ImageOptions::for_boot(Boot::Hybrid)
    };
    let generated = debian::manifest(
        &[],
        &ManifestOptions {
            image: Some(img.clone()),
            ..Default::default()
        },
    );
    // The generator's stages after dpkg, on a minimal root with a kernel file.
    let mut stages = vec![
        json!({"name": "org.osbuild.test.minimal-root"}),
        json!({"name": "org.osbuild.script", "options": {"script":
            "#!/bin/sh\nmkdir -p /boot\necho kernel > /boot/vmlinuz-6.1.0-1-amd64\n\
             echo initrd > /boot/initrd.img-6.1.0-1-amd64\n"}}),
    ];
    stages.extend(
        generated["pipeline"]["stages"].as_array().unwrap()[1..]
            .iter()
            .cloned(),
    );
    let manifest = json!({"pipeline": {"stages": stages,
        "assembler": generated["pipeline"]["assembler"].clone()}});
    let raw = build_raw(&env, &manifest, "disk.qcow2");

    let pt = sfdisk_json(&raw);
    let table = &pt["partitiontable"];
    assert_eq!(table["label"], "gpt", "{pt:#}");
    assert_eq!(table["id"], img.ptuuid.to_uppercase(), "{pt:#}");
    let layout: Vec<(u64, u64, &str)> = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap(),
            )
        })
        .collect();
    let root_size = layout[2].1;
    assert_eq!(
        layout,
        [
            (2048, 2048, BIOS_BOOT),
            (4096, 409600, ESP),
            (413696, root_size, LINUX)
        ],
        "{pt:#}"
    );
    assert!(root_size > 200 * 2048, "{pt:#}");

    // GRUB: boot code in the protective MBR, its core in the BIOS boot partition.
    let disk = std::fs::File::open(&raw).unwrap();
    let read = |offset: u64, len: usize| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        disk.read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    let mbr = read(0, 512);
    assert_eq!(mbr[450], 0xee, "protective MBR");
    assert!(mbr[..440].windows(4).any(|w| w == b"GRUB"), "no boot code");
    assert_eq!(mbr[0x5c..0x64], 2048u64.to_le_bytes(), "core's sector");
    let core = read(2048 * 512, 2048 * 512);
    let used = core.iter().filter(|&&b| b != 0).count();
    assert!(
        used > 10_000,
        "BIOS boot partition holds {used} non-zero bytes"
    );

    // The ESP: FAT with our volume id, GRUB's EFI program twice, the redirecting grub.cfg.
    assert_eq!(
        blkid(&raw, 4096),
        ("vfat".into(), img.esp_fs_uuid.clone(), String::new())
    );
    let esp = format!("{}@@{}", raw.display(), 4096 * 512);
    let listing = output(Command::new("mdir").args(["-/", "-b", "-i", &esp, "::/EFI"]));
    for want in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/debian/grubx64.efi",
        "::/EFI/debian/grub.cfg",
    ] {
        assert!(listing.contains(want), "{want} not in {listing}");
    }
    let mtype = |path: &str| {
        let out = Command::new("mtype")
            .args(["-i", &esp, path])
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
        out.stdout
    };
    let efi = mtype("::/EFI/BOOT/BOOTX64.EFI");
    assert_eq!(&efi[..2], b"MZ");
    assert_eq!(efi, mtype("::/EFI/debian/grubx64.efi"));
    let cfg = String::from_utf8(mtype("::/EFI/debian/grub.cfg")).unwrap();
    assert!(cfg.contains("--file /boot/grub/grub.cfg\n"), "{cfg}");

    // The root: fstab mounts the ESP; GRUB's configuration boots the stand-in kernel.
    let scratch = env.dir.path();
    let fstab = ext4_cat(&raw, 413696, root_size, "/etc/fstab", scratch);
    assert!(
        fstab.ends_with(&format!(
            "UUID={}\t/boot/efi\tvfat\tumask=0077\t0\t2\n",
            img.esp_fs_uuid
        )),
        "{fstab}"
    );
    let grub_cfg = ext4_cat(&raw, 413696, root_size, "/boot/grub/grub.cfg", scratch);
    assert!(
        grub_cfg.contains("  linux /boot/vmlinuz-6.1.0-1-amd64 root=UUID="),
        "{grub_cfg}"
    );
    assert_no_loop_devices(env.dir.path());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());
}

/// GRUB's powerpc-ieee1275 modules (Debian's ppc64el grub-ieee1275-bin, fetched from the Debian
/// mirror as the dpkg tests fetch their packages) in /usr/lib/grub/powerpc-ieee1275 while the
/// guard lives; nothing is left when it drops. `None` when it cannot be had (no network).
struct PpcModules {
    installed: Option<PathBuf>,
}

impl PpcModules {
    fn install(scratch: &Path) -> Option<PpcModules> {
        let dir = PathBuf::from("/usr/lib/grub/powerpc-ieee1275");
        if dir.is_dir() {
            return Some(PpcModules { installed: None });
        }
        let unpacked = common::debian_ppc64el_grub_modules(scratch)?;
        let status = Command::new("cp")
            .arg("-a")
            .arg(&unpacked)
            .arg(&dir)
            .status()
            .ok()?;
        status.success().then_some(PpcModules {
            installed: Some(dir),
        })
    }
}

impl Drop for PpcModules {
    fn drop(&mut self) {
        if let Some(dir) = &self.installed {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// v10's f30-ppc64le layout: a dos table with a PReP boot partition (type 41) and the root;
/// GRUB for Open Firmware (a big-endian PowerPC ELF carrying the prefix) is written at the start
/// of the PReP partition, and nothing into the MBR's boot code.
#[test]
fn privileged_powerpc_ieee1275_core_goes_into_the_prep_partition() {
    if !privileged("privileged_powerpc_ieee1275_core_goes_into_the_prep_partition") {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let Some(_modules) = PpcModules::install(dir.path()) else {
        panic!("cannot fetch Debian's ppc64el grub-ieee1275-bin (network to deb.debian.org?)");
    };
    let t = tree(dir.path());
    std::fs::create_dir_all(t.join("boot/grub2")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (code, err) = qemu(
        &t,
        &out,
        &json!({"format": "raw", "filename": "ppc.raw", "ptuuid": "0x14fc63d2", "size": 64 << 20,
            "pttype": "dos", "bootloader": {"type": "grub2", "platform": "powerpc-ieee1275"},
            "partitions": [
                {"size": 8192, "type": "41", "bootable": true},
                {"start": 10240, "filesystem": {"type": "ext4", "mountpoint": "/",
                    "uuid": "0b0bcafe-0000-4000-8000-000000000003"}}]}),
    );
    assert_eq!(code, 0, "{err}");
    let img = out.join("ppc.raw");
    let pt = sfdisk_json(&img);
    let parts = &pt["partitiontable"]["partitions"];
    assert_eq!(
        (parts[0]["start"].as_u64(), parts[0]["type"].as_str()),
        (Some(2048), Some("41"))
    );
    assert_eq!(parts[0]["size"].as_u64(), Some(8192));
    let bytes = std::fs::read(&img).unwrap();
    common::assert_prep_core(&bytes, (2048, 8192), "(,msdos2)/boot/grub2");
    assert_eq!(blkid(&img, 10240).0, "ext4");
}

/// A stand-in for s390x's zipl at /usr/sbin/zipl (none exists for this machine's architecture)
/// while the guard lives: it records its arguments and writes the boot map into --target and
/// an IPL marker at the start of --targetbase, as the real one writes its boot records there.
struct StubZipl;

const ZIPL: &str = "/usr/sbin/zipl";

impl StubZipl {
    fn install() -> StubZipl {
        assert!(
            !Path::new(ZIPL).exists(),
            "{ZIPL} exists here: this test would replace it"
        );
        let script = r#"#!/bin/sh
args="$*"
while [ $# -gt 0 ]; do
    case "$1" in --target) target=$2; shift ;; --targetbase) base=$2; shift ;; esac
    shift
done
printf '%s\n' "$args" > "$target/zipl-args"
echo "stub boot map" > "$target/bootmap"
printf 'ZIPL-IPL' | dd of="$base" conv=notrunc status=none
"#;
        osbuild_sys::process::write_executable(Path::new(ZIPL), script.as_bytes(), 0o755).unwrap();
        StubZipl
    }
}

impl Drop for StubZipl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(ZIPL);
    }
}

/// v10's f30-s390x: the qemu assembler with `bootloader: zipl` runs the build root's zipl on
/// the mounted root (through loop devices from the remoteloop API) with v10's arguments, from
/// the first non-rescue boot loader entry; what zipl writes lands in the image.
#[test]
fn privileged_zipl_writes_its_boot_map_and_ipl_record_into_the_image() {
    if !privileged("privileged_zipl_writes_its_boot_map_and_ipl_record_into_the_image") {
        return;
    }
    let _zipl = StubZipl::install();
    let env = Env::new();
    let manifest = json!({"pipeline": {
        "stages": [{"name": "org.osbuild.test.bls"}],
        "assembler": {"name": "org.osbuild.qemu", "options": {
            "format": "qcow2", "filename": "disk.qcow2", "ptuuid": "0x14fc63d2",
            "size": 64 << 20, "pttype": "dos", "bootloader": {"type": "zipl"},
            "partitions": [{"start": 2048, "bootable": true, "filesystem": {
                "type": "ext4", "mountpoint": "/",
                "uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac"}}]}}}});
    let raw = build_raw(&env, &manifest, "disk.qcow2");
    let bytes = std::fs::read(&raw).unwrap();
    assert_eq!(&bytes[..8], b"ZIPL-IPL", "the IPL record on the disk");
    let pt = sfdisk_json(&raw);
    let size = pt["partitiontable"]["partitions"][0]["size"]
        .as_u64()
        .unwrap();
    let scratch = env.dir.path();
    let args = ext4_cat(&raw, 2048, size, "/boot/zipl-args", scratch);
    let words: Vec<&str> = args.split_whitespace().collect();
    let after = |flag: &str| {
        let at = words
            .iter()
            .position(|w| *w == flag)
            .unwrap_or_else(|| panic!("{flag}: {args}"));
        words[at + 1]
    };
    assert!(after("--target").ends_with("/boot"), "{args}");
    assert!(
        after("--image").ends_with("/boot/vmlinuz-5.3.7-301.fc31.s390x"),
        "{args}"
    );
    assert!(
        after("--ramdisk").ends_with("/boot/initramfs-5.3.7-301.fc31.s390x.img"),
        "{args}"
    );
    assert!(
        args.contains("--parameters root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro "),
        "{args}"
    );
    assert!(after("--targetbase").starts_with("/dev/loop"), "{args}");
    assert_eq!(after("--targettype"), "SCSI");
    assert_eq!(after("--targetblocksize"), "512");
    assert_eq!(after("--targetoffset"), "2048");
    assert_eq!(
        ext4_cat(&raw, 2048, size, "/boot/bootmap", scratch),
        "stub boot map\n"
    );
    assert_no_loop_devices(env.dir.path());
    assert_eq!(mounts_under(&env.store), Vec::<String>::new());
}
