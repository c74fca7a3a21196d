//! `osbuild-mkmanifest-debian`: resolve Debian packages with the machine's apt sources and
//! print a v1 manifest installing them with `org.osbuild.dpkg` (see [`osbuild::debian`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use osbuild::debian;

/// Print a v1 osbuild manifest that installs PACKAGES (and their dependencies, resolved by
/// apt from this machine's configured repositories) into an empty tree, each .deb pinned by
/// SHA256 in the org.osbuild.files source.
#[derive(Parser, Debug)]
#[command(name = "osbuild-mkmanifest-debian", version)]
struct Args {
    /// Package names or apt patterns (e.g. systemd-sysv, '?priority(required)').
    packages: Vec<String>,
    /// Add the base system: every Priority: required package and usr-is-merged.
    #[arg(long)]
    base: bool,
    /// Also install Recommends.
    #[arg(long)]
    recommends: bool,
    /// Resolve against this dpkg status file instead of an empty system (to add packages to
    /// an existing tree).
    #[arg(long, value_name = "FILE")]
    status: Option<PathBuf>,
    /// An extra apt option NAME=VALUE (repeatable).
    #[arg(short = 'o', long = "apt-option", value_name = "NAME=VALUE")]
    apt_options: Vec<String>,
    /// Add an org.osbuild.hostname stage.
    #[arg(long)]
    hostname: Option<String>,
    /// Add an org.osbuild.timezone stage (e.g. Etc/UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Add an org.osbuild.locale stage (e.g. C.UTF-8).
    #[arg(long)]
    locale: Option<String>,
    /// A kernel module for a small initrd (MODULES=list; repeatable).
    #[arg(long = "initramfs-module", value_name = "MODULE")]
    initramfs_modules: Vec<String>,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut packages: Vec<String> = Vec::new();
    if args.base {
        packages.extend(debian::BASE.iter().map(|s| s.to_string()));
    }
    packages.extend(args.packages);
    let opts = debian::ResolveOptions {
        recommends: args.recommends,
        status: args.status,
        apt_options: args.apt_options,
    };
    let debs = debian::resolve(&packages, &opts).context("cannot resolve the packages")?;
    let manifest = debian::manifest(
        &debs,
        &debian::ManifestOptions {
            hostname: args.hostname,
            initramfs_modules: args.initramfs_modules,
            timezone: args.timezone,
            locale: args.locale,
        },
    );
    let size: u64 = debs.iter().map(|d| d.size).sum();
    eprintln!(
        "{} packages, {:.1} MB to download",
        debs.len(),
        size as f64 / 1e6
    );
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    match args.output {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("osbuild-mkmanifest-debian: {e:#}");
        std::process::exit(1);
    }
}
