//! A minimal host side of the `setup-stdio` protocol for tests: a datagram socket bound in a
//! temporary directory that answers one request with the descriptors it was given.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use osbuild_sys::socket::{self, SockaddrLike};

/// What the server received (not every test reads it).
#[allow(dead_code)]
pub struct Request {
    pub payload: String,
    /// Whether the client's address was an autobound (abstract) one we could reply to.
    pub addr_len: usize,
}

/// How long the server waits for the runner's request: a runner that never asks is a failure
/// within seconds, not a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// Binds `path` and, in a thread, answers one request with `reply` and `fds`.
pub fn serve_once(path: &Path, reply: &str, fds: Vec<OwnedFd>) -> JoinHandle<Request> {
    let sock = UnixDatagram::bind(path).expect("bind test API socket");
    sock.set_read_timeout(Some(DEADLINE)).expect("SO_RCVTIMEO");
    let reply = reply.to_owned();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let got = socket::receive(&sock, &mut buf, 0).unwrap_or_else(|e| {
            panic!("no setup-stdio request within {DEADLINE:?} (did the runner start?): {e}")
        });
        let peer = got.peer.expect("the client's address");
        let request = Request {
            payload: String::from_utf8_lossy(&buf[..got.len]).into_owned(),
            addr_len: peer.len() as usize,
        };
        let fds: Vec<BorrowedFd> = fds.iter().map(AsFd::as_fd).collect();
        socket::send(&sock, reply.as_bytes(), &fds, Some(&peer)).expect("sendmsg");
        request
    })
}

/// A pipe as (read end, write end) files.
pub fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = osbuild_sys::process::pipe().expect("pipe");
    (r.into(), w.into())
}

/// Copies of `files`' descriptors, for [`serve_once`] to hand over (and close once sent).
pub fn owned(files: &[&std::fs::File]) -> Vec<OwnedFd> {
    files
        .iter()
        .map(|f| f.try_clone().expect("dup").into())
        .collect()
}
