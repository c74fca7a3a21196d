//! Bootable Debian 12 images of the three kinds, end to end, as root:
//! `osbuild-mkmanifest-debian --image --boot bios|uefi|hybrid --boot-probe` resolves real
//! packages with this machine's apt, the `osbuild` binary builds each qcow2 (dpkg, fstab, grub2
//! and probe stages, qemu assembler), each disk's layout is read back (partition table, GRUB's
//! boot code and core, the ESP's files, fstab, grub.cfg), and a private QEMU (tests/boot/qemu.sh,
//! TCG) boots it: BIOS under SeaBIOS, UEFI under OVMF (Debian's `ovmf`, a fresh copy of its
//! variable store per boot), hybrid both ways. The probe unit must report no failed unit at
//! multi-user and power the machine off, so QEMU exits 0. Each kind is built a second time
//! from `--format v2` (HEAD's pipelines os/image/qcow2, native v2 stages only; the ESP filled
//! through the `org.osbuild.fat` mount, staged by mtools on a kernel without vfat), read back
//! the same way and booted the same ways too.
//!
//! Time: the three manifests ask for the same packages (each kind's boot packages are passed
//! to all three), so their dpkg and hostname stages are one tree: the first build checkpoints
//! it and the other two start from it. Each image starts booting as soon as it is built, while
//! the next one builds; every boot has a deadline and QEMU is killed on failure. The three
//! v2 manifests share their dpkg stage the same way (checkpointed by the first v2 build).
//!
//! Skips, with the reason printed, without root, without apt package lists, or without a
//! connection to the mirror apt names.

mod common;

use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{mounts_under, output, privileged, processes_matching, Env};
use osbuild::mkmanifest::debian::{
    Boot, ImageOptions, BIOS_BOOT_TYPE, ESP_TYPE, LINUX_FS_TYPE, PROBE_SUCCESS,
};
use serde_json::Value;

/// `host:port` of an `http(s)://host[:port]/...` URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => Some((h.to_string(), p.parse().ok()?)),
        _ => Some((authority.to_string(), default)),
    }
}

/// Whether a TCP connection to the host of `url` opens within 5 s.
fn reachable(url: &str) -> bool {
    let Some((host, port)) = host_port(url) else {
        return false;
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

/// Kills the QEMU process group if the test panics while it runs.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.0.wait();
        }
    }
}

fn own_loop_devices(dir: &Path) -> Vec<String> {
    output(Command::new("losetup").arg("-a"))
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_owned)
        .collect()
}

/// A file of the ext4 filesystem at byte `offset` of `raw`, read with debugfs.
fn ext4_cat(raw: &Path, offset: u64, path: &str) -> String {
    output(
        Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(format!("{}?offset={offset}", raw.display())),
    )
}

/// The entries of a directory of the ext4 filesystem at byte `offset` of `raw`.
fn ext4_ls(raw: &Path, offset: u64, path: &str) -> Vec<String> {
    output(
        Command::new("debugfs")
            .args(["-R", &format!("ls -p {path}")])
            .arg(format!("{}?offset={offset}", raw.display())),
    )
    .lines()
    .filter_map(|l| l.split('/').nth(5).map(str::to_owned))
    .filter(|n| !n.is_empty())
    .collect()
}

/// A file of the FAT filesystem at byte `offset` of `raw`, read with mtools.
fn fat_cat(raw: &Path, offset: u64, path: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{offset}", raw.display()))
        .arg(format!("::{path}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mtype {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `len` bytes of `raw` from byte `offset`.
fn read_at(raw: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    File::open(raw)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// `blkid -p` of the filesystem at byte `offset` of `raw`.
fn blkid_at(raw: &Path, offset: u64) -> String {
    output(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O", &offset.to_string()])
            .arg(raw),
    )
}

/// The firmware a boot runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firmware {
    /// QEMU's default, SeaBIOS.
    Bios,
    /// OVMF from Debian's `ovmf` package.
    Uefi,
}

/// OVMF's code (read only) and the variable store template every boot copies.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

/// Seconds a boot may take before QEMU is killed (TCG boots take about a minute alone, several
/// at once on two busy cores take longer).
const BOOT_DEADLINE: u64 = 600;

/// The last lines of a serial log.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One image booting under a private QEMU in the background.
struct Booting {
    label: String,
    log_path: PathBuf,
    vm: Vm,
    started: Instant,
    took: Option<Duration>,
}

impl Booting {
    /// Starts QEMU (TCG, serial console to a log, `-snapshot` so the store's image stays
    /// unchanged) on `qcow` under `firmware`, killed by `timeout` after [`BOOT_DEADLINE`].
    fn start(dir: &Path, label: &str, qcow: &Path, firmware: Firmware) -> Booting {
        let qemu_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot/qemu.sh");
        let log_path = dir.join(format!("serial-{label}.log"));
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", &BOOT_DEADLINE.to_string()])
            .arg(&qemu_sh)
            .args([
                "-accel",
                "tcg",
                // One vCPU each: four VMs at once on two busy cores; with two, a guest was seen
                // stuck in soft lockups in virtio-blk's notify under heavy host load.
                "-smp",
                "1",
                "-m",
                "1024",
                "-nographic",
                "-no-reboot",
                "-nic",
                "none",
                "-vga",
                "none",
                "-snapshot",
            ]);
        if firmware == Firmware::Uefi {
            for f in [OVMF_CODE, OVMF_VARS] {
                assert!(
                    Path::new(f).is_file(),
                    "{f} is missing: install Debian's ovmf package (.ci/run does)"
                );
            }
            let vars = dir.join(format!("OVMF_VARS-{label}.fd"));
            std::fs::copy(OVMF_VARS, &vars).unwrap();
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
        }
        cmd.arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", qcow.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        Booting {
            label: label.to_owned(),
            log_path,
            vm: Vm(cmd.spawn().unwrap()),
            started: Instant::now(),
            took: None,
        }
    }

    /// Whether QEMU has exited; the boot's duration is taken at the first call that sees it.
    fn exited(&mut self) -> Option<(ExitStatus, Duration)> {
        let status = self.vm.0.try_wait().unwrap()?;
        Some((status, *self.took.get_or_insert(self.started.elapsed())))
    }

    /// Checks the probe reported no failed unit after QEMU exited with `status`; the serial
    /// log's tail is in every failure.
    fn check(&self, status: ExitStatus, took: Duration) {
        let serial = String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap()).into_owned();
        let label = &self.label;
        let tail = tail(&serial, 60);
        assert!(
            status.success(),
            "{label}: qemu (under timeout {BOOT_DEADLINE}) exited {status} after {:.0} s; \
             serial log tail:\n{tail}",
            took.as_secs_f64()
        );
        assert!(
            serial.contains("IMGTEST-BEGIN") && serial.contains("osbuild-boot"),
            "{label}: the probe did not run; serial log tail:\n{tail}"
        );
        assert!(
            serial.contains(PROBE_SUCCESS),
            "{label}: failed units at multi-user; serial log tail:\n{tail}"
        );
        assert!(serial.contains("Linux version 6.1."), "{label}: {tail}");
        if label.ends_with("-ovmf") {
            let line = "BdsDxe: starting Boot";
            assert!(serial.contains(line), "{label}: no {line:?}: {tail}");
        }
    }
}

/// Waits for every boot (each bounded by its `timeout`), polling so each one's duration is
/// its own, and checks each as it ends. Returns (label, duration) in the order they ended.
fn finish_all(mut boots: Vec<Booting>) -> Vec<(String, Duration)> {
    let mut done = Vec::new();
    while !boots.is_empty() {
        let mut i = 0;
        while i < boots.len() {
            if let Some((status, took)) = boots[i].exited() {
                let b = boots.remove(i);
                b.check(status, took);
                done.push((b.label.clone(), took));
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done
}

/// Runs the generator for `boot` (manifest `format` v1 or v2) with `extra` packages; `None` (and a printed reason) when
/// apt cannot resolve them here.
fn generate(env: &Env, boot: Boot, format: &str, extra: &[&str]) -> Option<Value> {
    let path = env
        .dir
        .path()
        .join(format!("{}-{format}.json", boot.name()));
    let gen = Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-debian"))
        .args([
            "--image",
            "--boot",
            boot.name(),
            "--boot-probe",
            "--format",
            format,
        ])
        .args(["--hostname", "osbuild-boot", "--output"])
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    if !gen.status.success() {
        eprintln!(
            "skipping: cannot resolve packages with apt (run apt-get update): {}",
            String::from_utf8_lossy(&gen.stderr)
        );
        return None;
    }
    Some(serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap())
}

/// The package names of a manifest's sources.
fn package_names(manifest: &Value) -> Vec<String> {
    manifest["sources"]["org.osbuild.files"]["urls"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_str)
        .filter_map(|u| u.rsplit('/').next())
        .filter_map(|f| f.split('_').next())
        .map(str::to_owned)
        .collect()
}

/// Checks that `qcow` is a qcow2 of `size` bytes and converts it to the raw file `raw`.
fn raw_copy(qcow: &Path, size: &Value, raw: PathBuf) -> PathBuf {
    let info: Value = serde_json::from_str(&output(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(qcow),
    ))
    .unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(&info["virtual-size"], size);
    output(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(qcow)
            .arg(&raw),
    );
    raw
}

/// Builds `manifest` with the osbuild binary (with `args`) and returns the raw copy of its
/// qcow2 (checked: qcow2 of the asked size) and the qcow2's store path.
fn build(env: &Env, manifest: &Value, args: &[&str]) -> (PathBuf, PathBuf) {
    let (result, code) = env.build_json(args, &manifest.to_string());
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["success"], true, "{result:#}");
    let output_id = result["output_id"].as_str().unwrap();
    let qcow = env.committed(output_id, "disk.qcow2");
    let size = &manifest["pipeline"]["assembler"]["options"]["size"];
    let raw = raw_copy(
        &qcow,
        size,
        env.dir.path().join(format!("disk-{output_id}.raw")),
    );
    (raw, qcow)
}

/// Builds the v2 `manifest` for `boot` (with `args`), exporting its `qcow2` pipeline into
/// DIR/v2-BOOT, and returns a raw copy of the qcow2 (checked: qcow2 of the asked size, the
/// same as the v1 image's) and the qcow2.
fn build_v2(env: &Env, boot: Boot, manifest: &Value, args: &[&str]) -> (PathBuf, PathBuf) {
    let out = env.dir.path().join(format!("v2-{}", boot.name()));
    let (result, code) = env.export_json(&["qcow2"], &out, args, &manifest.to_string());
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["success"], true, "{result:#}");
    let size = Value::from(ImageOptions::for_boot(boot).size);
    let qcow = out.join("qcow2/disk.qcow2");
    let raw = env.dir.path().join(format!("disk-{}-v2.raw", boot.name()));
    (raw_copy(&qcow, &size, raw), qcow)
}

fn partition_table(raw: &Path) -> Value {
    let pt: Value =
        serde_json::from_str(&output(Command::new("sfdisk").arg("--json").arg(raw))).unwrap();
    pt["partitiontable"].clone()
}

/// The BIOS image: an MBR with GRUB's boot code and one bootable ext4 partition with our
/// UUID, whose fstab and grub.cfg name it.
fn check_bios_disk(raw: &Path, img: &ImageOptions) {
    let table = partition_table(raw);
    assert_eq!(table["label"], "dos", "{table:#}");
    assert_eq!(table["id"], img.ptuuid, "{table:#}");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table:#}");
    assert_eq!(parts[0]["start"], 2048, "{table:#}");
    assert_eq!(parts[0]["type"], "83", "{table:#}");
    assert_eq!(parts[0]["bootable"], true, "{table:#}");
    let mbr = &read_at(raw, 0, 512);
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    assert!(
        mbr.windows(4).any(|w| w == b"GRUB"),
        "no GRUB boot code in the MBR"
    );
    let blkid = blkid_at(raw, 1 << 20);
    assert!(blkid.contains("TYPE=ext4\n"), "{blkid}");
    assert!(
        blkid.contains(&format!("UUID={}\n", img.root_fs_uuid)),
        "{blkid}"
    );
    let fstab = ext4_cat(raw, 1 << 20, "/etc/fstab");
    assert_eq!(
        fstab,
        format!(
            "UUID={}\t/\text4\terrors=remount-ro\t0\t1\n",
            img.root_fs_uuid
        )
    );
    let grub_cfg = ext4_cat(raw, 1 << 20, "/boot/grub/grub.cfg");
    assert!(
        grub_cfg.contains(&format!(
            "root=UUID={} ro console=ttyS0,115200 systemd.wants=imgtest.service\n",
            img.root_fs_uuid
        )),
        "{grub_cfg}"
    );
    assert_eq!(ext4_cat(raw, 1 << 20, "/etc/hostname"), "osbuild-boot\n");
    assert_eq!(ext4_cat(raw, 1 << 20, "/etc/machine-id"), "");
}

/// A UEFI or hybrid image: GPT (a BIOS boot partition first for hybrid), a FAT ESP of 200 MiB
/// with GRUB's EFI program at the removable path and in EFI/debian, the root's fstab
/// mounting the ESP at /boot/efi. Returns the root filesystem's byte offset.
fn check_gpt_disk(raw: &Path, img: &ImageOptions) -> u64 {
    let table = partition_table(raw);
    assert_eq!(table["label"], "gpt", "{table:#}");
    assert_eq!(table["id"], img.ptuuid.to_uppercase(), "{table:#}");
    let parts = table["partitions"].as_array().unwrap();
    let hybrid = img.boot == Boot::Hybrid;
    assert_eq!(parts.len(), if hybrid { 3 } else { 2 }, "{table:#}");
    let (esp, root) = (&parts[parts.len() - 2], &parts[parts.len() - 1]);
    assert_eq!(esp["type"], ESP_TYPE, "{table:#}");
    assert_eq!(esp["size"], 200 * 2048, "{table:#}");
    assert_eq!(root["type"], LINUX_FS_TYPE, "{table:#}");
    let esp_end = esp["start"].as_u64().unwrap() + esp["size"].as_u64().unwrap();
    assert_eq!(root["start"].as_u64().unwrap(), esp_end, "{table:#}");
    // The root fills the disk up to the backup GPT, in whole MiB.
    let root_end = root["start"].as_u64().unwrap() + root["size"].as_u64().unwrap();
    let usable_end = table["lastlba"].as_u64().unwrap() + 1;
    assert!(
        root_end <= usable_end && root_end + 2048 > usable_end,
        "{table:#}"
    );
    let disk = read_at(raw, 0, 4096 * 512);
    assert_eq!(disk[450], 0xee, "a protective MBR");
    let mbr_has_grub = disk[..440].windows(4).any(|w| w == b"GRUB");
    if hybrid {
        let bb = &parts[0];
        assert_eq!(
            (
                bb["start"].as_u64(),
                bb["size"].as_u64(),
                bb["type"].as_str()
            ),
            (Some(2048), Some(2048), Some(BIOS_BOOT_TYPE)),
            "{table:#}"
        );
        // GRUB's core fills the start of the BIOS boot partition and boot.img points there.
        let core = &disk[2048 * 512..4096 * 512];
        assert!(
            core[..512].iter().any(|&b| b != 0),
            "BIOS boot partition is empty"
        );
        assert!(
            core.iter().filter(|&&b| b != 0).count() > 10_000,
            "GRUB core too small"
        );
        assert!(mbr_has_grub, "no GRUB boot code in the MBR");
        assert_eq!(
            disk[0x5c..0x64],
            2048u64.to_le_bytes(),
            "boot.img's core sector"
        );
    } else {
        assert!(!mbr_has_grub, "a UEFI-only disk has no BIOS boot code");
    }
    let esp_at = esp["start"].as_u64().unwrap() * 512;
    let blkid = blkid_at(raw, esp_at);
    assert!(blkid.contains("TYPE=vfat\n"), "{blkid}");
    assert!(
        blkid.contains(&format!("UUID={}\n", img.esp_fs_uuid)),
        "{blkid}"
    );
    let removable = fat_cat(raw, esp_at, "/EFI/BOOT/BOOTX64.EFI");
    assert_eq!(&removable[..2], b"MZ", "BOOTX64.EFI is no PE program");
    assert!(removable.len() > 100_000, "{}", removable.len());
    assert_eq!(
        removable,
        fat_cat(raw, esp_at, "/EFI/debian/grubx64.efi"),
        "Debian's EFI/debian holds the same GRUB"
    );
    let esp_cfg = String::from_utf8(fat_cat(raw, esp_at, "/EFI/debian/grub.cfg")).unwrap();
    let root_at = root["start"].as_u64().unwrap() * 512;
    let kernel_args = format!(
        "root=UUID={} ro console=ttyS0,115200 systemd.wants=imgtest.service\n",
        img.root_fs_uuid
    );
    // The ESP's configuration finds the canonical one on the root (the file the tree's
    // update-grub rewrites on a kernel update).
    assert!(
        esp_cfg.contains("--file /boot/grub/grub.cfg\n"),
        "{esp_cfg}"
    );
    assert!(
        esp_cfg.contains("configfile $prefix/grub.cfg\n"),
        "{esp_cfg}"
    );
    let grub_cfg = ext4_cat(raw, root_at, "/boot/grub/grub.cfg");
    assert!(grub_cfg.contains(&kernel_args), "{grub_cfg}");
    let grub_dir = ext4_ls(raw, root_at, "/boot/grub");
    assert!(grub_dir.contains(&"x86_64-efi".to_owned()), "{grub_dir:?}");
    assert_eq!(
        grub_dir.contains(&"i386-pc".to_owned()),
        hybrid,
        "{grub_dir:?}"
    );
    assert_eq!(
        ext4_cat(raw, root_at, "/etc/fstab"),
        format!(
            "UUID={}\t/\text4\terrors=remount-ro\t0\t1\n\
             UUID={}\t/boot/efi\tvfat\tumask=0077\t0\t2\n",
            img.root_fs_uuid, img.esp_fs_uuid
        )
    );
    assert_eq!(ext4_cat(raw, root_at, "/etc/hostname"), "osbuild-boot\n");
    root_at
}

/// Checks the disk of a `boot` image from its raw copy (removed after) and starts booting its
/// qcow2: under SeaBIOS unless UEFI-only, under OVMF unless BIOS-only (`LABEL-seabios`,
/// `LABEL-ovmf`).
fn check_and_boot(dir: &Path, boot: Boot, label: &str, raw: &Path, qcow: &Path) -> Vec<Booting> {
    let img = ImageOptions::for_boot(boot);
    match boot {
        Boot::Bios => check_bios_disk(raw, &img),
        Boot::Uefi | Boot::Hybrid => {
            check_gpt_disk(raw, &img);
        }
    }
    std::fs::remove_file(raw).unwrap();
    let mut boots = Vec::new();
    if boot != Boot::Uefi {
        boots.push(Booting::start(
            dir,
            &format!("{label}-seabios"),
            qcow,
            Firmware::Bios,
        ));
    }
    if boot != Boot::Bios {
        boots.push(Booting::start(
            dir,
            &format!("{label}-ovmf"),
            qcow,
            Firmware::Uefi,
        ));
    }
    boots
}

#[test]
fn privileged_debian_images_build_and_boot_bios_uefi_and_hybrid() {
    let name = "privileged_debian_images_build_and_boot_bios_uefi_and_hybrid";
    if !privileged(name) {
        return;
    }
    let t0 = Instant::now();
    let env = Env::new();
    // Every kind's boot packages in all three trees, so they share the installed tree.
    let mut extra: Vec<&str> = Boot::ALL
        .iter()
        .flat_map(|(_, b)| b.packages())
        .copied()
        .collect();
    extra.sort();
    extra.dedup();
    let mut manifests = Vec::new();
    for boot in [Boot::Uefi, Boot::Hybrid, Boot::Bios] {
        let Some(m) = generate(&env, boot, "v1", &extra) else {
            return;
        };
        manifests.push((boot, m));
    }
    let mut v2_manifests = Vec::new();
    for boot in [Boot::Bios, Boot::Uefi, Boot::Hybrid] {
        let Some(m) = generate(&env, boot, "v2", &extra) else {
            return;
        };
        v2_manifests.push((boot, m));
    }
    let first = manifests[0].1["sources"]["org.osbuild.files"]["urls"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .and_then(Value::as_str)
        .unwrap()
        .to_owned();
    if !reachable(&first) {
        eprintln!("skipping {name}: the apt mirror of {first} is not reachable");
        return;
    }
    let names = package_names(&manifests[0].1);
    for want in [
        "linux-image-6.1.0",
        "initramfs-tools",
        "systemd-sysv",
        "udev",
        "grub-efi-amd64",
        "grub-efi-amd64-bin",
        "grub-pc-bin",
        "dosfstools",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} not in {names:?}"
        );
    }
    // The installed tree (dpkg and hostname stages) is the same in all three.
    let shared: Vec<Value> = manifests
        .iter()
        .map(|(_, m)| env.inspect(m)["pipeline"]["stages"][1]["id"].clone())
        .collect();
    assert!(shared.iter().all(|id| *id == shared[0]), "{shared:?}");
    let checkpoint = shared[0].as_str().unwrap().to_owned();
    let resolved = t0.elapsed();

    // The private QEMU, downloaded and unpacked once (panics with qemu.sh's message).
    output(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot/qemu.sh"))
            .arg("--prepare"),
    );

    // Build each image and start its boots at once; the next one builds meanwhile.
    let mut boots = Vec::new();
    let mut build_times = Vec::new();
    for (i, (boot, manifest)) in manifests.iter().enumerate() {
        let started = Instant::now();
        let args: &[&str] = if i == 0 {
            &["--checkpoint", &checkpoint]
        } else {
            &[]
        };
        let (raw, qcow) = build(&env, manifest, args);
        build_times.push((boot.name().to_owned(), started.elapsed()));
        boots.extend(check_and_boot(
            env.dir.path(),
            *boot,
            boot.name(),
            &raw,
            &qcow,
        ));
    }
    // The three images again from the v2 manifests: native v2 stages only (dpkg from a files
    // input, truncate, sfdisk, mkfs.ext4, mkfs.fat and copy through loop devices and mounts
    // (the ESP's fat mount staged by mtools where the kernel has no vfat), grub2.inst, qemu),
    // the .debs from the same store's downloads. The three dpkg stages are one: the first
    // build checkpoints it.
    let dpkg_ids: Vec<Value> = v2_manifests
        .iter()
        .map(|(_, m)| env.inspect(m)["pipelines"][0]["stages"][0]["id"].clone())
        .collect();
    assert!(dpkg_ids.iter().all(|id| *id == dpkg_ids[0]), "{dpkg_ids:?}");
    for (i, (boot, manifest)) in v2_manifests.iter().enumerate() {
        let started = Instant::now();
        let args: &[&str] = if i == 0 {
            &["--checkpoint", "org.osbuild.dpkg"]
        } else {
            &[]
        };
        let (raw, qcow) = build_v2(&env, *boot, manifest, args);
        let label = format!("{}-v2", boot.name());
        build_times.push((label.clone(), started.elapsed()));
        boots.extend(check_and_boot(env.dir.path(), *boot, &label, &raw, &qcow));
    }
    let built = t0.elapsed();
    let boot_times = finish_all(boots);

    // Nothing left behind.
    assert_eq!(
        processes_matching(&env.store.to_string_lossy()),
        Vec::<String>::new()
    );
    assert_eq!(own_loop_devices(env.dir.path()), Vec::<String>::new());
    assert_eq!(mounts_under(env.dir.path()), Vec::<String>::new());
    eprintln!(
        "{name}: resolved {} packages in {:.1} s; built {:?}; boots (overlapping, in the order they ended) {:?}; \
         builds done at {:.1} s, total {:.1} s",
        names.len(),
        resolved.as_secs_f64(),
        build_times
            .iter()
            .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        boot_times
            .iter()
            .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        built.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn mirror_host_and_port_from_urls() {
    let cases = [
        (
            "http://m.example/debian/pool/a.deb",
            Some(("m.example", 80)),
        ),
        ("https://m.example/a.deb", Some(("m.example", 443))),
        ("http://m.example:8080/a.deb", Some(("m.example", 8080))),
        ("m.example/a.deb", None),
    ];
    for (url, want) in cases {
        assert_eq!(
            host_port(url),
            want.map(|(h, p)| (h.to_string(), p)),
            "{url}"
        );
    }
}
