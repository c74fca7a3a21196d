//! The client side of osbuild v10's sources API: a stage asks the host for what a source
//! knows (`{"source": NAME, "checksums": [...]}` as one datagram to
//! `/run/osbuild/api/sources`) and gets the source's JSON reply, or `{"error": ...}`.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use osbuild_protocol::paths;
use osbuild_protocol::sources_api::{Reply, Request, MAX_DATAGRAM};
use serde_json::Value;

/// Where the engine serves the API inside the build root.
pub const SOCKET: &str = paths::SOURCES_API;

/// Asks `source` about `checksums` through the API at `socket`. The error says what went
/// wrong (the source's own error, or why the API could not be reached), for the caller to
/// put in context.
pub fn get(socket: &Path, source: &str, checksums: &[&str]) -> Result<Value, String> {
    let fail =
        |what: &str, e: std::io::Error| format!("sources API at {}: {what}: {e}", socket.display());
    let sock = UnixDatagram::unbound().map_err(|e| fail("cannot create a socket", e))?;
    // As v10's client: with SO_PASSCRED the kernel autobinds the socket to an abstract
    // address on connect, which is where the server sends its reply.
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to an int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(fail(
            "cannot set SO_PASSCRED",
            std::io::Error::last_os_error(),
        ));
    }
    sock.connect(socket)
        .map_err(|e| fail("cannot connect", e))?;
    let request = Request {
        source: source.to_owned(),
        checksums: checksums.iter().map(|c| (*c).to_owned()).collect(),
    };
    sock.send(request.to_wire().as_bytes())
        .map_err(|e| fail("cannot send the request", e))?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = sock.recv(&mut buf).map_err(|e| fail("no reply", e))?;
    match Reply::parse(&buf[..n]) {
        Ok(Reply::Ok(reply)) => Ok(reply),
        Ok(Reply::Error(message)) => Err(message),
        Err(e) => Err(format!("{source} sent a reply that is not JSON: {e}")),
    }
}
