//! Devices: `org.osbuild.loopback`, a loop device on a file of the tree being built.
//!
//! As HEAD's loopback service does: the file `tree/filename` is bound (autoclear) at
//! `start * sector-size` for `size * sector-size` bytes (to the end without `size`), with the
//! sector size, `partscan` and `read-only` asked for; with `lock` the loop device is flocked
//! (exclusively, as udev honours). Its node (and with `partscan` its partitions' nodes) is made
//! in the build root's private `/dev` under the host's name (`loop3`, `loop3p1`). Unlike HEAD,
//! the filename must be relative and stay inside the tree (no `..`, no symlink out).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use osbuild_sys::loopdev::{make_block_node, LoopConfig, LoopDevice};

use super::udev::{UdevInhibitor, LOCK_DIR};
use super::{paths, HostError};
use crate::json::{Map, Value};

/// The loopback device module.
pub const LOOPBACK: &str = "org.osbuild.loopback";
/// The device modules this engine provides.
pub const TYPES: &[&str] = &[LOOPBACK];

/// An open device: its loop device, the backing file, and the nodes made for it. Dropping it
/// removes the nodes, detaches the device (flushing its buffers first) and syncs the file.
#[derive(Debug)]
pub struct OpenDevice {
    node: String,
    rdev: u64,
    /// Where the nodes were made (the build root's `/dev` on the host).
    dev_dir: PathBuf,
    /// The nodes this device made in `dev_dir`: its own, then its partitions'.
    nodes: Vec<String>,
    loop_device: Option<LoopDevice>,
    backing: Option<File>,
    /// Keeps udev off the device; a field, so it goes after `drop` has detached the device.
    _inhibitor: Option<UdevInhibitor>,
}

/// Opens the device `module` with its `options` on a file of `tree`, its nodes in `dev_dir`.
/// `parent` is the device it sits on (a loopback device has none).
pub fn open_device(
    module: &str,
    options: &Value,
    tree: &Path,
    dev_dir: &Path,
    parent: Option<&OpenDevice>,
) -> Result<OpenDevice, HostError> {
    match module {
        LOOPBACK => loopback(options, tree, dev_dir, parent),
        _ => Err(HostError::UnknownDevice(module.to_owned())),
    }
}

/// A loopback device's options (HEAD's schema), checked.
#[derive(Debug, PartialEq, Eq)]
struct Loopback {
    filename: PathBuf,
    lock: bool,
    config: LoopConfig,
}

impl Loopback {
    fn parse(options: &Value) -> Result<Self, HostError> {
        let bad = |message: String| HostError::options(LOOPBACK, message);
        let filename = options
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"filename\" (a string) is required".to_owned()))?;
        let filename = paths::relative(LOOPBACK, "filename", filename, false)?;
        if filename.as_os_str().is_empty() {
            return Err(bad("\"filename\" names no file".to_owned()));
        }
        let sector_size = whole(options, "sector-size")?.unwrap_or(512);
        let start = whole(options, "start")?.unwrap_or(0);
        let size = whole(options, "size")?;
        let bytes = |key: &str, sectors: u64| {
            sectors
                .checked_mul(sector_size)
                .ok_or_else(|| bad(format!("\"{key}\" * \"sector-size\" is too large")))
        };
        let config = LoopConfig {
            offset: bytes("start", start)?,
            sizelimit: size.map(|s| bytes("size", s)).transpose()?.unwrap_or(0),
            sector_size: u32::try_from(sector_size)
                .map_err(|_| bad(format!("\"sector-size\" {sector_size} is too large")))?,
            partscan: super::truthy(options, "partscan"),
            read_only: super::truthy(options, "read-only"),
        };
        Ok(Self {
            filename,
            lock: super::truthy(options, "lock"),
            config,
        })
    }
}

/// The whole number `options[key]` (≥ 0), if given.
fn whole(options: &Value, key: &str) -> Result<Option<u64>, HostError> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_int()
            .and_then(|i| i.as_u64())
            .map(Some)
            .ok_or_else(|| {
                HostError::options(
                    LOOPBACK,
                    format!("\"{key}\" must be a whole number ≥ 0, not {v:?}"),
                )
            }),
    }
}

fn loopback(
    options: &Value,
    tree: &Path,
    dev_dir: &Path,
    _parent: Option<&OpenDevice>,
) -> Result<OpenDevice, HostError> {
    let wanted = Loopback::parse(options)?;
    let backing = open_in_tree(tree, &wanted.filename, wanted.config.read_only)?;
    let inhibit = |rdev| UdevInhibitor::for_device(Path::new(LOCK_DIR), rdev);
    let (loop_device, inhibitor) = LoopDevice::attach_prepared(&backing, &wanted.config, inhibit)
        .map_err(|e| {
        let step = format!("attaching a loop device to {}", wanted.filename.display());
        HostError::io(LOOPBACK, step)(io::Error::other(e.to_string()))
    })?;
    let node = format!("loop{}", loop_device.number());
    let mut device = OpenDevice {
        node,
        rdev: loop_device.rdev(),
        dev_dir: dev_dir.to_owned(),
        nodes: Vec::new(),
        loop_device: Some(loop_device),
        backing: Some(backing),
        _inhibitor: Some(inhibitor),
    };
    // From here on dropping `device` releases all it holds so far.
    let loop_device = device.loop_device.as_ref().expect("just attached");
    if wanted.lock {
        let step = format!("locking /dev/{} (someone else holds it)", device.node);
        loop_device.lock().map_err(HostError::io(LOOPBACK, step))?;
    }
    let mut nodes = vec![(device.node.clone(), device.rdev)];
    if wanted.config.partscan {
        let step = format!("listing the partitions of {} in /sys/block", device.node);
        nodes.extend(
            loop_device
                .partitions()
                .map_err(HostError::io(LOOPBACK, step))?,
        );
    }
    device.make_nodes(&nodes)?;
    Ok(device)
}

/// Opens `tree/filename` without leaving the tree.
fn open_in_tree(tree: &Path, filename: &Path, read_only: bool) -> Result<File, HostError> {
    let dir = File::open(tree).map_err(HostError::io(
        LOOPBACK,
        format!("opening the tree {}", tree.display()),
    ))?;
    match osbuild_sys::fs::open_beneath(&dir, filename, read_only) {
        Ok(fd) => Ok(File::from(fd)),
        Err(errno @ (nix::errno::Errno::EXDEV | nix::errno::Errno::ELOOP)) => {
            Err(HostError::Escapes {
                module: LOOPBACK.to_owned(),
                what: "filename",
                path: filename.to_string_lossy().into_owned(),
                why: format!("leads out of the tree through a symlink ({errno})"),
            })
        }
        Err(errno) => {
            let step = format!(
                "opening {} in the tree {}",
                filename.display(),
                tree.display()
            );
            Err(HostError::io(LOOPBACK, step)(errno.into()))
        }
    }
}

impl OpenDevice {
    /// The node's name in `/dev` (`loop3`), the same on the host and in the build root.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's major number.
    pub fn major(&self) -> u64 {
        nix::sys::stat::major(self.rdev)
    }

    /// The node's minor number.
    pub fn minor(&self) -> u64 {
        nix::sys::stat::minor(self.rdev)
    }

    /// HEAD's entry for the arguments file: `{"path": "loop3", "node": {"major", "minor"}}`.
    pub fn reply(&self) -> Value {
        let node = Map::from([
            ("major".to_owned(), Value::Int(self.major().into())),
            ("minor".to_owned(), Value::Int(self.minor().into())),
        ]);
        Value::Object(Map::from([
            ("path".to_owned(), Value::String(self.node.clone())),
            ("node".to_owned(), Value::Object(node)),
        ]))
    }

    /// The node to mount (partition `p` of this device with `Some(p)`): the host's
    /// `/dev/loop3p1` when it exists, so mountinfo names what tools like grub2-install find
    /// (as HEAD does), else the node made in the build root's `/dev`.
    pub fn source_path(&self, partition: Option<u64>) -> PathBuf {
        let name = match partition {
            Some(p) => format!("{}p{p}", self.node),
            None => self.node.clone(),
        };
        let host = Path::new("/dev").join(&name);
        match host.exists() {
            true => host,
            false => self.dev_dir.join(name),
        }
    }

    /// Makes the block nodes `(name, rdev)` in `dev_dir`, replacing stale ones of the same
    /// name; each one made is removed again on drop.
    fn make_nodes(&mut self, nodes: &[(String, u64)]) -> Result<(), HostError> {
        let step = |what: String| HostError::io(LOOPBACK, what);
        let dir = File::open(&self.dev_dir)
            .map_err(step(format!("opening {}", self.dev_dir.display())))?;
        for (name, rdev) in nodes {
            let mut made = make_block_node(dir.as_fd(), name, *rdev);
            if made == Err(nix::errno::Errno::EEXIST) {
                let _ = std::fs::remove_file(self.dev_dir.join(name));
                made = make_block_node(dir.as_fd(), name, *rdev);
            }
            made.map_err(|e| {
                step(format!(
                    "creating the node {name} in {}",
                    self.dev_dir.display()
                ))(e.into())
            })?;
            self.nodes.push(name.clone());
        }
        Ok(())
    }
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        for name in self.nodes.drain(..).rev() {
            let _ = std::fs::remove_file(self.dev_dir.join(name));
        }
        if let Some(device) = self.loop_device.take() {
            if let Err(e) = device.detach() {
                tracing::warn!("{LOOPBACK}: /dev/{}: {e}", self.node);
            }
        }
        if let Some(file) = self.backing.take() {
            // What the loop device wrote is in the file's page cache; put it on disk.
            let _ = file.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn parse(text: &str) -> Result<Loopback, String> {
        Loopback::parse(&json::parse(text).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn options_become_a_loop_config() {
        let all = r#"{"filename": "disk.img", "start": 2048, "size": 4096, "sector-size": 4096,
                      "lock": true, "partscan": true, "read-only": true}"#;
        let want = Loopback {
            filename: "disk.img".into(),
            lock: true,
            config: LoopConfig {
                offset: 2048 * 4096,
                sizelimit: 4096 * 4096,
                sector_size: 4096,
                partscan: true,
                read_only: true,
            },
        };
        assert_eq!(parse(all).unwrap(), want);
        let plain = parse(r#"{"filename": "sub/disk.img"}"#).unwrap();
        assert_eq!(
            plain.config,
            LoopConfig {
                sector_size: 512,
                ..LoopConfig::default()
            }
        );
        assert!(!plain.lock);
    }

    #[test]
    fn bad_options_are_named() {
        let err = |text| parse(text).unwrap_err();
        assert_eq!(
            err("{}"),
            "org.osbuild.loopback: \"filename\" (a string) is required"
        );
        assert_eq!(
            err(r#"{"filename": "../disk.img"}"#),
            "org.osbuild.loopback: filename \"../disk.img\" contains \"..\""
        );
        assert!(err(r#"{"filename": "/disk.img"}"#).contains("is absolute"));
        assert!(
            err(r#"{"filename": "d", "start": -1}"#).contains("\"start\" must be a whole number")
        );
        assert!(
            err(r#"{"filename": "d", "size": 1.5}"#).contains("\"size\" must be a whole number")
        );
    }

    #[test]
    fn unknown_device_types_are_named() {
        let err = open_device(
            "org.osbuild.luks2",
            &Value::Null,
            Path::new("/"),
            Path::new("/"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown device type \"org.osbuild.luks2\": the engine provides org.osbuild.loopback"
        );
    }
}
