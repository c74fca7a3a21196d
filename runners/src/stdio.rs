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

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use osbuild_protocol::{paths, stdio};

/// Where the API socket is inside the build root.
pub const API_SOCKET: &str = paths::OSBUILD_API;

/// How long the runner waits for the host's reply before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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

fn os_err(what: &'static str) -> StdioError {
    StdioError::Io {
        what,
        source: io::Error::last_os_error(),
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
pub fn setup_stdio(socket: &Path) -> Result<(), StdioError> {
    let fds = request_stdio(socket, DEFAULT_TIMEOUT)?;
    install_stdio(fds, [0, 1, 2])
}

/// Does the `setup-stdio` exchange and returns the received descriptors, without installing
/// them. Descriptors the reply does not name are closed.
pub fn request_stdio(socket: &Path, timeout: Duration) -> Result<StdioFds, StdioError> {
    let addr = sockaddr(socket)?;
    // SAFETY: plain socket(2); the result is checked and owned immediately.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_err("socket"));
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();

    let one: libc::c_int = 1;
    // SAFETY: valid fd, pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(os_err("setsockopt(SO_PASSCRED)"));
    }
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: valid fd, pointer to a timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(os_err("setsockopt(SO_RCVTIMEO)"));
    }

    let (sa, len) = addr;
    // SAFETY: `sa` is an initialised sockaddr_un and `len` its used length.
    let rc = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), len) };
    if rc < 0 {
        return Err(os_err("connect"));
    }

    let request = stdio::Request::setup_stdio().to_wire();
    // SAFETY: valid fd and buffer of the given length.
    let sent = unsafe { libc::send(fd, request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(os_err("send"));
    }

    let (payload, mut fds) = receive(fd)?;
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
/// the originals. `setup_stdio` uses `[0, 1, 2]`; tests use spare descriptors.
pub fn install_stdio(fds: StdioFds, targets: [RawFd; 3]) -> Result<(), StdioError> {
    for (src, dst) in [&fds.stdin, &fds.stdout, &fds.stderr]
        .into_iter()
        .zip(targets)
    {
        // SAFETY: both are open descriptors; dup2 clears FD_CLOEXEC on `dst`, so the stage
        // inherits it.
        if unsafe { libc::dup2(src.as_raw_fd(), dst) } < 0 {
            return Err(os_err("dup2"));
        }
    }
    Ok(())
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), StdioError> {
    let bytes = path.as_os_str().as_bytes();
    let bad = || StdioError::BadPath(path.display().to_string());
    CString::new(bytes).map_err(|_| bad())?;
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= sa.sun_path.len() {
        return Err(bad());
    }
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sa.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

/// Receives one datagram with its SCM_RIGHTS descriptors (close-on-exec until installed).
fn receive(fd: RawFd) -> Result<(Vec<u8>, Vec<OwnedFd>), StdioError> {
    let mut buf = vec![0u8; MAX_REPLY];
    // u64 elements keep the control buffer aligned for cmsghdr.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is valid, the used fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;

    let n = loop {
        // SAFETY: msg points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                return Err(StdioError::Io {
                    what: "receive (no reply from the host)",
                    source: io::Error::from(io::ErrorKind::TimedOut),
                })
            }
            _ => {
                return Err(StdioError::Io {
                    what: "receive",
                    source: err,
                })
            }
        }
    };

    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel filled in, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for k in 0..bytes / std::mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.add(k));
                    // The kernel installed these descriptors for us: we own them.
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(StdioError::BadReply(format!(
            "more than {MAX_FDS} descriptors were passed"
        )));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(StdioError::BadReply(format!(
            "reply longer than {MAX_REPLY} bytes"
        )));
    }
    buf.truncate(n);
    Ok((buf, fds))
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
        let err = request_stdio(&dir.path().join("nope"), Duration::from_secs(1)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("connect failed: "), "{text}");
        assert!(text.contains("No such file or directory"), "{text}");
    }
}
