//! Mounts: `org.osbuild.{ext4,xfs,fat,btrfs}` (a filesystem on a device), `org.osbuild.bind`
//! (a recursive bind inside the stage's view) and `org.osbuild.noop` (a directory only).
//!
//! A filesystem mount goes to `root/target` (the stage's mounts directory; `target` is `/`,
//! `/boot`, ...), made where missing, with HEAD's options (`readonly` as `MS_RDONLY`;
//! `norecovery`, `uid`, `gid`, `umask`, `shortname`, `subvol`, `compress` as the filesystem's
//! own options, in HEAD's order). Releasing it flushes the filesystem (`syncfs`), unmounts it
//! synchronously (a failed write-back is never hidden by a lazy detach) and removes the
//! scratch directories the mount made. A kernel without `vfat` gets `org.osbuild.fat` through
//! a staging directory filled and written back with mtools ([`super::fat_staging`]; its doc
//! says which options mean nothing there). A bind mounts `mount://X` (in `root`) on `tree://Y`
//! (in the tree), as HEAD reads those locations: only the first path word counts.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use osbuild_sys::mount::{Mount, MsFlags};

use super::fat_staging::{self, FatStaging};
use super::{paths, HostError, OpenDevice};
use crate::json::{Map, Value};

/// The mount modules this engine provides.
pub const TYPES: &[&str] = &[
    "org.osbuild.ext4",
    "org.osbuild.xfs",
    "org.osbuild.fat",
    "org.osbuild.btrfs",
    "org.osbuild.bind",
    "org.osbuild.noop",
];

/// A mount made for a stage, released when dropped.
#[derive(Debug)]
pub struct Mounted {
    module: String,
    kind: Kind,
    /// The mountpoint relative to the mounts directory, for the arguments file.
    reply_path: Option<String>,
    /// Scratch directories made for the mountpoint, deepest last.
    created: Vec<PathBuf>,
}

#[derive(Debug)]
enum Kind {
    Filesystem(Option<Mount>),
    /// A FAT filesystem staged in a directory (no `vfat` in the kernel).
    FatStaged(Option<FatStaging>),
    Bind(Option<Mount>),
    Noop,
}

/// How a filesystem module mounts: `mount -t FSTYPE [-o ro,DATA]`.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    fstype: &'static str,
    read_only: bool,
    /// The filesystem's own options, comma-separated.
    data: String,
}

/// Mounts `source` (partition `partition` of it) with the module `module` at `target` below
/// `root`, `tree` being the tree the stage builds.
pub fn mount(
    module: &str,
    source: Option<&OpenDevice>,
    partition: Option<u64>,
    target: &str,
    root: &Path,
    tree: &Path,
    options: &Value,
) -> Result<Mounted, HostError> {
    match module {
        "org.osbuild.bind" => bind(module, target, root, tree, options),
        "org.osbuild.noop" => {
            let rel = paths::relative(module, "target", target, true)?;
            let (_, created) = paths::make_dirs(module, root, &rel)?;
            Ok(Mounted::new(
                module,
                Kind::Noop,
                Some(paths::display(&rel)),
                created,
            ))
        }
        _ => {
            let plan = plan(module, options)?;
            let device =
                source.ok_or_else(|| HostError::options(module, "needs a source device"))?;
            filesystem(module, &plan, &device.source_path(partition), target, root)
        }
    }
}

/// What `mount -t` HEAD's module runs for `options`.
fn plan(module: &str, options: &Value) -> Result<Plan, HostError> {
    let fstype = match module {
        "org.osbuild.ext4" => "ext4",
        "org.osbuild.xfs" => "xfs",
        "org.osbuild.fat" => "vfat",
        "org.osbuild.btrfs" => "btrfs",
        _ => return Err(HostError::UnknownMount(module.to_owned())),
    };
    let mut data = Vec::new();
    if super::truthy(options, "norecovery") {
        data.push("norecovery".to_owned());
    }
    for key in ["uid", "gid", "umask", "shortname", "subvol", "compress"] {
        let text = match options.get(key) {
            None => continue,
            Some(Value::String(s)) => s.clone(),
            Some(Value::Int(i)) => i.to_string(),
            Some(v) => {
                let message = format!("option \"{key}\" must be a string or an integer, not {v:?}");
                return Err(HostError::options(module, message));
            }
        };
        if text.contains(',') {
            let message = format!("option \"{key}\" {text:?} must not contain a comma");
            return Err(HostError::options(module, message));
        }
        data.push(format!("{key}={text}"));
    }
    Ok(Plan {
        fstype,
        read_only: super::truthy(options, "readonly"),
        data: data.join(","),
    })
}

fn filesystem(
    module: &str,
    plan: &Plan,
    source: &Path,
    target: &str,
    root: &Path,
) -> Result<Mounted, HostError> {
    let rel = paths::relative(module, "target", target, true)?;
    let (mountpoint, created) = paths::make_dirs(module, root, &rel)?;
    // Owns the scratch directories from here on: an error below removes them again.
    let mut mounted = Mounted::new(
        module,
        Kind::Filesystem(None),
        Some(paths::display(&rel)),
        created,
    );
    let flags = match plan.read_only {
        true => MsFlags::MS_RDONLY,
        false => MsFlags::empty(),
    };
    // The staging directory goes beside the mounts directory, out of the stage's sight.
    let staged = |mut mounted: Mounted| {
        let scratch = root.parent().unwrap_or(root);
        let staging = FatStaging::mount(module, source, &mountpoint, scratch, plan.read_only)?;
        mounted.kind = Kind::FatStaged(Some(staging));
        Ok(mounted)
    };
    if plan.fstype == "vfat" && fat_staging::in_use() {
        return staged(mounted);
    }
    let attempt = |flags| Mount::device_with(source, plan.fstype, &mountpoint, flags, &plan.data);
    let made = match attempt(flags) {
        // A write-protected device mounts read-only, as mount(8) falls back.
        Err(f) if matches!(f.errno, Errno::EROFS | Errno::EACCES) && !plan.read_only => {
            tracing::info!(
                "{module}: {} is write-protected, mounting it read-only",
                source.display()
            );
            attempt(MsFlags::MS_RDONLY)
        }
        Err(f) if plan.fstype == "vfat" && fat_staging::kernel_lacks_vfat(f.errno) => {
            return staged(mounted);
        }
        made => made,
    };
    let step = format!(
        "mounting {} ({}{}) on {}",
        source.display(),
        plan.fstype,
        match plan.data.is_empty() {
            true => String::new(),
            false => format!(", {}", plan.data),
        },
        mountpoint.display()
    );
    let owner = made.map_err(|f| HostError::io(module, step)(f.errno.into()))?;
    mounted.kind = Kind::Filesystem(Some(owner));
    Ok(mounted)
}

fn bind(
    module: &str,
    target: &str,
    root: &Path,
    tree: &Path,
    options: &Value,
) -> Result<Mounted, HostError> {
    let source = options
        .get("source")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            HostError::options(
                module,
                "option \"source\" (a mount:// location) is required",
            )
        })?;
    let source = location(module, "source", source, root, tree)?;
    let target = location(module, "target", target, root, tree)?;
    let owner = Mount::bind(&source, &target, true).map_err(|f| {
        let step = format!("bind-mounting {} on {}", source.display(), target.display());
        HostError::io(module, step)(f.errno.into())
    })?;
    Ok(Mounted::new(
        module,
        Kind::Bind(Some(owner)),
        None,
        Vec::new(),
    ))
}

/// A bind location `tree://X` or `mount://X` as HEAD reads it (`urlparse(...).netloc`: the
/// part up to the next `/`), an existing path below the tree or the mounts directory.
fn location(
    module: &str,
    what: &'static str,
    location: &str,
    root: &Path,
    tree: &Path,
) -> Result<PathBuf, HostError> {
    let (scheme, rest) = location.split_once("://").unwrap_or(("", location));
    let base = match scheme.to_ascii_lowercase().as_str() {
        "tree" => tree,
        "mount" => root,
        _ => {
            let message =
                format!("{what} {location:?}: unsupported scheme, use tree:// or mount://");
            return Err(HostError::options(module, message));
        }
    };
    let netloc = rest.split(['/', '?', '#']).next().unwrap_or("");
    let rel = paths::relative(module, what, netloc, false)?;
    paths::existing(module, what, base, &rel)
}

impl Mounted {
    fn new(module: &str, kind: Kind, reply_path: Option<String>, created: Vec<PathBuf>) -> Self {
        Self {
            module: module.to_owned(),
            kind,
            reply_path,
            created,
        }
    }

    /// HEAD's entry for the arguments file: `{"path": "boot"}` (relative to the mounts
    /// directory, `.` for `/`), or `{}` for a bind mount.
    pub fn reply(&self) -> Value {
        let mut entry = Map::new();
        if let Some(path) = &self.reply_path {
            entry.insert("path".to_owned(), Value::String(path.clone()));
        }
        Value::Object(entry)
    }
}

impl Mounted {
    /// Releases the mount now: flushed and unmounted, a staged FAT filesystem written back.
    /// A failure names the module; the scratch directories go when `self` is dropped.
    pub fn release(mut self) -> Result<(), HostError> {
        self.unmount()
    }

    fn unmount(&mut self) -> Result<(), HostError> {
        let unmounted = match &mut self.kind {
            Kind::Filesystem(owner) => owner.take().map(Mount::flush_and_unmount),
            Kind::Bind(owner) => owner.take().map(Mount::unmount),
            Kind::FatStaged(staged) => return staged.take().map_or(Ok(()), |mut s| s.release()),
            Kind::Noop => None,
        };
        match unmounted {
            Some(Err(e)) => Err(HostError::io(&self.module, "releasing the mount")(e.into())),
            _ => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::warn!("{e}");
        }
        for dir in self.created.drain(..).rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    /// `mount(module)` of no device at `target`, `root` being both tree and mounts root.
    fn deviceless(module: &str, target: &str, root: &Path) -> Result<Mounted, String> {
        mount(module, None, None, target, root, root, &Value::Null).map_err(|e| e.to_string())
    }

    fn plan_of(module: &str, options: &str) -> Result<Plan, String> {
        plan(module, &json::parse(options).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn options_become_mount_flags_and_data_in_heads_order() {
        let table = [
            (
                "org.osbuild.ext4",
                r#"{"readonly": true, "norecovery": true}"#,
                "ext4",
                true,
                "norecovery",
            ),
            (
                "org.osbuild.fat",
                r#"{"shortname": "winnt", "umask": "077", "gid": 5, "uid": 0}"#,
                "vfat",
                false,
                "uid=0,gid=5,umask=077,shortname=winnt",
            ),
            (
                "org.osbuild.btrfs",
                r#"{"subvol": "root", "compress": "zstd:1"}"#,
                "btrfs",
                false,
                "subvol=root,compress=zstd:1",
            ),
            (
                "org.osbuild.xfs",
                r#"{"readonly": false}"#,
                "xfs",
                false,
                "",
            ),
        ];
        for (module, options, fstype, read_only, data) in table {
            let want = Plan {
                fstype,
                read_only,
                data: data.into(),
            };
            assert_eq!(
                plan_of(module, options).unwrap(),
                want,
                "{module} {options}"
            );
        }
    }

    #[test]
    fn bad_mounts_are_named() {
        let err = plan_of("org.osbuild.fat", r#"{"umask": "0,exec"}"#).unwrap_err();
        assert_eq!(
            err,
            "org.osbuild.fat: option \"umask\" \"0,exec\" must not contain a comma"
        );
        let err = plan_of("org.osbuild.ntfs", "{}").unwrap_err();
        assert!(
            err.starts_with(
                "unknown mount type \"org.osbuild.ntfs\": the engine provides org.osbuild.ext4"
            ),
            "{err}"
        );
        let root = tempfile::tempdir().unwrap();
        let none = deviceless("org.osbuild.ext4", "/", root.path());
        assert_eq!(none.unwrap_err(), "org.osbuild.ext4: needs a source device");
        let escape = deviceless("org.osbuild.noop", "/../x", root.path());
        assert_eq!(
            escape.unwrap_err(),
            "org.osbuild.noop: target \"/../x\" contains \"..\""
        );
    }

    #[test]
    fn noop_makes_and_removes_its_directory() {
        let root = tempfile::tempdir().unwrap();
        let m = deviceless("org.osbuild.noop", "/boot/efi", root.path()).unwrap();
        assert!(root.path().join("boot/efi").is_dir());
        assert_eq!(json::dumps(&m.reply()), r#"{"path": "boot/efi"}"#);
        drop(m);
        assert!(!root.path().join("boot").exists());
    }

    #[test]
    fn bind_locations_read_like_heads() {
        let root = tempfile::tempdir().unwrap();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir(tree.path().join("sysroot")).unwrap();
        let at = |loc| location("b", "target", loc, root.path(), tree.path());
        assert_eq!(at("tree://").unwrap(), tree.path());
        assert_eq!(at("mount://").unwrap(), root.path());
        assert_eq!(
            at("tree://sysroot/ignored").unwrap(),
            tree.path().join("sysroot")
        );
        assert!(at("tree://..")
            .unwrap_err()
            .to_string()
            .contains("contains \"..\""));
        assert!(at("file:///etc")
            .unwrap_err()
            .to_string()
            .contains("unsupported scheme"));
    }
}
