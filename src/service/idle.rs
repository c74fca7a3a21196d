//! Idle exit (`osbuildd --idle-exit SECONDS`, set by the activation file and the unit): a daemon
//! the bus started leaves again once it has had nothing to do for that long, and the next call
//! starts a new one.
//!
//! Nothing to do means: no job known to the scheduler (queued, running, or finished and still
//! kept for its owner's `GetResult`) and no method call in progress ([`Calls`]: a `Build` being
//! authorized, an export streaming). Leaving, in this order, loses no call:
//! 1. the scheduler admits no more jobs, but only if it holds none ([`super::scheduler::Scheduler::close_if_empty`]);
//!    a `Build` that was already past its idle check is refused with `ShuttingDown`, which
//!    `osbuildctl` retries;
//! 2. the bus name is released: from now on the bus queues calls for a new instance;
//! 3. calls that reached us before the release are answered (an export finishes), then we exit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Service, BUS_NAME};

/// Method calls in progress.
#[derive(Default)]
pub(crate) struct Calls(AtomicUsize);

/// One call in progress; dropping it ends the call.
pub(crate) struct Call<'a>(&'a Calls);

impl Calls {
    /// Counts a call until the returned guard drops.
    pub fn begin(&self) -> Call<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Call(self)
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn busy(svc: &Service) -> bool {
    svc.calls.count() > 0 || svc.scheduler.has_jobs()
}

/// Returns once `svc` had nothing to do for `idle`, has stopped admitting jobs and has given
/// up the bus name; then waits for the calls that reached it before that.
pub async fn wait_and_leave(
    svc: &Arc<Service>,
    conn: &zbus::Connection,
    idle: Duration,
) -> zbus::Result<()> {
    let tick = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        if busy(svc) {
            quiet_since = tokio::time::Instant::now();
            continue;
        }
        if quiet_since.elapsed() >= idle && svc.scheduler.close_if_empty() {
            break;
        }
    }
    tracing::info!("idle for {} s: releasing {BUS_NAME}", idle.as_secs());
    conn.release_name(BUS_NAME).await?;
    // A call routed to us just before the release may still be on its way to its handler.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while svc.calls.count() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last reply is sent just after its handler returns; a round trip to the bus after it
    // means it has been written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    zbus::fdo::DBusProxy::new(conn).await?.get_id().await?;
    Ok(())
}
