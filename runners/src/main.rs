//! The multi-call runner binary: everything happens in [`osbuild_runners::run`].

#![forbid(unsafe_code)]

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(osbuild_runners::run(&argv));
}
