//! A network namespace of our own for sandboxes without network.
//!
//! bubblewrap's `--unshare-net` would make one, but the v10 `setup-stdio` reply goes to the
//! runner's autobound *abstract* address, and abstract addresses belong to a network
//! namespace: the API socket must live in the sandbox's namespace to reach it. So we make the
//! namespace first, make the API sockets inside it, and start bubblewrap in it.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

use super::{io_err, BuildRootError};

/// A network namespace with only the loopback interface, up.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Creates the namespace on a short-lived thread, so no thread of ours stays in it.
    pub fn new() -> Result<Self, BuildRootError> {
        std::thread::spawn(|| -> std::io::Result<OwnedFd> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            loopback_up()?;
            Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
        })
        .join()
        .map_err(|_| {
            io_err("creating a network namespace")(std::io::Error::other("thread panicked"))
        })?
        .map(|fd| Self { fd })
        .map_err(io_err("creating a network namespace"))
    }

    /// Moves the calling thread into the namespace (for the API server's own thread, and for
    /// bubblewrap between fork and exec).
    pub fn enter(&self) -> nix::Result<()> {
        setns(&self.fd, CloneFlags::CLONE_NEWNET)
    }

    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// `ip link set lo up`, with the ioctls.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq that names "lo"; the fd is closed.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}
