//! The dpkg stage's tree does not depend on how its bootstrap gets the packages on disk: the
//! fast path (only what dpkg needs extracted by hand, several at once; everything else unpacked
//! once, by dpkg) and the old one (`OSBUILD_DPKG_SERIAL_BOOTSTRAP=1`: every package extracted by
//! hand, one at a time, then unpacked again by dpkg; control fields read with one dpkg-deb each)
//! make the same tree from the bootable image's packages: the same paths, modes, owners, sizes,
//! contents and symlink targets, and an initrd holding the same modules.
//!
//! Two code paths in one test rather than a committed listing: the listing follows the Debian
//! mirror's point releases, so it could not be kept as test data. Needs root, apt package lists
//! and the mirror; the .debs are kept in the dpkg tests' cache under /var/tmp.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use osbuild::mkmanifest::debian::{self, PinnedDeb, ResolveOptions};
use sha2::{Digest, Sha256};

/// Where the dpkg stage tests keep downloaded .debs (stages/tests/dpkg.rs).
const CACHE: &str = "/var/tmp/osbuild-dpkg-test-cache/debs";

/// The packages of `osbuild-mkmanifest-debian --image`, downloaded into [`CACHE`] where
/// missing; `None` (and why) when apt cannot resolve or fetch them here.
fn image_packages() -> Result<Vec<(PinnedDeb, PathBuf)>, String> {
    let names: Vec<String> = debian::BASE
        .iter()
        .chain(debian::IMAGE_PACKAGES)
        .map(|s| s.to_string())
        .collect();
    let debs = debian::resolve(&names, &ResolveOptions::default()).map_err(|e| e.to_string())?;
    fs::create_dir_all(Path::new(CACHE).join("partial")).map_err(|e| e.to_string())?;
    let empty = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let out = Command::new("apt-get")
        .env("LC_ALL", "C")
        .args([
            "-o",
            &format!("Dir::State::status={}", empty.path().display()),
        ])
        .args(["-o", &format!("Dir::Cache::archives={CACHE}")])
        .args([
            "-o",
            "Debug::NoLocking=1",
            "-o",
            "APT::Install-Recommends=false",
        ])
        .args(["-o", "APT::Sandbox::User=root"])
        .args(["install", "-qq", "-y", "--download-only", "--"])
        .args(&names)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(debs
        .into_iter()
        .map(|d| {
            let path = Path::new(CACHE).join(d.filename.replace(':', "%3a"));
            (d, path)
        })
        .collect())
}

/// `sources/org.osbuild.files/<checksum>` for every package (hard links into the cache).
fn sources(dir: &Path, debs: &[(PinnedDeb, PathBuf)]) -> PathBuf {
    let files = dir.join("org.osbuild.files");
    fs::create_dir_all(&files).unwrap();
    for (d, path) in debs {
        let dest = files.join(d.checksum());
        if fs::hard_link(path, &dest).is_err() {
            fs::copy(path, &dest).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    dir.to_owned()
}

/// Runs the libdir's dpkg stage on an empty `tree`, reproducibly, with `env` added.
fn dpkg_stage(tree: &Path, sources: &Path, sums: &[String], env: &[(&str, &str)]) -> String {
    fs::create_dir_all(tree).unwrap();
    let args = serde_json::json!({
        "tree": tree,
        "sources": sources,
        "options": {
            "packages": sums,
            "initramfs": {"modules": debian::IMAGE_INITRAMFS_MODULES},
        },
    });
    let mut cmd = Command::new(common::built_libdir().join("stages/org.osbuild.dpkg"));
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .envs(env.iter().copied());
    let out = common::run_with_stdin(cmd, &args.to_string());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dpkg stage {env:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every path under `root` (but the initrd, compared by its modules) with its type, mode,
/// owner, size, content hash or symlink target.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            let what = if m.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                todo.push(path.clone());
                String::new()
            } else if rel.starts_with("boot/initrd.img-") {
                "an initrd".into()
            } else if m.is_file() {
                let digest = Sha256::digest(fs::read(&path).unwrap());
                format!("{} {digest:x}", m.len())
            } else {
                format!("rdev {}", m.rdev())
            };
            let line = format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid());
            out.insert(rel, line);
        }
    }
    out
}

/// The kernel modules in the tree's initrd, as the tree's own `lsinitramfs` lists them.
fn initrd_modules(tree: &Path) -> Vec<String> {
    let initrd = fs::read_dir(tree.join("boot"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("initrd.img-"))
        .unwrap_or_else(|| panic!("no initrd in {}/boot", tree.display()));
    let out = Command::new("chroot")
        .arg(tree)
        .args(["lsinitramfs", &format!("/boot/{initrd}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "lsinitramfs: {out:?}");
    let mut modules: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(".ko") || l.ends_with(".ko.xz") || l.ends_with(".ko.zst"))
        .map(String::from)
        .collect();
    modules.sort();
    modules
}

#[test]
fn privileged_dpkg_fast_bootstrap_makes_the_same_tree() {
    let test = "privileged_dpkg_fast_bootstrap_makes_the_same_tree";
    if !common::privileged(test) {
        return;
    }
    let debs = match image_packages() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping {test}: cannot get the image's packages with apt: {why}");
            return;
        }
    };
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let sources = sources(&work.path().join("sources"), &debs);
    let sums: Vec<String> = debs.iter().map(|(d, _)| d.checksum()).collect();

    let old = work.path().join("old");
    let out = dpkg_stage(
        &old,
        &sources,
        &sums,
        &[("OSBUILD_DPKG_SERIAL_BOOTSTRAP", "1")],
    );
    assert!(
        out.contains(&format!("extracting all {} packages", sums.len())),
        "{out}"
    );
    let new = work.path().join("new");
    let out = dpkg_stage(&new, &sources, &sums, &[]);
    let hand = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("extracting ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no extraction line: {out}"));
    assert!(hand < sums.len(), "every package extracted by hand: {out}");

    let (a, b) = (listing(&old), listing(&new));
    assert!(a.len() > 5000, "{} paths", a.len());
    let differ: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .take(20)
        .map(|k| format!("{k}: old {:?}, new {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "the trees differ:\n{}",
        differ.join("\n")
    );

    let modules = initrd_modules(&old);
    assert!(
        modules.iter().any(|m| m.ends_with("/virtio_blk.ko")),
        "{modules:?}"
    );
    assert_eq!(modules, initrd_modules(&new));
}
