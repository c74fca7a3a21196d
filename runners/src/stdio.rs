//! The runner side of osbuild v10's `setup-stdio` call on the API socket.
//!
//! The host owns the stage's stdin (the JSON arguments), stdout and stderr; the runner asks for
//! them over an AF_UNIX datagram socket and receives them by SCM_RIGHTS:
//!
//! 1. a `SOCK_DGRAM` socket with `SO_PASSCRED` set *before* `connect`, which autobinds it to an
//!    abstract address so the server has somewhere to send the reply;
//! 2. send `{"method": "setup-stdio"}`;
//! 3. receive `{"stdin": i, "stdout": j, "stderr": k}` (indexes into the passed descriptors);
//! 4. `dup2` each onto 0, 1, 2 and close the received originals.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use osbuild_protocol::{paths, stdio};
use osbuild_sys::socket::{self, UnixAddr};
use osbuild_sys::Errno;

/// Where the API socket is inside the build root.
pub const API_SOCKET: &str = paths::OSBUILD_API;

/// Largest reply accepted (v10 replies are about 40 bytes).
const MAX_REPLY: usize = 4096;
/// Most descriptors accepted in one reply (v10 sends 3).
const MAX_FDS: usize = 16;

/// Why `setup-stdio` failed.
#[derive(Debug)]
pub enum StdioError {
    /// A socket call failed (`what` names it: socket, connect, send, receive, dup2).
    Io {
        /// The failing call.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The socket path cannot be used (contains NUL or is too long for `sockaddr_un`).
    BadPath(String),
    /// The reply is not the JSON object expected, or names a descriptor that was not sent.
    BadReply(String),
}

impl fmt::Display for StdioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdioError::Io { what, source } => write!(f, "{what} failed: {source}"),
            StdioError::BadPath(p) => write!(f, "unusable API socket path {p:?}"),
            StdioError::BadReply(why) => write!(f, "unexpected reply from the host: {why}"),
        }
    }
}

impl std::error::Error for StdioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StdioError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn os_err(what: &'static str) -> impl FnOnce(Errno) -> StdioError {
    move |e| StdioError::Io {
        what,
        source: e.into(),
    }
}

/// The three descriptors handed over by the host, in stdin/stdout/stderr order.
#[derive(Debug)]
pub struct StdioFds {
    /// Becomes fd 0.
    pub stdin: OwnedFd,
    /// Becomes fd 1.
    pub stdout: OwnedFd,
    /// Becomes fd 2.
    pub stderr: OwnedFd,
}

/// Asks the host for the stage's stdio and makes it the process's fds 0, 1 and 2.
///
/// Waits as long as the host takes: the engine starts a stage's sandbox while the stage
/// before it runs, and answers when that one has finished, however long it ran. A host that
/// never answers kills the sandbox instead (its timeout, a cancel, or its own end, since
/// bubblewrap dies with it).
pub fn setup_stdio(socket: &Path) -> Result<(), StdioError> {
    let fds = request_stdio(socket, None)?;
    osbuild_sys::process::install_stdio(&fds.stdin, &fds.stdout, &fds.stderr)
        .map_err(os_err("dup2"))
}

/// Does the `setup-stdio` exchange and returns the received descriptors, without installing
/// them. Descriptors the reply does not name are closed. Without a `timeout`, waits for the
/// reply as long as it takes.
pub fn request_stdio(socket: &Path, timeout: Option<Duration>) -> Result<StdioFds, StdioError> {
    let addr = sockaddr(socket)?;
    let sock =
        socket::connect_autobound(&addr, timeout).map_err(|f| os_err(f.step.name())(f.errno))?;
    let request = stdio::Request::setup_stdio().to_wire();
    socket::send(&sock, request.as_bytes(), &[], None).map_err(os_err("send"))?;

    let (payload, mut fds) = receive(&sock)?;
    let reply = stdio::Reply::parse(&payload).map_err(|e| StdioError::BadReply(e.to_string()))?;
    let index = |key: &str, i: usize| -> Result<usize, StdioError> {
        if i >= fds.len() {
            return Err(StdioError::BadReply(format!(
                "{key:?} is descriptor {i} but only {} were passed",
                fds.len()
            )));
        }
        Ok(i)
    };
    let (i, o, e) = (
        index("stdin", reply.stdin)?,
        index("stdout", reply.stdout)?,
        index("stderr", reply.stderr)?,
    );
    let dup = |fd: &OwnedFd| {
        fd.try_clone().map_err(|source| StdioError::Io {
            what: "dup",
            source,
        })
    };
    let result = StdioFds {
        stdin: dup(&fds[i])?,
        stdout: dup(&fds[o])?,
        stderr: dup(&fds[e])?,
    };
    fds.clear();
    Ok(result)
}

/// `dup2`s the received descriptors onto `targets` (stdin, stdout, stderr order) and closes
/// the originals; tests use it with spare descriptors (`setup_stdio` installs onto 0, 1, 2).
pub fn install_stdio(fds: StdioFds, targets: [&mut OwnedFd; 3]) -> Result<(), StdioError> {
    for (src, dst) in [&fds.stdin, &fds.stdout, &fds.stderr]
        .into_iter()
        .zip(targets)
    {
        osbuild_sys::process::dup_onto(src, dst).map_err(os_err("dup2"))?;
    }
    Ok(())
}

fn sockaddr(path: &Path) -> Result<UnixAddr, StdioError> {
    let bad = || StdioError::BadPath(path.display().to_string());
    if path.as_os_str().as_bytes().is_empty() {
        return Err(bad());
    }
    UnixAddr::new(path).map_err(|_| bad())
}

/// Receives one datagram with its SCM_RIGHTS descriptors (close-on-exec until installed).
fn receive(sock: impl AsFd) -> Result<(Vec<u8>, Vec<OwnedFd>), StdioError> {
    let mut buf = vec![0u8; MAX_REPLY];
    let got = loop {
        match socket::receive(&sock, &mut buf, MAX_FDS) {
            Ok(got) => break got,
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN | Errno::ETIMEDOUT) => {
                return Err(StdioError::Io {
                    what: "receive (no reply from the host)",
                    source: io::Error::from(io::ErrorKind::TimedOut),
                })
            }
            Err(e) => return Err(os_err("receive")(e)),
        }
    };
    if got.fds_truncated {
        return Err(StdioError::BadReply(format!(
            "more than {MAX_FDS} descriptors were passed"
        )));
    }
    if got.truncated {
        return Err(StdioError::BadReply(format!(
            "reply longer than {MAX_REPLY} bytes"
        )));
    }
    buf.truncate(got.len);
    Ok((buf, got.fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths() {
        let long = "/".repeat(200);
        let cases: [(&str, bool); 4] = [
            ("/run/osbuild/api/osbuild", true),
            ("", false),
            ("/a\0b", false),
            (&long, false),
        ];
        for (path, ok) in cases {
            assert_eq!(sockaddr(Path::new(path)).is_ok(), ok, "{path:?}");
        }
    }

    #[test]
    fn missing_socket_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            request_stdio(&dir.path().join("nope"), Some(Duration::from_secs(1))).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("connect failed: "), "{text}");
        assert!(text.contains("No such file or directory"), "{text}");
    }
}
