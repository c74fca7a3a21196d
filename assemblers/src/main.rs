//! The multi-call assembler binary: everything happens in [`osbuild_assemblers::run`].

#![forbid(unsafe_code)]

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(osbuild_assemblers::run(&argv));
}
