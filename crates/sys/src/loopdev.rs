//! Loop devices: [`LoopDevice`] owns one bound to a backing file and detaches it when dropped.
//!
//! The ioctls and `struct loop_info64` come from `<linux/loop.h>` through linux-raw-sys; the
//! calls go through nix's ioctl macros.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use linux_raw_sys::loop_device::{
    loop_info64, LOOP_CLR_FD, LOOP_CTL_GET_FREE, LOOP_SET_FD, LOOP_SET_STATUS64, LO_FLAGS_AUTOCLEAR,
};
use nix::errno::Errno;
use nix::sys::stat::{mknodat, Mode, SFlag};

nix::ioctl_none_bad!(ctl_get_free, LOOP_CTL_GET_FREE);
nix::ioctl_write_int_bad!(set_fd, LOOP_SET_FD);
nix::ioctl_write_ptr_bad!(set_status64, LOOP_SET_STATUS64, loop_info64);
nix::ioctl_none_bad!(clr_fd, LOOP_CLR_FD);

/// The block device major number of loop devices.
const LOOP_MAJOR: u64 = 7;
/// How often [`LoopDevice::attach`] tries again when another process takes the free device.
const ATTACH_ATTEMPTS: usize = 20;

/// Why [`LoopDevice::attach`] failed.
#[derive(Debug)]
pub enum LoopError {
    /// A step failed: "opening /dev/loop-control", "LOOP_CTL_GET_FREE", "opening
    /// /dev/loopN", "/dev/loopN" (its metadata), "LOOP_SET_FD", "LOOP_SET_STATUS64".
    Step { step: String, source: io::Error },
    /// The free device the kernel named is no loop block device.
    NotALoopDevice(String),
    /// Every free device was taken by someone else before we could bind it.
    NoneFree,
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::Step { step, source } => write!(f, "{step}: {source}"),
            LoopError::NotALoopDevice(path) => write!(f, "{path} is not a loop block device"),
            LoopError::NoneFree => f.write_str("no free loop device (all were taken while trying)"),
        }
    }
}

impl std::error::Error for LoopError {}

fn step(step: impl Into<String>) -> impl FnOnce(io::Error) -> LoopError {
    move |source| LoopError::Step {
        step: step.into(),
        source,
    }
}

fn errno_step(name: &str) -> impl FnOnce(Errno) -> LoopError + '_ {
    move |e| step(name)(e.into())
}

/// How [`LoopDevice::detach`] ended when the device did not let go at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachError {
    /// `LOOP_CLR_FD` failed with this error.
    Failed(Errno),
    /// Still busy after the retries; autoclear detaches it when its last user closes it.
    StillBusy,
}

impl fmt::Display for DetachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetachError::Failed(e) => write!(f, "detaching a loop device: {e}"),
            DetachError::StillBusy => {
                f.write_str("a loop device stayed busy; autoclear detaches it when released")
            }
        }
    }
}

/// A loop device bound to a backing file (with autoclear), detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    number: u32,
    rdev: u64,
    attached: bool,
}

impl LoopDevice {
    /// Takes a free loop device (`LOOP_CTL_GET_FREE`), binds it to `backing` (`LOOP_SET_FD`)
    /// and sets `offset`, `sizelimit` (0: to the end) and autoclear (`LOOP_SET_STATUS64`).
    pub fn attach(backing: impl AsFd, offset: u64, sizelimit: u64) -> Result<Self, LoopError> {
        let control = open_rw("/dev/loop-control").map_err(step("opening /dev/loop-control"))?;
        for _attempt in 0..ATTACH_ATTEMPTS {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
            let n = unsafe { ctl_get_free(control.as_raw_fd()) }
                .map_err(errno_step("LOOP_CTL_GET_FREE"))?;
            let path = format!("/dev/loop{n}");
            let file = open_rw(&path).map_err(step(format!("opening {path}")))?;
            let meta = file.metadata().map_err(step(path.clone()))?;
            let rdev = meta.rdev();
            if !meta.file_type().is_block_device() || nix::sys::stat::major(rdev) != LOOP_MAJOR {
                return Err(LoopError::NotALoopDevice(path));
            }
            // SAFETY: LOOP_SET_FD takes the backing descriptor, which lives across the call.
            match unsafe { set_fd(file.as_raw_fd(), backing.as_fd().as_raw_fd()) } {
                Ok(_) => {}
                Err(Errno::EBUSY) => continue, // someone else took it meanwhile
                Err(e) => return Err(errno_step("LOOP_SET_FD")(e)),
            }
            // Bound: from here on dropping `device` detaches it.
            let device = LoopDevice {
                file,
                number: n as u32,
                rdev,
                attached: true,
            };
            device.set_status(offset, sizelimit)?;
            return Ok(device);
        }
        Err(LoopError::NoneFree)
    }

    fn set_status(&self, offset: u64, sizelimit: u64) -> Result<(), LoopError> {
        let info = loop_info64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: offset,
            lo_sizelimit: sizelimit,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_AUTOCLEAR as u32,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        // SAFETY: LOOP_SET_STATUS64 reads the loop_info64 we pass, which lives across the call.
        unsafe { set_status64(self.file.as_raw_fd(), &info) }
            .map_err(errno_step("LOOP_SET_STATUS64"))?;
        Ok(())
    }

    /// N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Creates the block device node `name` (mode 0600) for this device in the directory `dir`.
    pub fn make_node(&self, dir: impl AsFd, name: &str) -> nix::Result<()> {
        let mode = Mode::from_bits_truncate(0o600);
        mknodat(dir, name, SFlag::S_IFBLK, mode, self.rdev)
    }

    /// Detaches the device now. Autoclear would do it on the last close, but a device still
    /// open elsewhere must not wait: `LOOP_CLR_FD` detaches now or, if busy, as soon as the
    /// last user is gone; we retry a busy device for a few seconds.
    pub fn detach(mut self) -> Result<(), DetachError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), DetachError> {
        if !std::mem::take(&mut self.attached) {
            return Ok(());
        }
        for _ in 0..50 {
            // SAFETY: LOOP_CLR_FD on the loop device descriptor we own takes no argument.
            match unsafe { clr_fd(self.file.as_raw_fd()) } {
                // ENXIO: already detached (autoclear).
                Ok(_) | Err(Errno::ENXIO) => return Ok(()),
                Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(DetachError::Failed(e)),
            }
        }
        Err(DetachError::StillBusy)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Callers that must hear of a failure call `detach`; here nothing is left to try.
        let _ = self.release();
    }
}

fn open_rw(path: &str) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}
