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

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendto, ControlMessageOwned, MsgFlags, UnixAddr};

use osbuild_protocol::paths;
use osbuild_protocol::remoteloop::{Reply, Request};

use super::api::SocketThread;
use super::{BuildRootError, NetNs};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// Serves one sandbox's `remoteloop` endpoint until dropped; then detaches every device.
pub struct LoopServer {
    socket: Option<SocketThread>,
    devices: Arc<Mutex<Vec<File>>>,
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
            detach(&dev);
        }
    }
}

/// Detaches a loop device. Autoclear would do it on the last close, but a device still open
/// elsewhere (a mount that outlived the sandbox cannot exist: its namespace is gone) must not
/// wait: `LOOP_CLR_FD` detaches now or, if busy, as soon as the last user is gone.
fn detach(dev: &File) {
    for _ in 0..50 {
        // SAFETY: LOOP_CLR_FD on a loop device descriptor we own takes no argument.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) };
        let err = std::io::Error::last_os_error().raw_os_error();
        // ENXIO: already detached (autoclear).
        if r == 0 || err == Some(libc::ENXIO) {
            return;
        }
        if err != Some(libc::EBUSY) {
            tracing::warn!("remoteloop: detaching a loop device: errno {err:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::warn!("remoteloop: a loop device stayed busy; autoclear detaches it when released");
}

fn serve(sock: OwnedFd, stop: &AtomicBool, devices: &Mutex<Vec<File>>) {
    while !stop.load(Ordering::SeqCst) {
        let mut buf = [0u8; 1024];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (len, peer, fds) = match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds: Vec<OwnedFd> = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                (msg.bytes, msg.address, fds)
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
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
        let body = &buf[..len];
        let reply = match Request::parse(body, fds.len())
            .map_err(|e| e.to_string())
            .and_then(|req| make_device(&req, &fds, devices))
        {
            Ok(name) => Reply::Devname(name),
            Err(e) => {
                tracing::warn!("remoteloop: {e}");
                Reply::Error(e)
            }
        };
        match peer {
            Some(peer) => {
                let text = reply.to_wire();
                if let Err(e) = sendto(sock.as_raw_fd(), text.as_bytes(), &peer, MsgFlags::empty())
                {
                    tracing::warn!("remoteloop: replying: {e}");
                }
            }
            None => tracing::warn!("remoteloop: request from an unbound socket"),
        }
    }
}

fn errno_msg(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Makes the loop device and its node; returns `loopN`.
fn make_device(
    req: &Request,
    fds: &[OwnedFd],
    devices: &Mutex<Vec<File>>,
) -> Result<String, String> {
    let backing = &fds[req.fd];
    let dir = &fds[req.dir_fd];
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("opening /dev/loop-control: {e}"))?;
    for _attempt in 0..20 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(errno_msg("LOOP_CTL_GET_FREE"));
        }
        let path = format!("/dev/loop{n}");
        let dev = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(d) => d,
            Err(e) => return Err(format!("opening {path}: {e}")),
        };
        let meta = dev.metadata().map_err(|e| format!("{path}: {e}"))?;
        let rdev = meta.rdev();
        if !meta.file_type().is_block_device() || libc::major(rdev) as u64 != LOOP_MAJOR {
            return Err(format!("{path} is not a loop block device"));
        }
        // SAFETY: LOOP_SET_FD takes the backing descriptor, which we hold.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) };
        if r != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY) {
                continue; // someone else took it meanwhile
            }
            return Err(errno_msg("LOOP_SET_FD"));
        }
        // SAFETY: an all-zero loop_info64 is valid; we set three fields.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        info.lo_offset = req.offset;
        info.lo_sizelimit = req.sizelimit;
        info.lo_flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_SET_STATUS64 reads a loop_info64 that lives across the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) };
        if r != 0 {
            let msg = errno_msg("LOOP_SET_STATUS64");
            detach(&dev);
            return Err(msg);
        }
        let name = format!("loop{n}");
        let cname = std::ffi::CString::new(name.clone()).map_err(|e| e.to_string())?;
        // SAFETY: mknodat with a directory descriptor we hold and a NUL-terminated name.
        let r =
            unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), libc::S_IFBLK | 0o600, rdev) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            let msg = errno_msg(&format!("creating the node {name}"));
            detach(&dev);
            return Err(msg);
        }
        match devices.lock() {
            Ok(mut d) => d.push(dev),
            Err(p) => p.into_inner().push(dev),
        }
        return Ok(name);
    }
    Err("no free loop device (all were taken while trying)".into())
}
