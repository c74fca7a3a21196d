//! `org.osbuild.rpm`: installs `.rpm` files from the `org.osbuild.files` source into the tree
//! with the build root's rpm, as osbuild v10 does.
//!
//! The GPG keys in `gpgkeys` are imported into the tree's rpm database first; every package is
//! then verified against them (`_pkgverify_level all`: digests and signatures) and installed
//! with `rpm --root`. The database goes where the tree has one, else where the build root's
//! rpm keeps it (`/usr/lib/sysimage/rpm` or `/var/lib/rpm`; see [`rpmtree::dbpath`]). While rpm
//! runs, the stage has private mount and network namespaces with `/proc`, `/sys` and `/dev`
//! mounted into the tree (scriptlets need them, and get no network nor `CAP_SYS_ADMIN`), and a placeholder
//! machine-id when the tree has none; afterwards the machine-id is left empty and
//! `/var/lib/systemd/random-seed` removed, so no two images share them.
//!
//! Under HEAD's protocol (a version 2 manifest) the stage takes HEAD's options and files
//! input instead: see [`crate::rpm_head`].

use std::fs;
use std::path::Path;

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::mounts::{isolate, Mounts};
use crate::rpmtree::{self, MachineId};
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    if args.is_head() {
        return crate::rpm_head::run(args);
    }
    let opts = args.opts();
    let keys = opts.str_list("gpgkeys")?;
    let packages = args.source_files("packages")?;
    let tree = &args.tree;

    isolate()?;
    let mounts = Mounts::setup(tree, None)?;
    let dbpath = rpmtree::dbpath(tree);
    tree::create_dirs(tree, dbpath.trim_start_matches('/'), 0o755)?;

    let scratch = std::env::temp_dir().join(format!("osbuild-rpm-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| StageError::io("cannot create", &scratch, e))?;
    let result = install(tree, &dbpath, &keys, &packages, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    drop(mounts);
    result?;
    println!("installed {} packages", packages.len());
    Ok(0)
}

fn install(
    tree: &Path,
    dbpath: &str,
    keys: &[&str],
    packages: &[(String, std::path::PathBuf)],
    scratch: &Path,
) -> Result<(), StageError> {
    for (i, key) in keys.iter().enumerate() {
        let file = scratch.join(format!("key{i}.asc"));
        fs::write(&file, key).map_err(|e| StageError::io("cannot write", &file, e))?;
        command::run(
            command::tool("rpmkeys")
                .arg("--root")
                .arg(tree)
                .args(["--dbpath", dbpath, "--import"])
                .arg(&file),
        )
        .map_err(|e| StageError::option(format!("gpgkeys[{i}]"), e.to_string()))?;
    }

    let machine_id = MachineId::placeholder(tree)?;
    let mut cmd = command::tool("rpm");
    cmd.arg("--verbose")
        .arg("--root")
        .arg(tree)
        .args(["--dbpath", dbpath])
        .args(["--define", "_pkgverify_level all"])
        .arg("--install")
        .args(packages.iter().map(|(_, p)| p));
    let installed = command::run(&mut cmd);
    let finished = machine_id.finish(tree);
    installed.and(finished)
}
