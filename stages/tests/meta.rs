//! Every stage has a `meta.json` whose `schema` (v10's options) and/or `schema_2` (osbuild
//! HEAD's v2 stage fragments) are valid JSON schemas, accepting the options HEAD's stage of
//! the same name accepts and rejecting wrong ones.

use std::fs;
use std::path::Path;

use osbuild_protocol::meta::{Meta, FILE_SUFFIX};
use serde_json::{json, Value};

const STAGES: &[&str] = &[
    "chmod",
    "copy",
    "ln",
    "machine-id",
    "mkdir",
    "mkfs.btrfs",
    "mkfs.ext4",
    "mkfs.fat",
    "mkfs.xfs",
    "qemu",
    "sfdisk",
    "tar",
    "truncate",
    "untar",
    "chrony",
    "debug-shell",
    "dnf",
    "dpkg",
    "rpm",
    "error",
    "firewall",
    "fix-bls",
    "fstab",
    "groups",
    "grub2",
    "hostname",
    "kernel-cmdline",
    "keymap",
    "locale",
    "noop",
    "script",
    "selinux",
    "systemd",
    "test",
    "timezone",
    "users",
    "yum",
    "zipl",
    "grub2.inst",
    "sgdisk",
    "systemd.unit",
    "systemd.unit.create",
    "tmpfilesd",
];

/// The stages that declare they need the network; every other one runs without.
const NETWORK: &[&str] = &["dnf", "yum"];

/// The stages that declare `CAP_SYS_ADMIN` (mounts in the tree; setfiles writing
/// security.selinux without a loaded policy; mkfs on a block device: BLKBSZSET); every other
/// one runs without it.
const SYS_ADMIN: &[&str] = &[
    "dnf",
    "dpkg",
    "rpm",
    "selinux",
    "yum",
    "mkfs.btrfs",
    "mkfs.ext4",
    "mkfs.fat",
    "mkfs.xfs",
];

/// The stages that declare `CAP_MAC_ADMIN` (as HEAD's: copying SELinux labels).
const MAC_ADMIN: &[&str] = &["copy", "tar", "untar"];

/// The stages that exist only for v2 manifests (no v10 `schema`).
const V2_ONLY: &[&str] = &[
    "copy",
    "ln",
    "mkdir",
    "mkfs.btrfs",
    "mkfs.ext4",
    "mkfs.fat",
    "mkfs.xfs",
    "qemu",
    "sfdisk",
    "tar",
    "untar",
    "sgdisk",
];

fn meta(name: &str) -> Meta {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("meta/org.osbuild.{name}{FILE_SUFFIX}"));
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_stage_has_a_valid_meta() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("meta");
    let count = fs::read_dir(&dir).unwrap().count();
    assert_eq!(count, STAGES.len(), "one meta.json per stage, nothing else");
    for name in STAGES {
        let m = meta(name);
        assert!(!m.summary.is_empty(), "{name}");
        assert!(!m.description.is_empty(), "{name}");
        assert_eq!(m.schema.is_none(), V2_ONLY.contains(name), "{name}: schema");
        let v2 = m.schema_2.is_some().then(|| v2_options_schema(name));
        let schema = m
            .schema
            .as_ref()
            .or(v2.as_ref())
            .unwrap_or_else(|| panic!("{name}: no schema"));
        assert_eq!(schema["type"], "object", "{name}");
        if *name == "noop" {
            assert_eq!(schema["additionalProperties"], true);
        } else {
            assert!(schema["properties"].is_object(), "{name}");
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
        assert_eq!(m.network, NETWORK.contains(name), "{name}: network");
        let caps: &[&str] = if SYS_ADMIN.contains(name) {
            &["CAP_SYS_ADMIN"]
        } else if MAC_ADMIN.contains(name) {
            &["CAP_MAC_ADMIN"]
        } else {
            &[]
        };
        assert_eq!(m.capabilities, caps, "{name}: capabilities");
        for schema in std::iter::once(schema).chain(&v2) {
            jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
            jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// The v2 options schema of a stage: `schema_2.options` with the stage's `definitions`
/// beside it (where HEAD's `$ref`s point).
fn v2_options_schema(name: &str) -> Value {
    let m = meta(name);
    let v2 = m
        .schema_2
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no schema_2"));
    let mut schema = v2["options"].clone();
    if let Some(defs) = v2.get("definitions") {
        schema["definitions"] = defs.clone();
    }
    schema
}

#[test]
fn v2_schemas_accept_heads_options() {
    let uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
    let cases: Vec<Case> = vec![
        (
            "truncate",
            json!({"filename": "disk.img", "size": "10G"}),
            true,
        ),
        ("truncate", json!({"filename": "disk.img"}), false),
        (
            "sfdisk",
            json!({"label": "gpt", "uuid": uuid, "partitions": [
                {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "bootable": true, "attrs": [0, 60]},
                {"partnum": 2, "name": "root", "uuid": uuid}]}),
            true,
        ),
        ("sfdisk", json!({"label": "sun", "uuid": uuid}), false),
        (
            "sfdisk",
            json!({"label": "dos", "uuid": uuid, "partitions": [{"attrs": [64]}]}),
            false,
        ),
        (
            "mkfs.ext4",
            json!({"uuid": uuid, "label": "root", "lazy_init": true, "verity": false, "orphan_file": true, "metadata_csum_seed": true}),
            true,
        ),
        (
            "mkfs.ext4",
            json!({"uuid": uuid, "label": "a-label-of-17-chr"}),
            false,
        ),
        (
            "mkfs.xfs",
            json!({"uuid": uuid, "label": "boot", "agcount": 4}),
            true,
        ),
        (
            "mkfs.fat",
            json!({"volid": "7B7795E7", "label": "EFI-SYSTEM", "fat-size": 16, "geometry": {"heads": 64, "sectors-per-track": 32}}),
            true,
        ),
        (
            "mkfs.fat",
            json!({"volid": "7B7795E7", "fat-size": 8}),
            false,
        ),
        ("mkfs.btrfs", json!({"uuid": uuid, "metadata": "dup"}), true),
        (
            "mkfs.btrfs",
            json!({"uuid": uuid, "metadata": "raid1"}),
            false,
        ),
        (
            "mkdir",
            json!({"paths": [{"path": "/a/b", "mode": 448, "parents": true, "exist_ok": true},
                                   {"path": "mount://root/boot"}, {"path": "tree:///x"}, {"path": "rel"}]}),
            true,
        ),
        ("mkdir", json!({"paths": [{"path": "../etc"}]}), false),
        (
            "copy",
            json!({"paths": [{"from": "input://tree/", "to": "mount://root/", "remove_destination": true},
                                  {"from": "tree:///a", "to": "tree:///b"}]}),
            true,
        ),
        (
            "copy",
            json!({"paths": [{"from": "tree:///a", "to": "input://tree/"}]}),
            false,
        ),
        ("copy", json!({"paths": []}), false),
        (
            "qemu",
            json!({"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "1.1", "compression": false}}),
            true,
        ),
        (
            "qemu",
            json!({"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "1.1", "compression_type": "zstd"}}),
            true,
        ),
        (
            "qemu",
            json!({"filename": "disk.qcow2", "format": {"type": "qcow2", "compression_type": "lz4"}}),
            false,
        ),
        (
            "qemu",
            json!({"filename": "d.vmdk", "format": {"type": "vmdk", "subformat": "streamOptimized", "adapter_type": "lsilogic", "compat6": true}}),
            true,
        ),
        (
            "qemu",
            json!({"filename": "d.vhd", "format": {"type": "vpc", "subformat": "dynamic", "force_size": false}}),
            true,
        ),
        (
            "qemu",
            json!({"filename": "d.vhdx", "format": {"type": "vhdx"}}),
            true,
        ),
        (
            "qemu",
            json!({"filename": "d.vdi", "format": {"type": "vdi", "compression": true}}),
            false,
        ),
        (
            "qemu",
            json!({"filename": "d.raw", "format": {"type": "raw"}}),
            false,
        ),
        (
            "tar",
            json!({"filename": "t.tar.xz", "format": "posix", "compression": "xz", "acls": false, "selinux": false,
                       "xattrs": false, "sparse": true, "transform": "s/a/b/", "numeric-owner": true, "root-node": "omit"}),
            true,
        ),
        ("tar", json!({"filename": "t.tar", "paths": ["etc"]}), true),
        (
            "tar",
            json!({"filename": "t.tar", "paths": ["etc"], "root-node": "omit"}),
            false,
        ),
        (
            "tar",
            json!({"filename": "t.tar", "compression": "bzip2"}),
            false,
        ),
        (
            "ln",
            json!({"paths": [{"target": "/usr/bin/x", "link_name": "tree:///bin/x", "symbolic": true}]}),
            true,
        ),
        (
            "ln",
            json!({"paths": [{"target": "x", "link_name": "/bin/x"}]}),
            false,
        ),
        (
            "chmod",
            json!({"items": {"/etc/x": {"mode": "0755", "recursive": true}}}),
            true,
        ),
        (
            "chmod",
            json!({"items": {"etc/x": {"mode": "0755"}}}),
            false,
        ),
        ("untar", json!({"prefix": "/opt"}), true),
        ("machine-id", json!({"first-boot": "preserve"}), true),
        ("machine-id", json!({"first-boot": "maybe"}), false),
        ("hostname", json!({"hostname": "h"}), true),
        ("timezone", json!({"zone": "UTC", "x": 1}), false),
    ];
    let cases = cases.into_iter().chain(heads_added_options());
    for (name, options, valid) in cases {
        let v = jsonschema::validator_for(&v2_options_schema(name)).unwrap();
        assert_eq!(v.is_valid(&options), valid, "{name}: {options}");
    }
}

/// The options HEAD added to v10's stage names, in HEAD's shapes, and wrong ones.
fn heads_added_options() -> Vec<Case> {
    let uuid = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75";
    vec![
        ("dpkg", json!({"initramfs": {"modules": ["ext4"]}}), true),
        ("dpkg", json!({"packages": []}), false),
        (
            "fstab",
            json!({"filesystems": [{"label": "root", "path": "/"}, {"partlabel": "p", "path": "/srv"},
                                   {"device": "/dev/vda1", "path": "/boot"}]}),
            true,
        ),
        (
            "fstab",
            json!({"filesystems": [{"uuid": uuid, "label": "root", "path": "/"}]}),
            false,
        ),
        (
            "fstab",
            json!({"filesystems": [{"uuid": uuid, "path": "/", "freq": "1"}]}),
            false,
        ),
        (
            "grub2",
            json!({"rootfs": {"label": "root"}, "bootfs": {"uuid": uuid}, "greenboot": true,
                   "saved_entry": "x", "write_defaults": false, "compat_version": 2,
                   "uefi": {"vendor": "fedora", "unified": true, "efi_src_dir": "/usr/lib/efi"},
                   "config": {"timeout": 5, "terminal": ["serial"], "timeout_style": "menu"}}),
            true,
        ),
        ("grub2", json!({"kernel_opts": "ro"}), false),
        (
            "grub2",
            json!({"root_fs_uuid": uuid, "config": {"timeout_style": "sideways"}}),
            false,
        ),
        ("grub2", json!({"root_fs_uuid": uuid, "bios": true}), false),
        (
            "users",
            json!({"users": {"a.b": {"keys": ["k"], "expiredate": 20000, "force_password_reset": true}}}),
            true,
        ),
        (
            "users",
            json!({"users": {"a": {"expiredate": "soon"}}}),
            false,
        ),
        (
            "groups",
            json!({"groups": {"a.b": {"gid": 7}}, "force": true}),
            true,
        ),
        ("kernel-cmdline", json!({"kernel_cmdline_size": 1024}), true),
        ("kernel-cmdline", json!({"kernel_cmdline_size": 100}), false),
        (
            "systemd",
            json!({"masked_services": ["a.service"], "masked_generators": ["g"]}),
            true,
        ),
        (
            "keymap",
            json!({"keymap": "us", "font": "f", "x11-keymap": {"layouts": ["us"]}}),
            true,
        ),
        (
            "keymap",
            json!({"keymap": "us", "x11-keymap": {"layouts": []}}),
            false,
        ),
        ("locale", json!({"language": "C.UTF-8"}), true),
        (
            "selinux",
            json!({"labels": {"tree:///etc": "system_u:object_r:etc_t:s0"}, "target": "mount://root/",
                   "exclude_paths": ["/sysroot"], "force_autorelabel": true}),
            true,
        ),
        ("selinux", json!({"target": "tree:///"}), false),
    ]
}

/// An options object for a stage, and whether its schema accepts it.
type Case = (&'static str, Value, bool);

#[test]
fn schemas_accept_and_reject() {
    let cases = system_cases().into_iter().chain(package_cases());
    for (name, options, valid) in cases {
        let v = jsonschema::validator_for(meta(name).schema.as_ref().unwrap()).unwrap();
        assert_eq!(v.is_valid(&options), valid, "{name}: {options}");
    }
}

/// The cases of every stage but the package managers'.
fn system_cases() -> Vec<Case> {
    vec![
        ("noop", json!({"anything": [1, 2]}), true),
        ("error", json!({"returncode": 2}), true),
        ("error", json!({"returncode": "2"}), false),
        ("hostname", json!({"hostname": "h"}), true),
        ("hostname", json!({}), false),
        (
            "dpkg",
            json!({"packages": [format!("sha256:{}", "0".repeat(64))], "initramfs": {"modules": ["virtio_blk"]}}),
            true,
        ),
        ("dpkg", json!({"packages": ["../etc/passwd"]}), false),
        ("dpkg", json!({}), false),
        ("hostname", json!({"hostname": "h", "extra": 1}), false),
        (
            "users",
            json!({"users": {"alice": {"uid": 1000, "groups": ["wheel"], "key": "ssh-ed25519 AAAA"}}}),
            true,
        ),
        ("users", json!({"users": {"-bad": {}}}), false),
        ("users", json!({"users": {"alice": {"uid": "1000"}}}), false),
        ("groups", json!({"groups": {"wheel": {"gid": 10}}}), true),
        (
            "fstab",
            json!({"filesystems": [{"uuid": "u", "path": "/"}]}),
            true,
        ),
        ("fstab", json!({"filesystems": [{"path": "/"}]}), false),
        (
            "fstab",
            json!({"filesystems": [{"uuid": "u", "path": "/", "freq": "1", "passno": 2}]}),
            true,
        ),
        (
            "fstab",
            json!({"filesystems": [{"uuid": "u", "path": "/", "freq": "one"}]}),
            false,
        ),
        (
            "systemd",
            json!({"enabled_services": ["sshd.service"], "default_target": "multi-user.target"}),
            true,
        ),
        ("systemd", json!({"disabled_services": []}), false),
        (
            "kernel-cmdline",
            json!({"root_fs_uuid": "9c6ae55b-cf88-45b8-84e8-64990759f39d"}),
            true,
        ),
        (
            "kernel-cmdline",
            json!({"root_fs_uuid": "6699-AFB5", "kernel_opts": "ro"}),
            true,
        ),
        ("kernel-cmdline", json!({"root_fs_uuid": "nope"}), false),
        (
            "firewall",
            json!({"ports": ["22:tcp", "53-54:udp"], "enabled_services": ["ssh"]}),
            true,
        ),
        ("firewall", json!({"ports": ["22"]}), false),
        ("chrony", json!({"timeservers": ["a"]}), true),
        ("fix-bls", json!({"prefix": "/"}), true),
        ("zipl", json!({"timeout": 3}), true),
        ("zipl", json!({"timeout": "3"}), false),
        (
            "selinux",
            json!({"file_contexts": "etc/selinux/targeted/contexts/files/file_contexts"}),
            true,
        ),
        ("script", json!({"script": "#!/bin/sh\ntrue\n"}), true),
        ("test", json!({"script": 1}), false),
        ("debug-shell", json!({"tty": "/dev/ttyS0"}), true),
        ("locale", json!({"language": "en_US.UTF-8"}), true),
        ("keymap", json!({"keymap": "us"}), true),
        ("timezone", json!({"zone": "UTC"}), true),
    ]
}

/// The cases of dnf and yum.
fn package_cases() -> Vec<Case> {
    let sum = format!("sha256:{}", "ab".repeat(32));
    vec![
        (
            "dnf",
            json!({"repos": [{"baseurl": "http://r/$basearch/", "checksum": sum, "gpgkey": "K"}, sum],
               "packages": ["@core", "kernel"], "releasever": "39", "basearch": "x86_64",
               "install_weak_deps": false, "exclude_packages": ["dracut-config-rescue"],
               "module_platform_id": "platform:f39"}),
            true,
        ),
        (
            "dnf",
            json!({"repos": [{"baseurl": "http://r/"}], "packages": ["a"], "releasever": "39", "basearch": "x86_64"}),
            false,
        ),
        (
            "dnf",
            json!({"repos": [{"baseurl": "http://r/", "checksum": sum, "sslclientkey": "KEY"}],
               "packages": ["a"], "releasever": "39", "basearch": "x86_64"}),
            false,
        ),
        (
            "dnf",
            json!({"repos": ["sha256:short"], "packages": ["a"], "releasever": "39", "basearch": "x86_64"}),
            false,
        ),
        (
            "dnf",
            json!({"repos": [], "packages": ["a"], "releasever": "39", "basearch": "x86_64"}),
            false,
        ),
        (
            "yum",
            json!({"repos": [{"mirrorlist": "http://m"}], "packages": ["a"], "releasever": "7", "verbosity": "debug"}),
            true,
        ),
        (
            "yum",
            json!({"repos": [sum], "packages": ["a"], "releasever": "7"}),
            false,
        ),
    ]
}

/// HEAD's options for the disk and unit-file stages (sgdisk, grub2.inst, tmpfilesd,
/// systemd.unit, systemd.unit.create) pass their v2 schemas; wrong ones do not.
#[test]
fn v2_schemas_of_disk_and_unit_stages() {
    let uuid = "D209C89E-EA5E-4FBD-B161-B461CCE297E0";
    let core = json!({"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4", "binary": "grub-mkimage"});
    let cases: Vec<Case> = vec![
        (
            "sgdisk",
            json!({"uuid": uuid, "label": "gpt", "quote_partition_name": false, "partitions": [
                {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "bootable": true,
                 "name": "BIOS boot", "partnum": 1, "uuid": uuid, "attrs": [60]}]}),
            true,
        ),
        ("sgdisk", json!({"uuid": uuid, "label": "dos"}), false),
        ("sgdisk", json!({"label": "gpt"}), false),
        (
            "sgdisk",
            json!({"uuid": uuid, "partitions": [{"attrs": [64]}]}),
            false,
        ),
        (
            "grub2.inst",
            json!({"filename": "disk.img", "platform": "i386-pc", "location": 2048, "core": core,
                   "prefix": {"type": "partition", "partlabel": "gpt", "number": 2, "path": "/grub2"}, "sector-size": 512}),
            true,
        ),
        (
            "grub2.inst",
            json!({"filename": "disk.img", "platform": "powerpc-ieee1275", "location": 2048,
                   "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "xfs"},
                   "prefix": {"path": "/boot/grub2"}}),
            true,
        ),
        (
            "grub2.inst",
            json!({"filename": "d", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "vfat"},
                   "prefix": {"path": "/boot/grub2"}}),
            false,
        ),
        (
            "grub2.inst",
            json!({"filename": "d", "platform": "i386-pc", "core": core, "prefix": {"path": "boot"}}),
            false,
        ),
        (
            "tmpfilesd",
            json!({"filename": "a.conf", "config": [{"type": "d", "path": "/x", "mode": "0755", "user": "root",
                   "group": "root", "age": "10d", "argument": "-"}, {"type": "L+", "path": "/y"}]}),
            true,
        ),
        (
            "tmpfilesd",
            json!({"filename": "a.conf", "config": []}),
            false,
        ),
        (
            "tmpfilesd",
            json!({"filename": "a.conf", "config": [{"type": "d", "path": "/x", "mode": "755"}]}),
            false,
        ),
        (
            "tmpfilesd",
            json!({"filename": "../a.conf", "config": [{"type": "d", "path": "/x"}]}),
            false,
        ),
        (
            "systemd.unit",
            json!({"unit": "sshd.service", "dropin": "10-env.conf", "unit-type": "global", "config": {
                "Unit": {"ConditionPathExists": "/etc/x"},
                "Service": {"Environment": [{"key": "A", "value": "b"}]}}}),
            true,
        ),
        (
            "systemd.unit",
            json!({"unit": "x.timer", "dropin": "a.conf", "config": {"Service": {"Environment": "A=b"}}}),
            true,
        ),
        (
            "systemd.unit",
            json!({"unit": "x.mount", "dropin": "a.conf", "config": {}}),
            false,
        ),
        (
            "systemd.unit",
            json!({"unit": "x.service", "dropin": "a.conf", "config": {"Service": {"ExecStart": ["/bin/x"]}}}),
            false,
        ),
        (
            "systemd.unit.create",
            json!({"filename": "hello.service", "unit-path": "etc", "config": {
                "Unit": {"Description": "hi", "After": ["a.target"]},
                "Service": {"Type": "oneshot", "ExecStart": ["/bin/true"], "StandardOutput": "journal+console",
                            "Environment": [{"key": "K", "value": "v"}]},
                "Install": {"WantedBy": ["multi-user.target"]}}}),
            true,
        ),
        (
            "systemd.unit.create",
            json!({"filename": "m.mount", "config": {"Mount": {"What": "/dev/x", "Where": "/x"}}}),
            true,
        ),
        (
            "systemd.unit.create",
            json!({"filename": "m.mount", "config": {"Mount": {"What": "/dev/x", "Where": "/x"}, "Service": {}}}),
            false,
        ),
        (
            "systemd.unit.create",
            json!({"filename": "x.service", "config": {"Unit": {}, "Service": {"StandardOutput": "file:/../x"}, "Install": {}}}),
            false,
        ),
    ];
    for (name, options, valid) in cases {
        let v = jsonschema::validator_for(&v2_options_schema(name)).unwrap();
        assert_eq!(v.is_valid(&options), valid, "{name}: {options}");
    }
}
