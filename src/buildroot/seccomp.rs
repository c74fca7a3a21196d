//! The seccomp filter of every sandbox: the system calls that no stage, assembler or runner
//! needs and that would let code in a build root (a package's maintainer script, a build
//! root's binary) reach past its sandbox into the host.
//!
//! Modules run as root with osbuild's default capabilities (`CAP_MKNOD`, `CAP_DAC_READ_SEARCH`
//! among them; `CAP_SYS_ADMIN` only for modules that declare it, see the buildroot module:
//! mounting, device nodes and file handles are part of real stages' work), so the filter
//! refuses the *uses* of those capabilities that reach the host:
//!
//! | refused | why |
//! |---|---|
//! | `open_by_handle_at` | a forged handle opens any inode of a mounted filesystem, e.g. the host's `/` (the "shocker" escape) |
//! | `mknod`/`mknodat` of block and character devices (overlay whiteouts, char 0:0, stay allowed) | a node of the host's disk, memory or ports bypasses every mount |
//! | `mount` with `MS_REMOUNT` but without `MS_RDONLY` | makes the read-only `/sys`, `/proc/sys` or a read-only bind writable (`/proc/sys/kernel/core_pattern` runs a program as host root) |
//! | the new mount API (`fsopen`, `fsmount`, `mount_setattr`, `open_tree`, `move_mount`, ...) | its flags hide behind pointers a filter cannot read; `ENOSYS` makes libmount fall back to `mount(2)` |
//! | `clone`/`unshare` with `CLONE_NEWUSER`, and `clone3` (`ENOSYS`: glibc falls back to `clone`) | a user namespace is a large kernel surface no stage needs |
//! | kernel loading and tracing: `kexec_*`, `*_module`, `bpf`, `perf_event_open`, `userfaultfd`, keyrings, `swapon`/`swapoff`, `acct`, `iopl`/`ioperm` | nothing an image build does |
//!
//! The host's abstract unix sockets are out of reach by the network namespace (each sandbox has
//! its own, loopback only; see the netns module), not by this filter.
//!
//! The filter is built once with libseccomp for the native and the compatible ABIs (on x86_64
//! also i386 and x32, so an `int 0x80` cannot go around it), exported as a BPF program, and
//! handed to bubblewrap (`--seccomp FD`), which loads it last, just before it executes the
//! runner: bubblewrap's own mounts are unaffected.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare as Arg, ScmpCompareOp as Op, ScmpFilterContext,
    ScmpSyscall,
};

const EPERM: ScmpAction = ScmpAction::Errno(libc::EPERM);
const ENOSYS: ScmpAction = ScmpAction::Errno(libc::ENOSYS);

/// Refused outright with EPERM.
const REFUSED: &[&str] = &[
    "open_by_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "add_key",
    "request_key",
    "keyctl",
    "swapon",
    "swapoff",
    "acct",
    "iopl",
    "ioperm",
];

/// Answered with ENOSYS, so that callers fall back to a system call the filter can judge.
const NOT_IMPLEMENTED: &[&str] = &[
    "clone3",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
];

/// The BPF program, built on first use.
fn program() -> Result<&'static [u8], String> {
    static PROGRAM: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| build().map_err(|e| format!("building the seccomp filter: {e}")))
        .as_ref()
        .map(|p| p.as_slice())
        .map_err(Clone::clone)
}

fn build() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    if ScmpArch::native() == ScmpArch::X8664 {
        ctx.add_arch(ScmpArch::X86)?;
        ctx.add_arch(ScmpArch::X32)?;
    }
    for name in REFUSED {
        ctx.add_rule(EPERM, ScmpSyscall::from_name(name)?)?;
    }
    for name in NOT_IMPLEMENTED {
        ctx.add_rule(ENOSYS, ScmpSyscall::from_name(name)?)?;
    }
    refuse_device_nodes(&mut ctx)?;
    let remount = libc::MS_REMOUNT | libc::MS_RDONLY;
    ctx.add_rule_conditional(
        EPERM,
        ScmpSyscall::from_name("mount")?,
        &[Arg::new(3, Op::MaskedEqual(remount), libc::MS_REMOUNT)],
    )?;
    let newuser = libc::CLONE_NEWUSER as u64;
    for name in ["clone", "unshare"] {
        ctx.add_rule_conditional(
            EPERM,
            ScmpSyscall::from_name(name)?,
            &[Arg::new(0, Op::MaskedEqual(newuser), newuser)],
        )?;
    }
    let mut file = tempfile::tempfile()?;
    ctx.export_bpf(&file)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `mknod(path, mode, dev)` and `mknodat(dirfd, path, mode, dev)`: no block device, and no
/// character device but 0:0 (the whiteout of overlayfs, which unpacking container layers makes).
fn refuse_device_nodes(ctx: &mut ScmpFilterContext) -> Result<(), libseccomp::error::SeccompError> {
    let kind = libc::S_IFMT as u64;
    for (name, mode, dev) in [("mknod", 1, 2), ("mknodat", 2, 3)] {
        let syscall = ScmpSyscall::from_name(name)?;
        let is = |t: libc::mode_t| Arg::new(mode, Op::MaskedEqual(kind), t as u64);
        ctx.add_rule_conditional(EPERM, syscall, &[is(libc::S_IFBLK)])?;
        ctx.add_rule_conditional(
            EPERM,
            syscall,
            &[is(libc::S_IFCHR), Arg::new(dev, Op::NotEqual, 0)],
        )?;
    }
    Ok(())
}

/// A pipe holding the filter, to be inherited by bubblewrap under the read end's number.
pub fn filter_pipe() -> Result<OwnedFd, String> {
    let program = program()?;
    let (reader, writer) =
        osbuild_sys::process::pipe().map_err(|e| format!("creating the seccomp pipe: {e}"))?;
    // A pipe holds 64 KiB without a reader; the program is a few KiB.
    std::fs::File::from(writer)
        .write_all(program)
        .map_err(|e| format!("writing the seccomp filter: {e}"))?;
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_and_fits_a_pipe() {
        let program = program().unwrap();
        // struct sock_filter is 8 bytes; a pipe must take the whole program without a reader.
        assert_eq!(program.len() % 8, 0);
        assert!(program.len() > 8 * 20, "{} bytes", program.len());
        assert!(program.len() < 64 * 1024, "{} bytes", program.len());
        let fd = filter_pipe().unwrap();
        let mut back = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut back).unwrap();
        assert_eq!(back, program);
    }
}
