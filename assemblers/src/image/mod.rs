//! The image library the assemblers compose: everything that writes an artifact into
//! `output_dir`, cut by what it makes.
//!
//! - [`output`]: plain output file names and the file under construction (a temporary name,
//!   renamed into place; removed when dropped);
//! - [`options`]: the options shared by the image assemblers, read from JSON into the types
//!   below (with the option's name in every error);
//! - [`partition`]: partition tables, written with `sfdisk` and read back with `sfdisk --json`;
//! - [`filesystem`]: making and filling ext4, vfat and xfs at a partition's place in an image;
//! - [`fat`]: the dates of a FAT filesystem's directories, for a reproducible build;
//! - [`mount`]: the one mount the library needs (xfs through a loop device), and its owner;
//! - [`grub`]: GRUB 2 for BIOS (core image, MBR), EFI (`BOOTX64.EFI` on the ESP) and Open
//!   Firmware (PReP partition);
//! - [`zipl`]: s390x's boot loader, run from the build root on the mounted image;
//! - [`convert`]: the output formats and the conversion with `qemu-img` or `xz`;
//! - [`reproducible`]: what changes under `SOURCE_DATE_EPOCH` (tool clocks, derived UUIDs).
//!
//! [`Placed`], a region of the image, is the vocabulary the partition table and the
//! filesystems share.

pub mod convert;
pub mod fat;
pub mod filesystem;
pub mod grub;
pub mod mount;
pub mod options;
pub mod output;
pub mod partition;
pub mod reproducible;
pub mod zipl;

/// A partition as laid out on the disk (from `sfdisk --json`), in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub start: u64,
    pub size: u64,
    pub ptype: String,
}
