//! `osbuildctl`: build through the osbuildd service.

use clap::Parser;

fn main() {
    let args = osbuild::cli::osbuildctl::Args::parse();
    std::process::exit(osbuild::cli::osbuildctl::main(args));
}
