//! `osbuildctl`: build through the osbuildd service.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let args = osbuild::cli::osbuildctl::Args::parse();
    std::process::exit(osbuild::cli::osbuildctl::main(args));
}
