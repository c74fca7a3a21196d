//! AF_UNIX datagram sockets that pass descriptors by SCM_RIGHTS, the transport of every API
//! socket between the engine and a sandbox (`setup-stdio`, `sources`, `remoteloop`): one
//! client constructor, one send and one receive, on nix's `sys::socket`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, recvmsg, sendmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, Shutdown, SockFlag, SockType,
};
use nix::sys::time::TimeVal;

pub use nix::sys::socket::{SockaddrLike, UnixAddr};

/// A step of making a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Socket,
    /// Making the address out of a path (too long, or a NUL in it).
    Address,
    Bind,
    PassCred,
    ReceiveTimeout,
    Connect,
}

impl Step {
    /// The call's name, for messages: "socket", "setsockopt(SO_PASSCRED)", ...
    pub fn name(self) -> &'static str {
        match self {
            Step::Socket => "socket",
            Step::Address => "address",
            Step::Bind => "bind",
            Step::PassCred => "setsockopt(SO_PASSCRED)",
            Step::ReceiveTimeout => "setsockopt(SO_RCVTIMEO)",
            Step::Connect => "connect",
        }
    }
}

/// Which step of making a socket failed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFailed {
    pub step: Step,
    pub errno: Errno,
}

fn fail(step: Step) -> impl Fn(Errno) -> SocketFailed {
    move |errno| SocketFailed { step, errno }
}

fn datagram_socket() -> Result<OwnedFd, SocketFailed> {
    socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail(Step::Socket))
}

fn set_receive_timeout(sock: &OwnedFd, timeout: Duration) -> Result<(), SocketFailed> {
    let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    setsockopt(sock, sockopt::ReceiveTimeout, &tv).map_err(fail(Step::ReceiveTimeout))
}

/// A close-on-exec datagram socket bound at `path` (a server's), whose receives time out
/// after `timeout` (so a serving loop can look at its stop flag).
pub fn bind_datagram(path: &Path, timeout: Duration) -> Result<OwnedFd, SocketFailed> {
    let addr = UnixAddr::new(path).map_err(fail(Step::Address))?;
    let sock = datagram_socket()?;
    set_receive_timeout(&sock, timeout)?;
    bind(sock.as_raw_fd(), &addr).map_err(fail(Step::Bind))?;
    Ok(sock)
}

nix::ioctl_read_bad!(unread_output_bytes, libc::TIOCOUTQ, libc::c_int);

/// Whether something listens on the datagram socket at `path` and reads what it is sent: an
/// empty datagram is sent without blocking, then the sender's queue is watched until `timeout`
/// (the kernel charges an AF_UNIX datagram to its sender until the receiver takes it, which
/// `SIOCOUTQ` reports). `Ok(false)`: the socket is bound but nobody read the datagram (or its
/// queue is full); `Err`: nothing is bound there (`ECONNREFUSED`, `ENOENT`) or the send failed.
pub fn datagram_listener_reads(path: &Path, timeout: Duration) -> nix::Result<bool> {
    let addr = UnixAddr::new(path)?;
    let sock = datagram_socket().map_err(|e| e.errno)?;
    let iov = [IoSlice::new(&[])];
    match sendmsg(
        sock.as_raw_fd(),
        &iov,
        &[],
        MsgFlags::MSG_DONTWAIT,
        Some(&addr),
    ) {
        Ok(_) => {}
        Err(Errno::EAGAIN) => return Ok(false),
        Err(e) => return Err(e),
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int into `queued`, which lives across the call.
        unsafe { unread_output_bytes(sock.as_raw_fd(), &mut queued) }?;
        if queued == 0 {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A close-on-exec, non-blocking AF_UNIX `SOCK_SEQPACKET` socket listening at `path`: the
/// transport of osbuild HEAD's API sockets (`jsoncomm`), where clients `connect`.
pub fn listen_seqpacket(path: &Path) -> Result<OwnedFd, SocketFailed> {
    let addr = UnixAddr::new(path).map_err(fail(Step::Address))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(fail(Step::Socket))?;
    bind(sock.as_raw_fd(), &addr).map_err(fail(Step::Bind))?;
    nix::sys::socket::listen(
        &sock,
        nix::sys::socket::Backlog::new(16).expect("a small backlog"),
    )
    .map_err(fail(Step::Bind))?;
    Ok(sock)
}

/// Accepts one connection of a listening socket, close-on-exec and non-blocking; `EAGAIN`
/// when none is waiting.
pub fn accept(listener: impl AsFd) -> nix::Result<OwnedFd> {
    nix::sys::socket::accept4(
        listener.as_fd(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
}

/// Shuts both directions of `sock` down, which wakes a thread blocked receiving on it.
pub fn shutdown(sock: impl AsFd) -> nix::Result<()> {
    nix::sys::socket::shutdown(sock.as_fd().as_raw_fd(), Shutdown::Both)
}

/// A close-on-exec datagram socket connected to the server at `server`, autobound to an
/// abstract address so the server has somewhere to send its reply: `SO_PASSCRED` is set
/// before `connect`, which autobinds (as osbuild v10's clients do). Receives time out after
/// `timeout` when given.
pub fn connect_autobound(
    server: &UnixAddr,
    timeout: Option<Duration>,
) -> Result<OwnedFd, SocketFailed> {
    let sock = datagram_socket()?;
    setsockopt(&sock, sockopt::PassCred, &true).map_err(fail(Step::PassCred))?;
    if let Some(timeout) = timeout {
        set_receive_timeout(&sock, timeout)?;
    }
    connect(sock.as_raw_fd(), server).map_err(fail(Step::Connect))?;
    Ok(sock)
}

/// Sends `bytes` with `fds` (by SCM_RIGHTS, none when empty) to `peer`, or to the connected
/// peer when `None`. Returns the bytes sent.
pub fn send(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    peer: Option<&UnixAddr>,
) -> nix::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(bytes)];
    sendmsg(
        sock.as_fd().as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::empty(),
        peer,
    )
}

/// One datagram received by [`receive`].
#[derive(Debug)]
pub struct Received {
    /// How many bytes of the buffer the datagram filled.
    pub len: usize,
    /// The sender's address (where a reply goes), if the kernel gave one.
    pub peer: Option<UnixAddr>,
    /// The descriptors passed with it, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The datagram was longer than the buffer (`MSG_TRUNC`); the rest is lost.
    pub truncated: bool,
    /// More control data came than `max_fds` leaves room for (`MSG_CTRUNC`); the passed
    /// descriptors are then not returned.
    pub fds_truncated: bool,
}

/// Receives one datagram into `buf` with up to `max_fds` descriptors (`MSG_CMSG_CLOEXEC`:
/// they stay closed to children until someone `dup2`s them on purpose).
pub fn receive(sock: impl AsFd, buf: &mut [u8], max_fds: usize) -> nix::Result<Received> {
    let fd_bytes = (max_fds * std::mem::size_of::<RawFd>()) as u32;
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    let mut cmsg = vec![0u8; space];
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<UnixAddr>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    // With MSG_CTRUNC nix refuses to walk the control messages (ENOBUFS).
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in our table; nobody else
            // owns them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok(Received {
        len: msg.bytes,
        peer: msg.address,
        fds,
        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
        fds_truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A scratch directory removed on drop, even when an assertion fails.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_listener_is_told_apart_from_a_deaf_socket_and_a_stale_file() {
        let scratch =
            Scratch(std::env::temp_dir().join(format!("osbuild-sys-probe-{}", std::process::id())));
        let dir = &scratch.0;
        std::fs::create_dir_all(dir).unwrap();
        let (reader, deaf, stale) = (dir.join("reader"), dir.join("deaf"), dir.join("stale"));
        for p in [&reader, &deaf, &stale] {
            let _ = std::fs::remove_file(p);
        }
        let listener = UnixDatagram::bind(&reader).unwrap();
        let serving = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            listener.recv(&mut buf).unwrap()
        });
        let wait = Duration::from_secs(5);
        assert_eq!(datagram_listener_reads(&reader, wait), Ok(true));
        assert_eq!(serving.join().unwrap(), 0, "the probe is an empty datagram");

        let _deaf = UnixDatagram::bind(&deaf).unwrap();
        let short = Duration::from_millis(200);
        assert_eq!(datagram_listener_reads(&deaf, short), Ok(false));

        drop(UnixDatagram::bind(&stale).unwrap());
        assert_eq!(
            datagram_listener_reads(&stale, short),
            Err(Errno::ECONNREFUSED)
        );
        assert_eq!(
            datagram_listener_reads(&dir.join("absent"), short),
            Err(Errno::ENOENT)
        );
    }
}
