//! Capability sets (through the `caps` crate), and dropping capabilities for good in a child
//! before it executes a program.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

pub use caps::Capability;

/// The capabilities of `wanted` that this thread's bounding set still has.
pub fn in_bounding_set(wanted: &[Capability]) -> Vec<Capability> {
    wanted
        .iter()
        .copied()
        .filter(|c| caps::has_cap(None, caps::CapSet::Bounding, *c).unwrap_or(false))
        .collect()
}

/// `struct __user_cap_header_struct` of capget(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One half of `struct __user_cap_data_struct[2]` of capget(2) (capabilities 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Makes the child of `cmd` lose `drop` before it executes its program: from the bounding set
/// (so no file capability or setuid program gives them back) and from the ambient,
/// inheritable, permitted and effective sets. The program, and everything it starts, runs
/// without them even as root. The spawn fails if a capability this process holds cannot be
/// dropped from the bounding set (that needs `CAP_SETPCAP`); one it does not hold is left
/// there when it cannot (an unprivileged process has nothing to lose).
pub fn drop_before_exec(cmd: &mut Command, drop: &[Capability]) {
    let indices: Vec<u8> = drop.iter().map(|c| c.index()).collect();
    let step = move || -> io::Result<()> {
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: capget(2) writes one header and two data structs, which these are (v3).
        let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        if got != 0 {
            return Err(io::Error::last_os_error());
        }
        for &i in &indices {
            let cap = libc::c_ulong::from(i);
            let held = data[usize::from(i / 32)].permitted & (1u32 << (i % 32)) != 0;
            // SAFETY: prctl(2) with integer arguments only; async-signal-safe.
            let bounded = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) } == 1;
            // SAFETY: as above.
            if bounded && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
                let e = io::Error::last_os_error();
                if held || e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e);
                }
            }
            // Fails only on kernels without ambient capabilities (nothing to lower there).
            // SAFETY: as above.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_LOWER as libc::c_ulong,
                    cap,
                    0,
                    0,
                )
            };
        }
        for &i in &indices {
            let half = &mut data[usize::from(i / 32)];
            let bit = !(1u32 << (i % 32));
            half.effective &= bit;
            half.permitted &= bit;
            half.inheritable &= bit;
        }
        // SAFETY: capset(2) reads the header and the two data structs capget filled.
        let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the step makes only async-signal-safe system calls (prctl, capget, capset) on
    // memory allocated before the fork, and allocates nothing.
    unsafe { cmd.pre_exec(step) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capability masks of a line of /proc/self/status (`CapBnd:\t000001ffffffffff`).
    fn mask(status: &str, field: &str) -> u64 {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {status}"));
        u64::from_str_radix(line.trim(), 16).unwrap()
    }

    #[test]
    fn a_dropped_capability_is_gone_from_every_set_of_the_program() {
        if !crate::is_root() {
            println!("skipped: needs root (CAP_SETPCAP) to drop from the bounding set");
            return;
        }
        let had = in_bounding_set(&[Capability::CAP_SYS_ADMIN]);
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status");
        drop_before_exec(&mut cmd, &[Capability::CAP_SYS_ADMIN]);
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let status = String::from_utf8(out.stdout).unwrap();
        let admin = 1u64 << Capability::CAP_SYS_ADMIN.index();
        let chown = 1u64 << Capability::CAP_CHOWN.index();
        for field in ["CapBnd:", "CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
            assert_eq!(mask(&status, field) & admin, 0, "{field} {status}");
        }
        // Only what was named: root keeps the rest.
        assert_ne!(mask(&status, "CapEff:") & chown, 0, "{status}");
        // This process keeps what it had.
        assert_eq!(in_bounding_set(&[Capability::CAP_SYS_ADMIN]), had);
    }
}
