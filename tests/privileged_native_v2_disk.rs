//! Our native sgdisk, grub2.inst, tmpfilesd, systemd.unit and systemd.unit.create stages in v2
//! manifests written as for osbuild HEAD's: each manifest passes `--inspect`, is built, and
//! the result is read back as a user would check it: the GPT with `sfdisk --json`, GRUB's boot
//! code and core image as bytes of the disk, the written files by path and content. A bad
//! option of each stage is refused before anything runs, naming the stage and the JSON path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{mounts_under, privileged, Env};
use serde_json::{json, Value};

const PT_UUID: &str = "D209C89E-EA5E-4FBD-B161-B461CCE297E0";
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const BIOS_UUID: &str = "FAC7F1FB-3E8D-4137-A512-961DE09A5549";
const ROOT_UUID: &str = "6264D520-3FB9-423F-8AB8-7A0A8E3D3562";
const ROOT_FS_UUID: &str = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
/// (start, size) in sectors of the 64 MiB disk's BIOS boot and root partitions.
const BIOS: (u64, u64) = (2048, 2048);
const ROOT: (u64, u64) = (4096, 124928);
/// (start, size) of the PReP and root partitions of the dos disk.
const PREP: (u64, u64) = (2048, 8192);
const PPC_ROOT: (u64, u64) = (10240, 120832);
const GRUB_I386: &str = "/usr/lib/grub/i386-pc";

fn stage(kind: &str, options: Value) -> Value {
    json!({"type": format!("org.osbuild.{kind}"), "options": options})
}

fn with(mut stage: Value, key: &str, value: Value) -> Value {
    stage[key] = value;
    stage
}

fn whole_disk() -> Value {
    json!({"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.raw", "lock": true}}})
}

/// The files of a tree: tmpfiles.d, a drop-in and two unit files. Sections and options are
/// written in the order the stage gets them; the engine hands options over with their keys
/// sorted (its JSON objects are sorted maps), so these are written sorted, where HEAD would
/// write them in the same order.
fn tree_stages() -> Vec<Value> {
    vec![
        stage(
            "tmpfilesd",
            json!({"filename": "native.conf", "config": [
                {"type": "d", "path": "/var/lib/native", "mode": "0750", "user": "root"},
                {"type": "L+", "path": "/etc/native", "argument": "/usr/share/native"}
            ]}),
        ),
        stage(
            "systemd.unit",
            json!({"unit": "getty@.service", "dropin": "10-env.conf", "config": {
                "Service": {"Environment": [{"key": "LANG", "value": "C.UTF-8"}, {"key": "TERM", "value": "vt220"}]},
                "Unit": {"ConditionPathExists": "/etc/native"}
            }}),
        ),
        stage(
            "systemd.unit",
            json!({"unit": "backup.timer", "dropin": "user.conf", "unit-type": "global",
                   "config": {"Service": {"Environment": "A=1"}}}),
        ),
        stage(
            "systemd.unit.create",
            json!({"filename": "hello.service", "unit-path": "etc", "config": {
                "Install": {"WantedBy": ["multi-user.target"]},
                "Service": {"ExecStart": ["/bin/echo hello", "/bin/true"], "RemainAfterExit": true,
                            "Type": "oneshot"},
                "Unit": {"After": ["network.target", "local-fs.target"], "DefaultDependencies": false,
                         "Description": "Say hello"}
            }}),
        ),
    ]
}

/// A 64 MiB GPT disk (BIOS boot + ext4 root) partitioned by sgdisk, with GRUB for i386-pc:
/// its core in the BIOS boot partition, boot.img's code in the MBR.
fn bios_image_stages() -> Vec<Value> {
    vec![
        stage("truncate", json!({"filename": "disk.raw", "size": "64M"})),
        with(
            stage(
                "sgdisk",
                json!({"uuid": PT_UUID, "label": "gpt", "partitions": [
                    {"start": BIOS.0, "size": BIOS.1, "type": BIOS_BOOT_TYPE, "uuid": BIOS_UUID,
                     "name": "BIOS boot", "bootable": true},
                    {"start": ROOT.0, "size": ROOT.1, "type": LINUX_TYPE, "uuid": ROOT_UUID,
                     "name": "root", "attrs": [60]}
                ]}),
            ),
            "devices",
            whole_disk(),
        ),
        with(
            stage("mkfs.ext4", json!({"uuid": ROOT_FS_UUID, "label": "root"})),
            "devices",
            common::loopback_devices(&[("device", ROOT)]),
        ),
        stage(
            "grub2.inst",
            json!({"filename": "disk.raw", "platform": "i386-pc", "location": BIOS.0,
                   "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4", "binary": "grub-mkimage"},
                   "prefix": {"type": "partition", "partlabel": "gpt", "number": 1, "path": "/boot/grub"}}),
        ),
    ]
}

/// Runs `osbuild --json` on `manifest` exporting `exports`, in a mount namespace of its own
/// where `grub_dir` (when given) is the build root's /usr/lib/grub; returns the result, the
/// exit code and the output directory.
fn build(
    env: &Env,
    manifest: &Value,
    exports: &[&str],
    grub_dir: Option<&Path>,
) -> (Value, i32, PathBuf) {
    let out = env.dir.path().join("out");
    let mut args: Vec<&str> = vec!["--json", "--output-directory", out.to_str().unwrap()];
    for e in exports {
        args.extend(["--export", e]);
    }
    args.push("-");
    let osbuild = env.osbuild_cmd(&args);
    let cmd = match grub_dir {
        None => osbuild,
        Some(dir) => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /usr/lib/grub && exec \"$@\"")
                .arg(dir)
                .arg(osbuild.get_program())
                .args(osbuild.get_args());
            cmd
        }
    };
    let output = common::run_with_stdin(cmd, &manifest.to_string());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not a JSON result ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (result, output.status.code().unwrap_or(-1), out)
}

/// `build` that must succeed, after `--inspect` accepted the manifest.
fn built(env: &Env, manifest: &Value, exports: &[&str], grub_dir: Option<&Path>) -> PathBuf {
    env.inspect(manifest);
    let (result, code, out) = build(env, manifest, exports, grub_dir);
    assert_eq!(code, 0, "{result:#}");
    assert!(mounts_under(&env.store).is_empty());
    assert!(common::loops_backed_under(env.dir.path()).is_empty());
    out
}

fn sfdisk_json(disk: &Path) -> Value {
    let text = common::output(Command::new("sfdisk").arg("--json").arg(disk));
    serde_json::from_str(&text).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn privileged_native_v2_disk_sgdisk_grub2_inst_and_unit_files() {
    if !privileged("privileged_native_v2_disk_sgdisk_grub2_inst_and_unit_files") {
        return;
    }
    let env = Env::new();
    let manifest = json!({"version": "2", "pipelines": [
        {"name": "tree", "stages": tree_stages()},
        {"name": "image", "stages": bios_image_stages()}
    ]});
    let out = built(&env, &manifest, &["tree", "image"], None);

    // The files, where systemd and systemd-tmpfiles look for them.
    let tree = out.join("tree");
    assert_eq!(
        read(&tree.join("usr/lib/tmpfiles.d/native.conf")),
        "d /var/lib/native 0750 root\nL+ /etc/native - - - - /usr/share/native\n"
    );
    assert_eq!(
        read(&tree.join("usr/lib/systemd/system/getty@.service.d/10-env.conf")),
        "[Service]\nEnvironment=\"LANG=C.UTF-8\"\nEnvironment=\"TERM=vt220\"\n\n\
         [Unit]\nConditionPathExists=/etc/native\n\n"
    );
    assert_eq!(
        read(&tree.join("usr/lib/systemd/user/backup.timer.d/user.conf")),
        "[Service]\nEnvironment=A=1\n\n"
    );
    assert_eq!(
        read(&tree.join("etc/systemd/system/hello.service")),
        "[Install]\nWantedBy=multi-user.target\n\n\
         [Service]\nExecStart=/bin/echo hello\nExecStart=/bin/true\nRemainAfterExit=True\nType=oneshot\n\n\
         [Unit]\nAfter=network.target\nAfter=local-fs.target\nDefaultDependencies=False\n\
         Description=Say hello\n\n"
    );

    // The GPT as sfdisk reads it back: HEAD quotes names by default; bootable is bit 2.
    let disk = out.join("image/disk.raw");
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(bytes.len() as u64, 64 << 20);
    let pt = &sfdisk_json(&disk)["partitiontable"];
    assert_eq!(pt["label"], "gpt", "{pt:#}");
    assert_eq!(pt["id"], PT_UUID, "{pt:#}");
    let parts = pt["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{pt:#}");
    for (part, (range, ty, uuid, name, attrs)) in parts.iter().zip([
        (
            BIOS,
            BIOS_BOOT_TYPE,
            BIOS_UUID,
            "\"BIOS boot\"",
            "LegacyBIOSBootable",
        ),
        (ROOT, LINUX_TYPE, ROOT_UUID, "\"root\"", "GUID:60"),
    ]) {
        assert_eq!(part["start"], range.0, "{part}");
        assert_eq!(part["size"], range.1, "{part}");
        assert_eq!(part["type"], ty, "{part}");
        assert_eq!(part["uuid"], uuid, "{part}");
        assert_eq!(part["name"], name, "{part}");
        assert_eq!(part["attrs"], attrs, "{part}");
    }
    let root = common::output(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg((ROOT.0 * 512).to_string())
            .arg(&disk),
    );
    assert!(
        root.contains("TYPE=ext4") && root.contains(&format!("UUID={ROOT_FS_UUID}")),
        "{root}"
    );

    // The MBR: boot.img's code told the core's sector, the protective entry kept after it.
    let boot = std::fs::read(Path::new(GRUB_I386).join("boot.img")).unwrap();
    let mut want = boot[..440].to_vec();
    want[0x5c..0x64].copy_from_slice(&BIOS.0.to_le_bytes());
    assert!(bytes[..440] == want[..], "the MBR's boot code");
    assert_eq!(bytes[446 + 4], 0xee, "the protective MBR entry");
    assert_eq!(&bytes[510..512], &[0x55, 0xaa]);

    // The core image at the BIOS boot partition: diskboot.img first, told where its second
    // sector is and how many follow, all inside the partition.
    let core = &bytes[(BIOS.0 * 512) as usize..((BIOS.0 + BIOS.1) * 512) as usize];
    let diskboot = std::fs::read(Path::new(GRUB_I386).join("diskboot.img")).unwrap();
    assert!(
        core[..500] == diskboot[..500],
        "diskboot.img starts the core"
    );
    assert_eq!(le_u64(core, 500), BIOS.0 + 1, "the second sector");
    let following = u16::from_le_bytes([core[508], core[509]]) as usize;
    assert!(
        following > 10 && following < BIOS.1 as usize,
        "{following} sectors"
    );
    assert!(core[512..1024].iter().any(|&b| b != 0));
    assert!(
        core[(following + 1) * 512..].iter().all(|&b| b == 0),
        "nothing past the core"
    );
}

/// A GRUB directory (for /usr/lib/grub) under `scratch` holding Debian's ppc64el
/// powerpc-ieee1275 modules. `None` without network.
fn grub_dir_with_ppc_modules(scratch: &Path) -> Option<PathBuf> {
    let ppc = common::debian_ppc64el_grub_modules(scratch)?;
    let grub = scratch.join("grub");
    std::fs::create_dir(&grub).ok()?;
    std::fs::rename(&ppc, grub.join("powerpc-ieee1275")).ok()?;
    Some(grub)
}

#[test]
fn privileged_native_v2_disk_grub2_inst_prep() {
    if !privileged("privileged_native_v2_disk_grub2_inst_prep") {
        return;
    }
    let env = Env::new();
    let Some(grub) = grub_dir_with_ppc_modules(env.dir.path()) else {
        panic!("cannot fetch Debian's ppc64el grub-ieee1275-bin (network to deb.debian.org?)");
    };
    let image = vec![
        stage("truncate", json!({"filename": "disk.raw", "size": "64M"})),
        with(
            stage(
                "sfdisk",
                json!({"label": "dos", "uuid": "0x14fc63d2", "partitions": [
                    {"start": PREP.0, "size": PREP.1, "type": "41", "bootable": true},
                    {"start": PPC_ROOT.0, "size": PPC_ROOT.1, "type": "83"}
                ]}),
            ),
            "devices",
            whole_disk(),
        ),
        stage(
            "grub2.inst",
            json!({"filename": "disk.raw", "platform": "powerpc-ieee1275", "location": PREP.0,
                   "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4", "binary": "grub-mkimage"},
                   "prefix": {"type": "partition", "partlabel": "dos", "number": 1, "path": "/boot/grub"}}),
        ),
    ];
    let manifest = json!({"version": "2", "pipelines": [{"name": "image", "stages": image}]});
    let out = built(&env, &manifest, &["image"], Some(&grub));

    let disk = out.join("image/disk.raw");
    let pt = &sfdisk_json(&disk)["partitiontable"];
    assert_eq!(
        (pt["label"].as_str(), pt["id"].as_str()),
        (Some("dos"), Some("0x14fc63d2"))
    );
    let parts = &pt["partitions"];
    for (i, (range, ty)) in [(PREP, "41"), (PPC_ROOT, "83")].into_iter().enumerate() {
        assert_eq!(parts[i]["start"], range.0, "{pt:#}");
        assert_eq!(parts[i]["size"], range.1, "{pt:#}");
        assert_eq!(parts[i]["type"], ty, "{pt:#}");
    }
    let bytes = std::fs::read(&disk).unwrap();
    common::assert_prep_core(&bytes, PREP, "(,msdos2)/boot/grub");
    assert!(
        bytes[(PPC_ROOT.0 * 512) as usize..].iter().all(|&b| b == 0),
        "nothing written past the PReP partition"
    );
}

/// A bad option of each stage fails `--inspect` (exit 2) before anything runs, and the error
/// names the stage's place and the option's JSON path.
#[test]
fn privileged_native_v2_disk_bad_options_are_refused_by_path() {
    if !privileged("privileged_native_v2_disk_bad_options_are_refused_by_path") {
        return;
    }
    let env = Env::new();
    let grub = |core: Value| {
        stage(
            "grub2.inst",
            json!({"filename": "d", "platform": "i386-pc", "core": core, "prefix": {"path": "/boot/grub"}}),
        )
    };
    let cases = [
        (
            with(
                stage("sgdisk", json!({"uuid": PT_UUID, "label": "dos"})),
                "devices",
                whole_disk(),
            ),
            "options.label",
        ),
        (
            grub(json!({"type": "mkimage", "partlabel": "gpt", "filesystem": "vfat"})),
            "options.core",
        ),
        (
            stage(
                "tmpfilesd",
                json!({"filename": "x.conf", "config": [{"type": "d", "path": "/x", "mode": "755"}]}),
            ),
            "options.config[0].mode",
        ),
        (
            stage(
                "systemd.unit",
                json!({"unit": "x.service", "dropin": "a.conf", "config": {"Service": {"ExecStart": ["/x"]}}}),
            ),
            "options.config.Service",
        ),
        (
            stage(
                "systemd.unit.create",
                json!({"filename": "../x.service", "config": {"Unit": {}, "Service": {}, "Install": {}}}),
            ),
            "options.filename",
        ),
    ];
    for (bad, path) in cases {
        let name = bad["type"].as_str().unwrap().to_owned();
        let manifest = json!({"version": "2", "pipelines": [
            {"name": "ok", "stages": [stage("tmpfilesd", json!({"filename": "a.conf", "config": [{"type": "d", "path": "/a"}]}))]},
            {"name": "bad", "stages": [stage("truncate", json!({"filename": "d", "size": "1M"})), bad]}
        ]});
        let out = env.osbuild(&["--inspect"], &manifest.to_string());
        assert_eq!(out.status.code(), Some(2), "{name}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["success"], false, "{name}: {report}");
        let paths: Vec<String> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| common::dotted_path(&e["path"]))
            .collect();
        let want = format!("pipelines[1].stages[1].{path}");
        assert!(
            !paths.is_empty() && paths.iter().all(|p| p.starts_with(&want)),
            "{name}: want {want}: {report:#}"
        );
        // Without --inspect the build is refused with the same paths, before any stage runs.
        let out = env.osbuild(&[], &manifest.to_string());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("invalid manifest") && stderr.contains(&want),
            "{name}: {stderr}"
        );
        assert!(!env.store.join("refs").exists(), "{name}: nothing built");
    }
}
