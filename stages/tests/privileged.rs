//! Stages that chroot into the tree or change owners: they need root (CI runs as root) and
//! skip with a printed reason otherwise. Trees are built from the host's own binaries.

mod common;

use std::fs;
use std::os::unix::fs::symlink;

use common::{fails, ok, run_stage, Tree};
use serde_json::json;

fn skip_unless_root(what: &str) -> bool {
    if !common::is_root() {
        println!("skipped {what}: needs root (chroot, chown)");
        return true;
    }
    false
}

/// A tree with the host's useradd/usermod and an account database.
fn account_tree() -> Tree {
    let t = Tree::new();
    t.install_binary("/usr/sbin/useradd");
    t.install_binary("/usr/sbin/usermod");
    t.write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1500:1500:Bob:/home/bob:/bin/sh\n",
    );
    t.write(
        "etc/shadow",
        "root:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\n",
    );
    t.write("etc/group", "root:x:0:\nwheel:x:10:\nbob:x:1500:\n");
    t.write("etc/gshadow", "root:*::\nwheel:*::\nbob:!::\n");
    t.write(
        "etc/login.defs",
        "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n",
    );
    fs::create_dir_all(t.path("home")).unwrap();
    t
}

#[test]
fn privileged_users_add_modify_and_keys() {
    if skip_unless_root("users") {
        return;
    }
    let t = account_tree();
    ok(
        "org.osbuild.users",
        &t.root,
        json!({"users": {
            "alice": {"uid": 1234, "gid": 10, "groups": ["wheel"], "description": "Alice A",
                      "home": "/home/alice", "shell": "/bin/bash", "password": "$6$salt$hash",
                      "key": "ssh-ed25519 AAAAC3Nza alice@example"},
            "bob": {"shell": "/bin/zsh", "key": "ssh-rsa AAAAB3 bob@example"}
        }}),
    );
    let passwd = t.read("etc/passwd");
    assert!(
        passwd.contains("\nalice:x:1234:10:Alice A:/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    assert!(
        passwd.contains("\nbob:x:1500:1500:Bob:/home/bob:/bin/zsh\n"),
        "{passwd}"
    );
    assert!(t.read("etc/shadow").contains("\nalice:$6$salt$hash:"));
    assert!(t.read("etc/group").contains("\nwheel:x:10:alice\n"));

    assert_eq!(
        t.read("home/alice/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3Nza alice@example\n"
    );
    assert_eq!(t.mode("home/alice/.ssh"), 0o700);
    assert_eq!(t.mode("home/alice/.ssh/authorized_keys"), 0o600);
    assert_eq!(t.owner("home/alice/.ssh"), (1234, 10));
    assert_eq!(t.owner("home/alice/.ssh/authorized_keys"), (1234, 10));
    assert_eq!(t.owner("home/bob/.ssh/authorized_keys"), (1500, 1500));

    // a second key is appended
    ok(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"alice": {"key": "ssh-ed25519 second"}}}),
    );
    assert_eq!(
        t.read("home/alice/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3Nza alice@example\nssh-ed25519 second\n"
    );

    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"bob": {"uid": 2000}}}),
        "org.osbuild.users: option \"users.bob.uid\": cannot change the uid of existing user \"bob\"",
    );
    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"carol": {"uid": "12"}}}),
        "option \"users.carol.uid\": must be a number",
    );
    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"dave": {"uid": 1234}}}),
        "useradd --uid 1234 dave failed: exit status 4",
    );
}

#[test]
fn privileged_users_home_cannot_leave_the_tree() {
    if skip_unless_root("users") {
        return;
    }
    let t = Tree::new();
    let outside = t.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    t.write(
        "etc/passwd",
        "dots:x:1001:1001::/../../outside:/bin/sh\n\
         rel:x:1002:1002::/home/rel:/bin/sh\n\
         abs:x:1003:1003::/home/abs:/bin/sh\n\
         root:x:0:0::/:/bin/sh\n",
    );
    fs::create_dir_all(t.path("home")).unwrap();
    symlink("../../outside", t.path("home/rel")).unwrap();
    symlink(&outside, t.path("home/abs")).unwrap();

    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"dots": {"key": "k"}}}),
        "path \"/../../outside\" points outside the tree",
    );
    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"rel": {"key": "k"}}}),
        "path \"/home/rel\" points outside the tree",
    );
    fails(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"root": {"key": "k"}}}),
        "has the tree root as home directory",
    );
    // an absolute symlink is rooted at the tree: the key lands inside it
    ok(
        "org.osbuild.users",
        &t.root,
        json!({"users": {"abs": {"key": "k"}}}),
    );
    let inside = t.root.join(outside.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(inside.join(".ssh/authorized_keys")).unwrap(),
        "k\n"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
}

#[test]
fn privileged_groups() {
    if skip_unless_root("groups") || !common::have("groupadd") {
        return;
    }
    let t = account_tree();
    ok(
        "org.osbuild.groups",
        &t.root,
        json!({"groups": {"admins": {"gid": 4242}, "auto": {}}}),
    );
    // gid 0 is passed on (v10 dropped it), so groupadd refuses the taken gid
    fails(
        "org.osbuild.groups",
        &t.root,
        json!({"groups": {"zero": {"gid": 0}}}),
        "--gid 0 zero failed: exit status 4",
    );
    let r = run_stage(
        "org.osbuild.groups",
        &t.root,
        json!({"groups": {"dup": {"gid": 4242}}}),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("failed: exit status 4"), "{}", r.stderr);
    let group = t.read("etc/group");
    assert!(group.contains("\nadmins:x:4242:\n"), "{group}");
    assert!(group.contains("\nauto:x:4243:\n"), "{group}"); // groupadd picks the next free gid
    assert!(!group.contains("dup:"));
}

#[test]
fn privileged_script_runs_chrooted_and_is_removed() {
    if skip_unless_root("script") {
        return;
    }
    let t = Tree::new();
    t.install_sh();
    let r = run_stage(
        "org.osbuild.script",
        &t.root,
        json!({"script": "#!/bin/sh\necho hello from $(pwd) > /out\nls -l /osbuild-script >> /out 2>&1 || true\nexit 7\n"}),
    );
    assert_eq!(r.code, 7, "{r:?}");
    let out = t.read("out");
    assert!(out.starts_with("hello from /\n"), "{out}");
    assert!(!t.path("osbuild-script").exists(), "script left behind");

    ok(
        "org.osbuild.script",
        &t.root,
        json!({"script": "#!/bin/sh\n: > /ok\n"}),
    );
    assert!(t.path("ok").exists());
    fails(
        "org.osbuild.script",
        &t.root,
        json!({}),
        "option \"script\": is required",
    );
}

#[test]
fn privileged_firewall_runs_the_tree_tool() {
    if skip_unless_root("firewall") {
        return;
    }
    let t = Tree::new();
    t.install_sh();
    osbuild_sys::process::write_executable(
        &t.path("usr/bin/firewall-offline-cmd"),
        b"#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > /args\n",
        0o755,
    )
    .unwrap();
    ok(
        "org.osbuild.firewall",
        &t.root,
        json!({"ports": ["22:tcp", "6000-6010:udp"], "enabled_services": ["http"], "disabled_services": ["dhcpv6-client"]}),
    );
    assert_eq!(
        t.read("args"),
        "--port=22:tcp\n--port=6000-6010:udp\n--service=http\n--remove-service=dhcpv6-client\n"
    );
    fails(
        "org.osbuild.firewall",
        &t.root,
        json!({"ports": ["22"]}),
        "option \"ports\": \"22\" is not 'port[-port]:protocol'",
    );
    let bare = Tree::new();
    fails(
        "org.osbuild.firewall",
        &bare.root,
        json!({}),
        "cannot run firewall-offline-cmd: not found",
    );
}

#[test]
fn privileged_selinux_labels_with_setfiles() {
    if skip_unless_root("selinux") {
        return;
    }
    if !common::have("setfiles") {
        println!("skipped selinux: setfiles is not installed (apt-get install policycoreutils)");
        return;
    }
    let t = Tree::new();
    t.write("etc/hostname", "h\n");
    t.write("usr/bin/tool", "x");
    t.write(
        "etc/selinux/test/file_contexts",
        "/.*\tsystem_u:object_r:default_t:s0\n/etc(/.*)?\tsystem_u:object_r:etc_t:s0\n/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n",
    );
    let r = run_stage(
        "org.osbuild.selinux",
        &t.root,
        json!({"file_contexts": "etc/selinux/test/file_contexts"}),
    );
    if r.code != 0 && r.stderr.contains("Operation not supported") {
        println!(
            "skipped selinux: the filesystem of {} has no security xattrs",
            t.root.display()
        );
        return;
    }
    assert_eq!(r.code, 0, "{r:?}");
    let label = |rel: &str| {
        let path =
            std::ffi::CString::new(t.path(rel).into_os_string().into_encoded_bytes()).unwrap();
        let got = osbuild_sys::fs::get_xattr_nofollow(&path, c"security.selinux");
        assert!(got.is_ok(), "{rel}: {got:?}");
        let buf = got.unwrap();
        String::from_utf8_lossy(&buf)
            .trim_end_matches('\0')
            .to_string()
    };
    assert_eq!(label("etc/hostname"), "system_u:object_r:etc_t:s0");
    assert_eq!(label("usr/bin/tool"), "system_u:object_r:bin_t:s0");
    assert_eq!(label(""), "system_u:object_r:default_t:s0");
    fails(
        "org.osbuild.selinux",
        &t.root,
        json!({"file_contexts": "../../etc/selinux/targeted/contexts/files/file_contexts"}),
        "option \"file_contexts\": path \"../../etc/selinux/targeted/contexts/files/file_contexts\" points outside the tree",
    );
    fails(
        "org.osbuild.selinux",
        &t.root,
        json!({"file_contexts": "/nope"}),
        "option \"file_contexts\": \"/nope\" is not a file in the tree",
    );
}
