//! The API socket a runner talks to from inside the sandbox (`/run/osbuild/api/osbuild`).
//!
//! osbuild v10's protocol: an AF_UNIX datagram socket; the runner (autobound through
//! `SO_PASSCRED`) sends `{"method": "setup-stdio"}` and receives
//! `{"stdin": 0, "stdout": 1, "stderr": 2}` with the three file descriptors by SCM_RIGHTS:
//! a read-only descriptor of the arguments JSON and the write end of the output pipe twice.

use std::io::{IoSlice, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{
    bind, recvfrom, sendmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessage, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

use super::{io_err, BuildRootError};

/// Serves one sandbox's `osbuild` endpoint until dropped.
pub struct ApiServer {
    stop: Arc<AtomicBool>,
    requested: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl ApiServer {
    /// Binds `<dir>/osbuild` and serves it on a thread.
    pub fn start(dir: &Path, args: &str, output: &OwnedFd) -> Result<Self, BuildRootError> {
        let path = dir.join("osbuild");
        let stdin = args_fd(args)?;
        let stdout = output
            .try_clone()
            .map_err(io_err("duplicating the output pipe"))?;
        let sock = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| io_err("creating the API socket")(e.into()))?;
        let addr = UnixAddr::new(&path).map_err(|e| io_err("API socket path")(e.into()))?;
        bind(sock.as_raw_fd(), &addr)
            .map_err(|e| io_err(format!("binding {}", path.display()))(e.into()))?;
        let timeout = nix::sys::time::TimeVal::new(0, 100_000);
        setsockopt(&sock, sockopt::ReceiveTimeout, &timeout)
            .map_err(|e| io_err("API socket timeout")(e.into()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let requested = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, requested) = (stop.clone(), requested.clone());
            std::thread::Builder::new()
                .name("osbuild-api".into())
                .spawn(move || serve(sock, stdin, stdout, &stop, &requested))
                .map_err(io_err("starting the API thread"))?
        };
        Ok(Self {
            stop,
            requested,
            thread: Some(thread),
            path,
        })
    }

    /// Whether the runner asked for its stdio (it started and reached the API).
    pub fn stdio_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The arguments as an unlinked file, re-opened read-only so the module cannot change them.
fn args_fd(args: &str) -> Result<OwnedFd, BuildRootError> {
    let mut file = tempfile::tempfile().map_err(io_err("creating the arguments file"))?;
    file.write_all(args.as_bytes())
        .map_err(io_err("writing the arguments file"))?;
    file.rewind()
        .map_err(io_err("writing the arguments file"))?;
    let ro = std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(io_err("re-opening the arguments file"))?;
    Ok(ro.into())
}

fn serve(
    sock: OwnedFd,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stop: &AtomicBool,
    requested: &AtomicBool,
) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) {
        let (len, peer) = match recvfrom::<UnixAddr>(sock.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("API socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let method = serde_json::from_slice::<serde_json::Value>(&buf[..len])
            .ok()
            .and_then(|v| v.get("method").and_then(|m| m.as_str()).map(str::to_owned));
        match (method.as_deref(), peer) {
            (Some("setup-stdio"), Some(peer)) => {
                let reply = br#"{"stdin": 0, "stdout": 1, "stderr": 2}"#;
                let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stdout.as_raw_fd()];
                let cmsg = [ControlMessage::ScmRights(&fds)];
                match sendmsg(
                    sock.as_raw_fd(),
                    &[IoSlice::new(reply)],
                    &cmsg,
                    MsgFlags::empty(),
                    Some(&peer),
                ) {
                    Ok(_) => requested.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!("API socket: replying to setup-stdio: {e}"),
                }
            }
            (Some("setup-stdio"), None) => {
                tracing::warn!(
                    "API socket: setup-stdio from an unbound socket (SO_PASSCRED not set?)"
                )
            }
            (other, _) => tracing::warn!("API socket: unknown request {other:?}"),
        }
    }
}
