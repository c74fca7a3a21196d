//! The multi-call source binary: everything happens in [`osbuild_sources::main`].

#![forbid(unsafe_code)]

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(osbuild_sources::main(&argv));
}
