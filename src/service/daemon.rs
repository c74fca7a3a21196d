//! `osbuildd`: enter a private mount namespace, open the store, serve the objects, then take
//! the bus name (so an activated client never finds the name without the objects).
//!
//! Exit codes: 0 after SIGTERM/SIGINT (running jobs cancelled and cleaned up) or after
//! `--idle-exit` seconds without work ([`super::idle`]), 1 on a set-up error (not root, store
//! unusable, bus unreachable, name taken).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use super::{Authority, Limits, Manager, Service, BUS_NAME, MANAGER_PATH};
use crate::modules::Index;
use crate::store::Store;

/// The osbuild build service (D-Bus: org.osbuild.Builder1).
#[derive(Debug, Parser)]
#[command(name = "osbuildd", version)]
pub struct Args {
    /// Object store directory.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/osbuild/store")]
    pub store: PathBuf,
    /// Directory with stages, assemblers, runners and sources.
    #[arg(long, value_name = "DIR", default_value = crate::modules::DEFAULT_LIBDIR)]
    pub libdir: PathBuf,
    /// Bus to serve on (default: the bus that activated osbuildd, DBUS_STARTER_ADDRESS; else
    /// DBUS_SYSTEM_BUS_ADDRESS; else the system bus).
    #[arg(long, value_name = "BUS_ADDRESS")]
    pub address: Option<String>,
    /// Builds run at once; more are queued.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_jobs: usize,
    /// Unfinished jobs one user may have.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_jobs_per_user: usize,
    /// Largest manifest accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub max_manifest_bytes: usize,
    /// Seconds a finished job stays on the bus.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub keep_finished: u64,
    /// The most finished jobs kept on the bus at once (the oldest are forgotten first).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_finished_jobs: usize,
    /// The most bytes of finished jobs' results kept at once (the oldest are forgotten first).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_finished_bytes: usize,
    /// Exports (osbuildctl export, build --output) running at once; more are refused.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_exports: usize,
    /// After each build, remove least recently used objects and downloads until the store
    /// holds at most this many bytes (what running builds use is kept). Default: no limit.
    #[arg(long, value_name = "BYTES")]
    pub max_store_bytes: Option<u64>,
    /// Exit after SECONDS without work: no job queued, running or kept, no call in progress
    /// (the activation file and the unit set 60; by default osbuildd runs until stopped).
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
}

/// The async runtime's worker threads.
const RUNTIME_WORKERS: usize = 2;
/// malloc arenas of the daemon: as many as the runtime has workers.
const MALLOC_ARENAS: u32 = RUNTIME_WORKERS as u32;

/// Runs the daemon; returns its exit code.
pub fn main(args: Args) -> i32 {
    // Before any thread: two malloc arenas for all threads (the runtime's workers, a build
    // thread per job, the treesum threads of its commits) instead of one per thread, each
    // keeping its own freed memory.
    osbuild_sys::alloc::tune_for_daemon(MALLOC_ARENAS);
    super::log::init();
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("osbuildd: {e:#}");
            1
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("osbuildd must run as root (it creates namespaces and mounts); start it through systemd or D-Bus activation");
    }
    // Before any thread exists: our mounts stay private and vanish with us.
    crate::mount::enter_private_namespace().context("entering a private mount namespace")?;
    let store = Store::open(&args.store)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    store.restrict_to_owner()?;
    let index = Index::new(&args.libdir);
    let limits = Limits {
        max_jobs: args.max_jobs.max(1),
        max_jobs_per_user: args.max_jobs_per_user,
        max_manifest_bytes: args.max_manifest_bytes,
        keep_finished: Duration::from_secs(args.keep_finished),
        max_finished_jobs: args.max_finished_jobs,
        max_finished_bytes: args.max_finished_bytes,
        max_exports: args.max_exports,
        max_store_bytes: args.max_store_bytes,
    };
    let svc = Service::new(store, index, limits, Authority::Polkit);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let address = args.address.or_else(starter_address);
    let idle = args.idle_exit.map(Duration::from_secs);
    rt.block_on(serve(svc, address, idle))
}

/// The address of the system bus that started us by activation: dbus-daemon sets
/// DBUS_STARTER_ADDRESS (and DBUS_STARTER_BUS_TYPE=system) for the services it starts.
fn starter_address() -> Option<String> {
    let system = std::env::var("DBUS_STARTER_BUS_TYPE").is_ok_and(|t| t == "system");
    system
        .then(|| std::env::var("DBUS_STARTER_ADDRESS").ok())
        .flatten()
}

async fn serve(
    svc: std::sync::Arc<Service>,
    address: Option<String>,
    idle: Option<Duration>,
) -> anyhow::Result<()> {
    let builder = match &address {
        Some(a) => zbus::connection::Builder::address(a.as_str()),
        None => zbus::connection::Builder::system(),
    };
    let conn = builder.build().await.context("connecting to the bus")?;
    conn.object_server()
        .at(MANAGER_PATH, Manager::new(svc.clone()))
        .await
        .context("serving the manager object")?;
    conn.request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DO_NOT_QUEUE)
        .await
        .with_context(|| {
            format!("taking the bus name {BUS_NAME} (is another osbuildd running?)")
        })?;
    tracing::info!(
        "serving {BUS_NAME} (store {}, libdir {})",
        svc.store.root().display(),
        svc.index.libdir().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let idle_exit = async {
        match idle {
            Some(idle) => super::idle::wait_and_leave(&svc, &conn, idle).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        left = idle_exit => {
            left.context("releasing the bus name")?;
            tracing::info!("exiting: idle");
            return Ok(());
        }
    }
    tracing::info!("stopping: cancelling running jobs");
    svc.shutdown(Duration::from_secs(20)).await;
    Ok(())
}
