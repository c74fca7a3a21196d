//! `osbuild`: build a manifest in-process (osbuild v10's command line).

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let args = osbuild::cli::osbuild::Args::parse();
    std::process::exit(osbuild::cli::osbuild::main(args));
}
