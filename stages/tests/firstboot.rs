//! hostname, locale, keymap and timezone write natively what `systemd-firstboot --root`
//! writes: each case runs both on fresh trees and compares the resulting files byte for
//! byte (content, mode, symlink target), and invalid values fail in both.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{fails, ok, run_stage, Tree};
use serde_json::json;

/// Every file and symlink under `root`: (relative path, mode, content or link target).
fn snapshot(root: &Path) -> Vec<(String, u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u32, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.push((rel, 0, t.to_string_lossy().into_owned().into_bytes()));
            } else if m.is_dir() {
                out.push((rel, mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.push((rel, mode, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// A tree as the stages find it: the tzdata for the timezone check, and a Debian marker
/// when `debian` (Debian's systemd writes the locale to /etc/default/locale).
fn fixture(debian: bool) -> Tree {
    let t = Tree::new();
    for zone in ["Europe/Berlin", "America/New_York"] {
        let dest = t.path(&format!("usr/share/zoneinfo/{zone}"));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(&dest, b"TZif2 fake zone data").unwrap();
    }
    if debian {
        t.write("etc/debian_version", "12.0\n");
    }
    t
}

fn firstboot(tree: &Path, arg: &str) -> bool {
    Command::new("systemd-firstboot")
        .arg(format!("--root={}", tree.display()))
        .arg(arg)
        .output()
        .unwrap()
        .status
        .success()
}

fn host_is_debian() -> bool {
    Path::new("/etc/debian_version").exists()
}

#[test]
fn same_files_as_systemd_firstboot() {
    if !common::have("systemd-firstboot") {
        println!("skipped: systemd-firstboot is not installed");
        return;
    }
    let long = "a".repeat(64);
    let cases: Vec<(&str, &str, &str, String)> = vec![
        ("hostname", "hostname", "--hostname", "myhost".into()),
        (
            "hostname",
            "hostname",
            "--hostname",
            "Web-01.example.com".into(),
        ),
        ("hostname", "hostname", "--hostname", "a.b.".into()),
        ("hostname", "hostname", "--hostname", long),
        ("locale", "language", "--locale", "en_US.UTF-8".into()),
        ("locale", "language", "--locale", "de DE$x`y*".into()),
        ("keymap", "keymap", "--keymap", "de-latin1".into()),
        ("keymap", "keymap", "--keymap", "us (intl)".into()),
        ("timezone", "zone", "--timezone", "Europe/Berlin".into()),
        ("timezone", "zone", "--timezone", "UTC".into()),
    ];
    // The host's systemd-firstboot writes the locale where its distro keeps it.
    let debian = host_is_debian();
    for (stage, option, flag, value) in cases {
        let ours = fixture(debian);
        let theirs = fixture(debian);
        ok(
            &format!("org.osbuild.{stage}"),
            &ours.root,
            json!({ option: value }),
        );
        assert!(
            firstboot(&theirs.root, &format!("{flag}={value}")),
            "{flag}={value}"
        );
        assert_eq!(
            snapshot(&ours.root),
            snapshot(&theirs.root),
            "{flag}={value}"
        );
    }
}

#[test]
fn rejects_what_systemd_firstboot_rejects() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "hostname",
            "hostname",
            "bad_host",
            "is not a valid host name",
        ),
        ("hostname", "hostname", "-x", "is not a valid host name"),
        ("hostname", "hostname", "a..b", "is not a valid host name"),
        ("hostname", "hostname", "", "is not a valid host name"),
        ("locale", "language", "a/b", "is not a valid locale name"),
        ("locale", "language", "", "is not a valid locale name"),
        ("keymap", "keymap", "a/b", "is not a valid keymap name"),
        (
            "timezone",
            "zone",
            "Nope/Zone",
            "cannot open /usr/share/zoneinfo/Nope/Zone in the tree",
        ),
        ("timezone", "zone", "../../etc/passwd", "is not valid"),
    ];
    let check_firstboot = common::have("systemd-firstboot");
    for (stage, option, value, msg) in cases {
        let t = fixture(false);
        fails(
            &format!("org.osbuild.{stage}"),
            &t.root,
            json!({ *option: value }),
            &format!("org.osbuild.{stage}: option \"{option}\": "),
        );
        let r = run_stage(
            &format!("org.osbuild.{stage}"),
            &t.root,
            json!({ *option: value }),
        );
        assert!(r.stderr.contains(msg), "{stage} {value:?}: {}", r.stderr);
        assert!(!t.path("etc").exists(), "{stage} {value:?} wrote something");
        if check_firstboot {
            // the stage names match systemd-firstboot's flags
            let flag = stage;
            assert!(
                !firstboot(&t.root, &format!("--{flag}={value}")),
                "{flag}={value}"
            );
        }
    }
}

#[test]
fn timezone_must_exist_in_the_tree() {
    // A zone the host has but the tree lacks is refused (v10 checked the build root).
    let t = fixture(false);
    fails(
        "org.osbuild.timezone",
        &t.root,
        json!({"zone": "Asia/Tokyo"}),
        "option \"zone\": timezone \"Asia/Tokyo\": cannot open /usr/share/zoneinfo/Asia/Tokyo in the tree",
    );
    t.write("usr/share/zoneinfo/Fake/Zone", "not tzif");
    fails(
        "org.osbuild.timezone",
        &t.root,
        json!({"zone": "Fake/Zone"}),
        "is not a TZif file",
    );
}

#[test]
fn existing_files_are_replaced() {
    let t = fixture(false);
    t.write("etc/hostname", "old\n");
    t.write("etc/locale.conf", "LANG=C\nLC_ALL=C\n");
    t.write("etc/vconsole.conf", "KEYMAP=us\nFONT=x\n");
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/America/New_York",
        t.path("etc/localtime"),
    )
    .unwrap();
    let r = ok("org.osbuild.hostname", &t.root, json!({"hostname": "new"}));
    assert!(r
        .stdout
        .contains("/etc/hostname already exists. Replacing."));
    ok(
        "org.osbuild.locale",
        &t.root,
        json!({"language": "en_GB.UTF-8"}),
    );
    ok("org.osbuild.keymap", &t.root, json!({"keymap": "uk"}));
    ok(
        "org.osbuild.timezone",
        &t.root,
        json!({"zone": "Europe/Berlin"}),
    );
    assert_eq!(t.read("etc/hostname"), "new\n");
    assert_eq!(t.read("etc/locale.conf"), "LANG=en_GB.UTF-8\n");
    assert_eq!(t.read("etc/vconsole.conf"), "KEYMAP=uk\n");
    assert_eq!(
        t.link("etc/localtime"),
        "../usr/share/zoneinfo/Europe/Berlin"
    );
    for f in ["etc/hostname", "etc/locale.conf", "etc/vconsole.conf"] {
        assert_eq!(t.mode(f), 0o644, "{f}");
    }
}

#[test]
fn locale_file_follows_the_tree_distro() {
    let fedora = fixture(false);
    ok(
        "org.osbuild.locale",
        &fedora.root,
        json!({"language": "en_US.UTF-8"}),
    );
    assert_eq!(fedora.read("etc/locale.conf"), "LANG=en_US.UTF-8\n");
    assert!(!fedora.path("etc/default/locale").exists());
    let debian = fixture(true);
    ok(
        "org.osbuild.locale",
        &debian.root,
        json!({"language": "en_US.UTF-8"}),
    );
    assert_eq!(debian.read("etc/default/locale"), "LANG=en_US.UTF-8\n");
    assert!(!debian.path("etc/locale.conf").exists());
}
