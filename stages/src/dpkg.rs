//! `org.osbuild.dpkg`: installs `.deb` files from the `org.osbuild.files` source into the
//! tree with dpkg, bootstrapping an empty tree or adding to an existing Debian tree.
//!
//! An empty tree (no `var/lib/dpkg/status`) is bootstrapped the way a plain-dpkg bootstrap
//! does it, with no apt and no network:
//! 1. merged /usr first (`bin`, `sbin`, `lib` and, where the ABI wants it, `lib64` are
//!    symlinks into `usr/`);
//! 2. the essential set, [`CORE`] and what they depend on ([`bootstrap`]) are extracted with
//!    the build root's `dpkg-deb` and `tar`, several at once, which gives the tree a shell,
//!    libc and dpkg of its own;
//! 3. an empty dpkg database, then the tree's own dpkg, chrooted into the tree, installs the
//!    core packages first, unpacks the rest (every package outside step 2's set is unpacked
//!    once, by dpkg) and configures everything.
//!
//! A tree that already has a dpkg database only gets step 3's unpack and configure.
//!
//! Kernel images (and what depends on them) are unpacked and configured last, after everything
//! else is configured: their postinst makes the initramfs with every hook in place, and the
//! initramfs-tools trigger, already processed, finds no initramfs to make again (it would
//! otherwise make it twice).
//!
//! The tree's dpkg runs in a private mount and network namespace of this stage: `/proc`,
//! `/sys` and `/dev` are mounted into the tree and the sources directory is bound read-only at
//! [`DEBS_DIR`], all unmounted (or gone with the namespace) when the stage ends; maintainer
//! scripts see no network and run without `CAP_SYS_ADMIN` (see [`command::tool`]), and a `policy-rc.d` refusing every action keeps services from being
//! started. Afterwards `/etc/machine-id` is left empty (an image must not share one) and
//! `dpkg --audit` must report nothing. A failure names the packages dpkg gave up on.
//!
//! In a reproducible build (`SOURCE_DATE_EPOCH` set by the engine) dpkg and the maintainer
//! scripts get the epoch (initramfs-tools clamps the initramfs to it, shadow dates accounts by
//! it), and what records the build's own time or inode numbers is emptied or removed
//! afterwards ([`forget_the_build`]): dpkg's and update-alternatives' logs, ldconfig's cache.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::mounts::{isolate, Mounts};
use crate::tree;

mod bootstrap;
mod control;

use bootstrap::Relations;

/// Packages installed before everything else when bootstrapping: the account database, the
/// filesystem layout, dpkg itself and what maintainer scripts of everything else rely on.
const CORE: &[&str] = &[
    "base-passwd",
    "base-files",
    "dpkg",
    "libc6",
    "perl-base",
    "mawk",
    "debconf",
];

/// Where the sources' files appear inside the tree while dpkg runs.
const DEBS_DIR: &str = ".osbuild-dpkg";

/// The `policy-rc.d` that tells invoke-rc.d (and deb-systemd-invoke) not to start anything.
const POLICY_RC_D: &str = "#!/bin/sh\n# written by org.osbuild.dpkg while it runs\nexit 101\n";

/// Options every dpkg run gets: keep existing configuration files, no fsync (a build throws
/// the tree away on failure anyway).
const DPKG_FORCE: &[&str] = &["--force-confold", "--force-unsafe-io"];

/// One `.deb` from the sources, with the control fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deb {
    checksum: String,
    name: String,
    version: String,
    arch: String,
    relations: Relations,
}

impl Deb {
    /// How messages name the package: `name version (checksum)`.
    fn describe(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.checksum)
    }
}

pub fn run(args: &Args) -> Result<i32, StageError> {
    let packages = packages(args)?;
    let modules = initramfs_modules(args)?;
    let debs = read_controls(&packages)?;
    let files = packages
        .first()
        .and_then(|(_, p)| p.parent())
        .map(Path::to_owned)
        .unwrap_or_default();
    if debs.is_empty() {
        println!("no packages to install");
        return Ok(0);
    }

    let tree = &args.tree;
    let status = tree.join("var/lib/dpkg/status");
    let bootstrap = fs::metadata(&status).map(|m| m.len() == 0).unwrap_or(true);
    let machine_id_before = fs::read(tree.join("etc/machine-id")).unwrap_or_default();

    if bootstrap {
        println!("bootstrapping an empty tree from {} packages", debs.len());
        merged_usr(tree, &debs)?;
        extract_for_dpkg(tree, &debs, &packages)?;
        for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
            tree::create_dirs(tree, dir, 0o755)?;
        }
        for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            let host = tree::tree_path(tree, file)?;
            if !host.exists() {
                tree::write_file(tree, file, b"", 0o644)?;
            }
        }
    } else {
        println!("adding {} packages to an existing tree", debs.len());
    }
    if !modules.is_empty() {
        write_initramfs_config(tree, &modules)?;
    }

    {
        let _policy = PolicyRcD::install(tree)?;
        isolate()?;
        let mounts = Mounts::setup(tree, Some((&files, DEBS_DIR)))?;
        let dpkg = Dpkg {
            tree,
            debs: &debs,
            debs_dir: &mounts.files_in_tree,
        };
        let rest = if bootstrap {
            let (core, rest) = split_core(&debs);
            dpkg.run("install core packages", &["--force-depends", "-i"], &core)?;
            rest
        } else {
            debs.iter().collect()
        };
        let (rest, kernels) = kernels_last(rest);
        for (step, group) in [("", rest), (" kernels", kernels)] {
            if !group.is_empty() {
                let unpack = format!("unpack{step}");
                dpkg.run(&unpack, &["--force-depends", "--unpack"], &group)?;
                dpkg.run("configure", &["--configure", "-a"], &[])?;
            }
        }
        drop(mounts);
    }

    leave_machine_id_empty(tree, &machine_id_before)?;
    remove_backups(tree);
    audit(tree)?;
    if source_date_epoch().is_some() {
        forget_the_build(tree)?;
    }
    println!("installed {} packages", debs.len());
    Ok(0)
}

/// The `.deb` files to install, by name (their checksum) and path: v10's `packages` option
/// of checksums in the `org.osbuild.files` source, or under HEAD's protocol the files input
/// `packages` (as HEAD's rpm stage takes its packages), all in the input's one directory.
fn packages(args: &Args) -> Result<Vec<(String, PathBuf)>, StageError> {
    if !args.is_head() {
        return args.source_files("packages");
    }
    if args.options.contains_key("packages") {
        return Err(StageError::option(
            "packages",
            "is v10's form: a version 2 manifest hands the .debs over as the files input \"packages\"",
        ));
    }
    let files = args.input_files("packages")?;
    if let Some((name, _)) = files.iter().find(|(n, _)| n.contains('/')) {
        return Err(StageError::Other(format!(
            "input \"packages\": file {name:?} must be a plain file name"
        )));
    }
    for (name, path) in &files {
        if !path.is_file() {
            return Err(StageError::Other(format!(
                "input \"packages\": {name} is not a file ({} does not exist)",
                path.display()
            )));
        }
    }
    Ok(files)
}

/// The `initramfs.modules` option, validated as kernel module names.
fn initramfs_modules(args: &Args) -> Result<Vec<String>, StageError> {
    let init = match args.options.get("initramfs") {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => return Err(StageError::option("initramfs", "must be an object")),
    };
    if let Some(k) = init.keys().find(|k| *k != "modules") {
        return Err(StageError::option(
            format!("initramfs.{k}"),
            "is not a known option",
        ));
    }
    let modules = match init.get("modules") {
        Some(serde_json::Value::Array(items)) => items,
        _ => {
            return Err(StageError::option(
                "initramfs.modules",
                "is required and must be an array of strings",
            ))
        }
    };
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| match m.as_str() {
            Some(m)
                if !m.is_empty()
                    && m.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok(m.to_string())
            }
            _ => Err(StageError::option(
                format!("initramfs.modules[{i}]"),
                format!("{m} is not a kernel module name"),
            )),
        })
        .collect()
}

/// `dpkg-deb --showformat` for [`parse_show`].
const SHOW_FORMAT: &str = "--showformat=${Package}\\t${Version}\\t${Architecture}\\t\
     ${Essential}\\t${Pre-Depends}\\t${Depends}\\t${Provides}\\n";

/// The fields [`SHOW_FORMAT`] prints, in its order.
const SHOW_FIELDS: &[&str] = &[
    "Package",
    "Version",
    "Architecture",
    "Essential",
    "Pre-Depends",
    "Depends",
    "Provides",
];

/// Parses `dpkg-deb --show` output in our format: `name\tversion\tarch` and optionally
/// `\tessential\tpre-depends\tdepends\tprovides`.
fn parse_show(checksum: &str, text: &str) -> Option<Deb> {
    let line = text.lines().next()?;
    let values: Vec<&str> = line.split('\t').collect();
    if values.len() < 3 {
        return None;
    }
    let values = SHOW_FIELDS
        .iter()
        .zip(values)
        .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
        .collect();
    deb_of(checksum, &control::Fields { values })
}

/// Every package's control fields: all at once ([`control::read_all`]), else (or when the old
/// way is asked for, [`bootstrap::old_way_requested`]) with one `dpkg-deb --show` each.
fn read_controls(packages: &[(String, PathBuf)]) -> Result<Vec<Deb>, StageError> {
    let paths: Vec<&Path> = packages.iter().map(|(_, p)| p.as_path()).collect();
    let at_once = (!bootstrap::old_way_requested()).then(|| control::read_all(&paths));
    let fast = at_once.flatten().and_then(|all| {
        all.iter()
            .zip(packages)
            .map(|(f, (checksum, _))| deb_of(checksum, f))
            .collect::<Option<Vec<Deb>>>()
    });
    match fast {
        Some(debs) => Ok(debs),
        None => bootstrap::each_parallel(packages, bootstrap::jobs(), |(c, path)| {
            read_control(c, path)
        }),
    }
}

/// The [`Deb`] of control fields `f`, `None` without a name or version.
fn deb_of(checksum: &str, f: &control::Fields) -> Option<Deb> {
    let (name, version) = (f.get("Package"), f.get("Version"));
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(Deb {
        checksum: checksum.to_owned(),
        name: name.to_owned(),
        version: version.to_owned(),
        arch: f.get("Architecture").to_owned(),
        relations: Relations::parse(
            f.get("Essential"),
            f.get("Pre-Depends"),
            f.get("Depends"),
            f.get("Provides"),
        ),
    })
}

/// Reads a package's name, version and architecture with the build root's `dpkg-deb`.
fn read_control(checksum: &str, path: &Path) -> Result<Deb, StageError> {
    let mut cmd = command::tool("dpkg-deb");
    cmd.args(["--show", SHOW_FORMAT])
        .arg(path)
        .stderr(Stdio::piped());
    let out = cmd.output().map_err(|source| StageError::Spawn {
        program: "dpkg-deb".into(),
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_show(checksum, &text) {
        Some(deb) if out.status.success() => Ok(deb),
        _ => Err(StageError::Other(format!(
            "package {checksum} is not a readable .deb: dpkg-deb {}: {}",
            command::describe_status(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The architectures whose libc lives in `/lib64`, so that directory is merged too.
fn wants_lib64(arch: &str) -> bool {
    matches!(
        arch,
        "amd64" | "ppc64el" | "ppc64" | "s390x" | "sparc64" | "mips64el" | "loong64"
    )
}

/// Makes the top-level library and binary directories symlinks into `usr/` (where absent).
fn merged_usr(tree: &Path, debs: &[Deb]) -> Result<(), StageError> {
    let arch = debs
        .iter()
        .find(|d| d.name == "libc6")
        .or_else(|| debs.iter().find(|d| d.arch != "all"))
        .map_or("", |d| d.arch.as_str());
    let mut dirs = vec!["bin", "sbin", "lib"];
    if wants_lib64(arch) {
        dirs.push("lib64");
    }
    for d in dirs {
        let top = tree.join(d);
        if fs::symlink_metadata(&top).is_ok() {
            continue;
        }
        tree::create_dirs(tree, &format!("usr/{d}"), 0o755)?;
        tree::write_symlink(tree, d, &format!("usr/{d}"))?;
    }
    Ok(())
}

/// Extracts what the tree's dpkg needs to run (see [`bootstrap`]), several packages at once;
/// every package, one at a time, when the old way is asked for
/// ([`bootstrap::old_way_requested`]).
fn extract_for_dpkg(
    tree: &Path,
    debs: &[Deb],
    packages: &[(String, PathBuf)],
) -> Result<(), StageError> {
    let pairs: Vec<(&Deb, &Path)> = debs
        .iter()
        .zip(packages.iter().map(|(_, p)| p.as_path()))
        .collect();
    if bootstrap::old_way_requested() {
        println!("extracting all {} packages, one at a time", pairs.len());
        return pairs
            .iter()
            .try_for_each(|(deb, path)| extract(path, tree, deb));
    }
    let named: Vec<(&str, &Relations)> = debs
        .iter()
        .map(|d| (d.name.as_str(), &d.relations))
        .collect();
    let chosen: Vec<(&Deb, &Path)> = bootstrap::hand_extracted(&named, CORE)
        .into_iter()
        .map(|i| pairs[i])
        .collect();
    let jobs = bootstrap::jobs();
    println!(
        "extracting {} packages for dpkg to run ({jobs} at once)",
        chosen.len()
    );
    bootstrap::each_parallel(&chosen, jobs, |(deb, path)| extract(path, tree, deb))?;
    Ok(())
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x --keep-directory-symlink -C TREE`.
fn extract(path: &Path, tree: &Path, deb: &Deb) -> Result<(), StageError> {
    let mut deb_cmd = command::tool("dpkg-deb");
    deb_cmd
        .arg("--fsys-tarfile")
        .arg(path)
        .stdout(Stdio::piped());
    let mut producer = deb_cmd.spawn().map_err(|source| StageError::Spawn {
        program: "dpkg-deb".into(),
        source,
    })?;
    let pipe = producer.stdout.take().map(Stdio::from);
    let mut tar = command::tool("tar");
    tar.args(["-x", "--keep-directory-symlink", "--numeric-owner", "-C"])
        .arg(tree)
        .stdin(pipe.unwrap_or_else(Stdio::null));
    let tar_status = command::status(&mut tar);
    let deb_status = producer.wait();
    let failed =
        |what: String| StageError::Other(format!("cannot extract {}: {what}", deb.describe()));
    match deb_status {
        Ok(st) if !st.success() => {
            return Err(failed(format!(
                "dpkg-deb --fsys-tarfile {}",
                command::describe_status(st)
            )))
        }
        Err(e) => return Err(failed(format!("dpkg-deb: {e}"))),
        Ok(_) => {}
    }
    let st = tar_status?;
    if !st.success() {
        return Err(failed(format!("tar {}", command::describe_status(st))));
    }
    Ok(())
}

/// `debs` without and with the kernel images and what depends on them (see
/// [`bootstrap::kernels_and_dependents`]); all in the first part when the old way is asked for.
fn kernels_last(debs: Vec<&Deb>) -> (Vec<&Deb>, Vec<&Deb>) {
    if bootstrap::old_way_requested() {
        return (debs, Vec::new());
    }
    let named: Vec<(&str, &Relations)> = debs
        .iter()
        .map(|d| (d.name.as_str(), &d.relations))
        .collect();
    let late = bootstrap::kernels_and_dependents(&named);
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (i, d) in debs.into_iter().enumerate() {
        if late.contains(&i) {
            last.push(d);
        } else {
            first.push(d);
        }
    }
    (first, last)
}

/// The core packages present (in [`CORE`] order) and the others (in option order).
fn split_core(debs: &[Deb]) -> (Vec<&Deb>, Vec<&Deb>) {
    let core: Vec<&Deb> = CORE
        .iter()
        .filter_map(|n| debs.iter().find(|d| d.name == *n))
        .collect();
    let rest = debs
        .iter()
        .filter(|d| !CORE.contains(&d.name.as_str()))
        .collect();
    (core, rest)
}

/// Writes a `MODULES=list` initramfs-tools configuration and a hook loading `modules`
/// (not `/etc/initramfs-tools/modules`, which is a conffile of initramfs-tools).
fn write_initramfs_config(tree: &Path, modules: &[String]) -> Result<(), StageError> {
    tree::write_file(
        tree,
        "etc/initramfs-tools/conf.d/osbuild.conf",
        b"# written by org.osbuild.dpkg: only the modules the hook names\nMODULES=list\n",
        0o644,
    )?;
    let hook = format!(
        "#!/bin/sh\n# written by org.osbuild.dpkg\n[ \"$1\" = prereqs ] && exit 0\n\
         . /usr/share/initramfs-tools/hook-functions\nfor m in {}; do force_load \"$m\"; done\n",
        modules.join(" ")
    );
    tree::write_file(
        tree,
        "etc/initramfs-tools/hooks/osbuild",
        hook.as_bytes(),
        0o755,
    )?;
    Ok(())
}

/// A `usr/sbin/policy-rc.d` that exists while dpkg runs; removed on drop if this stage wrote it.
struct PolicyRcD(Option<PathBuf>);

impl PolicyRcD {
    fn install(tree: &Path) -> Result<PolicyRcD, StageError> {
        let host = tree::tree_path(tree, "usr/sbin/policy-rc.d")?;
        if fs::symlink_metadata(&host).is_ok() {
            println!("keeping the tree's own usr/sbin/policy-rc.d");
            return Ok(PolicyRcD(None));
        }
        let host = tree::write_file(tree, "usr/sbin/policy-rc.d", POLICY_RC_D.as_bytes(), 0o755)?;
        Ok(PolicyRcD(Some(host)))
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// The tree's own dpkg, run chrooted into the tree with a clean environment.
struct Dpkg<'a> {
    tree: &'a Path,
    debs: &'a [Deb],
    debs_dir: &'a str,
}

impl Dpkg<'_> {
    fn command(&self) -> Result<Command, StageError> {
        let mut cmd = command::chrooted(self.tree, "dpkg")?;
        cmd.env_clear()
            .env("PATH", command::PATH)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
            .env("DEBCONF_NOWARNINGS", "yes")
            .env("LC_ALL", "C")
            .env("HOME", "/root")
            .args(DPKG_FORCE);
        if let Some(epoch) = source_date_epoch() {
            cmd.env("SOURCE_DATE_EPOCH", epoch);
        }
        Ok(cmd)
    }

    /// Runs dpkg with `args` and the files of `debs`; on failure names the packages dpkg
    /// reported.
    fn run(&self, step: &str, args: &[&str], debs: &[&Deb]) -> Result<(), StageError> {
        println!(
            "dpkg: {step} ({} packages)",
            if debs.is_empty() {
                self.debs.len()
            } else {
                debs.len()
            }
        );
        let _ = std::io::stdout().flush();
        let mut cmd = self.command()?;
        cmd.args(args);
        for d in debs {
            cmd.arg(format!("{}/{}", self.debs_dir, d.checksum));
        }
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| StageError::Spawn {
            program: "dpkg (in the tree)".into(),
            source,
        })?;
        let mut lines = Vec::new();
        if let Some(err) = child.stderr.take() {
            let stderr = std::io::stderr();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(stderr.lock(), "{line}");
                lines.push(line);
            }
        }
        let st = child.wait().map_err(|source| StageError::Spawn {
            program: "dpkg".into(),
            source,
        })?;
        if st.success() {
            return Ok(());
        }
        let failed = failed_packages(&lines.join("\n"));
        let named: Vec<String> = failed.iter().map(|f| self.name(f)).collect();
        Err(StageError::Other(if named.is_empty() {
            format!("dpkg ({step}) failed: {}", command::describe_status(st))
        } else {
            format!(
                "dpkg ({step}) failed ({}) on: {}",
                command::describe_status(st),
                named.join(", ")
            )
        }))
    }

    /// A package as dpkg names it (a path under the packages' directory or a package name),
    /// described by name, version and checksum when it is one of ours.
    fn name(&self, reported: &str) -> String {
        let key = reported.rsplit('/').next().unwrap_or(reported);
        let bare = key.split(':').next().unwrap_or(key);
        self.debs
            .iter()
            .find(|d| d.checksum == key)
            .or_else(|| self.debs.iter().find(|d| d.name == key || d.name == bare))
            .map_or_else(|| reported.to_string(), Deb::describe)
    }
}

/// The packages listed after dpkg's "Errors were encountered while processing:".
fn failed_packages(stderr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in stderr.lines() {
        if line.starts_with("Errors were encountered while processing:") {
            in_block = true;
            continue;
        }
        if in_block {
            if let Some(p) = line.strip_prefix(' ') {
                let p = p.trim();
                if !p.is_empty() && !out.iter().any(|o| o == p) {
                    out.push(p.to_string());
                }
                continue;
            }
            in_block = false;
        }
    }
    out
}

/// Truncates `/etc/machine-id` unless it had a value before the stage ran (systemd's
/// postinst writes a real one; an image must boot with an empty one to get its own).
fn leave_machine_id_empty(tree: &Path, before: &[u8]) -> Result<(), StageError> {
    if !before.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(());
    }
    let host = tree::tree_path(tree, "etc/machine-id")?;
    match fs::metadata(&host) {
        Ok(m) if m.len() > 0 => {
            tree::write_file(tree, "etc/machine-id", b"", 0o444)?;
        }
        _ => {}
    }
    Ok(())
}

/// Removes the `*-old` backups dpkg and debconf leave behind (they only bloat an image).
fn remove_backups(tree: &Path) {
    for f in [
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/available-old",
        "var/lib/dpkg/diversions-old",
        "var/cache/debconf/config.dat-old",
        "var/cache/debconf/templates.dat-old",
        "var/cache/debconf/passwords.dat-old",
    ] {
        let _ = tree::remove_file(tree, f);
    }
}

/// The engine's `SOURCE_DATE_EPOCH`, when the build is reproducible.
fn source_date_epoch() -> Option<String> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|e| !e.is_empty())
}

/// Logs that hold the time of each step (emptied under a source epoch).
const TIMED_LOGS: &[&str] = &["var/log/dpkg.log", "var/log/alternatives.log"];

/// Caches that hold inode numbers and change times of the build (removed under a source epoch;
/// ldconfig writes it again on the machine).
const BUILD_CACHES: &[&str] = &["var/cache/ldconfig/aux-cache"];

/// Empties the timed logs and removes the build's caches, for a reproducible tree.
fn forget_the_build(tree: &Path) -> Result<(), StageError> {
    for log in TIMED_LOGS {
        if tree::tree_path(tree, log)?.is_file() {
            tree::write_file(tree, log, b"", 0o644)?;
        }
    }
    for cache in BUILD_CACHES {
        let _ = tree::remove_file(tree, cache);
    }
    Ok(())
}

/// `dpkg --audit` in the tree must print nothing.
fn audit(tree: &Path) -> Result<(), StageError> {
    let mut cmd = command::chrooted(tree, "dpkg")?;
    cmd.env_clear()
        .env("PATH", command::PATH)
        .env("LC_ALL", "C")
        .arg("--audit");
    let out = cmd.output().map_err(|source| StageError::Spawn {
        program: "dpkg --audit".into(),
        source,
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.trim().is_empty() {
        return Err(StageError::Other(format!(
            "dpkg --audit reports problems in the tree:\n{}{}",
            text.trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Builds a `.deb` in `dir` with `control` as its control file and `-Z compressor`.
    fn build_deb(dir: &Path, name: &str, control: &str, compressor: &str) -> (String, PathBuf) {
        let root = dir.join(format!("{name}-root"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::create_dir_all(root.join("usr/share/doc")).unwrap();
        fs::write(root.join("DEBIAN/control"), control).unwrap();
        let postinst = root.join("DEBIAN/postinst");
        fs::write(&postinst, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&postinst, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("usr/share/doc/file"), name.repeat(3000)).unwrap();
        let deb = dir.join(format!("{name}.deb"));
        let out = Command::new("dpkg-deb")
            .args(["--root-owner-group", &format!("-Z{compressor}"), "--build"])
            .arg(&root)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (format!("sha256:{name}"), deb)
    }

    /// The control fields read all at once are those `dpkg-deb --show` gives, and a package
    /// of another compression makes the stage ask dpkg-deb for every package.
    #[test]
    fn controls_read_at_once_are_dpkg_debs() {
        let dir = tempfile::tempdir().unwrap();
        let controls = [
            "Package: one\nVersion: 1:2.3-4\nArchitecture: amd64\nMaintainer: m <m@x>\n\
             Essential: yes\nPre-Depends: libc6 (>= 2.36)\nDepends: two,\n three (<< 5) | four:any\n\
             Description: first\n more text\n",
            "Package: two\nVersion: 0.1\nArchitecture: all\nMaintainer: m <m@x>\n\
             Provides: four (= 1), five\nDescription: second\n",
            "Package: three\nVersion: 7\nArchitecture: amd64\nMaintainer: m <m@x>\nDescription: third\n",
        ];
        let xz: Vec<(String, PathBuf)> = ["one", "two", "three"]
            .iter()
            .zip(controls)
            .map(|(n, c)| build_deb(dir.path(), n, c, "xz"))
            .collect();
        let by_dpkg_deb: Vec<Deb> = xz
            .iter()
            .map(|(c, p)| read_control(c, p).unwrap())
            .collect();
        let paths: Vec<&Path> = xz.iter().map(|(_, p)| p.as_path()).collect();
        assert!(
            control::read_all(&paths).is_some(),
            "the xz packages are read at once"
        );
        assert_eq!(read_controls(&xz).unwrap(), by_dpkg_deb);
        assert!(by_dpkg_deb[0].relations.essential);
        assert_eq!(
            by_dpkg_deb[0].relations.depends,
            ["libc6", "two", "three", "four"]
        );

        let mut mixed = xz.clone();
        mixed.push(build_deb(
            dir.path(),
            "gz",
            &controls[2].replace("three", "gz"),
            "gzip",
        ));
        let paths: Vec<&Path> = mixed.iter().map(|(_, p)| p.as_path()).collect();
        assert!(control::read_all(&paths).is_none());
        let all = read_controls(&mixed).unwrap();
        assert_eq!(all[..3], by_dpkg_deb[..]);
        assert_eq!(all[3].name, "gz");
    }

    fn deb(name: &str) -> Deb {
        Deb {
            checksum: format!("sha256:{:0>64}", name.len()),
            name: name.into(),
            version: "1.0".into(),
            arch: "amd64".into(),
            relations: Relations::default(),
        }
    }

    #[test]
    fn checksums() {
        let hex64 = "a".repeat(64);
        let cases: Vec<(String, Option<&str>)> = vec![
            (format!("sha256:{hex64}"), None),
            (format!("md5:{}", "0".repeat(32)), None),
            (format!("sha512:{}", "f".repeat(128)), None),
            (
                "sha256:abc".into(),
                Some("expected 64 lowercase hexadecimal digits"),
            ),
            (format!("sha256:{}", "A".repeat(64)), Some("lowercase")),
            (format!("sha256:../{}", "a".repeat(61)), Some("hexadecimal")),
            (
                format!("crc32:{hex64}"),
                Some("unknown checksum algorithm \"crc32\""),
            ),
            ("hello_1.0_amd64.deb".into(), Some("is not a checksum")),
        ];
        for (c, want) in cases {
            match (crate::args::check_checksum(&c), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{c}: {e}"),
                (got, want) => panic!("{c}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn show_output() {
        let got = parse_show("sha256:x", "libc6\t2.36-9+deb12u10\tamd64\n").unwrap();
        assert_eq!(
            (got.name.as_str(), got.version.as_str(), got.arch.as_str()),
            ("libc6", "2.36-9+deb12u10", "amd64")
        );
        assert_eq!(got.describe(), "libc6 2.36-9+deb12u10 (sha256:x)");
        assert_eq!(got.relations, Relations::default());
        let got = parse_show(
            "c",
            "dash\t0.5.12-2\tamd64\tyes\tlibc6 (>= 2.34)\tdebianutils\tsh\n",
        )
        .unwrap();
        assert!(got.relations.essential);
        assert_eq!(got.relations.depends, ["libc6", "debianutils"]);
        assert_eq!(got.relations.provides, ["sh"]);
        for bad in ["", "\n", "libc6\n", "\t1.0\tall\n"] {
            assert!(parse_show("c", bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn core_packages_first_in_fixed_order() {
        let debs: Vec<Deb> = [
            "systemd",
            "dpkg",
            "bash",
            "base-files",
            "libc6",
            "base-passwd",
        ]
        .into_iter()
        .map(deb)
        .collect();
        let (core, rest) = split_core(&debs);
        let names = |v: &[&Deb]| v.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&core), ["base-passwd", "base-files", "dpkg", "libc6"]);
        assert_eq!(names(&rest), ["systemd", "bash"]);
    }

    #[test]
    fn failed_packages_from_dpkg_stderr() {
        let cases: &[(&str, &[&str])] = &[
            (
                "dpkg: error processing package systemd (--configure):\n \
                 installed systemd package post-installation script subprocess returned error exit status 1\n\
                 Errors were encountered while processing:\n systemd\n udev\n",
                &["systemd", "udev"],
            ),
            (
                "dpkg: error processing archive /.osbuild-dpkg/sha256:ab (--unpack):\n \
                 cannot copy extracted data\nErrors were encountered while processing:\n \
                 /.osbuild-dpkg/sha256:ab\n",
                &["/.osbuild-dpkg/sha256:ab"],
            ),
            ("dpkg: warning: ignoring pre-dependency problem!\n", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(failed_packages(text), *want, "{text}");
        }
    }

    #[test]
    fn reported_names_map_to_packages() {
        let debs = vec![deb("systemd"), deb("libc6")];
        let d = Dpkg {
            tree: Path::new("/t"),
            debs: &debs,
            debs_dir: "/.osbuild-dpkg",
        };
        let sum = debs[0].checksum.clone();
        assert_eq!(
            d.name(&format!("/.osbuild-dpkg/{sum}")),
            format!("systemd 1.0 ({sum})")
        );
        assert_eq!(d.name("systemd"), format!("systemd 1.0 ({sum})"));
        assert_eq!(
            d.name("libc6:amd64"),
            format!("libc6 1.0 ({})", debs[1].checksum)
        );
        assert_eq!(d.name("other"), "other");
    }

    #[test]
    fn lib64_per_architecture() {
        for (arch, want) in [
            ("amd64", true),
            ("arm64", false),
            ("s390x", true),
            ("all", false),
        ] {
            assert_eq!(wants_lib64(arch), want, "{arch}");
        }
    }
}
