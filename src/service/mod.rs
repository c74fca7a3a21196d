//! The service: `osbuildd` owns `org.osbuild.Builder1` on the system bus, runs builds as jobs,
//! authorizes callers with polkit, reports progress with signals and logs to the journal.
//!
//! - [`interface`]: the D-Bus objects (`org.osbuild.Builder1`, `org.osbuild.Builder1.Job`).
//! - [`jobs`]: admission, the queue, build threads, events to signals.
//! - [`auth`]: caller identity from the bus and polkit checks.
//! - [`output`]: handing committed objects to clients through file descriptors.
//! - [`error`]: the `org.osbuild.Builder1.Error.*` replies.
//! - [`daemon`]: `osbuildd`'s command line and main loop; [`log`]: journal or stderr.

pub mod auth;
pub mod daemon;
pub mod error;
pub mod interface;
pub mod jobs;
pub mod log;
pub mod output;

pub use auth::{Action, Authority, Caller};
pub use error::Error;
pub use interface::{JobIface, Manager};
pub use jobs::{JobId, JobState, Limits, Service};

/// The well-known bus name.
pub const BUS_NAME: &str = "org.osbuild.Builder1";
/// The manager's object path.
pub const MANAGER_PATH: &str = "/org/osbuild/Builder1";
/// The manager's interface.
pub const MANAGER_INTERFACE: &str = "org.osbuild.Builder1";
/// The job objects' interface.
pub const JOB_INTERFACE: &str = "org.osbuild.Builder1.Job";

/// Serves `svc` on one end of a socket pair (peer-to-peer, no bus): tests, or a root-only
/// socket. Returns the server connection once the handshake with the peer is done.
pub async fn serve_p2p(
    svc: std::sync::Arc<Service>,
    stream: std::os::unix::net::UnixStream,
) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::unix_stream(stream)
        .server(zbus::Guid::generate())
        .p2p()
        .serve_at(MANAGER_PATH, Manager::new(svc))
        .build()
        .await
}

#[cfg(test)]
mod tests;
