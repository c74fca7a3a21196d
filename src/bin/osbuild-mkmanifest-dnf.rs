//! `osbuild-mkmanifest-dnf`: pin rpm repositories by the checksum of their metadata and print
//! a v1 manifest installing packages from them with `org.osbuild.dnf` (see [`osbuild::mkmanifest::dnf`]).

#![forbid(unsafe_code)]

use clap::Parser;
use osbuild::cli::mkmanifest::{run_dnf, DnfArgs};

fn main() {
    if let Err(e) = run_dnf(DnfArgs::parse()) {
        eprintln!("osbuild-mkmanifest-dnf: {e:#}");
        std::process::exit(1);
    }
}
