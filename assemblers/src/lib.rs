//! osbuild's built-in assemblers: turn a finished tree into an artifact in `output_dir`.
//!
//! One multi-call binary; `libdir/assemblers/org.osbuild.NAME` are symlinks to it and it
//! dispatches on the file name of `argv[0]`. Each assembler reads v10's arguments as JSON on
//! stdin, `{"tree": "/run/osbuild/tree", "options": {...}, "output_dir": "/run/osbuild/output"}`,
//! and exits 0 on success, 1 with a message on stderr on failure; an unknown name exits 2.
//! The options schema of each assembler is in `assemblers/meta/org.osbuild.NAME.meta.json`.
//!
//! Modules:
//! - [`args`]: the stdin arguments;
//! - [`noop`]: `org.osbuild.noop`, prints its options;
//! - [`tar`]: `org.osbuild.tar`, a (compressed) tarball of the tree with GNU tar;
//! - [`qemu`]: `org.osbuild.qemu`, a partitioned (bootable) disk image;
//! - [`rawfs`]: `org.osbuild.rawfs`, a single filesystem image;
//! - [`image`]: the library the three assemblers above compose (options, partition tables,
//!   filesystems, mounts, GRUB, conversion, the output file);
//! - [`remoteloop`]: the client of the engine's loop device API;
//! - [`tool`]: running the build root's tools.

#![forbid(unsafe_code)]

pub mod args;
pub mod image;
pub mod noop;
pub mod qemu;
pub mod rawfs;
pub mod remoteloop;
pub mod tar;
pub mod tool;

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// Every assembler this binary implements (the names the install step links).
pub const NAMES: &[&str] = &[
    "org.osbuild.noop",
    "org.osbuild.qemu",
    "org.osbuild.rawfs",
    "org.osbuild.tar",
];

/// Exit status of a failed assembler.
pub const EXIT_FAILED: i32 = 1;
/// Exit status for an unknown name or bad invocation.
pub const EXIT_USAGE: i32 = 2;

/// Why an assembler failed.
#[derive(Debug)]
pub enum AssemblerError {
    /// stdin did not hold the arguments.
    Arguments(String),
    /// An option is missing or has a value the assembler cannot use.
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A tool could not be run or failed.
    Tool(String),
}

impl fmt::Display for AssemblerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssemblerError::Arguments(why) => write!(f, "bad arguments on stdin: {why}"),
            AssemblerError::InvalidOption { option, reason } => {
                write!(f, "invalid option \"{option}\": {reason}")
            }
            AssemblerError::Tool(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for AssemblerError {}

/// The whole program: dispatch on `argv[0]`, read stdin, run, and return the exit status.
pub fn run(argv: &[OsString]) -> i32 {
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if argv.get(1).is_some_and(|a| a == "--list") {
        NAMES.iter().for_each(|n| println!("{n}"));
        return 0;
    }
    let assemble: fn(&args::Arguments) -> Result<(), AssemblerError> = match name.as_str() {
        "org.osbuild.noop" => noop::assemble,
        "org.osbuild.qemu" => qemu::assemble,
        "org.osbuild.rawfs" => rawfs::assemble,
        "org.osbuild.tar" => tar::assemble,
        _ => {
            eprintln!(
                "{name}: unknown assembler name; this binary runs as one of: {} \
                 (or run it with --list)",
                NAMES.join(", ")
            );
            return EXIT_USAGE;
        }
    };
    let mut input = String::new();
    let result = std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| AssemblerError::Arguments(format!("cannot read stdin: {e}")))
        .and_then(|_| args::parse(&input))
        .and_then(|a| assemble(&a));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: {e}");
            EXIT_FAILED
        }
    }
}
