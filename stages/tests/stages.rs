//! The stages that only write files, run as the built binary on temporary trees.

mod common;

use common::{fails, ok, run_stage, run_stage_raw, Tree};
use serde_json::json;

#[test]
fn dispatch_unknown_stage_exits_2() {
    let r = run_stage_raw("org.osbuild.nope", "{}");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown stage \"org.osbuild.nope\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("org.osbuild.hostname"), "{}", r.stderr);
}

#[test]
fn bad_arguments_exit_1_with_a_message() {
    for (stdin, msg) in [
        (
            "not json",
            "org.osbuild.noop: invalid stage arguments on stdin",
        ),
        ("{\"options\": {}}", "\"tree\" must be a non-empty string"),
        (
            "{\"tree\": \"/t\", \"options\": 5}",
            "\"options\" must be an object",
        ),
    ] {
        let r = run_stage_raw("org.osbuild.noop", stdin);
        assert_eq!(r.code, 1, "{stdin}");
        assert!(r.stderr.contains(msg), "{stdin}: {}", r.stderr);
    }
}

#[test]
fn noop_prints_options() {
    let t = Tree::new();
    let r = ok("org.osbuild.noop", &t.root, json!({"a": 1, "b": [true]}));
    assert_eq!(
        r.stdout,
        "Not doing anything with these options: {\"a\":1,\"b\":[true]}\n"
    );
    assert_eq!(std::fs::read_dir(&t.root).unwrap().count(), 0);
}

#[test]
fn error_returns_its_code() {
    let t = Tree::new();
    for (opts, code) in [
        (json!({}), 255),
        (json!({"returncode": 3}), 3),
        (json!({"returncode": 0}), 0),
    ] {
        let r = run_stage("org.osbuild.error", &t.root, opts);
        assert_eq!(r.code, code);
        assert_eq!(
            r.stdout,
            format!("Error stage will now return error: {code}\n")
        );
    }
    fails(
        "org.osbuild.error",
        &t.root,
        json!({"returncode": "x"}),
        "org.osbuild.error: option \"returncode\": must be a number",
    );
}

#[test]
fn fstab() {
    let t = Tree::new();
    ok(
        "org.osbuild.fstab",
        &t.root,
        json!({"filesystems": [
            {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "path": "/", "vfs_type": "ext4", "options": "defaults,noatime", "freq": 1, "passno": 1},
            {"uuid": "7B77-95E7", "path": "/boot/efi"}
        ]}),
    );
    assert_eq!(
        t.read("etc/fstab"),
        "UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4\tdefaults,noatime\t1\t1\n\
         UUID=7B77-95E7\t/boot/efi\tnone\tdefaults\t0\t0\n"
    );
    assert_eq!(t.mode("etc/fstab"), 0o644);
    fails(
        "org.osbuild.fstab",
        &t.root,
        json!({}),
        "option \"filesystems\": is required",
    );
    fails(
        "org.osbuild.fstab",
        &t.root,
        json!({"filesystems": [{"uuid": "x"}]}),
        "option \"filesystems[0].path\": is required",
    );
    // freq and passno as strings of digits (a v10 sample's way) are written as given.
    ok(
        "org.osbuild.fstab",
        &t.root,
        json!({"filesystems": [{"uuid": "u", "path": "/", "freq": "1", "passno": "2"}]}),
    );
    assert_eq!(t.read("etc/fstab"), "UUID=u\t/\tnone\tdefaults\t1\t2\n");
    fails(
        "org.osbuild.fstab",
        &t.root,
        json!({"filesystems": [{"uuid": "u", "path": "/", "passno": "1\t"}]}),
        "option \"filesystems[0].passno\": must be a number or a string of digits",
    );
}

#[test]
fn kernel_cmdline() {
    let cases = [
        (
            json!({"root_fs_uuid": "abc", "kernel_opts": "ro quiet"}),
            "root=UUID=abc ro quiet",
        ),
        (json!({"root_fs_uuid": "abc"}), "root=UUID=abc"),
        (json!({"kernel_opts": "console=ttyS0"}), "console=ttyS0"),
        (json!({}), ""),
    ];
    for (opts, want) in cases {
        let t = Tree::new();
        ok("org.osbuild.kernel-cmdline", &t.root, opts);
        assert_eq!(t.read("etc/kernel/cmdline"), want);
    }
}

#[test]
fn zipl() {
    let t = Tree::new();
    ok("org.osbuild.zipl", &t.root, json!({"timeout": 5}));
    assert_eq!(
        t.read("etc/zipl.conf"),
        "[defaultboot]\ndefaultauto\nprompt=1\ntimeout=5\ntarget=/boot\n"
    );
    ok("org.osbuild.zipl", &t.root, json!({}));
    assert!(t.read("etc/zipl.conf").contains("\ntimeout=0\n"));
}

#[test]
fn chrony() {
    let t = Tree::new();
    t.write(
        "etc/chrony.conf",
        "# Use public servers\npool 2.debian.pool.ntp.org iburst\nserver old.example\nmakestep 1.0 3\n",
    );
    ok(
        "org.osbuild.chrony",
        &t.root,
        json!({"timeservers": ["ntp1.example", "ntp2.example"]}),
    );
    assert_eq!(
        t.read("etc/chrony.conf"),
        "server ntp1.example iburst\nserver ntp2.example iburst\n# Use public servers\nmakestep 1.0 3\n"
    );
    let empty = Tree::new();
    fails(
        "org.osbuild.chrony",
        &empty.root,
        json!({"timeservers": []}),
        "cannot read",
    );
    fails(
        "org.osbuild.chrony",
        &t.root,
        json!({}),
        "option \"timeservers\": is required",
    );
}

#[test]
fn fix_bls() {
    let t = Tree::new();
    t.write(
        "boot/loader/entries/a.conf",
        "title Fedora\nlinux /run/osbuild/tree/boot/vmlinuz-5.6\ninitrd /run/osbuild/tree/boot/initramfs-5.6.img\n",
    );
    t.write("boot/loader/entries/b.txt", "linux /x/boot/vmlinuz\n");
    ok("org.osbuild.fix-bls", &t.root, json!({}));
    assert_eq!(
        t.read("boot/loader/entries/a.conf"),
        "title Fedora\nlinux /boot/vmlinuz-5.6\ninitrd /boot/initramfs-5.6.img\n"
    );
    assert_eq!(
        t.read("boot/loader/entries/b.txt"),
        "linux /x/boot/vmlinuz\n"
    );
    // already fixed entries stay as they are
    ok("org.osbuild.fix-bls", &t.root, json!({"prefix": ""}));
    assert!(t
        .read("boot/loader/entries/a.conf")
        .contains("linux /boot/vmlinuz-5.6\n"));
    t.write(
        "boot/loader/entries/c.conf",
        "linux /var/tmp/x/boot/vmlinuz\n",
    );
    ok("org.osbuild.fix-bls", &t.root, json!({"prefix": ""}));
    assert_eq!(t.read("boot/loader/entries/c.conf"), "linux /vmlinuz\n");
    // no entries directory is fine
    ok("org.osbuild.fix-bls", &Tree::new().root, json!({}));
}

#[test]
fn test_and_debug_shell_units() {
    let t = Tree::new();
    ok(
        "org.osbuild.test",
        &t.root,
        json!({"script": "/usr/libexec/check-boot"}),
    );
    let unit = t.read("etc/systemd/system/osbuild-test.service");
    assert!(
        unit.contains("\nExecStart=/usr/libexec/check-boot\n"),
        "{unit}"
    );
    assert!(unit.contains("\nStandardOutput=file:/dev/vport0p1\n"));
    assert!(unit.contains("\nExecStopPost=/usr/bin/systemctl poweroff\n"));
    assert_eq!(t.mode("etc/systemd/system/osbuild-test.service"), 0o644);
    assert_eq!(
        t.link("etc/systemd/system/multi-user.target.wants/osbuild-test.service"),
        "../osbuild-test.service"
    );

    ok(
        "org.osbuild.debug-shell",
        &t.root,
        json!({"tty": "/dev/ttyS0"}),
    );
    let unit = t.read("etc/systemd/system/osbuild-debug-shell.service");
    assert!(unit.contains("\nTTYPath=/dev/ttyS0\n"), "{unit}");
    assert!(unit.contains("\nConditionPathExists=/dev/ttyS0\n"));
    assert!(unit.contains("\nExecStart=/bin/sh\n"));
    assert_eq!(
        t.link("etc/systemd/system/sysinit.target.wants/osbuild-debug-shell.service"),
        "../osbuild-debug-shell.service"
    );
    fails(
        "org.osbuild.debug-shell",
        &t.root,
        json!({}),
        "option \"tty\": is required",
    );
    fails(
        "org.osbuild.test",
        &t.root,
        json!({"script": "/x\nExecStartPre=/evil"}),
        "option \"script\": must be a single line",
    );
}

#[test]
fn writes_through_symlinks_stay_in_the_tree() {
    let t = Tree::new();
    let outside = t.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // /etc in the tree is an absolute symlink to a host directory, /etc/kernel a relative
    // one climbing out: neither may lead a stage outside the tree.
    std::os::unix::fs::symlink(&outside, t.path("etc")).unwrap();
    ok("org.osbuild.zipl", &t.root, json!({}));
    assert!(!outside.join("zipl.conf").exists());
    let inside = t
        .root
        .join(outside.strip_prefix("/").unwrap())
        .join("zipl.conf");
    assert!(inside.exists(), "{}", inside.display());

    let t2 = Tree::new();
    std::fs::create_dir(t2.path("etc")).unwrap();
    std::os::unix::fs::symlink("../../outside", t2.path("etc/kernel")).unwrap();
    fails(
        "org.osbuild.kernel-cmdline",
        &t2.root,
        json!({}),
        "path \"etc/kernel\" points outside the tree",
    );
    assert!(!t2.dir.path().join("outside").exists());
}

#[test]
fn systemd_enables_disables_and_sets_default() {
    if !common::have("systemctl") {
        println!("skipped: systemctl is not installed");
        return;
    }
    let t = Tree::new();
    t.write(
        "usr/lib/systemd/system/demo.service",
        "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    t.write(
        "usr/lib/systemd/system/other.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    t.write(
        "usr/lib/systemd/system/multi-user.target",
        "[Unit]\nDescription=m\n",
    );
    std::fs::create_dir_all(t.path("etc/systemd/system/multi-user.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/other.service",
        t.path("etc/systemd/system/multi-user.target.wants/other.service"),
    )
    .unwrap();
    ok(
        "org.osbuild.systemd",
        &t.root,
        json!({"enabled_services": ["demo.service"], "disabled_services": ["other.service"], "default_target": "multi-user.target"}),
    );
    assert_eq!(
        t.link("etc/systemd/system/multi-user.target.wants/demo.service"),
        "/usr/lib/systemd/system/demo.service"
    );
    assert!(!t
        .path("etc/systemd/system/multi-user.target.wants/other.service")
        .exists());
    assert_eq!(
        t.link("etc/systemd/system/default.target"),
        "/usr/lib/systemd/system/multi-user.target"
    );
    fails(
        "org.osbuild.systemd",
        &t.root,
        json!({"enabled_services": ["missing.service"]}),
        "systemctl --root",
    );
    fails(
        "org.osbuild.systemd",
        &t.root,
        json!({}),
        "option \"enabled_services\": is required",
    );
}

/// zstd clusters that cannot be are refused by the stage, naming the option, before it reads
/// its input or runs qemu-img.
#[test]
fn qemu_refuses_zstd_clusters_without_compression_or_with_compat_0_10() {
    let t = Tree::new();
    for (format, message) in [
        (
            json!({"type": "qcow2", "compression": false, "compression_type": "zstd"}),
            r#"org.osbuild.qemu: option "format.compression_type": zstd compresses clusters, but "compression" is false"#,
        ),
        (
            json!({"type": "qcow2", "compat": "0.10", "compression_type": "zstd"}),
            r#"org.osbuild.qemu: option "format.compression_type": zstd needs qcow2 compat 1.1, but "compat" is "0.10""#,
        ),
    ] {
        fails(
            "org.osbuild.qemu",
            &t.root,
            json!({"filename": "disk.qcow2", "format": format}),
            message,
        );
    }
    assert_eq!(std::fs::read_dir(&t.root).unwrap().count(), 0);
}
