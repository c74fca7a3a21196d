//! The one safe syscall layer of osbuild: every `unsafe` block of the workspace lives in this
//! crate, each with its `// SAFETY:` reason, and every other crate forbids `unsafe`.
//!
//! It is built on rustix, nix and caps and holds owners whose `Drop` releases what they hold:
//! [`process::Child`] (kill and reap; started from a `Command` or by [`spawn::Exec`]), [`mount::Mount`] (unmount), [`loopdev::LoopDevice`]
//! (detach), [`lock::Flock`] (unlock). Small and static-safe: the module binaries link it.

pub mod alloc;
pub mod caps;
pub mod fs;
pub mod lock;
pub mod loopdev;
pub mod mount;
pub mod net;
pub mod process;
pub mod signal;
pub mod socket;
pub mod spawn;

pub use nix::errno::Errno;

/// Whether this process runs as root (effective uid 0), e.g. for privileged tests.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
