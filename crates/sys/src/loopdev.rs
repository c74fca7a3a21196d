//! Loop devices: [`LoopDevice`] owns one bound to a backing file and detaches it when dropped.
//!
//! The ioctls and `struct loop_config` come from `<linux/loop.h>` through linux-raw-sys; the
//! calls go through nix's ioctl macros. A device is set up in one `LOOP_CONFIGURE` call
//! (backing file, offset, size limit, sector size, flags), so nobody sees it half configured.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use linux_raw_sys::ioctl::BLKFLSBUF;
use linux_raw_sys::loop_device::{
    loop_config, loop_info64, LOOP_CLR_FD, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, LO_FLAGS_AUTOCLEAR,
    LO_FLAGS_PARTSCAN, LO_FLAGS_READ_ONLY,
};
use nix::errno::Errno;
use nix::sys::stat::{mknodat, Mode, SFlag};

nix::ioctl_none_bad!(ctl_get_free, LOOP_CTL_GET_FREE);
nix::ioctl_write_ptr_bad!(configure, LOOP_CONFIGURE, loop_config);
nix::ioctl_none_bad!(clr_fd, LOOP_CLR_FD);
nix::ioctl_none_bad!(flush_buffers, BLKFLSBUF);

/// The block device major number of loop devices.
const LOOP_MAJOR: u64 = 7;
/// How long a release waits for the kernel to detach a device another process still has open.
const DETACH_WAIT: Duration = Duration::from_secs(5);
/// How often [`LoopDevice::attach`] tries again when another process takes the free device.
const ATTACH_ATTEMPTS: usize = 20;

/// Why [`LoopDevice::attach`] failed.
#[derive(Debug)]
pub enum LoopError {
    /// A step failed: "opening /dev/loop-control", "LOOP_CTL_GET_FREE", "opening
    /// /dev/loopN", "/dev/loopN" (its metadata), "LOOP_CONFIGURE".
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
    /// Open until the device is released (then closed, so that autoclear can detach it).
    file: Option<File>,
    number: u32,
    rdev: u64,
    attached: bool,
}

/// How [`LoopDevice::attach_with`] sets a device up. Autoclear is always on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopConfig {
    /// Where the device starts in the backing file, in bytes.
    pub offset: u64,
    /// How many bytes it shows; 0: up to the end of the file.
    pub sizelimit: u64,
    /// The logical sector size in bytes; 0: the kernel's (512).
    pub sector_size: u32,
    /// Scan the partition table and add `loopNpM` devices.
    pub partscan: bool,
    /// Refuse writes.
    pub read_only: bool,
}

impl LoopDevice {
    /// Takes a free loop device and binds it to `backing` at `offset` for `sizelimit` bytes
    /// (0: to the end), with autoclear.
    pub fn attach(backing: impl AsFd, offset: u64, sizelimit: u64) -> Result<Self, LoopError> {
        let config = LoopConfig {
            offset,
            sizelimit,
            ..LoopConfig::default()
        };
        Self::attach_with(backing, &config)
    }

    /// Takes a free loop device (`LOOP_CTL_GET_FREE`) and configures it on `backing` as
    /// `config` says (`LOOP_CONFIGURE`), trying the next free one when another process took
    /// it meanwhile.
    pub fn attach_with(backing: impl AsFd, config: &LoopConfig) -> Result<Self, LoopError> {
        Self::attach_prepared(backing, config, |_| Ok(())).map(|(device, ())| device)
    }

    /// [`attach_with`](Self::attach_with), calling `prepare` with the device number (`rdev`)
    /// of each candidate before it is configured: what it returns (e.g. a guard that tells
    /// udev to keep off the device) is dropped when the candidate is taken by someone else,
    /// and otherwise returned with the device.
    pub fn attach_prepared<G>(
        backing: impl AsFd,
        config: &LoopConfig,
        mut prepare: impl FnMut(u64) -> io::Result<G>,
    ) -> Result<(Self, G), LoopError> {
        let control = open_rw("/dev/loop-control").map_err(step("opening /dev/loop-control"))?;
        let raw_config = loop_config {
            fd: backing.as_fd().as_raw_fd() as u32,
            block_size: config.sector_size,
            info: info64(config),
            __reserved: [0; 8],
        };
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
            let prepared = prepare(rdev).map_err(step(format!("preparing {path}")))?;
            // SAFETY: LOOP_CONFIGURE reads the loop_config we pass (which lives across the
            // call) and the backing descriptor it names, borrowed for the whole call.
            match unsafe { configure(file.as_raw_fd(), &raw_config) } {
                Ok(_) => {}
                Err(Errno::EBUSY) => continue, // someone else took it meanwhile
                Err(e) => return Err(errno_step("LOOP_CONFIGURE")(e)),
            }
            let device = LoopDevice {
                file: Some(file),
                number: n as u32,
                rdev,
                attached: true,
            };
            return Ok((device, prepared));
        }
        Err(LoopError::NoneFree)
    }

    /// N of `/dev/loopN`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The device number (`st_rdev`) of `/dev/loopN`.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    /// Creates the block device node `name` (mode 0600) for this device in the directory `dir`.
    pub fn make_node(&self, dir: impl AsFd, name: &str) -> nix::Result<()> {
        make_block_node(dir, name, self.rdev)
    }

    /// Takes an exclusive `flock` on the device (as udev and systemd-repart honour), held
    /// until the device is dropped; `WouldBlock` when someone else holds one.
    pub fn lock(&self) -> io::Result<()> {
        self.file().try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::ErrorKind::WouldBlock.into(),
            std::fs::TryLockError::Error(e) => e,
        })
    }

    /// The partitions the kernel found (with `partscan`): `(name, device number)` of each
    /// `loopNpM`, from `/sys/block/loopN`, sorted by name.
    pub fn partitions(&self) -> io::Result<Vec<(String, u64)>> {
        let name = format!("loop{}", self.number);
        let sys = std::path::Path::new("/sys/block").join(&name);
        let mut parts = Vec::new();
        for entry in std::fs::read_dir(&sys)? {
            let entry = entry?;
            let part = entry.file_name().to_string_lossy().into_owned();
            if !part.strip_prefix(&name).is_some_and(|p| p.starts_with('p')) {
                continue;
            }
            let dev = std::fs::read_to_string(entry.path().join("dev"))?;
            let rdev = parse_dev(dev.trim()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{part}/dev: {dev:?}"))
            })?;
            parts.push((part, rdev));
        }
        parts.sort();
        Ok(parts)
    }

    /// Detaches the device now. Autoclear would do it on the last close, but a device still
    /// open elsewhere must not wait: `LOOP_CLR_FD` detaches now or, if busy, as soon as the
    /// last user is gone; we retry a busy device for a few seconds.
    pub fn detach(mut self) -> Result<(), DetachError> {
        self.release()
    }

    fn file(&self) -> &File {
        self.file
            .as_ref()
            .expect("the device is open until released")
    }

    /// Detaches the device, and returns once it is (after our descriptor is closed, the kernel
    /// detaches it when no other process has it open either: a moment later when udev or a
    /// tool holds it, as `LOOP_CLR_FD` of a device in use only marks it for autoclear), so
    /// that a released device is a free one. Waits at most [`DETACH_WAIT`] for that.
    fn release(&mut self) -> Result<(), DetachError> {
        if !std::mem::take(&mut self.attached) {
            return Ok(());
        }
        let fd = self.file().as_raw_fd();
        // Written pages of the device's buffer cache could be lost when the backing file
        // goes (osbuild saw it with 5.13); write them first.
        // SAFETY: BLKFLSBUF on the block device descriptor we own takes no argument.
        let _ = unsafe { flush_buffers(fd) };
        let mut cleared = false;
        for _ in 0..50 {
            // SAFETY: LOOP_CLR_FD on the loop device descriptor we own takes no argument.
            match unsafe { clr_fd(fd) } {
                // ENXIO: already detached (autoclear).
                Ok(_) | Err(Errno::ENXIO) => {
                    cleared = true;
                    break;
                }
                Err(Errno::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(DetachError::Failed(e)),
            }
        }
        drop(self.file.take());
        if !cleared {
            return Err(DetachError::StillBusy);
        }
        // `/sys/block/loopN/loop` exists while the device is bound to a file.
        let bound = format!("/sys/block/loop{}/loop", self.number);
        let deadline = std::time::Instant::now() + DETACH_WAIT;
        while std::path::Path::new(&bound).exists() {
            if std::time::Instant::now() >= deadline {
                return Err(DetachError::StillBusy);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Callers that must hear of a failure call `detach`; here nothing is left to try.
        let _ = self.release();
    }
}

/// The `struct loop_info64` of `config`, with autoclear.
fn info64(config: &LoopConfig) -> loop_info64 {
    let mut flags = LO_FLAGS_AUTOCLEAR as u32;
    if config.partscan {
        flags |= LO_FLAGS_PARTSCAN as u32;
    }
    if config.read_only {
        flags |= LO_FLAGS_READ_ONLY as u32;
    }
    loop_info64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: config.offset,
        lo_sizelimit: config.sizelimit,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

/// Creates the block device node `name` (mode 0600) with device number `rdev` in `dir`.
pub fn make_block_node(dir: impl AsFd, name: &str, rdev: u64) -> nix::Result<()> {
    let mode = Mode::from_bits_truncate(0o600);
    mknodat(dir, name, SFlag::S_IFBLK, mode, rdev)
}

/// `MAJOR:MINOR` as sysfs writes it, as a device number.
fn parse_dev(s: &str) -> Option<u64> {
    let (major, minor) = s.split_once(':')?;
    Some(nix::sys::stat::makedev(
        major.parse().ok()?,
        minor.parse().ok()?,
    ))
}

fn open_rw(path: &str) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_device_numbers_parse() {
        assert_eq!(parse_dev("259:3"), Some(nix::sys::stat::makedev(259, 3)));
        assert_eq!(parse_dev("7"), None);
        assert_eq!(parse_dev("7:x"), None);
    }

    #[test]
    fn flags_follow_the_config() {
        let plain = info64(&LoopConfig::default());
        assert_eq!(plain.lo_flags, LO_FLAGS_AUTOCLEAR as u32);
        let all = info64(&LoopConfig {
            offset: 1024,
            sizelimit: 2048,
            sector_size: 4096,
            partscan: true,
            read_only: true,
        });
        let want = LO_FLAGS_AUTOCLEAR as u32 | LO_FLAGS_PARTSCAN as u32 | LO_FLAGS_READ_ONLY as u32;
        assert_eq!(
            (all.lo_flags, all.lo_offset, all.lo_sizelimit),
            (want, 1024, 2048)
        );
    }
}
