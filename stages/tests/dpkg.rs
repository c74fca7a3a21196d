//! `org.osbuild.dpkg`: option errors (no root needed), and on real Debian packages (root, apt
//! package lists and the network to the machine's configured mirror): bootstrapping an empty
//! tree, adding a package to it, and a clear error for a package with missing dependencies.
//!
//! Downloads go to a cache under /var/tmp, so repeated runs only resolve.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::run_stage_raw;
use serde_json::json;

const CACHE: &str = "/var/tmp/osbuild-dpkg-test-cache";

/// Runs the stage with explicit `sources`.
fn dpkg_stage(tree: &Path, sources: &Path, options: serde_json::Value) -> common::Run {
    let args = json!({"tree": tree, "sources": sources, "options": options});
    run_stage_raw("org.osbuild.dpkg", &args.to_string())
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

#[test]
fn dpkg_option_errors() {
    let t = common::Tree::new();
    let sources = t.dir.path().join("sources");
    fs::create_dir_all(sources.join("org.osbuild.files")).unwrap();
    let missing = format!("sha256:{}", "a".repeat(64));
    let cases = [
        (json!({}), "option \"packages\": is required"),
        (
            json!({"packages": ["../../etc/passwd"]}),
            "option \"packages[0]\": \"../../etc/passwd\" is not a checksum",
        ),
        (
            json!({"packages": ["sha256:ABC"]}),
            "option \"packages[0]\": \"sha256:ABC\": expected 64 lowercase hexadecimal digits",
        ),
        (
            json!({"packages": [missing]}),
            &format!("package {missing} is not in the sources"),
        ),
        (
            json!({"packages": [], "initramfs": {"modules": ["ok", "bad/name"]}}),
            "option \"initramfs.modules[1]\": \"bad/name\" is not a kernel module name",
        ),
        (
            json!({"packages": [], "initramfs": {"modlues": []}}),
            "option \"initramfs.modlues\": is not a known option",
        ),
    ];
    for (options, message) in cases {
        let r = dpkg_stage(&t.root, &sources, options.clone());
        assert_eq!(r.code, 1, "{options}: {r:?}");
        assert!(
            r.stderr.contains(&format!("org.osbuild.dpkg: {message}")),
            "{options}: {:?} lacks {message:?}",
            r.stderr
        );
    }
    // A file that is not a .deb is named by its checksum.
    let junk = sources.join("org.osbuild.files").join(&missing);
    fs::write(&junk, "not an archive").unwrap();
    let r = dpkg_stage(&t.root, &sources, json!({"packages": [missing]}));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("package {missing} is not a readable .deb")),
        "{}",
        r.stderr
    );
    // Nothing was written into the tree.
    assert_eq!(fs::read_dir(&t.root).unwrap().count(), 0);
}

/// Whether this machine can run the real-package test, or why not.
fn real_packages_unavailable() -> Option<&'static str> {
    if !common::is_root() {
        return Some("needs root (chroot, mounts)");
    }
    if !common::have("apt-get") || !common::have("dpkg-deb") {
        return Some("needs apt-get and dpkg-deb");
    }
    let lists = fs::read_dir("/var/lib/apt/lists")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("Packages"))
        })
        .unwrap_or(false);
    if !lists {
        return Some("no apt package lists (run apt-get update)");
    }
    None
}

/// Downloads `packages` and what they need beyond the dpkg `status` file (empty: everything)
/// into the cache; returns the .deb paths.
fn fetch(status: &Path, packages: &[&str]) -> Vec<PathBuf> {
    let archives = Path::new(CACHE).join("debs");
    fs::create_dir_all(archives.join("partial")).unwrap();
    let apt = |extra: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.env("LC_ALL", "C");
        for o in [
            format!("Dir::State::status={}", status.display()),
            format!("Dir::Cache::archives={}", archives.display()),
            "Debug::NoLocking=1".into(),
            "APT::Install-Recommends=false".into(),
            "APT::Sandbox::User=root".into(),
        ] {
            cmd.arg("-o").arg(o);
        }
        cmd.args(["install", "-qq", "-y"])
            .args(extra)
            .args(packages);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "apt-get {extra:?} {packages:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // File names first (print-uris leaves out what is already cached), then download.
    let mut names: Vec<String> = Vec::new();
    let empty_archives = tempfile::tempdir_in(CACHE).unwrap();
    fs::create_dir_all(empty_archives.path().join("partial")).unwrap();
    {
        let mut cmd = Command::new("apt-get");
        cmd.env("LC_ALL", "C");
        for o in [
            format!("Dir::State::status={}", status.display()),
            format!("Dir::Cache::archives={}", empty_archives.path().display()),
            "Debug::NoLocking=1".into(),
            "APT::Install-Recommends=false".into(),
        ] {
            cmd.arg("-o").arg(o);
        }
        let out = cmd
            .args(["install", "--print-uris", "-qq", "-y"])
            .args(packages)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", out);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.split_whitespace().nth(1) {
                names.push(name.to_string());
            }
        }
    }
    apt(&["--download-only"]);
    names.iter().map(|n| archives.join(n)).collect()
}

/// Links `debs` into `sources/org.osbuild.files/<checksum>`; returns the checksums.
fn add_sources(sources: &Path, debs: &[PathBuf]) -> Vec<String> {
    let dir = sources.join("org.osbuild.files");
    fs::create_dir_all(&dir).unwrap();
    debs.iter()
        .map(|d| {
            let sum = sha256(d);
            let dest = dir.join(&sum);
            if !dest.exists() {
                fs::copy(d, &dest).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            }
            sum
        })
        .collect()
}

/// `name status` for every package in the tree's dpkg database.
fn installed(tree: &Path) -> Vec<String> {
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}/var/lib/dpkg", tree.display()))
        .args(["-W", "-f", "${Package} ${Status}\\n"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn audit(tree: &Path) -> String {
    let out = Command::new("dpkg")
        .arg("--root")
        .arg(tree)
        .arg("--audit")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Fails (without deleting anything) if something is still mounted below `dir`.
fn assert_nothing_mounted(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy();
    if let Some(line) = mounts.lines().find(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|m| m.starts_with(&*prefix))
    }) {
        panic!("left mounted below {prefix}: {line}");
    }
}

/// The probe: counts failed units once multi-user is reached, then powers off.
const PROBE: &str = "[Unit]\nDescription=image test probe\nAfter=multi-user.target\n\
[Service]\nType=oneshot\nStandardOutput=journal+console\n\
ExecStart=/bin/sh -c 'echo \"IMGTEST-END failed=$(systemctl --failed --no-legend | wc -l)\"'\n\
ExecStartPost=/bin/systemctl poweroff --no-block\n";

/// Boots the tree with systemd-nspawn (an overlay keeps it unchanged) and asserts it reaches
/// multi-user with no failed unit. Skips with a reason without systemd-container.
fn boot_in_container(tree: &Path, work: &Path) {
    if !common::have("systemd-nspawn") {
        println!(
            "skipped the container boot: needs systemd-nspawn (apt-get install systemd-container)"
        );
        return;
    }
    let probe = work.join("imgtest.service");
    fs::write(&probe, PROBE).unwrap();
    // nspawn needs a private, writable /run and no machine registration here.
    let script = "mount -t tmpfs tmpfs /run && exec systemd-nspawn --register=no --keep-unit -q \
                  -b --volatile=overlay -D \"$1\" \
                  --bind-ro=\"$2\":/etc/systemd/system/imgtest.service systemd.wants=imgtest.service";
    let out = Command::new("timeout")
        .args(["120", "unshare", "-m", "sh", "-c", script, "sh"])
        .arg(tree)
        .arg(&probe)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nspawn: {out:?}");
    assert!(
        log.contains("Reached target multi-user.target") || log.contains("Multi-User System"),
        "{log}"
    );
    assert!(log.contains("IMGTEST-END failed=0"), "{log}");
    assert_eq!(fs::metadata(tree.join("etc/machine-id")).unwrap().len(), 0);
}

#[test]
fn privileged_dpkg_bootstraps_and_extends_a_debian_tree() {
    if let Some(why) = real_packages_unavailable() {
        println!("skipped privileged_dpkg_bootstraps_and_extends_a_debian_tree: {why}");
        return;
    }
    fs::create_dir_all(CACHE).unwrap();
    let work = tempfile::tempdir_in(CACHE).unwrap();
    let tree = work.path().join("tree");
    let sources = work.path().join("sources");
    fs::create_dir_all(&tree).unwrap();
    let empty = work.path().join("empty.status");
    fs::write(&empty, "").unwrap();

    // 1. Bootstrap: the required set + systemd-sysv, handed over in reverse name order.
    let debs = fetch(
        &empty,
        &["?priority(required)", "usr-is-merged", "systemd-sysv"],
    );
    assert!(debs.len() > 80, "{} debs", debs.len());
    let mut sums = add_sources(&sources, &debs);
    sums.reverse();
    let r = dpkg_stage(
        &tree,
        &sources,
        json!({"packages": sums, "initramfs": {"modules": ["virtio_blk", "ext4"]}}),
    );
    assert_nothing_mounted(&tree);
    assert_eq!(r.code, 0, "stage failed: {}\n{}", r.stdout, r.stderr);
    assert_eq!(audit(&tree), "", "dpkg --audit is not clean");
    let pkgs = installed(&tree);
    assert_eq!(pkgs.len(), debs.len(), "{pkgs:?}");
    for p in [
        "systemd-sysv",
        "base-files",
        "dpkg",
        "libc6",
        "bash",
        "usr-is-merged",
    ] {
        assert!(
            pkgs.contains(&format!("{p} install ok installed")),
            "{p} not installed: {pkgs:?}"
        );
    }
    assert!(!pkgs.iter().any(|p| p.starts_with("usrmerge ")));
    for d in ["bin", "sbin", "lib", "lib64"] {
        assert_eq!(
            fs::read_link(tree.join(d)).unwrap(),
            PathBuf::from(format!("usr/{d}"))
        );
    }
    let mid = fs::metadata(tree.join("etc/machine-id")).unwrap();
    assert_eq!(mid.len(), 0, "machine-id must be empty");
    assert!(fs::symlink_metadata(tree.join("usr/sbin/policy-rc.d")).is_err());
    assert!(fs::symlink_metadata(tree.join(".osbuild-dpkg")).is_err());
    assert!(tree.join("usr/lib/systemd/systemd").exists());
    assert_eq!(
        fs::read_to_string(tree.join("etc/initramfs-tools/conf.d/osbuild.conf"))
            .unwrap()
            .lines()
            .last(),
        Some("MODULES=list")
    );
    let hook = tree.join("etc/initramfs-tools/hooks/osbuild");
    assert_eq!(fs::metadata(&hook).unwrap().mode() & 0o777, 0o755);
    assert!(fs::read_to_string(&hook)
        .unwrap()
        .contains("for m in virtio_blk ext4; do force_load"));
    let passwd = fs::read_to_string(tree.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");

    boot_in_container(&tree, work.path());

    // 2. Add a package to the existing tree: resolve against the tree's own status.
    let status = tree.join("var/lib/dpkg/status");
    let hello = fetch(&status, &["hello"]);
    assert_eq!(hello.len(), 1, "only hello is missing: {hello:?}");
    let sums = add_sources(&sources, &hello);
    let r = dpkg_stage(&tree, &sources, json!({"packages": sums}));
    assert_nothing_mounted(&tree);
    assert_eq!(r.code, 0, "stage failed: {}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("adding 1 packages to an existing tree"));
    assert!(installed(&tree).contains(&"hello install ok installed".to_string()));
    assert!(tree.join("usr/bin/hello").is_file());
    assert_eq!(audit(&tree), "");
    assert_eq!(fs::metadata(tree.join("etc/machine-id")).unwrap().len(), 0);

    // 3. A package whose dependencies are not in the tree fails, naming it.
    let curl = fetch(&empty, &["curl"])
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("curl_")
        })
        .collect::<Vec<_>>();
    assert_eq!(curl.len(), 1);
    let sums = add_sources(&sources, &curl);
    let r = dpkg_stage(&tree, &sources, json!({"packages": sums.clone()}));
    assert_nothing_mounted(&tree);
    assert_eq!(r.code, 1, "{r:?}");
    let last = r.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("org.osbuild.dpkg: dpkg (configure) failed (exit status 1) on: curl ")
            && last.ends_with(&format!("({})", sums[0])),
        "{last}"
    );
}
