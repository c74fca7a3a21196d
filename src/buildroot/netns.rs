//! A network namespace of our own for sandboxes without network.
//!
//! bubblewrap's `--unshare-net` would make one, but the v10 `setup-stdio` reply goes to the
//! runner's autobound *abstract* address, and abstract addresses belong to a network
//! namespace: the API socket must live in the sandbox's namespace to reach it. So we make the
//! namespace first, make the API sockets inside it, and start bubblewrap in it.

use std::os::fd::OwnedFd;

use super::{io_err, BuildRootError};

/// A network namespace with only the loopback interface, up.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Creates the namespace on a short-lived thread, so no thread of ours stays in it.
    pub fn new() -> Result<Self, BuildRootError> {
        osbuild_sys::net::new_network_namespace()
            .map(|fd| Self { fd })
            .map_err(io_err("creating a network namespace"))
    }

    /// Moves the calling thread into the namespace (for the API server's own thread).
    pub fn enter(&self) -> nix::Result<()> {
        osbuild_sys::net::enter_network(&self.fd)
    }

    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}
