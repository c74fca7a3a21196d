//! `org.osbuild.dnf` and `org.osbuild.yum`: resolve and install packages from repositories
//! with the build root's dnf (or yum) and `--installroot`, as osbuild v10 does.
//!
//! The repositories are written into a private configuration (the build root's own repo files
//! are never read); a repository given as a string is a checksum that the `org.osbuild.dnf`
//! source resolves, through the sources API, into its configuration, client certificate and
//! key included. Those are only ever written to 0600 files in a 0700 directory of the stage's
//! private `/tmp`, removed before any package code runs; nothing here prints them. (A
//! password in a repository URL is not a secret: dnf prints and logs URLs.)
//!
//! These are the only stages that declare network use, and they use it for two steps:
//! 1. dnf: dnf downloads the repositories' metadata (`makecache`); each repository's
//!    `repodata/repomd.xml` must have the sha256 the manifest gives, otherwise the stage fails
//!    naming the repository, before any package is downloaded;
//! 2. dnf resolves the transaction with that metadata and downloads the packages
//!    (`--downloadonly`);
//! 3. the client keys are deleted, the stage moves into a new, empty network namespace, mounts
//!    `/proc`, `/sys` and `/dev` into the tree (private mount namespace; `/sys` mounted only
//!    now shows no host interface) and writes a placeholder machine-id; the same transaction
//!    is installed from the cache (`-C`), so package scriptlets can reach nothing;
//! 4. the cache is emptied, the machine-id emptied, the random seed removed.
//!
//! Package specs are names, globs, groups or provides, never URLs (which would bypass the
//! checksums and signatures and cannot be installed from the cache). The rpm database goes
//! where [`rpmtree::dbpath`] says (dnf is told through `HOME/.rpmmacros`). dnf5 (Fedora 41 and
//! later) is not supported, as in v10: its cache layout differs and the metadata check says so.

mod config;
mod repo;
mod transaction;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::mounts::private_mounts;
use crate::rpmtree;
use crate::sources_api;
use crate::tree;
use config::Config;
use repo::{resolve_repos, Repo};
use transaction::transaction;

/// Which front end a stage drives.
#[derive(Clone, Copy, PartialEq)]
enum Flavour {
    Dnf,
    Yum,
}

/// The first executable `name` on the tool search path.
fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    command::PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// What one stage run does, for either front end.
struct Install<'a> {
    flavour: Flavour,
    /// `dnf` or `yum`.
    program: &'static str,
    /// The arguments every run gets (root, release, settings), before `--config`.
    args: Vec<OsString>,
    /// dnf: the values of `$basearch` and `$releasever`, to find the metadata to verify.
    vars: Vec<(&'static str, &'a str)>,
    operation: &'a str,
    packages: Vec<&'a str>,
    excludes: Vec<&'a str>,
    repos: Vec<Repo>,
    module_platform_id: Option<&'a str>,
    /// Cache directories in the tree, emptied afterwards.
    caches: &'static [&'static str],
}

pub fn run_dnf(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let flag = |key: &str| -> Result<&'static str, StageError> {
        match args.options.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Ok("True"),
            Some(Value::Bool(false)) => Ok("False"),
            Some(_) => Err(StageError::option(opts.name(key), "must be a boolean")),
        }
    };
    let (weak_deps, fastestmirror) = (flag("install_weak_deps")?, flag("fastestmirror")?);
    let releasever = plain(&opts, "releasever")?;
    let basearch = plain(&opts, "basearch")?;
    let module_platform_id = opts.opt_str("module_platform_id")?;
    if module_platform_id.is_some_and(|s| s.chars().any(char::is_control)) {
        return Err(StageError::option(
            opts.name("module_platform_id"),
            "must not contain control characters",
        ));
    }
    let socket = Path::new(sources_api::SOCKET);
    let repos = resolve_repos(&opts, repos_option(&opts, args)?, Flavour::Dnf, socket)?;
    let mut base: Vec<OsString> = vec!["-yv".into(), "--installroot".into()];
    base.push(args.tree.clone().into());
    for arg in [
        "--forcearch",
        basearch,
        "--setopt",
        "reposdir=",
        "--setopt",
        &format!("install_weak_deps={weak_deps}"),
        "--setopt",
        &format!("fastestmirror={fastestmirror}"),
        "--setopt",
        "skip_if_unavailable=false",
        "--releasever",
        releasever,
        "--noplugins",
    ] {
        base.push(arg.into());
    }
    install(
        args,
        Install {
            flavour: Flavour::Dnf,
            program: "dnf",
            args: base,
            vars: vec![("$basearch", basearch), ("$releasever", releasever)],
            operation: operation(&opts)?,
            packages: opts.required_str_list("packages")?,
            excludes: opts.str_list("exclude_packages")?,
            repos,
            module_platform_id,
            // dnf5's cache too: a dnf5 build root fails the metadata check, with a message.
            caches: &["var/cache/dnf", "var/cache/libdnf5"],
        },
    )
}

pub fn run_yum(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let releasever = plain(&opts, "releasever")?;
    let verbosity = match opts.opt_str("verbosity")? {
        None => "info",
        Some(_) => plain(&opts, "verbosity")?,
    };
    let socket = Path::new(sources_api::SOCKET);
    let repos = resolve_repos(&opts, repos_option(&opts, args)?, Flavour::Yum, socket)?;
    // dnf is yum's successor with the same command line (Fedora ships yum as a link to it).
    let program = if find_tool("yum").is_some() {
        "yum"
    } else {
        "dnf"
    };
    let mut installroot = OsString::from("--installroot=");
    installroot.push(&args.tree);
    install(
        args,
        Install {
            flavour: Flavour::Yum,
            program,
            args: vec![
                "--assumeyes".into(),
                installroot,
                "--setopt=reposdir=".into(),
                format!("--releasever={releasever}").into(),
                format!("--rpmverbosity={verbosity}").into(),
            ],
            vars: Vec::new(),
            operation: operation(&opts)?,
            packages: opts.required_str_list("packages")?,
            excludes: Vec::new(),
            repos,
            module_platform_id: None,
            caches: &["var/cache/yum", "var/cache/dnf"],
        },
    )
}

/// A required string option that goes onto a command line: not empty, not an option itself.
fn plain<'a>(opts: &Opts<'a>, key: &str) -> Result<&'a str, StageError> {
    let s = opts.str(key)?;
    if s.is_empty() || s.starts_with('-') || s.chars().any(char::is_control) {
        return Err(StageError::option(
            opts.name(key),
            format!("{s:?} is not a valid value"),
        ));
    }
    Ok(s)
}

/// `operation`, by default `install`.
fn operation<'a>(opts: &Opts<'a>) -> Result<&'a str, StageError> {
    match opts.opt_str("operation")? {
        None => Ok("install"),
        Some(_) => plain(opts, "operation"),
    }
}

fn repos_option<'a>(opts: &Opts, args: &'a Args) -> Result<&'a [Value], StageError> {
    match args.options.get("repos") {
        Some(Value::Array(items)) => Ok(items),
        None | Some(Value::Null) => Err(StageError::option(opts.name("repos"), "is required")),
        Some(_) => Err(StageError::option(opts.name("repos"), "must be an array")),
    }
}

/// Checks the package specs: names, globs, groups, provides; never options, and never URLs,
/// which would bypass the repositories' checksums and signatures (and cannot be installed
/// from the cache).
fn check_specs(opts: &Opts, key: &str, specs: &[&str]) -> Result<(), StageError> {
    for (i, spec) in specs.iter().enumerate() {
        let problem = if spec.is_empty() || spec.starts_with('-') {
            "is not a package"
        } else if spec.contains("://") {
            "is a URL: name packages of the repositories (org.osbuild.rpm installs single \
             rpm files from org.osbuild.files)"
        } else {
            continue;
        };
        return Err(StageError::option(
            format!("{}[{i}]", opts.name(key)),
            format!("{spec:?} {problem}"),
        ));
    }
    Ok(())
}

fn install(args: &Args, job: Install) -> Result<i32, StageError> {
    let opts = args.opts();
    if job.packages.is_empty() {
        return Err(StageError::option(
            opts.name("packages"),
            "needs at least one package",
        ));
    }
    check_specs(&opts, "packages", &job.packages)?;
    check_specs(&opts, "exclude_packages", &job.excludes)?;

    let tree = &args.tree;
    private_mounts()?;
    let dbpath = rpmtree::dbpath(tree);
    let config = Config::create(
        &std::env::temp_dir(),
        &job.repos,
        job.module_platform_id,
        &dbpath,
    )?;
    let result = transaction(tree, &job, &config);
    let emptied = job
        .caches
        .iter()
        .try_for_each(|cache| empty_dir(tree, cache));
    drop(config);
    result?;
    emptied?;
    Ok(0)
}

/// Removes everything inside `dir` of the tree (dnf's cache; `dnf clean all` leaves things
/// behind), keeping the directory itself. Symlinks are removed, never followed.
fn empty_dir(tree: &Path, dir: &str) -> Result<(), StageError> {
    let path = tree::tree_path(tree, dir)?;
    let entries = match fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StageError::io("cannot read", &path, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StageError::io("cannot read", &path, e))?;
        let p = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        removed.map_err(|e| StageError::io("cannot remove", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_specs_are_names() {
        let args = Args::parse(r#"{"tree": "/t"}"#).unwrap();
        let opts = args.opts();
        assert!(check_specs(&opts, "packages", &["@core", "kernel-6.*", "/usr/bin/sh"]).is_ok());
        for (spec, want) in [
            ("-y", "is not a package"),
            ("", "is not a package"),
            ("https://h/x.rpm", "is a URL"),
        ] {
            let err = check_specs(&opts, "packages", &["ok", spec])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("option \"packages[1]\""), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }
}
