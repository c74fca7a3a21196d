//! `org.osbuild.qemu`: a partitioned, optionally bootable disk image of the tree, converted to
//! `raw`, `raw.xz`, `qcow2`, `vdi`, `vmdk` or `vpc`.
//!
//! The plan follows osbuild v10, composed from [`crate::image`]: a sparse raw file of `size`
//! bytes, a partition table written by `sfdisk` (and read back with `sfdisk --json` for the
//! starts and sizes it chose), one filesystem per partition that has one (in mountpoint
//! order), GRUB, then the conversion with `qemu-img`.
//!
//! Decisions beyond v10:
//! - ext4 and vfat are written without loop devices or mounts; only xfs needs a loop device
//!   (see [`crate::image::filesystem`]).
//! - A bootable partition gets one `bootable` flag (v10 repeated it once per field).
//! - `bootloader.platform` may also be `x86_64-efi` (see [`crate::image::grub`]).
//! - `qcow2_compression` zstd writes a qcow2 with zstd clusters (see
//!   [`crate::image::convert`]); without it the image is v10's zlib qcow2.
//! - The image is built under a temporary name in the output directory and renamed into place;
//!   a failure leaves nothing behind.

use std::path::Path;

use serde_json::{Map, Value};

use crate::args::{image_size, required, Arguments};
use crate::image::convert::{convert, Format, Qcow2Compression};
use crate::image::grub::{self, Bootloader};
use crate::image::options::{self, check_keys};
use crate::image::output::{check_filename, TempFile};
use crate::image::partition::{PartitionTable, PtType};
use crate::image::reproducible;
use crate::tool;
use crate::AssemblerError;

/// The validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOptions {
    pub format: Format,
    /// How a qcow2's clusters are compressed.
    pub qcow2_compression: Qcow2Compression,
    pub filename: String,
    /// Bytes, a multiple of 512.
    pub size: u64,
    pub table: PartitionTable,
    pub bootloader: Bootloader,
}

impl QemuOptions {
    /// Validates the options object.
    pub fn parse(options: &Map<String, Value>) -> Result<Self, AssemblerError> {
        check_keys(
            options,
            &[
                "format",
                "qcow2_compression",
                "filename",
                "ptuuid",
                "size",
                "root_fs_uuid",
                "root_fs_type",
                "pttype",
                "partitions",
                "bootloader",
            ],
            "options",
        )?;
        let format = options::format(options)?;
        let qcow2_compression = options::qcow2_compression(options, format)?;
        let filename = required(options, "filename")?;
        check_filename(&filename)?;
        let ptuuid = required(options, "ptuuid")?;
        let size = image_size(options)?;
        let table = options::partition_table(options, ptuuid)?;
        let bootloader = options::bootloader(options, table.pttype)?;
        Ok(QemuOptions {
            format,
            qcow2_compression,
            filename,
            size,
            table,
            bootloader,
        })
    }
}

/// Runs the assembler.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    let opts = QemuOptions::parse(&args.options)?;
    let image = TempFile::sized(
        args.output_dir
            .join(format!(".{}.osbuild-raw", opts.filename)),
        opts.size,
    )
    .map_err(|e| AssemblerError::Tool(format!("creating the disk image: {e}")))?;
    let placed = opts.table.write(image.path())?;
    if let Some(epoch) = reproducible::source_epoch() {
        for args in gpt_partition_uuid_args(&opts.table, placed.len(), image.path(), epoch) {
            tool::run_args("sfdisk", &args)?;
        }
    }
    opts.table
        .make_filesystems(&placed, image.path(), &args.tree)?;
    grub::install(
        opts.bootloader,
        &opts.table,
        &placed,
        image.path(),
        &args.tree,
    )?;
    convert(
        opts.format,
        opts.qcow2_compression,
        image,
        &args.output_dir.join(&opts.filename),
    )
}

/// `sfdisk --part-uuid` calls that give each of the `count` partitions of a GPT a UUID derived
/// from the epoch, the table's id and the partition's number (sfdisk picks random ones).
fn gpt_partition_uuid_args(
    table: &PartitionTable,
    count: usize,
    image: &Path,
    epoch: u64,
) -> Vec<Vec<String>> {
    if table.pttype != PtType::Gpt {
        return Vec::new();
    }
    (1..=count as u64)
        .map(|n| {
            let uuid = reproducible::derived_uuid(epoch, "gpt-partition", &table.ptuuid, n);
            vec![
                "--part-uuid".into(),
                image.display().to_string(),
                n.to_string(),
                uuid,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::filesystem::FsType;
    use crate::image::partition::BIOS_BOOT_GUID;

    fn opts(json: &str) -> Result<QemuOptions, AssemblerError> {
        let v: Value = serde_json::from_str(json).unwrap();
        QemuOptions::parse(v.as_object().unwrap())
    }
    const BASE: &str = r#""format": "qcow2", "filename": "d.qcow2", "ptuuid": "0x14fc63d2""#;

    #[test]
    fn option_errors_table() {
        let cases: [(String, &str); 13] = [
            (
                format!(r#"{{{BASE}, "size": 512, "root_fs_uuid": "u", "qcow2_compression": "lz4"}}"#),
                r#"invalid option "qcow2_compression": "lz4" is not one of zlib, zstd"#,
            ),
            (
                r#"{"format": "vmdk", "filename": "d", "ptuuid": "x", "size": 512, "root_fs_uuid": "u", "qcow2_compression": "zstd"}"#.into(),
                r#"invalid option "qcow2_compression": only applies to format "qcow2", not "vmdk""#,
            ),
            (
                r#"{"format": "raw", "filename": "d", "ptuuid": "x", "size": 512, "root_fs_uuid": "u", "qcow2_compression": "zlib"}"#.into(),
                r#"only applies to format "qcow2", not "raw""#,
            ),
            (
                format!(r#"{{{BASE}, "size": 1000, "root_fs_uuid": "u"}}"#),
                r#"invalid option "size": 1000 is not a multiple of 512 bytes (the sector size); use 1024"#,
            ),
            (
                format!(r#"{{{BASE}, "root_fs_uuid": "u"}}"#),
                r#"invalid option "size": is required"#,
            ),
            (
                format!(r#"{{{BASE}, "size": "1G", "root_fs_uuid": "u"}}"#),
                "must be a positive integer (bytes)",
            ),
            (
                r#"{"format": "iso", "filename": "d", "ptuuid": "x", "size": 512, "root_fs_uuid": "u"}"#.into(),
                r#""iso" is not one of raw, raw.xz, qcow2, vdi, vmdk, vpc"#,
            ),
            (
                format!(r#"{{{BASE}, "size": 512}}"#),
                r#"invalid option "partitions": is required"#,
            ),
            (
                format!(r#"{{{BASE}, "size": 512, "root_fs_uuid": "u", "root_fs_type": "vfat"}}"#),
                r#""vfat" is not one of ext4, xfs"#,
            ),
            (
                format!(r#"{{{BASE}, "size": 512, "pttype": "sun", "partitions": []}}"#),
                r#""sun" is not one of mbr, dos, gpt"#,
            ),
            (
                format!(
                    r#"{{{BASE}, "size": 512, "partitions": [{{"filesystem": {{"type": "btrfs", "uuid": "u", "mountpoint": "/"}}}}]}}"#
                ),
                r#""btrfs" is not one of ext4, xfs, vfat"#,
            ),
            (
                format!(
                    r#"{{{BASE}, "size": 512, "partitions": [{{"filesystem": {{"type": "ext4", "uuid": "u", "mountpoint": "../x"}}}}]}}"#
                ),
                "must be an absolute path",
            ),
            (
                format!(
                    r#"{{{BASE}, "size": 512, "partitions": [], "bootloader": {{"type": "lilo"}}}}"#
                ),
                r#"type "lilo" is not supported (grub2, zipl or none)"#,
            ),
        ];
        for (json, want) in cases {
            match opts(&json) {
                Err(e) => assert!(e.to_string().contains(want), "{json}: {e}"),
                Ok(o) => panic!("{json}: accepted {o:?}"),
            }
        }
    }

    #[test]
    fn qcow2_compression_is_zlib_unless_asked() {
        let o = |extra: &str| {
            opts(&format!(
                r#"{{{BASE}, "size": 512, "root_fs_uuid": "u"{extra}}}"#
            ))
            .unwrap()
            .qcow2_compression
        };
        assert_eq!(o(""), Qcow2Compression::Zlib);
        assert_eq!(
            o(r#", "qcow2_compression": "zlib""#),
            Qcow2Compression::Zlib
        );
        assert_eq!(
            o(r#", "qcow2_compression": "zstd""#),
            Qcow2Compression::Zstd
        );
    }

    #[test]
    fn legacy_root_is_one_bootable_linux_partition() {
        let o = opts(&format!(
            r#"{{{BASE}, "size": 1048576000, "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "root_fs_type": "xfs"}}"#
        ))
        .unwrap();
        assert_eq!(o.table.pttype, PtType::Dos);
        assert_eq!(o.bootloader, Bootloader::Grub2Bios);
        assert_eq!(
            o.table.sfdisk_script(),
            "label: dos\nlabel-id: 0x14fc63d2\ntype=\"83\", bootable\n"
        );
        let fs = o.table.partitions[0].filesystem.as_ref().unwrap();
        assert_eq!((fs.fstype, fs.mountpoint.as_str()), (FsType::Xfs, "/"));
    }

    #[test]
    fn sfdisk_script_has_one_bootable_flag_per_partition() {
        let o = opts(&format!(
            r#"{{{BASE}, "size": 1073741824, "pttype": "gpt", "partitions": [
                {{"start": 2048, "size": 2048, "type": "{BIOS_BOOT_GUID}", "name": "bios"}},
                {{"start": 4096, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "bootable": true,
                  "filesystem": {{"type": "ext4", "uuid": "u", "mountpoint": "/"}}}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            o.bootloader,
            Bootloader::None,
            "gpt defaults to no bootloader"
        );
        assert_eq!(
            o.table.sfdisk_script(),
            format!(
                "label: gpt\nlabel-id: 0x14fc63d2\n\
                 start=\"2048\", size=\"2048\", type=\"{BIOS_BOOT_GUID}\", name=\"bios\"\n\
                 start=\"4096\", type=\"0FC63DAF-8483-4772-8E79-3D69D8477DE4\", bootable\n"
            )
        );
        assert_eq!(o.table.sfdisk_script().matches("bootable").count(), 1);
    }

    #[test]
    fn gpt_partitions_get_derived_uuids_under_an_epoch() {
        let gpt = opts(&format!(
            r#"{{{BASE}, "size": 1073741824, "pttype": "gpt", "partitions": [
                {{"size": 2048, "type": "{BIOS_BOOT_GUID}"}},
                {{"type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}}]}}"#
        ))
        .unwrap();
        let calls = gpt_partition_uuid_args(&gpt.table, 2, Path::new("/o/d"), 7);
        let uuid = |n| reproducible::derived_uuid(7, "gpt-partition", "0x14fc63d2", n);
        assert_eq!(
            calls,
            [
                ["--part-uuid", "/o/d", "1", &uuid(1)],
                ["--part-uuid", "/o/d", "2", &uuid(2)]
            ]
        );
        assert_ne!(uuid(1), uuid(2));
        let dos = opts(&format!(
            r#"{{{BASE}, "size": 1048576000, "root_fs_uuid": "u"}}"#
        ))
        .unwrap();
        assert!(gpt_partition_uuid_args(&dos.table, 1, Path::new("/o/d"), 7).is_empty());
    }
}
