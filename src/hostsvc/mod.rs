//! HEAD's host services for devices and mounts, natively in Rust: what a v2 stage's `devices`
//! and `mounts` ask for is set up on the host before the stage runs and released after it.
//!
//! - [`devices`]: `org.osbuild.loopback` ([`OpenDevice`]: a loop device on a file of the tree,
//!   its nodes in the build root's private `/dev`).
//! - [`mounts`]: `org.osbuild.{ext4,xfs,fat,btrfs,bind,noop}` ([`Mounted`]: a mount below the
//!   stage's mounts directory, or a bind into the tree); [`fat_staging`] stands in for `vfat`
//!   where the kernel has none.
//! - [`StageServices`]: one stage's devices (parents first) and mounts (in manifest order),
//!   released in reverse (mounts, then devices) on every way out: an error half-way, a panic,
//!   or the end of the stage.
//!
//! - [`udev`]: the lock files that keep udev's rules off a build's loop devices.
//!
//! Each service hands the stage HEAD's entry for the arguments file (`reply()`): a device
//! `{"path": "loop3", "node": {"major", "minor"}}`, a mount `{"path": "boot"}` (relative to
//! the mounts directory) or `{}`. Paths from the manifest never leave their tree: see [`paths`].

pub mod devices;
mod fat_staging;
pub mod mounts;
mod paths;
mod stack;
pub mod udev;

use std::io;

pub use devices::{open_device, OpenDevice};
pub use mounts::{mount, Mounted};
pub use stack::{Devices, Mounts, StageServices};

/// Why a device or mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The manifest names a device module this engine does not provide.
    #[error("unknown device type {0:?}: the engine provides {types}", types = devices::TYPES.join(", "))]
    UnknownDevice(String),
    /// The manifest names a mount module this engine does not provide.
    #[error("unknown mount type {0:?}: the engine provides {types}", types = mounts::TYPES.join(", "))]
    UnknownMount(String),
    /// The options (or the device, partition or target) do not fit the module.
    #[error("{module}: {message}")]
    Options { module: String, message: String },
    /// A path from the manifest would leave the directory it belongs to.
    #[error("{module}: {what} {path:?} {why}")]
    Escapes {
        module: String,
        /// What the path is ("filename", "target", "source").
        what: &'static str,
        path: String,
        why: String,
    },
    /// A system call or file operation failed.
    #[error("{module}: {step}: {source}")]
    Io {
        module: String,
        step: String,
        #[source]
        source: io::Error,
    },
    /// One of a stage's devices failed.
    #[error("device {name:?}: {source}")]
    Device {
        name: String,
        #[source]
        source: Box<HostError>,
    },
    /// One of a stage's mounts failed.
    #[error("mount {name:?}: {source}")]
    Mount {
        name: String,
        #[source]
        source: Box<HostError>,
    },
}

impl HostError {
    fn options(module: &str, message: impl Into<String>) -> Self {
        HostError::Options {
            module: module.to_owned(),
            message: message.into(),
        }
    }

    fn io(module: &str, step: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let (module, step) = (module.to_owned(), step.into());
        move |source| HostError::Io {
            module,
            step,
            source,
        }
    }
}

/// Python's truth value of an option (`options.get(key)`), as HEAD tests it.
fn truthy(options: &crate::json::Value, key: &str) -> bool {
    use crate::json::Value;
    match options.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(i)) => i.as_str() != "0",
        Some(Value::Float(f)) => *f != 0.0,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}
