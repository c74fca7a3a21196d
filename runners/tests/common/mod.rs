//! A minimal host side of the `setup-stdio` protocol for tests: a datagram socket bound in a
//! temporary directory that answers one request with the descriptors it was given.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::thread::JoinHandle;

/// What the server received (not every test reads it).
#[allow(dead_code)]
pub struct Request {
    pub payload: String,
    /// Whether the client's address was an autobound (abstract) one we could reply to.
    pub addr_len: usize,
}

/// Binds `path` and, in a thread, answers one request with `reply` and `fds`.
pub fn serve_once(path: &Path, reply: &str, fds: Vec<RawFd>) -> JoinHandle<Request> {
    let sock = UnixDatagram::bind(path).expect("bind test API socket");
    let reply = reply.to_owned();
    std::thread::spawn(move || {
        let fd = sock.as_raw_fd();
        let mut buf = [0u8; 1024];
        // SAFETY (test): zeroed sockaddr_un is valid; recvfrom fills it.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut addr as *mut libc::sockaddr_un).cast(),
                &mut len,
            )
        };
        assert!(n >= 0, "recvfrom: {}", std::io::Error::last_os_error());
        let request = Request {
            payload: String::from_utf8_lossy(&buf[..n as usize]).into_owned(),
            addr_len: len as usize,
        };
        send_fds(fd, &addr, len, reply.as_bytes(), &fds);
        request
    })
}

fn send_fds(fd: RawFd, addr: &libc::sockaddr_un, len: libc::socklen_t, data: &[u8], fds: &[RawFd]) {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut _,
        iov_len: data.len(),
    };
    let payload = std::mem::size_of_val(fds) as u32;
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr as *const _ as *mut _;
    msg.msg_namelen = len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
    }
    let rc = unsafe { libc::sendmsg(fd, &msg, 0) };
    assert!(rc >= 0, "sendmsg: {}", std::io::Error::last_os_error());
}

/// A pipe as (read end, write end) files.
pub fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}
