//! The client side of osbuild's `remoteloop` API: asks the engine, outside the sandbox, for a
//! loop device backed by a file of ours, and gets its node in our `/dev`.
//!
//! v10's protocol: an AF_UNIX datagram to `/run/osbuild/api/remoteloop` carrying
//! `{"fd": 0, "dir_fd": 1, "offset"?: N, "sizelimit"?: N}` and two descriptors by SCM_RIGHTS
//! (the backing file, opened read-write, and our `/dev`); the reply is `{"devname": "loopN"}`
//! (or `{"error": "..."}`). The engine keeps the device until the assembler ends; the node is
//! ours and [`LoopDevice`] unlinks it when dropped.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use osbuild_protocol::paths;
use osbuild_protocol::remoteloop::{Reply, Request};
use osbuild_sys::socket::{self, UnixAddr};
use osbuild_sys::Errno;

use crate::AssemblerError;

/// Where the engine serves the API inside the sandbox.
pub const SOCKET: &str = paths::REMOTELOOP_API;

/// How long to wait for the engine's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

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
    let reply = exchange(body.as_bytes(), &[backing.as_fd(), dev.as_fd()])?;
    let name = devname(&reply)?;
    Ok(LoopDevice {
        path: Path::new("/dev").join(name),
    })
}

/// Sends one datagram with `fds` from an autobound socket and waits for the reply.
fn exchange(body: &[u8], fds: &[BorrowedFd<'_>]) -> Result<Vec<u8>, AssemblerError> {
    let fail = |what: &str, e: Errno| {
        AssemblerError::Tool(format!("remoteloop: {what}: {}", std::io::Error::from(e)))
    };
    let server = UnixAddr::new(SOCKET).map_err(|e| fail("socket path", e))?;
    // Autobound to an abstract address so the engine can reply.
    let sock = socket::connect_autobound(&server, Some(REPLY_TIMEOUT))
        .map_err(|f| fail(f.step.name(), f.errno))?;
    socket::send(&sock, body, fds, None).map_err(|e| fail("sending the request", e))?;
    let mut buf = vec![0u8; 4096];
    let got = socket::receive(&sock, &mut buf, 0).map_err(|e| fail("waiting for the reply", e))?;
    buf.truncate(got.len);
    Ok(buf)
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
