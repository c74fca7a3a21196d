//! `osbuild-mkmanifest-dnf`: pin rpm repositories by the checksum of their metadata and print
//! a v1 manifest installing packages from them with `org.osbuild.dnf` (see [`osbuild::mkmanifest::dnf`]).

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use osbuild::mkmanifest::dnf::{self, InstallOptions, Target};

/// Print a v1 osbuild manifest that installs PACKAGES (resolved by dnf when the image is
/// built) from the given repositories, each pinned by the sha256 of the repodata/repomd.xml
/// this machine's dnf fetches now. Repositories are listed base URLs first, then metalinks,
/// then mirrorlists.
#[derive(Parser, Debug)]
#[command(name = "osbuild-mkmanifest-dnf", version)]
struct Args {
    /// Package specs (names, globs, @groups).
    #[arg(required = true)]
    packages: Vec<String>,
    /// A repository by base URL (repeatable; $releasever and $basearch are dnf's).
    #[arg(long = "baseurl", value_name = "URL")]
    baseurls: Vec<String>,
    /// A repository by metalink URL (repeatable).
    #[arg(long = "metalink", value_name = "URL")]
    metalinks: Vec<String>,
    /// A repository by mirrorlist URL (repeatable).
    #[arg(long = "mirrorlist", value_name = "URL")]
    mirrorlists: Vec<String>,
    /// An ASCII-armored GPG key file the packages of every repository must be signed with.
    #[arg(long, value_name = "FILE")]
    gpgkey: Option<PathBuf>,
    /// dnf's $releasever (e.g. 39).
    #[arg(long)]
    releasever: String,
    /// dnf's $basearch.
    #[arg(long, default_value = std::env::consts::ARCH)]
    basearch: String,
    /// A package spec to exclude (repeatable).
    #[arg(long = "exclude", value_name = "SPEC")]
    exclude: Vec<String>,
    /// Do not install weak dependencies (Recommends).
    #[arg(long)]
    no_weak_deps: bool,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let gpgkey = args
        .gpgkey
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let repos = dnf::repositories(
        &args.baseurls,
        &args.metalinks,
        &args.mirrorlists,
        gpgkey.as_deref(),
    );
    let target = Target {
        releasever: args.releasever,
        basearch: args.basearch,
    };
    let checksums = dnf::pin(&repos, &target).context("cannot pin the repositories")?;
    for (r, c) in repos.iter().zip(&checksums) {
        eprintln!("{} {c}", r.url);
    }
    let manifest = dnf::manifest(
        &repos,
        &checksums,
        &target,
        &InstallOptions {
            packages: args.packages,
            exclude: args.exclude,
            weak_deps: !args.no_weak_deps,
        },
    )?;
    osbuild::cli::write_manifest(&manifest, args.output.as_deref())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("osbuild-mkmanifest-dnf: {e:#}");
        std::process::exit(1);
    }
}
