//! GRUB 2 into a partitioned image, for BIOS or EFI.
//!
//! Core image placement is v10's: after the MBR (dos; it must end before the first partition)
//! or in the BIOS-boot partition (gpt), with the first 440 bytes of `boot.img` and the core's
//! sector written into the MBR. For `x86_64-efi` GRUB is built as an EFI program and written to
//! `EFI/BOOT/BOOTX64.EFI` on the EFI system partition (a vfat partition mounted at
//! `/boot/efi`), with its prefix on the partition holding `/boot`. For `powerpc-ieee1275`
//! (ppc64le with Open Firmware, v10's f30-ppc64le) the core image goes into the PReP boot
//! partition, which the firmware loads and runs itself: no first stage is written.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::args::invalid;
use crate::image::filesystem::{mtools_image, Filesystem, FsType};
use crate::image::output::TempFile;
use crate::image::partition::{PartitionTable, PtType, BIOS_BOOT_GUID};
use crate::image::Placed;
use crate::{tool, AssemblerError};

/// The bootloader to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootloader {
    None,
    /// GRUB 2 for BIOS PCs: core image in the MBR gap or the BIOS-boot partition.
    Grub2Bios,
    /// GRUB 2 as `EFI/BOOT/BOOTX64.EFI` on the EFI system partition.
    Grub2Efi,
    /// GRUB 2 for Open Firmware (ppc64le): core image in the PReP boot partition.
    Grub2Ieee1275,
    /// zipl for s390x (see [`crate::image::zipl`]).
    Zipl,
}

/// The PReP boot partition's type on dos and on gpt.
pub const PREP_DOS: &str = "41";
pub const PREP_GUID: &str = "9E1A2D38-C612-4316-AA26-8B49521E5A8B";

/// Installs `bootloader` into `image`, partitioned as `table` and laid out as `placed`.
pub fn install(
    bootloader: Bootloader,
    table: &PartitionTable,
    placed: &[Placed],
    image: &Path,
    tree: &Path,
) -> Result<(), AssemblerError> {
    match bootloader {
        Bootloader::None => return Ok(()),
        Bootloader::Zipl => return crate::image::zipl::install(table, placed, image),
        _ => {}
    }
    let (prefix, boot_fs) = boot_prefix(table, tree)?;
    let disk = Disk {
        table,
        placed,
        image,
        prefix,
        boot_fs,
    };
    match bootloader {
        Bootloader::None | Bootloader::Zipl => Ok(()),
        Bootloader::Grub2Bios => disk.install_bios(),
        Bootloader::Grub2Efi => disk.install_efi(),
        Bootloader::Grub2Ieee1275 => disk.install_ieee1275(),
    }
}

/// The image GRUB goes into, and where its prefix points.
struct Disk<'a> {
    table: &'a PartitionTable,
    placed: &'a [Placed],
    image: &'a Path,
    /// GRUB's prefix, e.g. `(,msdos1)/boot/grub2`.
    prefix: String,
    /// The filesystem holding the prefix.
    boot_fs: &'a Filesystem,
}

/// Modules baked into the core image besides the partition map and filesystem, so the
/// configuration runs even when the tree has no module directory.
const EXTRA_MODULES: &[&str] = &[
    "normal",
    "linux",
    "search",
    "search_fs_uuid",
    "configfile",
    "echo",
    "test",
];

impl Disk<'_> {
    fn install_bios(&self) -> Result<(), AssemblerError> {
        let mut modules = vec![
            "biosdisk",
            part_module(self.table.pttype),
            fs_module(self.boot_fs)?,
        ];
        modules.extend(EXTRA_MODULES);
        let core = mkimage("i386-pc", &self.prefix, &modules)?;
        let at = core_placement(self.table.pttype, self.placed, core.len() as u64)?;
        let boot = std::fs::read("/usr/lib/grub/i386-pc/boot.img")
            .map_err(|e| AssemblerError::Tool(format!("reading GRUB's boot.img: {e}")))?;
        if boot.len() < 440 {
            return Err(AssemblerError::Tool("GRUB's boot.img is too short".into()));
        }
        let f = OpenOptions::new()
            .write(true)
            .open(self.image)
            .map_err(|e| AssemblerError::Tool(format!("opening the image: {e}")))?;
        let w = |buf: &[u8], off: u64| {
            f.write_all_at(buf, off)
                .map_err(|e| AssemblerError::Tool(format!("writing GRUB into the image: {e}")))
        };
        w(&core, at.offset)?;
        if let Some(p) = at.patch_at {
            w(&(at.sector + 1).to_le_bytes(), p)?;
        }
        w(&boot[..440], 0)?;
        w(&at.sector.to_le_bytes(), 0x5c)?;
        Ok(())
    }

    fn install_ieee1275(&self) -> Result<(), AssemblerError> {
        let mut modules = vec![part_module(self.table.pttype), fs_module(self.boot_fs)?];
        modules.extend(EXTRA_MODULES);
        let core = mkimage("powerpc-ieee1275", &self.prefix, &modules)?;
        let prep = prep_partition(self.placed, core.len() as u64)?;
        let f = OpenOptions::new()
            .write(true)
            .open(self.image)
            .map_err(|e| AssemblerError::Tool(format!("opening the image: {e}")))?;
        f.write_all_at(&core, prep.start * 512)
            .map_err(|e| AssemblerError::Tool(format!("writing GRUB into the image: {e}")))
    }

    fn install_efi(&self) -> Result<(), AssemblerError> {
        let esp = self
            .table
            .partitions
            .iter()
            .position(|p| {
                p.filesystem
                    .as_ref()
                    .is_some_and(|f| f.fstype == FsType::Vfat && f.mountpoint == "/boot/efi")
            })
            .ok_or_else(|| {
                invalid(
                    "partitions",
                    "x86_64-efi needs an EFI system partition: a vfat filesystem at /boot/efi",
                )
            })?;
        let mut modules = vec![
            part_module(self.table.pttype),
            "part_msdos",
            fs_module(self.boot_fs)?,
            "fat",
            "all_video",
            "gzio",
        ];
        modules.extend(EXTRA_MODULES);
        let efi = mkimage("x86_64-efi", &self.prefix, &modules)?;
        let img = mtools_image(self.image, self.placed[esp].start * 512);
        for dir in ["::/EFI", "::/EFI/BOOT"] {
            // Fails harmlessly when the tree already had the directory.
            let _ = tool::run_args("mmd", &["-i", &img, dir]);
        }
        let tmp = TempFile::new(
            std::env::temp_dir().join(format!("osbuild-bootx64-{}.efi", std::process::id())),
        );
        std::fs::write(tmp.path(), &efi)
            .map_err(|e| AssemblerError::Tool(format!("writing the EFI program: {e}")))?;
        let src = tmp.path().display().to_string();
        tool::run_args(
            "mcopy",
            &["-o", "-i", &img, &src, "::/EFI/BOOT/BOOTX64.EFI"],
        )?;
        Ok(())
    }
}

/// GRUB's prefix on the partition holding `/boot` (else `/`), and that partition's filesystem.
fn boot_prefix<'t>(
    table: &'t PartitionTable,
    tree: &Path,
) -> Result<(String, &'t Filesystem), AssemblerError> {
    let (index, fs) = table.boot_filesystem().ok_or_else(|| {
        invalid(
            "bootloader",
            "grub2 needs a partition with a filesystem mounted at /boot or /",
        )
    })?;
    let prefix = grub_prefix(table.pttype, index, &fs.mountpoint, grub_dir(tree));
    Ok((prefix, fs))
}

/// Where GRUB's files live in the tree: `boot/grub2` (Fedora) or `boot/grub` (Debian).
fn grub_dir(tree: &Path) -> &'static str {
    if tree.join("boot/grub2").is_dir() {
        "/boot/grub2"
    } else {
        "/boot/grub"
    }
}

/// GRUB's prefix: `(,msdos1)/boot/grub2`, the grub dir relative to its partition.
pub fn grub_prefix(pttype: PtType, index: usize, mountpoint: &str, grub_dir: &str) -> String {
    let rel = if mountpoint == "/" {
        grub_dir.to_owned()
    } else {
        grub_dir
            .strip_prefix(mountpoint.trim_end_matches('/'))
            .unwrap_or(grub_dir)
            .to_owned()
    };
    let map = match pttype {
        PtType::Dos => "msdos",
        PtType::Gpt => "gpt",
    };
    format!("(,{map}{}){rel}", index + 1)
}

fn part_module(pttype: PtType) -> &'static str {
    match pttype {
        PtType::Dos => "part_msdos",
        PtType::Gpt => "part_gpt",
    }
}

fn fs_module(fs: &Filesystem) -> Result<&'static str, AssemblerError> {
    match fs.fstype {
        FsType::Ext4 => Ok("ext2"),
        FsType::Xfs => Ok("xfs"),
        FsType::Vfat => Err(invalid(
            "bootloader",
            "unknown boot filesystem type: GRUB's /boot must be on ext4 or xfs",
        )),
    }
}

/// Builds a GRUB image with `grub2-mkimage`/`grub-mkimage` and returns its bytes.
fn mkimage(platform: &str, prefix: &str, modules: &[&str]) -> Result<Vec<u8>, AssemblerError> {
    let program = tool::find_program(&["grub2-mkimage", "grub-mkimage"]).ok_or_else(|| {
        AssemblerError::Tool(
            "neither grub2-mkimage nor grub-mkimage is in the build root \
             (install grub2-tools or grub-common)"
                .into(),
        )
    })?;
    let dir = format!("/usr/lib/grub/{platform}");
    if !Path::new(&dir).is_dir() {
        return Err(AssemblerError::Tool(format!(
            "{dir} does not exist in the build root (install grub2-pc-modules / grub-pc-bin, \
             or grub2-efi-x64-modules / grub-efi-amd64-bin)"
        )));
    }
    let out = TempFile::new(
        std::env::temp_dir().join(format!("osbuild-grub-{}.img", std::process::id())),
    );
    let mut a: Vec<String> = vec![
        "--directory".into(),
        dir,
        "--prefix".into(),
        prefix.into(),
        "--format".into(),
        platform.into(),
        "--compression".into(),
        "auto".into(),
        "--output".into(),
        out.path().display().to_string(),
    ];
    a.extend(modules.iter().map(|m| m.to_string()));
    tool::run_args(program, &a)?;
    std::fs::read(out.path())
        .map_err(|e| AssemblerError::Tool(format!("reading the GRUB image: {e}")))
}

/// The PReP boot partition, which must hold the core image (v10 kept its last sector free).
pub fn prep_partition(placed: &[Placed], core_len: u64) -> Result<&Placed, AssemblerError> {
    let prep = placed
        .iter()
        .find(|p| p.ptype.eq_ignore_ascii_case(PREP_DOS) || p.ptype.eq_ignore_ascii_case(PREP_GUID))
        .ok_or_else(|| {
            invalid(
                "partitions",
                format!(
                    "powerpc-ieee1275 needs a PReP boot partition (type {PREP_DOS} on dos, {PREP_GUID} on gpt)"
                ),
            )
        })?;
    if core_len >= (prep.size * 512).saturating_sub(512) {
        return Err(AssemblerError::Tool(format!(
            "GRUB's core image ({core_len} bytes) does not fit the PReP boot partition ({} bytes)",
            prep.size * 512
        )));
    }
    Ok(prep)
}

/// Where the core image goes and what sector number `boot.img` is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorePlacement {
    /// Byte offset of the core image.
    pub offset: u64,
    /// The sector of the core image, written into boot.img at 0x5c.
    pub sector: u64,
    /// For GPT: the LE u64 `start + 1` written at this byte offset (core's second sector).
    pub patch_at: Option<u64>,
}

/// v10's placement: after the MBR (dos) or in the BIOS-boot partition (gpt).
pub fn core_placement(
    pttype: PtType,
    placed: &[Placed],
    core_len: u64,
) -> Result<CorePlacement, AssemblerError> {
    match pttype {
        PtType::Dos => {
            let first = placed.iter().map(|p| p.start).min().unwrap_or(0);
            let gap = (first * 512).saturating_sub(512);
            if core_len > gap {
                return Err(AssemblerError::Tool(format!(
                    "GRUB's core image ({core_len} bytes) does not fit between the MBR and the \
                     first partition ({gap} bytes): start the first partition later"
                )));
            }
            Ok(CorePlacement {
                offset: 512,
                sector: 1,
                patch_at: None,
            })
        }
        PtType::Gpt => {
            let bb = placed
                .iter()
                .find(|p| p.ptype.eq_ignore_ascii_case(BIOS_BOOT_GUID))
                .ok_or_else(|| {
                    invalid(
                        "partitions",
                        format!(
                            "BIOS boot on GPT needs a BIOS-boot partition (type {BIOS_BOOT_GUID})"
                        ),
                    )
                })?;
            if core_len > bb.size * 512 {
                return Err(AssemblerError::Tool(format!(
                    "GRUB's core image ({core_len} bytes) is larger than the BIOS-boot partition \
                     ({} bytes)",
                    bb.size * 512
                )));
            }
            Ok(CorePlacement {
                offset: bb.start * 512,
                sector: bb.start,
                patch_at: Some(bb.start * 512 + 500),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_prefix_table() {
        let cases = [
            (PtType::Dos, 0, "/", "/boot/grub2", "(,msdos1)/boot/grub2"),
            (PtType::Dos, 1, "/boot", "/boot/grub2", "(,msdos2)/grub2"),
            (PtType::Gpt, 1, "/", "/boot/grub", "(,gpt2)/boot/grub"),
            (PtType::Gpt, 2, "/boot/", "/boot/grub", "(,gpt3)/grub"),
        ];
        for (pt, i, mp, dir, want) in cases {
            assert_eq!(grub_prefix(pt, i, mp, dir), want);
        }
    }

    #[test]
    fn core_placement_table() {
        let p = |start, size, ptype: &str| Placed {
            start,
            size,
            ptype: ptype.into(),
        };
        let dos = [p(2048, 100, "83")];
        assert_eq!(
            core_placement(PtType::Dos, &dos, 30000).unwrap(),
            CorePlacement {
                offset: 512,
                sector: 1,
                patch_at: None
            }
        );
        let e = core_placement(PtType::Dos, &[p(63, 100, "83")], 32257).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let gpt = [p(2048, 2048, BIOS_BOOT_GUID), p(4096, 100, "x")];
        assert_eq!(
            core_placement(PtType::Gpt, &gpt, 30000).unwrap(),
            CorePlacement {
                offset: 2048 * 512,
                sector: 2048,
                patch_at: Some(2048 * 512 + 500)
            }
        );
        assert!(core_placement(PtType::Gpt, &gpt[1..], 1).is_err());
        let e = core_placement(PtType::Gpt, &[p(34, 10, BIOS_BOOT_GUID)], 6000).unwrap_err();
        assert!(e.to_string().contains("larger than the BIOS-boot"), "{e}");
    }

    #[test]
    fn prep_partition_table() {
        let p = |start, size, ptype: &str| Placed {
            start,
            size,
            ptype: ptype.into(),
        };
        let dos = [p(2048, 8192, "41"), p(10240, 100, "83")];
        assert_eq!(prep_partition(&dos, 200_000).unwrap().start, 2048);
        let gpt = [p(2048, 100, "x"), p(4096, 8192, &PREP_GUID.to_lowercase())];
        assert_eq!(prep_partition(&gpt, 1).unwrap().start, 4096);
        let e = prep_partition(&dos[1..], 1).unwrap_err();
        assert!(e.to_string().contains("needs a PReP boot partition"), "{e}");
        let e = prep_partition(&dos, 8192 * 512 - 512).unwrap_err();
        assert!(e.to_string().contains("does not fit the PReP"), "{e}");
    }
}
