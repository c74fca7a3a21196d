//! The service: `osbuildd` owns `org.osbuild.Builder1` on the system bus, runs builds as jobs,
//! authorizes callers with polkit, reports progress with signals and logs to the journal.
//!
//! - [`scheduler`]: the jobs, admission limits, the queue, conflicts, single flight and
//!   retention; synchronous, no D-Bus.
//! - `worker`: a job's build thread, its events, and its commit policy.
//! - [`interface`]: the bus adapter: the D-Bus objects (`org.osbuild.Builder1`,
//!   `org.osbuild.Builder1.Job`), signals, property changes, the journal's fields.
//! - [`wire`]: the interface's `a{sv}` dictionaries as types; [`client`]: the client proxies.
//! - [`auth`]: caller identity from the bus and polkit checks.
//! - `request`: a `Build` call checked into what a job builds (a v1 manifest, or a v2 one
//!   with its exports and checkpoint patterns); `outcome`: a finished job's full result
//!   (the owner's) and public summary (everyone's).
//! - [`output`]: handing committed objects to clients through file descriptors.
//! - [`error`]: the `org.osbuild.Builder1.Error.*` replies.
//! - [`daemon`]: `osbuildd`'s command line and main loop; [`log`]: journal or stderr;
//!   [`idle`]: leaving when idle (activated daemons).

pub mod auth;
pub mod client;
pub mod daemon;
pub mod error;
pub mod idle;
pub mod interface;
pub mod log;
mod outcome;
pub mod output;
mod request;
pub mod scheduler;
pub mod wire;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::modules::Index;
use crate::store::Store;

pub use auth::{Action, Authority, Caller};
pub use error::Error;
pub use interface::{JobIface, Manager};
pub use scheduler::{JobId, JobState, Limits};

/// The well-known bus name.
pub const BUS_NAME: &str = "org.osbuild.Builder1";
/// The manager's object path.
pub const MANAGER_PATH: &str = "/org/osbuild/Builder1";
/// The manager's interface.
pub const MANAGER_INTERFACE: &str = "org.osbuild.Builder1";
/// The job objects' interface.
pub const JOB_INTERFACE: &str = "org.osbuild.Builder1.Job";

/// The daemon's state, shared by the bus objects and the build threads.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) index: Index,
    pub(crate) authority: Authority,
    pub(crate) scheduler: scheduler::Scheduler,
    /// One permit per export that may run at once.
    pub(crate) exports: tokio::sync::Semaphore,
    /// Method calls in progress (idle exit waits for them).
    pub(crate) calls: idle::Calls,
}

impl Service {
    /// A service over `store`, building with the modules of `index`.
    pub fn new(store: Store, index: Index, limits: Limits, authority: Authority) -> Arc<Service> {
        Arc::new(Service {
            store,
            index,
            authority,
            exports: tokio::sync::Semaphore::new(limits.max_exports),
            scheduler: scheduler::Scheduler::new(limits),
            calls: idle::Calls::default(),
        })
    }

    /// Cancels every job (daemon shutdown) and waits up to `grace` for the builds to clean up.
    pub async fn shutdown(&self, grace: Duration) {
        for job in self.scheduler.drain() {
            job.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.scheduler.any_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves `svc` on one end of a socket pair (peer-to-peer, no bus): tests, or a root-only
/// socket. Returns the server connection once the handshake with the peer is done.
pub async fn serve_p2p(
    svc: Arc<Service>,
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
