//! osbuild HEAD's `osbuild` API socket, for modules that speak HEAD's protocol: an AF_UNIX
//! `SOCK_SEQPACKET` listener at `/run/osbuild/api/osbuild` (HEAD's `jsoncomm`: one JSON
//! document per packet). A failing module sends
//! `{"method": "exception", "exception": {"type", "value", "traceback"}}` before it exits;
//! the last such exception becomes the stage's `error` in the result. Nothing else is asked
//! of the engine on this socket (a module's metadata goes to the `/run/osbuild/meta` file).
//!
//! Clients `connect` by path, so unlike v10's datagram sockets this one needs no network
//! namespace of the sandbox's.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use osbuild_protocol::paths;
use osbuild_sys::socket;

use super::{io_err, BuildRootError};
use crate::json::{self, Value};

/// The largest packet read: an exception with a long traceback fits (HEAD's modules send
/// larger payloads through a memfd, which no message on this socket needs).
const MAX_PACKET: usize = 256 * 1024;

/// Connections served at once; later ones wait in the backlog.
const MAX_CLIENTS: usize = 8;

/// Serves one sandbox's HEAD `osbuild` endpoint until dropped (then the thread is joined and
/// the socket file removed).
pub struct HeadApiServer {
    /// Closing it wakes the serving thread at once (its read end becomes readable).
    wake: Option<OwnedFd>,
    exception: Arc<Mutex<Option<Value>>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl HeadApiServer {
    /// Listens at `<dir>/osbuild` and serves it on a thread.
    pub fn start(dir: &Path) -> Result<Self, BuildRootError> {
        let path = dir.join(paths::OSBUILD_SOCKET);
        let listener = socket::listen_seqpacket(&path).map_err(|f| {
            io_err(format!("{} of {}", f.step.name(), path.display()))(f.errno.into())
        })?;
        let exception = Arc::new(Mutex::new(None));
        let (woken, wake) =
            osbuild_sys::process::pipe().map_err(io_err("creating the API thread's pipe"))?;
        let thread = {
            let exception = exception.clone();
            std::thread::Builder::new()
                .name("osbuild-head-api".into())
                .spawn(move || serve(listener, woken, &exception))
                .map_err(io_err("starting the API thread"))?
        };
        Ok(Self {
            wake: Some(wake),
            exception,
            thread: Some(thread),
            path,
        })
    }

    /// Stops serving and returns the exception the module reported, if any: `{"type",
    /// "value", "traceback"}` as it sent it.
    pub fn finish(mut self) -> Option<Value> {
        self.shut();
        self.exception.lock().ok()?.take()
    }

    fn shut(&mut self) {
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for HeadApiServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Serves until the wake pipe closes; then takes what is still queued (a module's last
/// packet may arrive just before it exits) and returns.
fn serve(listener: OwnedFd, woken: OwnedFd, exception: &Mutex<Option<Value>>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut clients: Vec<OwnedFd> = Vec::new();
    let mut buf = vec![0u8; MAX_PACKET];
    let mut stop = false;
    loop {
        let stopping = stop;
        if !stopping {
            let mut fds = vec![
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(woken.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                clients
                    .iter()
                    .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
            );
            let _ = poll(&mut fds, PollTimeout::NONE);
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                stop = true;
            }
        }
        while clients.len() < MAX_CLIENTS {
            match socket::accept(&listener) {
                Ok(c) => clients.push(c),
                Err(_) => break,
            }
        }
        clients.retain(|c| read_available(c, &mut buf, exception));
        if stopping {
            return;
        }
    }
}

/// Reads every packet queued on `client` (non-blocking); false once it is closed.
fn read_available(client: &OwnedFd, buf: &mut [u8], exception: &Mutex<Option<Value>>) -> bool {
    loop {
        match socket::receive(client, buf, 8) {
            Ok(msg) if msg.len == 0 => return false,
            Ok(msg) => {
                if let Some(e) = exception_of(&buf[..msg.len]) {
                    *exception.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return true,
            Err(_) => return false,
        }
    }
}

/// The exception of an `{"method": "exception", "exception": {...}}` packet.
fn exception_of(packet: &[u8]) -> Option<Value> {
    let msg = json::parse(std::str::from_utf8(packet).ok()?).ok()?;
    if msg.get("method").and_then(Value::as_str) != Some("exception") {
        tracing::warn!("HEAD API socket: unknown message");
        return None;
    }
    msg.get("exception").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn keeps_the_exception_a_client_sends() {
        let dir = tempfile::tempdir().unwrap();
        let server = HeadApiServer::start(dir.path()).unwrap();
        // A SOCK_SEQPACKET client, as HEAD's jsoncomm makes it.
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        let addr = nix::sys::socket::UnixAddr::new(&dir.path().join("osbuild")).unwrap();
        nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).unwrap();
        let mut client = UnixStream::from(fd);
        client.write_all(br#"{"method": "metadata"}"#).unwrap();
        client
            .write_all(br#"{"method": "exception", "exception": {"type": "ValueError", "value": "bad", "traceback": "t"}}"#)
            .unwrap();
        drop(client);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.exception.lock().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "no exception within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = server.finish().expect("the exception");
        assert_eq!(e.get("type").and_then(Value::as_str), Some("ValueError"));
        assert_eq!(e.get("value").and_then(Value::as_str), Some("bad"));
        assert!(
            !dir.path().join("osbuild").exists(),
            "the socket file is removed"
        );
    }
}
