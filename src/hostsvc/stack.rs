//! A stage's devices and mounts as one stack: opened parents first and in manifest order,
//! released in reverse. Each list releases its entries last-first in `Drop`, and
//! [`StageServices`] drops its mounts before its devices, so an error half-way (the part
//! already made is dropped), a panic (unwinding drops it) and the end of the stage all
//! release the same way.

use std::path::Path;

use super::{mount, open_device, HostError, Mounted, OpenDevice};
use crate::json::{Map, Value};
use crate::manifest::v2;

/// A stage's open devices, by name, parents before the devices on them.
#[derive(Debug, Default)]
pub struct Devices {
    opened: Vec<(String, OpenDevice)>,
}

impl Devices {
    /// Opens `devices` (parents first, as the manifest's loader sorts them) on files of `tree`,
    /// with their nodes in `dev_dir`. On an error, those opened already are released.
    pub fn open(devices: &[v2::Device], tree: &Path, dev_dir: &Path) -> Result<Self, HostError> {
        let mut stack = Devices::default();
        for device in devices {
            let in_device = |source| HostError::Device {
                name: device.name.clone(),
                source: Box::new(source),
            };
            let parent = match &device.parent {
                None => None,
                Some(name) => Some(stack.get(name).ok_or_else(|| {
                    in_device(HostError::options(
                        &device.module,
                        format!("the parent device {name:?} is not open before it"),
                    ))
                })?),
            };
            let open = open_device(&device.module, &device.options, tree, dev_dir, parent)
                .map_err(in_device)?;
            stack.opened.push((device.name.clone(), open));
        }
        Ok(stack)
    }

    /// The open device `name`.
    pub fn get(&self, name: &str) -> Option<&OpenDevice> {
        self.opened.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// The `devices` of HEAD's arguments file: `{name: {"path", "node"}}`.
    pub fn arguments(&self) -> Value {
        Value::Object(
            self.opened
                .iter()
                .map(|(n, d)| (n.clone(), d.reply()))
                .collect(),
        )
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        while let Some(device) = self.opened.pop() {
            drop(device);
        }
    }
}

/// A stage's mounts, in manifest order (`/` before `/boot` inside it).
#[derive(Debug, Default)]
pub struct Mounts {
    mounted: Vec<(String, Mounted)>,
}

impl Mounts {
    /// Mounts `mounts` in order below `root` (the stage's mounts directory), their sources
    /// taken from `devices`. On an error, those mounted already are released.
    pub fn mount(
        mounts: &[v2::Mount],
        devices: &Devices,
        root: &Path,
        tree: &Path,
    ) -> Result<Self, HostError> {
        let mut stack = Mounts::default();
        for m in mounts {
            let made = mount_one(m, devices, root, tree).map_err(|source| HostError::Mount {
                name: m.name.clone(),
                source: Box::new(source),
            })?;
            stack.mounted.push((m.name.clone(), made));
        }
        Ok(stack)
    }

    /// The `mounts` of HEAD's arguments file: `{name: {"path"} or {}}`.
    pub fn arguments(&self) -> Value {
        Value::Object(
            self.mounted
                .iter()
                .map(|(n, m)| (n.clone(), m.reply()))
                .collect(),
        )
    }
}

fn mount_one(
    m: &v2::Mount,
    devices: &Devices,
    root: &Path,
    tree: &Path,
) -> Result<Mounted, HostError> {
    let bad = |message: String| HostError::options(&m.module, message);
    let source = match &m.source {
        None => None,
        Some(name) => Some(
            devices
                .get(name)
                .ok_or_else(|| bad(format!("the source device {name:?} is not open")))?,
        ),
    };
    // HEAD appends `p<partition>` only for a truthy partition: 0 means the whole device.
    let partition = match &m.partition {
        None => None,
        Some(v) => match v.as_int().and_then(|i| i.as_u64()) {
            Some(0) => None,
            Some(p) => Some(p),
            None => {
                return Err(bad(format!(
                    "\"partition\" must be a whole number, not {v:?}"
                )))
            }
        },
    };
    let target = m
        .target
        .as_deref()
        .ok_or_else(|| bad("a \"target\" is required".into()))?;
    mount(&m.module, source, partition, target, root, tree, &m.options)
}

impl Mounts {
    /// Releases the mounts last-first, all of them; the first failure, named by its mount.
    fn release(&mut self) -> Result<(), HostError> {
        let mut first = Ok(());
        while let Some((name, mounted)) = self.mounted.pop() {
            match mounted.release() {
                Err(e) if first.is_ok() => {
                    first = Err(HostError::Mount {
                        name,
                        source: Box::new(e),
                    })
                }
                Err(e) => tracing::warn!("mount {name:?}: {e}"),
                Ok(()) => {}
            }
        }
        first
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some((name, mounted)) = self.mounted.pop() {
            if let Err(e) = mounted.release() {
                tracing::warn!("mount {name:?}: {e}");
            }
        }
    }
}

/// Everything a stage's `devices` and `mounts` set up on the host. Field order is release
/// order: the mounts go before the devices they sit on.
#[derive(Debug)]
pub struct StageServices {
    mounts: Mounts,
    devices: Devices,
}

impl StageServices {
    /// Opens the devices of `stage` (nodes in `dev_dir`, the build root's `/dev` on the host),
    /// then mounts its mounts below `mounts_root`; `tree` is the tree the stage builds.
    pub fn open(
        stage: &v2::Stage,
        tree: &Path,
        dev_dir: &Path,
        mounts_root: &Path,
    ) -> Result<Self, HostError> {
        let devices = Devices::open(&stage.devices, tree, dev_dir)?;
        let mounts = Mounts::mount(&stage.mounts, &devices, mounts_root, tree)?;
        Ok(Self { mounts, devices })
    }

    /// Releases everything now (mounts, then devices), reporting what failed: a mount whose
    /// data did not reach its device (a flush, a staged FAT written back) makes the stage's
    /// result wrong, which dropping only logs.
    pub fn release(mut self) -> Result<(), HostError> {
        self.mounts.release()
    }

    /// The `devices` and `mounts` entries of HEAD's arguments file.
    pub fn arguments(&self) -> Map {
        Map::from([
            ("devices".to_owned(), self.devices.arguments()),
            ("mounts".to_owned(), self.mounts.arguments()),
        ])
    }
}
