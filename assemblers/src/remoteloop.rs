//! The client side of osbuild's `remoteloop` API: asks the engine, outside the sandbox, for a
//! loop device backed by a file of ours, and gets its node in our `/dev`.
//!
//! v10's protocol: an AF_UNIX datagram to `/run/osbuild/api/remoteloop` carrying
//! `{"fd": 0, "dir_fd": 1, "offset"?: N, "sizelimit"?: N}` and two descriptors by SCM_RIGHTS
//! (the backing file, opened read-write, and our `/dev`); the reply is `{"devname": "loopN"}`
//! (or `{"error": "..."}`). The engine keeps the device until the assembler ends; the node is
//! ours and [`LoopDevice`] unlinks it when dropped.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use osbuild_protocol::paths;
use osbuild_protocol::remoteloop::{Reply, Request};

use crate::AssemblerError;

/// Where the engine serves the API inside the sandbox.
pub const SOCKET: &str = paths::REMOTELOOP_API;

/// A loop device node the engine made for us; the node is removed on drop.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The device name out of a reply, or the engine's error.
fn devname(reply: &[u8]) -> Result<String, AssemblerError> {
    let bad = |why: String| AssemblerError::Tool(format!("remoteloop: {why}"));
    match Reply::parse(reply).map_err(|e| bad(e.to_string()))? {
        Reply::Devname(name) => Ok(name),
        Reply::Error(err) => Err(bad(format!(
            "the engine could not make a loop device: {err}"
        ))),
    }
}

fn os_err(what: &str) -> AssemblerError {
    AssemblerError::Tool(format!(
        "remoteloop: {what}: {}",
        std::io::Error::last_os_error()
    ))
}

/// Asks the engine for a loop device over `file` from byte `offset`, `sizelimit` bytes long
/// (0: to the end). Fails with a clear message when no engine serves the API (the assembler
/// was run outside osbuild).
pub fn device(file: &Path, offset: u64, sizelimit: u64) -> Result<LoopDevice, AssemblerError> {
    if !Path::new(SOCKET).exists() {
        return Err(AssemblerError::Tool(format!(
            "a loop device is needed but {SOCKET} does not exist: run this assembler through osbuild"
        )));
    }
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| AssemblerError::Tool(format!("opening {}: {e}", file.display())))?;
    let dev = File::open("/dev").map_err(|e| AssemblerError::Tool(format!("opening /dev: {e}")))?;
    let body = Request::new(offset, sizelimit).to_wire();
    let reply = exchange(body.as_bytes(), &[backing.as_raw_fd(), dev.as_raw_fd()])?;
    let name = devname(&reply)?;
    Ok(LoopDevice {
        path: Path::new("/dev").join(name),
    })
}

/// Sends one datagram with `fds` from an autobound socket and waits for the reply.
fn exchange(body: &[u8], fds: &[i32]) -> Result<Vec<u8>, AssemblerError> {
    // SAFETY: socket/bind/sendmsg/recv on a descriptor we own, with buffers that outlive the
    // calls and a control buffer sized with CMSG_SPACE for exactly `fds`.
    unsafe {
        let sock = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(os_err("socket"));
        }
        let sock = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(sock);
        let s = sock.as_raw_fd();
        // Autobind to an abstract address so the engine can reply.
        let mut local: libc::sockaddr_un = std::mem::zeroed();
        local.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if libc::bind(
            s,
            &local as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        ) != 0
        {
            return Err(os_err("binding the client socket"));
        }
        let tv = libc::timeval {
            tv_sec: 60,
            tv_usec: 0,
        };
        libc::setsockopt(
            s,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut peer: libc::sockaddr_un = std::mem::zeroed();
        peer.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let path = CString::new(SOCKET).map_err(|_| os_err("socket path"))?;
        for (d, c) in peer.sun_path.iter_mut().zip(path.as_bytes_with_nul()) {
            *d = *c as libc::c_char;
        }
        let mut iov = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
        let fd_bytes = std::mem::size_of_val(fds) as u32;
        let mut control = vec![0u8; libc::CMSG_SPACE(fd_bytes) as usize];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut peer as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr() as *const u8,
            libc::CMSG_DATA(cmsg),
            fd_bytes as usize,
        );
        if libc::sendmsg(s, &msg, 0) < 0 {
            return Err(os_err("sending the request"));
        }
        let mut buf = vec![0u8; 4096];
        let n = libc::recv(s, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
        if n < 0 {
            return Err(os_err("waiting for the reply"));
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_table() {
        let cases: [(&str, Result<&str, &str>); 5] = [
            (r#"{"devname": "loop7"}"#, Ok("loop7")),
            (r#"{"devname": "../sda"}"#, Err("unexpected device name")),
            (r#"{"devname": "loop"}"#, Err("unexpected device name")),
            (
                r#"{"error": "no free loop"}"#,
                Err("could not make a loop device: no free loop"),
            ),
            ("nope", Err("reply is not JSON")),
        ];
        for (reply, want) in cases {
            match (devname(reply.as_bytes()), want) {
                (Ok(n), Ok(w)) => assert_eq!(n, w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, _) => panic!("{reply}: {got:?}"),
            }
        }
    }
}
