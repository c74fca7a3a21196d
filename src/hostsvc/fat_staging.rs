//! `org.osbuild.fat` on a kernel without `vfat`: the FAT filesystem is read and written with
//! mtools through a staging directory, so the stage sees the same files at the same
//! `mount://` path as with a real mount.
//!
//! Mounting copies the filesystem's contents into a private scratch directory (`mcopy -s -m`;
//! an empty filesystem gives an empty directory) beside the stage's mounts directory, out of
//! the stage's sight, and binds it at the mountpoint. Releasing it (mounts go before the
//! devices they sit on) unbinds it, makes the filesystem hold exactly the directory's
//! contents (everything on it deleted with `mdeltree`, the directories made with `mmd`, the
//! files copied with `mcopy -m` one directory at a time in name order, files without a write
//! bit marked read-only as the kernel marks them, the result listed back and compared) and
//! removes the directory. A release always writes back, also after a failed stage: the
//! kernel writes back what a failed stage wrote when it unmounts too, and a failed build's
//! image is never committed.
//!
//! What FAT cannot hold is refused by name when writing back, as the kernel refuses it when
//! the stage writes: symlinks, device nodes, FIFOs and sockets, names with `"*/:<>?\|` or
//! control characters or a trailing dot or space, names longer than 255 UTF-16 units, names
//! that are not UTF-8, and two names of a directory that differ only in case. A hard link is
//! written as a copy. The directories get the time of the write-back (mtools stamps them).
//!
//! The options of the real mount have no meaning here and are accepted: `uid`, `gid`,
//! `umask` and `shortname` (the staged files are the service's: root, mode from mtools),
//! `norecovery`. `readonly` binds the directory read-only and writes nothing back.
//!
//! Security: mtools parses a filesystem a stage made, on the host. The kernel's FAT driver
//! parses the same bytes when it mounts them, in the kernel, where a parser bug is the host's;
//! mtools parses them in a short-lived process with an explicit argv and environment, writing
//! only into the fresh staging directory (mtools writes a name's `/` as `\` and the names `.`
//! and `..` as `DOT` and `DOTDOT`). Writing back reads the staging directory without following
//! symlinks (they are refused). So this is no worse than the kernel mounting it.

use std::ffi::OsString;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use osbuild_sys::mount::{Mount, MsFlags};
use osbuild_sys::process::Child;

use super::HostError;

/// Set once a FAT mount found the kernel without `vfat`: every later one stages too.
static KERNEL_LACKS_VFAT: AtomicBool = AtomicBool::new(false);

/// Whether FAT mounts go through a staging directory (a mount found no `vfat` before).
pub(super) fn in_use() -> bool {
    KERNEL_LACKS_VFAT.load(Ordering::Relaxed)
}

/// Whether the kernel's answer `errno` to mounting vfat means it has no vfat; if so, every
/// FAT mount from now on stages, and the first to find out says so once.
pub(super) fn kernel_lacks_vfat(errno: Errno) -> bool {
    if errno != Errno::ENODEV {
        return false;
    }
    if !KERNEL_LACKS_VFAT.swap(true, Ordering::Relaxed) {
        let listed = std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|t| t.lines().any(|l| l.split('\t').next_back() == Some("vfat")));
        tracing::info!(
            "org.osbuild.fat: the kernel cannot mount vfat (mount: ENODEV; vfat {} \
             /proc/filesystems): FAT filesystems are read and written with mtools through a \
             staging directory",
            if listed { "in" } else { "not in" }
        );
    }
    true
}

/// A FAT filesystem staged in a directory bound at the mountpoint; written back when released.
#[derive(Debug)]
pub(super) struct FatStaging {
    module: String,
    device: PathBuf,
    read_only: bool,
    bind: Option<Mount>,
    dir: Option<tempfile::TempDir>,
}

impl FatStaging {
    /// Stages the FAT filesystem on `device` at `mountpoint`, in a scratch directory made in
    /// `scratch` (a directory the stage does not see).
    pub(super) fn mount(
        module: &str,
        device: &Path,
        mountpoint: &Path,
        scratch: &Path,
        read_only: bool,
    ) -> Result<Self, HostError> {
        let dir = tempfile::Builder::new()
            .prefix("fat-staging-")
            .tempdir_in(scratch)
            .map_err(HostError::io(
                module,
                format!("creating a staging directory in {}", scratch.display()),
            ))?;
        let mut staged = FatStaging {
            module: module.to_owned(),
            device: device.to_owned(),
            read_only,
            bind: None,
            dir: None,
        };
        let path = dir.path().to_owned();
        staged.dir = Some(dir);
        let mut args = vec!["-s", "-m", "-n", "-i"]
            .into_iter()
            .map(OsString::from)
            .collect::<Vec<_>>();
        args.extend([device.into(), "::/".into(), path.clone().into()]);
        staged.mtools("mcopy", args)?;
        // A FAT root has no mode or date: the kernel shows 0755 and 1970 (mcopy set a date from
        // nothing).
        let root_dir = std::fs::File::open(&path).and_then(|f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
            f.set_modified(std::time::UNIX_EPOCH)
        });
        root_dir.map_err(HostError::io(
            module,
            format!("preparing {}", path.display()),
        ))?;
        let step = format!(
            "binding the staging directory {} on {}",
            path.display(),
            mountpoint.display()
        );
        let bind = Mount::bind(&path, mountpoint, false)
            .map_err(|f| HostError::io(module, step.clone())(f.errno.into()))?;
        if read_only {
            bind.remount_read_only(MsFlags::empty())
                .map_err(|f| HostError::io(module, step)(f.errno.into()))?;
        }
        staged.bind = Some(bind);
        Ok(staged)
    }

    /// Unbinds the directory, writes it to the filesystem (unless read-only) and removes it.
    /// Every step runs once: a second call (from `Drop`) does nothing.
    pub(super) fn release(&mut self) -> Result<(), HostError> {
        // Never bound (the copy out failed): nothing of the stage to write back.
        let was_bound = self.bind.is_some();
        let unbound = match self.bind.take() {
            Some(bind) => bind.unmount().map_err(|e| {
                HostError::io(&self.module, "unbinding the staging directory")(e.into())
            }),
            None => Ok(()),
        };
        let Some(dir) = self.dir.take() else {
            return unbound;
        };
        let written = match was_bound && !self.read_only {
            true => self.write_back(dir.path()),
            false => Ok(()),
        };
        match unbound {
            Ok(()) => drop(dir),
            // Still bound somewhere: never delete through a mountpoint.
            Err(e) => {
                let kept = dir.keep();
                tracing::warn!("{}: keeping {}: {e}", self.module, kept.display());
                return Err(e);
            }
        }
        written
    }

    /// Makes the filesystem hold exactly the contents of `dir`.
    fn write_back(&self, dir: &Path) -> Result<(), HostError> {
        let layout = Layout::of(&self.module, dir)?;
        let device: OsString = self.device.clone().into();
        let on_device = |mut args: Vec<OsString>| {
            args.splice(0..0, [OsString::from("-i"), device.clone()]);
            args
        };
        if !self.list(false)?.is_empty() {
            self.mtools("mdeltree", on_device(vec!["::/*".into()]))?;
        }
        if !layout.dirs.is_empty() {
            let dirs = layout
                .dirs
                .iter()
                .map(|d| fat_path(d, false).into())
                .collect();
            self.mtools("mmd", on_device(dirs))?;
        }
        for (parent, files) in &layout.files {
            let mut args: Vec<OsString> = vec!["-m".into(), "-D".into(), "o".into()];
            args.extend(on_device(files.iter().map(|f| f.clone().into()).collect()));
            args.push(format!("{}/", fat_path(parent, true)).into());
            self.mtools("mcopy", args)?;
        }
        if !layout.read_only.is_empty() {
            let mut args = vec![OsString::from("+r")];
            args.extend(layout.read_only.iter().map(|p| fat_path(p, true).into()));
            self.mtools("mattrib", on_device(args))?;
        }
        let mut listed = match layout.listing.is_empty() {
            true => self.list(false)?,
            false => self.list(true)?,
        };
        listed.sort();
        if listed != layout.listing {
            return Err(HostError::options(
                &self.module,
                format!(
                    "writing {} back to {}: the filesystem lists {listed:?}, not {:?}",
                    dir.display(),
                    self.device.display(),
                    layout.listing
                ),
            ));
        }
        Ok(())
    }

    /// The filesystem's entries as `mdir -b` writes them (`::/EFI/`, `::/EFI/grub.cfg`):
    /// the root's, or everything's when `recursive` (which fails on an empty root).
    fn list(&self, recursive: bool) -> Result<Vec<String>, HostError> {
        let mut args: Vec<OsString> = vec!["-a".into(), "-b".into()];
        if recursive {
            args.push("-/".into());
        }
        args.extend(["-i".into(), self.device.clone().into(), "::/".into()]);
        let out = self.mtools("mdir", args)?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Runs the mtools command `program args`: a fixed environment (UTF-8 names, UTC dates as
    /// the kernel's default, no geometry check, no user configuration), no stdin; its stdout,
    /// or an error with the end of its stderr.
    fn mtools(&self, program: &str, args: Vec<OsString>) -> Result<String, HostError> {
        let mut cmd = Command::new(program);
        cmd.args(&args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .env("HOME", "/nonexistent")
            .env("MTOOLS_SKIP_CHECK", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        osbuild_sys::process::inherit_only(&mut cmd, Vec::new());
        let step = format!("running {program} on {}", self.device.display());
        let out = Child::spawn(&mut cmd)
            .and_then(Child::wait_with_output)
            .map_err(HostError::io(&self.module, step))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let message = format!(
                "{program} {} failed ({}): {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                osbuild_sys::process::describe_status(out.status),
                tail.into_iter().rev().collect::<Vec<_>>().join("; ")
            );
            return Err(HostError::options(&self.module, message));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for FatStaging {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!("releasing a staged FAT filesystem: {e}");
        }
    }
}

/// `::/a/b` for the components `a/b`, its `[` and `]` escaped (mtools reads them as a pattern),
/// but for the last component's unless `escape_last` (mmd takes the name it makes as given).
fn fat_path(rel: &str, escape_last: bool) -> String {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut out = String::from("::");
    for (i, part) in parts.iter().enumerate() {
        out.push('/');
        if i + 1 == parts.len() && !escape_last {
            out.push_str(part);
        } else {
            for c in part.chars() {
                if matches!(c, '[' | ']') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    if parts.is_empty() {
        out.push('/');
    }
    out
}

/// What a staging directory asks of the filesystem: relative paths (`EFI/BOOT`) in name order.
#[derive(Debug, Default, PartialEq, Eq)]
struct Layout {
    /// The directories to make, parents first.
    dirs: Vec<String>,
    /// Each directory's files (`""` for the root) as host paths.
    files: Vec<(String, Vec<PathBuf>)>,
    /// The files without a write bit: FAT's read-only attribute.
    read_only: Vec<String>,
    /// What `mdir -a -b -/` lists afterwards, sorted.
    listing: Vec<String>,
}

impl Layout {
    fn of(module: &str, dir: &Path) -> Result<Layout, HostError> {
        let mut layout = Layout::default();
        layout.walk(module, dir, "")?;
        layout.listing.sort();
        Ok(layout)
    }

    fn walk(&mut self, module: &str, dir: &Path, rel: &str) -> Result<(), HostError> {
        let read = |e| HostError::io(module, format!("reading {}", dir.display()))(e);
        let mut entries = std::fs::read_dir(dir)
            .map_err(read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?;
        entries.sort_by_key(|e| e.file_name());
        let mut files = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for entry in entries {
            let path = entry.path();
            let refuse = |why: &str| {
                HostError::options(module, format!("{}: FAT cannot hold {why}", path.display()))
            };
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| refuse("a name that is not UTF-8"))?;
            if let Some(why) = unfit_name(&name) {
                return Err(refuse(why));
            }
            let folded = name.to_lowercase();
            if let Some(other) = seen.iter().find(|s| s.to_lowercase() == folded) {
                let why = format!("both {other:?} and {name:?}: FAT compares names without case");
                return Err(refuse(&why));
            }
            seen.push(name.clone());
            let child = match rel.is_empty() {
                true => name.clone(),
                false => format!("{rel}/{name}"),
            };
            let meta = std::fs::symlink_metadata(&path).map_err(read)?;
            let kind = meta.file_type();
            if kind.is_dir() {
                self.listing.push(format!("::/{child}/"));
                self.dirs.push(child.clone());
                self.walk(module, &path, &child)?;
            } else if kind.is_file() {
                if meta.permissions().mode() & 0o222 == 0 {
                    self.read_only.push(child.clone());
                }
                self.listing.push(format!("::/{child}"));
                files.push(path);
            } else {
                let what = match () {
                    _ if kind.is_symlink() => "a symlink",
                    _ if kind.is_fifo() => "a FIFO",
                    _ if kind.is_socket() => "a socket",
                    _ => "a device node",
                };
                return Err(refuse(what));
            }
        }
        if !files.is_empty() {
            self.files.push((rel.to_owned(), files));
        }
        Ok(())
    }
}

/// Why VFAT (as the kernel's driver) refuses `name`, if it does.
fn unfit_name(name: &str) -> Option<&'static str> {
    if name.chars().any(|c| c < ' ' || c == '\x7f') {
        return Some("a name with a control character");
    }
    if name.chars().any(|c| "\"*/:<>?\\|".contains(c)) {
        return Some("a name with one of \"*/:<>?\\|");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("a name ending in a dot or a space");
    }
    if name.encode_utf16().count() > 255 {
        return Some("a name longer than 255 UTF-16 units");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_patterns_but_mmds_last_name() {
        assert_eq!(fat_path("", true), "::/");
        assert_eq!(fat_path("EFI/BOOT", true), "::/EFI/BOOT");
        assert_eq!(fat_path("a[1]/b[2]", true), "::/a\\[1\\]/b\\[2\\]");
        assert_eq!(fat_path("a[1]/b[2]", false), "::/a\\[1\\]/b[2]");
    }

    #[test]
    fn names_fat_cannot_hold_are_named() {
        for (name, want) in [
            ("grubx64.efi", None),
            ("Grüße straße.txt", None),
            ("a[1] b", None),
            ("a:b", Some("a name with one of \"*/:<>?\\|")),
            ("tab\there", Some("a name with a control character")),
            ("trailing.", Some("a name ending in a dot or a space")),
            ("trailing ", Some("a name ending in a dot or a space")),
        ] {
            assert_eq!(unfit_name(name), want, "{name:?}");
        }
        assert!(unfit_name(&"x".repeat(256)).is_some());
        assert!(unfit_name(&"x".repeat(255)).is_none());
    }

    #[test]
    fn a_layout_lists_directories_first_and_refuses_what_fat_cannot_hold() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("EFI/BOOT")).unwrap();
        std::fs::write(d.path().join("EFI/BOOT/BOOTX64.EFI"), "x").unwrap();
        std::fs::write(d.path().join("EFI/b.cfg"), "y").unwrap();
        std::fs::write(d.path().join("a.txt"), "z").unwrap();
        let ro = d.path().join("EFI/a.ro");
        std::fs::write(&ro, "r").unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
        let layout = Layout::of("m", d.path()).unwrap();
        assert_eq!(layout.dirs, ["EFI", "EFI/BOOT"]);
        let files: Vec<(String, Vec<PathBuf>)> = vec![
            (
                "EFI/BOOT".into(),
                vec![d.path().join("EFI/BOOT/BOOTX64.EFI")],
            ),
            ("EFI".into(), vec![ro.clone(), d.path().join("EFI/b.cfg")]),
            ("".into(), vec![d.path().join("a.txt")]),
        ];
        assert_eq!(layout.files, files);
        assert_eq!(layout.read_only, ["EFI/a.ro"]);
        assert_eq!(
            layout.listing,
            [
                "::/EFI/",
                "::/EFI/BOOT/",
                "::/EFI/BOOT/BOOTX64.EFI",
                "::/EFI/a.ro",
                "::/EFI/b.cfg",
                "::/a.txt"
            ]
        );
        std::fs::write(d.path().join("EFI/B.CFG"), "clash").unwrap();
        let err = Layout::of("m", d.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "m: {}: FAT cannot hold both \"B.CFG\" and \"b.cfg\": FAT compares names without case",
                d.path().join("EFI/b.cfg").display()
            )
        );
        std::fs::remove_file(d.path().join("EFI/B.CFG")).unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("link")).unwrap();
        let err = Layout::of("m", d.path()).unwrap_err().to_string();
        assert!(err.ends_with("/link: FAT cannot hold a symlink"), "{err}");
    }
}
