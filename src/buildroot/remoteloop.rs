//! The `remoteloop` API (`/run/osbuild/api/remoteloop`): loop devices for assemblers.
//!
//! osbuild v10's protocol: an AF_UNIX datagram `{"fd": 0, "dir_fd": 1, "offset"?: N,
//! "sizelimit"?: N}` with two descriptors by SCM_RIGHTS, the backing file (read-write) and a
//! directory (the sandbox's `/dev`). The engine, outside the sandbox, takes a free loop device
//! (`LOOP_CTL_GET_FREE`), binds it to the file (`LOOP_SET_FD`), sets offset, size limit and
//! autoclear (`LOOP_SET_STATUS64`), creates the node `loopN` in the directory and replies
//! `{"devname": "loopN"}` (or `{"error": "..."}`).
//!
//! Like the `osbuild` socket the server lives in the sandbox's network namespace, where the
//! client's autobound address is. [`LoopServer`] owns every device it made: dropping it (when
//! the assembler has ended, failed or was cancelled) detaches them all.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osbuild_protocol::paths;
use osbuild_protocol::remoteloop::{Reply, Request};
use osbuild_sys::loopdev::LoopDevice;
use osbuild_sys::{socket, Errno};

use super::api::SocketThread;
use super::{BuildRootError, NetNs};

/// Serves one sandbox's `remoteloop` endpoint until dropped; then detaches every device.
pub struct LoopServer {
    socket: Option<SocketThread>,
    devices: Arc<Mutex<Vec<LoopDevice>>>,
}

impl LoopServer {
    /// Binds `<dir>/remoteloop` (in `netns` if given) and serves it on a thread.
    pub fn start(dir: &Path, netns: Option<&NetNs>) -> Result<Self, BuildRootError> {
        let devices = Arc::new(Mutex::new(Vec::new()));
        let made = devices.clone();
        let socket = SocketThread::spawn(
            "osbuild-remoteloop",
            dir.join(paths::REMOTELOOP_SOCKET),
            netns,
            move |sock, stop| serve(sock, stop, &made),
        )?;
        Ok(Self {
            socket: Some(socket),
            devices,
        })
    }

    /// How many loop devices this server has made so far.
    pub fn device_count(&self) -> usize {
        self.devices.lock().map(|d| d.len()).unwrap_or(0)
    }
}

impl Drop for LoopServer {
    fn drop(&mut self) {
        // Stop serving first, so no device is made while the others are detached.
        drop(self.socket.take());
        let devices = match self.devices.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        for dev in devices {
            if let Err(e) = dev.detach() {
                tracing::warn!("remoteloop: {e}");
            }
        }
    }
}

fn serve(sock: OwnedFd, stop: &AtomicBool, devices: &Mutex<Vec<LoopDevice>>) {
    while !stop.load(Ordering::SeqCst) {
        let mut buf = [0u8; 1024];
        let msg = match socket::receive(&sock, &mut buf, 4) {
            Ok(msg) => msg,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                if !stop.load(Ordering::SeqCst) {
                    tracing::warn!("remoteloop socket: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let body = &buf[..msg.len];
        let reply = match Request::parse(body, msg.fds.len())
            .map_err(|e| e.to_string())
            .and_then(|req| make_device(&req, &msg.fds, devices))
        {
            Ok(name) => Reply::Devname(name),
            Err(e) => {
                tracing::warn!("remoteloop: {e}");
                Reply::Error(e)
            }
        };
        match msg.peer {
            Some(peer) => {
                let text = reply.to_wire();
                if let Err(e) = socket::send(&sock, text.as_bytes(), &[], Some(&peer)) {
                    tracing::warn!("remoteloop: replying: {e}");
                }
            }
            None => tracing::warn!("remoteloop: request from an unbound socket"),
        }
    }
}

/// The most loop devices one assembler may hold: a disk and its partitions need a few; the
/// host's loop devices are shared by every build and every other user of the machine.
pub const MAX_LOOP_DEVICES: usize = 16;

/// Makes the loop device and its node; returns `loopN`.
fn make_device(
    req: &Request,
    fds: &[OwnedFd],
    devices: &Mutex<Vec<LoopDevice>>,
) -> Result<String, String> {
    let held = devices.lock().map(|d| d.len()).unwrap_or(MAX_LOOP_DEVICES);
    if held >= MAX_LOOP_DEVICES {
        return Err(format!(
            "this assembler already has {held} loop devices, the most one may have"
        ));
    }
    let dev =
        LoopDevice::attach(&fds[req.fd], req.offset, req.sizelimit).map_err(|e| e.to_string())?;
    let name = format!("loop{}", dev.number());
    match dev.make_node(&fds[req.dir_fd], &name) {
        Ok(()) | Err(Errno::EEXIST) => {}
        // Dropping `dev` detaches it.
        Err(e) => {
            return Err(format!(
                "creating the node {name}: {}",
                std::io::Error::from(e)
            ))
        }
    }
    match devices.lock() {
        Ok(mut d) => d.push(dev),
        Err(p) => p.into_inner().push(dev),
    }
    Ok(name)
}
