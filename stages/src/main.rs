//! `osbuild-stages`: osbuild's built-in stages in one multi-call executable.
//!
//! The libdir has `stages/org.osbuild.NAME` symlinks to this binary; it picks the stage from
//! the file name it was run as (or, run as itself, from its first argument), reads the stage
//! arguments (osbuild HEAD's `/run/osbuild/api/arguments` when it exists, else v10's
//! `{"tree", "sources", "options"}` as JSON on stdin), and modifies the tree.
//! Success exits 0; a bad option or a failed step prints `org.osbuild.NAME: <message>` and
//! exits 1; an unknown stage name exits 2.
//!
//! Shared modules:
//! - [`args`]: the arguments (HEAD's file or v10's stdin) and typed access to options;
//! - [`head`]: HEAD's inputs, devices and mounts, and `tree://`/`mount://` locations;
//! - [`error`]: the stage error type;
//! - [`tree`]: resolving paths inside the tree and writing files there;
//! - [`command`]: running tools, on the build root or chrooted into the tree;
//! - [`passwd`]: the tree's `/etc/passwd`;
//! - [`firstboot`]: what `systemd-firstboot` validates and writes;
//! - [`mounts`]: namespaces and API file systems for package managers;
//! - [`rpm_head`]: `org.osbuild.rpm` under HEAD's protocol (used by the rpm stage);
//! - [`rpmtree`]: what the rpm-based installers share about the tree;
//! - [`sources_api`]: asking the host's sources for what they know.
//!
//! One module per stage follows; [`STAGES`] maps names to them.

#![forbid(unsafe_code)]

mod args;
mod command;
mod error;
mod firstboot;
mod head;
mod mounts;
mod passwd;
mod rpm;
mod rpm_head;
mod rpmtree;
mod sources_api;
mod tree;

mod chmod;
mod chrony;
mod copy;
mod debug_shell;
mod dnf;
mod dpkg;
mod error_stage;
mod firewall;
mod fix_bls;
mod fstab;
mod groups;
mod grub2;
mod grub2_inst;
mod hostname;
mod kernel_cmdline;
mod keymap;
mod ln;
mod locale;
mod machine_id;
mod mkdir;
mod mkfs;
mod noop;
mod qemu;
mod script;
mod selinux;
mod sfdisk;
mod sgdisk;
mod systemd;
mod systemd_unit;
mod tar;
mod test;
mod timezone;
mod tmpfilesd;
mod truncate;
mod untar;
mod users;
mod zipl;

use std::io::Write;
use std::path::Path;

use args::Args;
use error::StageError;

/// A stage's entry point: the exit code to return (0 is success).
type StageFn = fn(&Args) -> Result<i32, StageError>;

/// Every built-in stage, by its name without the `org.osbuild.` prefix.
const STAGES: &[(&str, StageFn)] = &[
    ("chmod", chmod::run),
    ("chrony", chrony::run),
    ("copy", copy::run),
    ("debug-shell", debug_shell::run),
    ("dnf", dnf::run_dnf),
    ("dpkg", dpkg::run),
    ("error", error_stage::run),
    ("firewall", firewall::run),
    ("fix-bls", fix_bls::run),
    ("fstab", fstab::run),
    ("groups", groups::run),
    ("grub2", grub2::run),
    ("grub2.inst", grub2_inst::run),
    ("hostname", hostname::run),
    ("kernel-cmdline", kernel_cmdline::run),
    ("keymap", keymap::run),
    ("ln", ln::run),
    ("locale", locale::run),
    ("machine-id", machine_id::run),
    ("mkdir", mkdir::run),
    ("mkfs.btrfs", mkfs::run_btrfs),
    ("mkfs.ext4", mkfs::run_ext4),
    ("mkfs.fat", mkfs::run_fat),
    ("mkfs.xfs", mkfs::run_xfs),
    ("noop", noop::run),
    ("qemu", qemu::run),
    ("rpm", rpm::run),
    ("script", script::run),
    ("selinux", selinux::run),
    ("sfdisk", sfdisk::run),
    ("sgdisk", sgdisk::run),
    ("systemd", systemd::run),
    ("systemd.unit", systemd_unit::run),
    ("systemd.unit.create", systemd_unit::run_create),
    ("tar", tar::run),
    ("test", test::run),
    ("timezone", timezone::run),
    ("tmpfilesd", tmpfilesd::run),
    ("truncate", truncate::run),
    ("untar", untar::run),
    ("users", users::run),
    ("yum", dnf::run_yum),
    ("zipl", zipl::run),
];

const PREFIX: &str = "org.osbuild.";

/// Finds the stage for an invocation name such as `/usr/lib/osbuild/stages/org.osbuild.noop`.
fn lookup(invoked: &str) -> Option<StageFn> {
    let base = Path::new(invoked).file_name()?.to_str()?;
    let short = base.strip_prefix(PREFIX)?;
    STAGES.iter().find(|(n, _)| *n == short).map(|(_, f)| *f)
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let argv0 = argv.first().map(String::as_str).unwrap_or("");
    let self_named = Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == env!("CARGO_PKG_NAME"));
    let name = if self_named {
        argv.get(1).map(String::as_str).unwrap_or("")
    } else {
        argv0
    };
    let Some(stage) = lookup(name) else {
        let known: Vec<String> = STAGES.iter().map(|(n, _)| format!("{PREFIX}{n}")).collect();
        eprintln!(
            "osbuild-stages: unknown stage {:?}; this binary provides: {}",
            Path::new(name)
                .file_name()
                .map_or(name.into(), |n| n.to_string_lossy()),
            known.join(", ")
        );
        std::process::exit(2);
    };
    let display = Path::new(name)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());

    let result = Args::load().and_then(|args| stage(&args));
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{display}: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lookup_by_invocation_name() {
        for (name, found) in [
            ("/usr/lib/osbuild/stages/org.osbuild.noop", true),
            ("org.osbuild.kernel-cmdline", true),
            ("org.osbuild.nope", false),
            ("noop", false),
            ("/x/org.osbuild.", false),
            ("", false),
        ] {
            assert_eq!(super::lookup(name).is_some(), found, "{name}");
        }
    }
}
