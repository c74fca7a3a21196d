//! Every stage has a `meta.json` whose `schema` is a valid JSON schema for its options,
//! accepting v10-style options and rejecting wrong ones.

use std::fs;
use std::path::Path;

use osbuild_protocol::meta::{Meta, FILE_SUFFIX};
use serde_json::{json, Value};

const STAGES: &[&str] = &[
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
];

/// The stages that declare they need the network; every other one runs without.
const NETWORK: &[&str] = &["dnf", "yum"];

/// The stages that declare `CAP_SYS_ADMIN` (mounts in the tree; setfiles writing
/// security.selinux without a loaded policy); every other one runs without it.
const SYS_ADMIN: &[&str] = &["dnf", "dpkg", "rpm", "selinux", "yum"];

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
        let schema = m
            .schema
            .as_ref()
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
        } else {
            &[]
        };
        assert_eq!(m.capabilities, caps, "{name}: capabilities");
        jsonschema::meta::validate(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
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
