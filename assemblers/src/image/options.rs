//! The image assemblers' options, read from JSON into the library's types; every error names
//! the option. The engine checked the options against the schema already, but a module must
//! stand alone, so each reader checks again.

use serde_json::{Map, Value};

use crate::args::{invalid, required, string};
use crate::image::convert::{Format, Qcow2Compression};
use crate::image::filesystem::{Filesystem, FsType};
use crate::image::grub::Bootloader;
use crate::image::partition::{Partition, PartitionTable, PtType};
use crate::AssemblerError;

/// Rejects a key of `obj` not in `allowed`, naming `what` holds it.
pub fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    what: &'static str,
) -> Result<(), AssemblerError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(what, format!("unknown option \"{k}\""))),
        None => Ok(()),
    }
}

/// The required `format`.
pub fn format(options: &Map<String, Value>) -> Result<Format, AssemblerError> {
    let f = required(options, "format")?;
    Format::parse(&f).ok_or_else(|| {
        invalid(
            "format",
            format!("{f:?} is not one of raw, raw.xz, qcow2, vdi, vmdk, vpc"),
        )
    })
}

/// The optional `qcow2_compression` (zlib unless given), which only a qcow2 `format` takes.
pub fn qcow2_compression(
    options: &Map<String, Value>,
    format: Format,
) -> Result<Qcow2Compression, AssemblerError> {
    let Some(name) = string(options, "qcow2_compression")? else {
        return Ok(Qcow2Compression::default());
    };
    let compression = Qcow2Compression::parse(&name).ok_or_else(|| {
        invalid(
            "qcow2_compression",
            format!("{name:?} is not one of {}", Qcow2Compression::NAMES),
        )
    })?;
    if format != Format::Qcow2 {
        return Err(invalid(
            "qcow2_compression",
            format!(
                "only applies to format \"qcow2\", not {:?}; remove it",
                format.name()
            ),
        ));
    }
    Ok(compression)
}

/// The filesystem type named `name` in option `key`, one of `allowed`.
pub fn fs_type(
    name: &str,
    key: &'static str,
    allowed: &[FsType],
) -> Result<FsType, AssemblerError> {
    allowed
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
            invalid(key, format!("{name:?} is not one of {}", names.join(", ")))
        })
}

/// The partition table with id `ptuuid`: either `pttype` and `partitions`, or v10's legacy
/// `root_fs_uuid` (and `root_fs_type`) for one bootable root partition on a dos table.
pub fn partition_table(
    options: &Map<String, Value>,
    ptuuid: String,
) -> Result<PartitionTable, AssemblerError> {
    let (pttype, partitions) = if options.get("root_fs_uuid").is_some() {
        (PtType::Dos, vec![legacy_root(options)?])
    } else {
        (pttype(options)?, partitions(options)?)
    };
    Ok(PartitionTable {
        pttype,
        ptuuid,
        partitions,
    })
}

fn legacy_root(options: &Map<String, Value>) -> Result<Partition, AssemblerError> {
    if options.contains_key("partitions") || options.contains_key("pttype") {
        return Err(invalid(
            "root_fs_uuid",
            "give either root_fs_uuid or pttype with partitions, not both",
        ));
    }
    let t = string(options, "root_fs_type")?.unwrap_or_else(|| "ext4".into());
    let fstype = fs_type(&t, "root_fs_type", &[FsType::Ext4, FsType::Xfs])?;
    Ok(Partition {
        ptype: Some("83".into()),
        bootable: true,
        filesystem: Some(Filesystem {
            fstype,
            uuid: required(options, "root_fs_uuid")?,
            label: None,
            mountpoint: "/".into(),
        }),
        ..Partition::default()
    })
}

fn pttype(options: &Map<String, Value>) -> Result<PtType, AssemblerError> {
    match string(options, "pttype")?.as_deref() {
        None | Some("dos") | Some("mbr") => Ok(PtType::Dos),
        Some("gpt") => Ok(PtType::Gpt),
        Some(other) => Err(invalid(
            "pttype",
            format!("{other:?} is not one of mbr, dos, gpt"),
        )),
    }
}

fn partitions(options: &Map<String, Value>) -> Result<Vec<Partition>, AssemblerError> {
    match options.get("partitions") {
        Some(Value::Array(list)) => list.iter().map(partition).collect(),
        Some(_) => Err(invalid("partitions", "must be an array")),
        None => Err(invalid(
            "partitions",
            "is required (or give root_fs_uuid for a single root partition)",
        )),
    }
}

fn partition(value: &Value) -> Result<Partition, AssemblerError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("partitions", "each partition must be an object"))?;
    check_keys(
        obj,
        &["start", "size", "type", "bootable", "name", "filesystem"],
        "partitions",
    )?;
    let bootable = match obj.get("bootable") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("bootable", "must be true or false")),
    };
    let filesystem = obj.get("filesystem").map(filesystem).transpose()?;
    Ok(Partition {
        start: sectors(obj, "start")?,
        size: sectors(obj, "size")?,
        ptype: string(obj, "type")?,
        bootable,
        name: string(obj, "name")?,
        filesystem,
    })
}

fn sectors(obj: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, AssemblerError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "must be a non-negative integer (512-byte sectors)")),
    }
}

fn filesystem(value: &Value) -> Result<Filesystem, AssemblerError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("filesystem", "must be an object"))?;
    check_keys(obj, &["type", "uuid", "label", "mountpoint"], "filesystem")?;
    let t = required(obj, "type")?;
    let fstype = fs_type(&t, "type", &[FsType::Ext4, FsType::Xfs, FsType::Vfat])?;
    let mountpoint = required(obj, "mountpoint")?;
    if !mountpoint.starts_with('/') || mountpoint.split('/').any(|c| c == "..") {
        return Err(invalid(
            "mountpoint",
            format!("{mountpoint:?} must be an absolute path without \"..\""),
        ));
    }
    Ok(Filesystem {
        fstype,
        uuid: required(obj, "uuid")?,
        label: string(obj, "label")?,
        mountpoint,
    })
}

/// The `bootloader` object; without one, dos tables get GRUB for BIOS and gpt tables none.
pub fn bootloader(
    options: &Map<String, Value>,
    pttype: PtType,
) -> Result<Bootloader, AssemblerError> {
    let b = match options.get("bootloader") {
        None => {
            return Ok(match pttype {
                PtType::Dos => Bootloader::Grub2Bios,
                PtType::Gpt => Bootloader::None,
            })
        }
        Some(Value::Object(b)) => b,
        Some(_) => return Err(invalid("bootloader", "must be an object")),
    };
    check_keys(b, &["type", "platform"], "bootloader")?;
    let platform = string(b, "platform")?;
    match (string(b, "type")?.as_deref(), platform.as_deref()) {
        (Some("none"), _) => Ok(Bootloader::None),
        (Some("zipl"), _) => Ok(Bootloader::Zipl),
        (Some("grub2") | None, None | Some("i386-pc")) => Ok(Bootloader::Grub2Bios),
        (Some("grub2") | None, Some("x86_64-efi")) => Ok(Bootloader::Grub2Efi),
        (Some("grub2") | None, Some("powerpc-ieee1275")) => Ok(Bootloader::Grub2Ieee1275),
        (Some("grub2") | None, Some(p)) => Err(invalid(
            "bootloader",
            format!("platform {p:?} is not one of i386-pc, x86_64-efi, powerpc-ieee1275"),
        )),
        (Some(t), _) => Err(invalid(
            "bootloader",
            format!("type {t:?} is not supported (grub2, zipl or none)"),
        )),
    }
}
