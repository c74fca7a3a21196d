//! Process-wide signal handlers.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};

pub use nix::sys::signal::Signal;

/// Installs `handler` for each of `signals` (with `SA_RESTART`). The handler must be
/// async-signal-safe (store to an atomic, nothing more).
pub fn set_handler(signals: &[Signal], handler: extern "C" fn(libc::c_int)) -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &sig in signals {
        // SAFETY: the caller's contract: the handler only does async-signal-safe work.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}
