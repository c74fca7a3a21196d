//! The client side of osbuild v10's sources API: a stage asks the host for what a source
//! knows (`{"source": NAME, "checksums": [...]}` as one datagram to
//! `/run/osbuild/api/sources`) and gets the source's JSON reply, or `{"error": ...}`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use osbuild_protocol::paths;
use osbuild_protocol::sources_api::{Reply, Request, MAX_DATAGRAM};
use osbuild_sys::socket::{Step, UnixAddr};
use serde_json::Value;

/// Where the engine serves the API inside the build root.
pub const SOCKET: &str = paths::SOURCES_API;

/// Asks `source` about `checksums` through the API at `socket`. The error says what went
/// wrong (the source's own error, or why the API could not be reached), for the caller to
/// put in context.
pub fn get(socket: &Path, source: &str, checksums: &[&str]) -> Result<Value, String> {
    let fail =
        |what: &str, e: std::io::Error| format!("sources API at {}: {what}: {e}", socket.display());
    let server = UnixAddr::new(socket).map_err(|e| fail("cannot connect", e.into()))?;
    // As v10's client: with SO_PASSCRED the kernel autobinds the socket to an abstract
    // address on connect, which is where the server sends its reply.
    let sock = osbuild_sys::socket::connect_autobound(&server, None).map_err(|f| {
        let what = match f.step {
            Step::Socket => "cannot create a socket",
            Step::PassCred => "cannot set SO_PASSCRED",
            _ => "cannot connect",
        };
        fail(what, f.errno.into())
    })?;
    let sock = UnixDatagram::from(sock);
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
