//! Network namespaces: a new one with the loopback interface up, and entering one.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

nix::ioctl_read_bad!(get_if_flags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(set_if_flags, libc::SIOCSIFFLAGS, libc::ifreq);

/// Moves the calling thread (and what it starts from now on) into a new network namespace
/// with no interface up.
pub fn unshare_network() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET)
}

/// Moves the calling thread into the network namespace `ns` (a `/proc/*/ns/net` descriptor).
pub fn enter_network(ns: impl AsFd) -> nix::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET)
}

/// A new network namespace with only `lo`, up, made on a short-lived thread so that no thread
/// of ours stays in it. Returns its descriptor.
pub fn new_network_namespace() -> std::io::Result<OwnedFd> {
    std::thread::spawn(|| -> std::io::Result<OwnedFd> {
        unshare_network()?;
        loopback_up()?;
        Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .join()
    .map_err(|_| std::io::Error::other("thread panicked"))?
}

/// `ip link set lo up` in the calling thread's network namespace.
fn loopback_up() -> nix::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is a plain C struct (a name and a union of integers); all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS fills the ifreq we pass, which lives across the call.
    unsafe { get_if_flags(sock.as_raw_fd(), &mut req) }?;
    // SAFETY: the flags member is the one SIOCGIFFLAGS just set.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS only reads the ifreq we pass, which lives across the call.
    unsafe { set_if_flags(sock.as_raw_fd(), &req) }?;
    Ok(())
}
