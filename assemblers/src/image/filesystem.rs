//! Filesystems at a partition's place in an image, made and filled from the tree.
//!
//! ext4 and vfat are written **without loop devices or mounts**: `mkfs.ext4 -d DIR -E
//! offset=` populates the filesystem from the tree directly at the partition's offset, and a
//! FAT filesystem is made with `mkfs.vfat --offset` and filled with mtools (`mcopy -i
//! IMAGE@@OFFSET`). Only xfs needs a loop device, which the engine makes through the
//! `remoteloop` API ([`crate::remoteloop`]); it is formatted, then mounted ([`super::mount`]),
//! filled with `cp -a` and unmounted inside the sandbox's private mount namespace. With
//! `mkfs.ext4 -d`, the files of a nested mountpoint (e.g. `/boot/efi`) also stay in the parent
//! filesystem, hidden under the mount at boot.

use std::path::{Path, PathBuf};

use crate::image::mount::Mount;
use crate::image::Placed;
use crate::{remoteloop, tool, AssemblerError};

/// Filesystem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
    Vfat,
}

impl FsType {
    /// The type's name in options and for `mount -t`.
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
        }
    }
}

/// A filesystem on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    pub fstype: FsType,
    pub uuid: String,
    pub label: Option<String>,
    /// Absolute path in the tree, `/` for the root.
    pub mountpoint: String,
}

/// Makes and fills one filesystem at its partition's place in the image.
pub fn make_filesystem(
    fs: &Filesystem,
    part: &Placed,
    image: &Path,
    tree: &Path,
) -> Result<(), AssemblerError> {
    let src = tree.join(fs.mountpoint.trim_start_matches('/'));
    let mkfs = Mkfs {
        fs,
        part,
        image,
        src: src.is_dir().then_some(src.as_path()),
    };
    match fs.fstype {
        FsType::Ext4 => mkfs.ext4(),
        FsType::Vfat => mkfs.vfat(),
        FsType::Xfs => mkfs.xfs(),
    }
}

/// One filesystem to make: where, and from which tree directory (if the tree has it).
struct Mkfs<'a> {
    fs: &'a Filesystem,
    part: &'a Placed,
    image: &'a Path,
    src: Option<&'a Path>,
}

impl Mkfs<'_> {
    /// `mkfs.ext4 -d`: made and filled in one step.
    fn ext4(&self) -> Result<(), AssemblerError> {
        let mut a: Vec<String> = vec!["-q".into(), "-F".into(), "-U".into(), self.fs.uuid.clone()];
        if let Some(l) = &self.fs.label {
            a.extend(["-L".into(), l.clone()]);
        }
        if let Some(src) = self.src {
            a.extend(["-d".into(), src.display().to_string()]);
        }
        a.extend([
            "-E".into(),
            format!("offset={}", self.part.start * 512),
            self.image.display().to_string(),
            format!("{}k", self.part.size * 512 / 1024),
        ]);
        tool::run_args("mkfs.ext4", &a).map(|_| ())
    }

    /// `mkfs.vfat --offset`, then filled with mtools.
    fn vfat(&self) -> Result<(), AssemblerError> {
        let mut a: Vec<String> = vec![
            "--offset".into(),
            self.part.start.to_string(),
            "-i".into(),
            self.fs.uuid.replace('-', ""),
        ];
        if let Some(l) = &self.fs.label {
            a.extend(["-n".into(), l.clone()]);
        }
        a.extend([
            self.image.display().to_string(),
            (self.part.size * 512 / 1024).to_string(),
        ]);
        tool::run_args("mkfs.vfat", &a)?;
        match self.src {
            Some(src) => copy_into_fat(src, self.image, self.part.start * 512),
            None => Ok(()),
        }
    }

    /// `mkfs.xfs` on a loop device over the partition, filled through a mount.
    fn xfs(&self) -> Result<(), AssemblerError> {
        let dev = remoteloop::device(self.image, self.part.start * 512, self.part.size * 512)?;
        let mut a: Vec<String> = vec!["-m".into(), format!("uuid={}", self.fs.uuid)];
        if let Some(l) = &self.fs.label {
            a.extend(["-L".into(), l.clone()]);
        }
        a.push(dev.path().display().to_string());
        tool::run_args("mkfs.xfs", &a)?;
        let Some(src) = self.src else { return Ok(()) };
        let mounted = Mount::new(dev.path(), FsType::Xfs.name())?;
        let from = format!("{}/.", src.display());
        tool::run_args(
            "cp",
            &["-a".as_ref(), from.as_ref(), mounted.path().as_os_str()],
        )?;
        mounted.unmount()
    }
}

/// `IMAGE@@OFFSET`, mtools' way to address a filesystem inside a disk image.
pub fn mtools_image(image: &Path, offset: u64) -> String {
    format!("{}@@{offset}", image.display())
}

/// Copies the entries of `src` into the root of the FAT filesystem at `offset`.
fn copy_into_fat(src: &Path, image: &Path, offset: u64) -> Result<(), AssemblerError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
        .map_err(|e| AssemblerError::Tool(format!("reading {}: {e}", src.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort();
    let mut a: Vec<String> = vec![
        "-s".into(),
        "-p".into(),
        "-Q".into(),
        "-m".into(),
        "-i".into(),
        mtools_image(image, offset),
    ];
    a.extend(entries.iter().map(|e| e.display().to_string()));
    a.push("::/".into());
    tool::run_args("mcopy", &a).map(|_| ())
}
