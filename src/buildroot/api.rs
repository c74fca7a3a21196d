//! The API sockets a sandbox talks to: `/run/osbuild/api/osbuild` (the runner's stdio) and
//! `/run/osbuild/api/sources` (stages asking for source files).
//!
//! osbuild v10's protocol: an AF_UNIX datagram socket; the runner (autobound through
//! `SO_PASSCRED`) sends `{"method": "setup-stdio"}` and receives
//! `{"stdin": 0, "stdout": 1, "stderr": 2}` with the three file descriptors by SCM_RIGHTS:
//! a read-only descriptor of the arguments JSON and the write end of the output pipe twice.
//!
//! The sources endpoint is v10's too: a datagram `{"source": NAME, "checksums": [...]}` is
//! answered with the source's reply JSON (at most 64 KiB), computed by a [`SourcesHandler`]
//! that runs the source on the host.
//!
//! The runner's autobound address is abstract, and abstract addresses belong to a network
//! namespace, so the sockets are made inside the sandbox's (see [`super::netns`]).

use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use osbuild_protocol::{paths, sources_api, stdio};
use osbuild_sys::socket::{self, Step, UnixAddr};

use super::{io_err, BuildRootError, NetNs};

/// A datagram socket bound at `path` (inside `netns` when given: a socket keeps the network
/// namespace it was made in, which is where abstract reply addresses are looked up) and served
/// on a thread of its own. Dropping it stops the thread at once (`shutdown` wakes a blocked
/// receive), joins it and removes the socket file.
pub(super) struct SocketThread {
    stop: Arc<AtomicBool>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl SocketThread {
    pub(super) fn spawn(
        name: &str,
        path: PathBuf,
        netns: Option<&NetNs>,
        serve: impl FnOnce(OwnedFd, &AtomicBool) + Send + 'static,
    ) -> Result<Self, BuildRootError> {
        let sock = match netns {
            None => bind_socket(&path, None)?,
            Some(netns) => {
                let netns = netns.try_clone_fd();
                let netns = netns.map_err(io_err("duplicating the namespace descriptor"))?;
                // Bound on a short-lived thread, so no thread of ours stays in the sandbox's
                // namespace.
                std::thread::scope(|s| {
                    s.spawn(|| bind_socket(&path, Some(netns)))
                        .join()
                        .unwrap_or_else(|_| {
                            Err(io_err(format!("binding {}", path.display()))(
                                std::io::Error::other("the thread died"),
                            ))
                        })
                })?
            }
        };
        let wake = sock
            .try_clone()
            .map_err(io_err(format!("duplicating the socket {}", path.display())))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || serve(sock, &stop))
                .map_err(io_err(format!("starting the {name} thread")))?
        };
        Ok(Self {
            stop,
            wake,
            thread: Some(thread),
            path,
        })
    }
}

impl Drop for SocketThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = socket::shutdown(&self.wake);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Holds the answer to `setup-stdio` until opened. The runner touches nothing before it has
/// its stdio, so a sandbox held here can be started while the module before it still runs.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<GateState>, Condvar)>);

#[derive(Clone, Copy, PartialEq, Default)]
enum GateState {
    #[default]
    Held,
    Open,
    /// The server is going away: a held request is never answered.
    Abandoned,
}

impl Gate {
    /// A gate that lets every request through.
    pub fn open_now() -> Self {
        let gate = Self::default();
        gate.set(GateState::Open);
        gate
    }

    /// Lets the held (and any later) request through.
    pub fn open(&self) {
        self.set(GateState::Open);
    }

    fn set(&self, to: GateState) {
        let (state, changed) = &*self.0;
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if *st != GateState::Abandoned {
            *st = to;
        }
        changed.notify_all();
    }

    /// Waits until the gate opens (true) or is abandoned (false).
    fn pass(&self) -> bool {
        let (state, changed) = &*self.0;
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        let st = changed
            .wait_while(st, |s| *s == GateState::Held)
            .unwrap_or_else(|p| p.into_inner());
        *st == GateState::Open
    }
}

/// Serves one sandbox's `osbuild` endpoint until dropped.
pub struct ApiServer {
    gate: Gate,
    _socket: SocketThread,
    requested: Arc<AtomicBool>,
}

impl Drop for ApiServer {
    /// Frees a serving thread held at the gate, so that dropping the socket can join it.
    fn drop(&mut self) {
        self.gate.set(GateState::Abandoned);
    }
}

impl ApiServer {
    /// Binds `<dir>/osbuild` and serves it on a thread, answering `setup-stdio` once `gate` is
    /// open. With `netns`, the socket lives in that network namespace (the sandbox's), where
    /// the runner's reply address is.
    pub fn start(
        dir: &Path,
        args: &str,
        output: &OwnedFd,
        netns: Option<&NetNs>,
        gate: Gate,
    ) -> Result<Self, BuildRootError> {
        let stdin = args_fd(args)?;
        let stdout = output
            .try_clone()
            .map_err(io_err("duplicating the output pipe"))?;
        let requested = Arc::new(AtomicBool::new(false));
        let flag = requested.clone();
        let held = gate.clone();
        let socket = SocketThread::spawn(
            "osbuild-api",
            dir.join(paths::OSBUILD_SOCKET),
            netns,
            move |sock, stop| serve(sock, Stdio { stdin, stdout }, stop, &flag, &held),
        )?;
        Ok(Self {
            gate,
            _socket: socket,
            requested,
        })
    }

    /// Whether the runner asked for its stdio (it started and reached the API).
    pub fn stdio_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Creates and binds a datagram API socket at `path`, in `netns` if given (the calling thread
/// stays in it: [`SocketThread::spawn`] calls this on a thread of its own).
fn bind_socket(path: &Path, netns: Option<OwnedFd>) -> Result<OwnedFd, BuildRootError> {
    if let Some(fd) = netns {
        osbuild_sys::net::enter_network(&fd)
            .map_err(|e| io_err("entering the sandbox's network namespace")(e.into()))?;
    }
    socket::bind_datagram(path, Duration::from_secs(1)).map_err(|f| {
        let what = match f.step {
            Step::Socket => "creating the API socket".to_owned(),
            Step::Address => "API socket path".to_owned(),
            Step::Bind => format!("binding {}", path.display()),
            _ => "API socket timeout".to_owned(),
        };
        io_err(what)(f.errno.into())
    })
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

/// One request: its payload and the sender's address.
struct Request {
    payload: Vec<u8>,
    peer: Option<UnixAddr>,
}

fn receive(sock: &OwnedFd) -> nix::Result<Request> {
    receive_up_to(sock, 1024)
}

/// One datagram of at most `size` bytes; nobody should send us descriptors, so any that
/// arrive are closed at once.
fn receive_up_to(sock: &OwnedFd, size: usize) -> nix::Result<Request> {
    let mut buf = vec![0u8; size];
    let msg = socket::receive(sock, &mut buf, 8)?;
    buf.truncate(msg.len);
    Ok(Request {
        payload: buf,
        peer: msg.peer,
    })
}

/// What `setup-stdio` hands over: the arguments file, and the output pipe's write end.
struct Stdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
}

fn serve(sock: OwnedFd, stdio: Stdio, stop: &AtomicBool, requested: &AtomicBool, gate: &Gate) {
    let Stdio { stdin, stdout } = stdio;
    while !stop.load(Ordering::SeqCst) {
        let req = match receive(&sock) {
            Ok(_) if stop.load(Ordering::SeqCst) => break,
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("API socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let method = stdio::Request::parse(&req.payload).map(|r| r.method);
        match (method.as_deref(), req.peer) {
            (Some(stdio::SETUP_STDIO), Some(peer)) => {
                if !gate.pass() {
                    break;
                }
                let reply = stdio::Reply::IN_ORDER.to_wire();
                // In the reply's order: stdin, stdout, stderr.
                let fds = [stdin.as_fd(), stdout.as_fd(), stdout.as_fd()];
                // Set before the reply leaves: the runner may run its module and end, and the
                // engine read this, before this thread gets to run again after the send.
                requested.store(true, Ordering::SeqCst);
                if let Err(e) = socket::send(&sock, reply.as_bytes(), &fds, Some(&peer)) {
                    requested.store(false, Ordering::SeqCst);
                    tracing::warn!("API socket: replying to setup-stdio: {e}");
                }
            }
            (Some(stdio::SETUP_STDIO), None) => {
                tracing::warn!(
                    "API socket: setup-stdio from an unbound socket (SO_PASSCRED not set?)"
                )
            }
            (other, _) => tracing::warn!("API socket: unknown request {other:?}"),
        }
    }
}

/// Answers one sources API request (the datagram's bytes) with the reply JSON text.
pub type SourcesHandler = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// Serves one sandbox's `sources` endpoint until dropped. The serving thread is in the
/// engine's network namespace: the sources it starts need the host's network.
pub struct SourcesServer {
    _socket: SocketThread,
}

impl SourcesServer {
    /// Binds `<dir>/sources` (in `netns`, the sandbox's) and serves it on a thread.
    pub fn start(
        dir: &Path,
        handler: SourcesHandler,
        netns: Option<&NetNs>,
    ) -> Result<Self, BuildRootError> {
        let socket = SocketThread::spawn(
            "osbuild-sources-api",
            dir.join(paths::SOURCES_SOCKET),
            netns,
            move |sock, stop| serve_sources(sock, &handler, stop),
        )?;
        Ok(Self { _socket: socket })
    }
}

fn serve_sources(sock: OwnedFd, handler: &SourcesHandler, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let req = match receive_up_to(&sock, sources_api::MAX_DATAGRAM) {
            Ok(_) if stop.load(Ordering::SeqCst) => break,
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("sources API socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(peer) = req.peer else {
            tracing::warn!("sources API: a request from an unbound socket (SO_PASSCRED not set?)");
            continue;
        };
        let mut reply = handler(&req.payload);
        if reply.len() > sources_api::MAX_DATAGRAM {
            reply = sources_api::error_reply(&format!(
                "the source's reply is {} bytes, more than the API's {}",
                reply.len(),
                sources_api::MAX_DATAGRAM
            ));
        }
        if let Err(e) = socket::send(&sock, reply.as_bytes(), &[], Some(&peer)) {
            tracing::warn!("sources API: replying: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `setup-stdio` to the server at `path`; whether a reply with three descriptors came
    /// within `wait`.
    fn ask(path: &Path, wait: Duration) -> bool {
        let addr = UnixAddr::new(path).unwrap();
        let sock = socket::connect_autobound(&addr, Some(wait)).unwrap();
        let request = stdio::Request::setup_stdio().to_wire();
        socket::send(&sock, request.as_bytes(), &[], None).unwrap();
        let mut buf = [0u8; 1024];
        // Room for the credentials SO_PASSCRED adds, besides the three descriptors.
        socket::receive(&sock, &mut buf, 16).is_ok_and(|r| r.fds.len() == 3)
    }

    #[test]
    fn a_held_runner_gets_its_stdio_only_once_the_gate_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (_reader, writer) = nix::unistd::pipe().unwrap();
        let gate = Gate::default();
        let server = ApiServer::start(dir.path(), "{}", &writer, None, gate.clone()).unwrap();
        let path = dir.path().join(paths::OSBUILD_SOCKET);
        assert!(
            !ask(&path, Duration::from_millis(300)),
            "answered while held"
        );
        assert!(!server.stdio_requested());
        gate.open();
        assert!(ask(&path, Duration::from_secs(10)), "no answer once open");
        assert!(server.stdio_requested());
    }

    #[test]
    fn dropping_a_server_whose_runner_is_held_ends_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (_reader, writer) = nix::unistd::pipe().unwrap();
        let server = ApiServer::start(dir.path(), "{}", &writer, None, Gate::default()).unwrap();
        let path = dir.path().join(paths::OSBUILD_SOCKET);
        assert!(!ask(&path, Duration::from_millis(100)));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(server);
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the serving thread, held at the gate, was not freed");
        assert!(!path.exists(), "the socket file is removed");
    }
}
