//! `osbuildd`: the build service on the system bus.

#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let args = osbuild::service::daemon::Args::parse();
    std::process::exit(osbuild::service::daemon::main(args));
}
