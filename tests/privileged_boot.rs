//! A bootable Debian 12 image, end to end, as root: `osbuild-mkmanifest-debian --image
//! --boot-probe` resolves real packages with this machine's apt, the `osbuild` binary builds
//! the qcow2 (dpkg, fstab, grub2 and probe stages, qemu assembler), the disk's layout is
//! checked, and a private QEMU (tests/boot/qemu.sh, TCG) boots it: the probe unit must report
//! no failed unit at multi-user and power the machine off, so QEMU exits 0.
//!
//! Skips, with the reason printed, without root, without apt package lists, or without a
//! connection to the mirror apt names.

mod common;

use std::fs::File;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{mounts_under, output, privileged, processes_matching, Env};
use osbuild::mkmanifest::debian::{ImageOptions, PROBE_SUCCESS};
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

#[test]
fn privileged_debian_image_builds_and_boots_to_multi_user() {
    let name = "privileged_debian_image_builds_and_boots_to_multi_user";
    if !privileged(name) {
        return;
    }
    let t0 = Instant::now();
    let env = Env::new();
    let manifest_path = env.dir.path().join("image.json");
    let gen = Command::new(env!("CARGO_BIN_EXE_osbuild-mkmanifest-debian"))
        .args(["--image", "--boot-probe", "--hostname", "osbuild-boot"])
        .arg("--output")
        .arg(&manifest_path)
        .output()
        .unwrap();
    if !gen.status.success() {
        eprintln!(
            "skipping {name}: cannot resolve packages with apt (run apt-get update): {}",
            String::from_utf8_lossy(&gen.stderr)
        );
        return;
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let urls = manifest["sources"]["org.osbuild.files"]["urls"]
        .as_object()
        .unwrap();
    let first = urls.values().next().and_then(Value::as_str).unwrap();
    if !reachable(first) {
        eprintln!("skipping {name}: the apt mirror of {first} is not reachable");
        return;
    }
    let names = urls
        .values()
        .filter_map(Value::as_str)
        .filter_map(|u| u.rsplit('/').next())
        .filter_map(|f| f.split('_').next())
        .collect::<Vec<_>>();
    for want in [
        "linux-image-6.1.0",
        "initramfs-tools",
        "systemd-sysv",
        "udev",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} not in {names:?}"
        );
    }
    let resolved = t0.elapsed();

    // Build through the osbuild binary.
    let manifest_text = manifest.to_string();
    let (result, code) = env.build_json(&[], &manifest_text);
    assert_eq!(code, 0, "{result:#}");
    assert_eq!(result["success"], true, "{result:#}");
    let built = t0.elapsed();
    let img = ImageOptions::default();
    let output_id = result["output_id"].as_str().unwrap();
    let qcow = env.committed(output_id, "disk.qcow2");

    // The image: a qcow2 of 2 GiB holding an MBR with GRUB's boot code and one bootable
    // ext4 partition with our UUID, whose fstab and grub.cfg name it.
    let info: Value = serde_json::from_str(&output(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&qcow),
    ))
    .unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], img.size);
    let raw = env.dir.path().join("disk.raw");
    output(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(&qcow)
            .arg(&raw),
    );
    let pt: Value =
        serde_json::from_str(&output(Command::new("sfdisk").arg("--json").arg(&raw))).unwrap();
    let table = &pt["partitiontable"];
    assert_eq!(table["label"], "dos", "{pt:#}");
    assert_eq!(table["id"], img.ptuuid, "{pt:#}");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{pt:#}");
    assert_eq!(parts[0]["start"], 2048, "{pt:#}");
    assert_eq!(parts[0]["type"], "83", "{pt:#}");
    assert_eq!(parts[0]["bootable"], true, "{pt:#}");
    let mbr = &std::fs::read(&raw).unwrap()[..512];
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    assert!(
        mbr.windows(4).any(|w| w == b"GRUB"),
        "no GRUB boot code in the MBR"
    );
    let blkid = output(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O", "1048576"])
            .arg(&raw),
    );
    assert!(blkid.contains("TYPE=ext4\n"), "{blkid}");
    assert!(
        blkid.contains(&format!("UUID={}\n", img.root_fs_uuid)),
        "{blkid}"
    );
    let fstab = ext4_cat(&raw, 1 << 20, "/etc/fstab");
    assert_eq!(
        fstab,
        format!(
            "UUID={}\t/\text4\terrors=remount-ro\t0\t1\n",
            img.root_fs_uuid
        )
    );
    let grub_cfg = ext4_cat(&raw, 1 << 20, "/boot/grub/grub.cfg");
    assert!(
        grub_cfg.contains(&format!(
            "root=UUID={} ro console=ttyS0,115200 systemd.wants=imgtest.service\n",
            img.root_fs_uuid
        )),
        "{grub_cfg}"
    );
    assert_eq!(ext4_cat(&raw, 1 << 20, "/etc/hostname"), "osbuild-boot\n");
    assert_eq!(ext4_cat(&raw, 1 << 20, "/etc/machine-id"), "");
    std::fs::remove_file(&raw).unwrap();

    // Boot it under a private QEMU (TCG; -snapshot keeps the store's image unchanged).
    let qemu_sh = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot/qemu.sh");
    let prepared = Command::new(&qemu_sh).arg("--prepare").output().unwrap();
    assert!(
        prepared.status.success(),
        "cannot prepare the private QEMU: {}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let log_path = env.dir.path().join("serial.log");
    let log = File::create(&log_path).unwrap();
    let boot_start = Instant::now();
    let mut vm = Vm(Command::new("timeout")
        .args(["--kill-after=10", "240"])
        .arg(&qemu_sh)
        .args([
            "-accel",
            "tcg",
            "-smp",
            "2",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-vga",
            "none",
            "-snapshot",
            "-drive",
        ])
        .arg(format!("file={},format=qcow2,if=virtio", qcow.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap());
    let status = vm.0.wait().unwrap();
    let booted = boot_start.elapsed();
    let serial = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let tail: String = serial
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        status.success(),
        "qemu (under timeout 240) exited {status}; serial log tail:\n{tail}"
    );
    assert!(
        serial.contains("IMGTEST-BEGIN") && serial.contains("osbuild-boot"),
        "the probe did not run; serial log tail:\n{tail}"
    );
    assert!(
        serial.contains(PROBE_SUCCESS),
        "failed units at multi-user; serial log tail:\n{tail}"
    );
    assert!(serial.contains("Linux version 6.1."), "{tail}");

    // Nothing left behind.
    assert_eq!(
        processes_matching(&qcow.to_string_lossy()),
        Vec::<String>::new()
    );
    assert_eq!(own_loop_devices(env.dir.path()), Vec::<String>::new());
    assert_eq!(mounts_under(env.dir.path()), Vec::<String>::new());
    eprintln!(
        "{name}: resolved {} packages in {:.1} s, built in {:.1} s, booted in {:.1} s, total {:.1} s",
        urls.len(),
        resolved.as_secs_f64(),
        (built - resolved).as_secs_f64(),
        booted.as_secs_f64(),
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
