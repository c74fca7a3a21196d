//! Filesystems at a partition's place in an image, made and filled from the tree.
//!
//! ext4 and vfat are written **without loop devices or mounts**: `mkfs.ext4 -d DIR -E
//! offset=` populates the filesystem from the tree directly at the partition's offset, and a
//! FAT filesystem is made with `mkfs.vfat` in a sparse file of the partition's size (so
//! mkfs.fat picks the FAT type and cluster size for that size), filled with mtools (`mcopy`)
//! and copied in. Only xfs needs a loop device, which the engine makes through the
//! `remoteloop` API ([`crate::remoteloop`]); it is formatted, then mounted ([`super::mount`]),
//! filled with `cp -a` and unmounted inside the sandbox's private mount namespace. With
//! `mkfs.ext4 -d`, the files of a nested mountpoint (e.g. `/boot/efi`) also stay in the parent
//! filesystem, hidden under the mount at boot.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::image::mount::Mount;
use crate::image::output::TempFile;
use crate::image::{fat, reproducible, Placed};
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
    /// `mkfs.ext4 -d`: made and filled in one step; under a source epoch with a derived
    /// directory hash seed and the epoch as every inode's access and change time.
    fn ext4(&self) -> Result<(), AssemblerError> {
        let epoch = reproducible::source_epoch();
        tool::run_args(
            "mkfs.ext4",
            &ext4_args(self.fs, self.part, self.image, self.src, epoch),
        )?;
        match epoch {
            Some(epoch) => self.ext4_times(epoch),
            None => Ok(()),
        }
    }

    /// Sets the access and change times of every inode in use to `epoch` (mke2fs -d copies
    /// them from the tree, where no one can set a change time).
    fn ext4_times(&self, epoch: u64) -> Result<(), AssemblerError> {
        let fs = format!("{}?offset={}", self.image.display(), self.part.start * 512);
        let listing = tool::run_args("dumpe2fs", &[fs.as_str()])?;
        let inodes = reproducible::used_inodes(&String::from_utf8_lossy(&listing))
            .ok_or_else(|| AssemblerError::Tool("dumpe2fs printed no inode groups".into()))?;
        let mut script = self.image.as_os_str().to_owned();
        script.push(format!(".debugfs-{}", self.part.start));
        let script = TempFile::new(script.into());
        std::fs::write(
            script.path(),
            reproducible::ext4_times_script(&inodes, epoch),
        )
        .map_err(|e| AssemblerError::Tool(format!("writing the debugfs script: {e}")))?;
        let s = script.path().display().to_string();
        tool::run_args("debugfs", &["-w", "-f", s.as_str(), fs.as_str()]).map(|_| ())
    }

    /// `mkfs.vfat` on a sparse file of exactly the partition's size, filled with mtools, then
    /// copied into the partition. mkfs.fat chooses the FAT type and cluster size from the size
    /// of the file it is given (not from a block count), so this is what it makes on a device
    /// of the partition's size, as v10 did on a loop device of the partition.
    fn vfat(&self) -> Result<(), AssemblerError> {
        let mut name = self.image.as_os_str().to_owned();
        name.push(format!(".vfat-{}", self.part.start));
        let fat = TempFile::sized(name.into(), self.part.size * 512)
            .map_err(|e| AssemblerError::Tool(format!("creating the FAT filesystem: {e}")))?;
        let mut a: Vec<String> = vec!["-i".into(), self.fs.uuid.replace('-', "")];
        if let Some(l) = &self.fs.label {
            a.extend(["-n".into(), l.clone()]);
        }
        a.push(fat.path().display().to_string());
        tool::run_args("mkfs.vfat", &a)?;
        if let Some(src) = self.src {
            copy_into_fat(src, fat.path(), 0)?;
        }
        if let Some(epoch) = reproducible::source_epoch() {
            fat::stamp_directories(fat.path(), epoch)?;
        }
        copy_data_into(fat.path(), self.image, self.part.start * 512)
            .map_err(|e| AssemblerError::Tool(format!("copying the FAT filesystem: {e}")))
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

/// `mkfs.ext4` arguments for `fs` at `part` of `image`, filled from `src`; under a source
/// epoch with a directory hash seed derived from it, the filesystem's UUID and the start.
fn ext4_args(
    fs: &Filesystem,
    part: &Placed,
    image: &Path,
    src: Option<&Path>,
    epoch: Option<u64>,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["-q".into(), "-F".into(), "-U".into(), fs.uuid.clone()];
    if let Some(l) = &fs.label {
        a.extend(["-L".into(), l.clone()]);
    }
    if let Some(src) = src {
        a.extend(["-d".into(), src.display().to_string()]);
    }
    let mut extended = format!("offset={}", part.start * 512);
    if let Some(epoch) = epoch {
        let seed = reproducible::derived_uuid(epoch, "ext4-hash-seed", &fs.uuid, part.start);
        extended.push_str(&format!(",hash_seed={seed}"));
    }
    a.extend([
        "-E".into(),
        extended,
        image.display().to_string(),
        format!("{}k", part.size * 512 / 1024),
    ]);
    a
}

/// Writes the blocks of `from` that are not all zeros into `image` at `offset`; the rest of
/// the partition already reads as zeros, in a new sparse image, and stays a hole.
fn copy_data_into(from: &Path, image: &Path, offset: u64) -> std::io::Result<()> {
    let mut from = std::fs::File::open(from)?;
    let image = std::fs::OpenOptions::new().write(true).open(image)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = read_full(&mut from, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            image.write_all_at(&buf[..n], offset + at)?;
        }
        at += n as u64;
    }
}

/// Reads until `buf` is full or the file ends; the number of bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_arguments_with_and_without_an_epoch() {
        let fs = Filesystem {
            fstype: FsType::Ext4,
            uuid: "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75".into(),
            label: Some("root".into()),
            mountpoint: "/".into(),
        };
        let part = Placed {
            start: 2048,
            size: 4096,
            ptype: "83".into(),
        };
        let plain = ext4_args(&fs, &part, Path::new("/o/d"), Some(Path::new("/t")), None);
        assert_eq!(
            plain.join(" "),
            "-q -F -U 6e4ff95f-f662-45ee-a82a-bdf44a2d0b75 -L root -d /t -E offset=1048576 /o/d 2048k"
        );
        let seed = reproducible::derived_uuid(7, "ext4-hash-seed", &fs.uuid, 2048);
        let epoch = ext4_args(&fs, &part, Path::new("/o/d"), None, Some(7));
        assert_eq!(
            epoch.join(" "),
            format!(
                "-q -F -U 6e4ff95f-f662-45ee-a82a-bdf44a2d0b75 -L root -E offset=1048576,hash_seed={seed} /o/d 2048k"
            )
        );
    }
}
