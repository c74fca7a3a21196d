//! `osbuild-mkmanifest-debian`: resolve Debian packages with the machine's apt sources and
//! print a v1 manifest installing them with `org.osbuild.dpkg` (see [`osbuild::mkmanifest::debian`]).

#![forbid(unsafe_code)]

use clap::Parser;
use osbuild::cli::mkmanifest::{run_debian, DebianArgs};

fn main() {
    if let Err(e) = run_debian(DebianArgs::parse()) {
        eprintln!("osbuild-mkmanifest-debian: {e:#}");
        std::process::exit(1);
    }
}
