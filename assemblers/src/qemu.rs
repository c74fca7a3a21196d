//! `org.osbuild.qemu`: a partitioned, optionally bootable disk image of the tree, converted to
//! `raw`, `raw.xz`, `qcow2`, `vdi`, `vmdk` or `vpc`.
//!
//! The plan follows osbuild v10: a sparse raw file of `size` bytes, a partition table written
//! by `sfdisk` (and read back with `sfdisk --json` for the starts and sizes it chose), one
//! filesystem per partition that has one (in mountpoint order), GRUB's core image for BIOS,
//! then the conversion with `qemu-img`.
//!
//! Decisions beyond v10:
//! - ext4 and vfat are written **without loop devices or mounts**: `mkfs.ext4 -d DIR -E
//!   offset=` populates the filesystem from the tree directly at the partition's offset, and a
//!   FAT filesystem is made with `mkfs.vfat --offset` and filled with mtools (`mcopy -i
//!   IMAGE@@OFFSET`). Only xfs needs a loop device, which the engine makes through the
//!   `remoteloop` API ([`crate::remoteloop`]); it is formatted, mounted, filled with `cp -a`
//!   and unmounted inside the sandbox's private mount namespace.
//! - With mkfs.ext4 -d, the files of a nested mountpoint (e.g. `/boot/efi`) also stay in the
//!   parent filesystem, hidden under the mount at boot.
//! - A bootable partition gets one `bootable` flag (v10 repeated it once per field).
//! - `bootloader.platform` may also be `x86_64-efi`: GRUB is then built as an EFI program and
//!   written to `EFI/BOOT/BOOTX64.EFI` on the EFI system partition (a vfat partition mounted
//!   at `/boot/efi`), with its prefix on the partition holding `/boot`.
//! - Core image placement is v10's: after the MBR (dos; it must end before the first
//!   partition) or in the BIOS-boot partition (gpt), with the first 440 bytes of `boot.img`
//!   and the core's sector written into the MBR.
//! - The image is built under a temporary name in the output directory and renamed into place;
//!   a failure leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Map, Value};

use crate::args::{image_size, invalid, required, string, Arguments};
use crate::tar::check_filename;
use crate::{remoteloop, tool, AssemblerError};

/// GPT type of the BIOS-boot partition that holds GRUB's core image.
pub const BIOS_BOOT_GUID: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type of an EFI system partition.
pub const ESP_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    RawXz,
    Qcow2,
    Vdi,
    Vmdk,
    Vpc,
}

impl Format {
    const ALL: &'static [(&'static str, Format)] = &[
        ("raw", Format::Raw),
        ("raw.xz", Format::RawXz),
        ("qcow2", Format::Qcow2),
        ("vdi", Format::Vdi),
        ("vmdk", Format::Vmdk),
        ("vpc", Format::Vpc),
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, f)| *f)
    }

    /// `qemu-img convert` arguments between the input and output names (v10's choices).
    pub fn qemu_img_args(self) -> Option<Vec<&'static str>> {
        match self {
            Format::Raw | Format::RawXz => None,
            Format::Qcow2 => Some(vec!["-O", "qcow2", "-c"]),
            Format::Vdi => Some(vec!["-O", "vdi"]),
            Format::Vmdk => Some(vec!["-O", "vmdk", "-c"]),
            Format::Vpc => Some(vec!["-O", "vpc", "-o", "subformat=fixed,force_size"]),
        }
    }
}

/// Partition table types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtType {
    Dos,
    Gpt,
}

impl PtType {
    fn label(self) -> &'static str {
        match self {
            PtType::Dos => "dos",
            PtType::Gpt => "gpt",
        }
    }
    /// GRUB's partition map name, as in `(,msdos1)`.
    fn grub_map(self) -> &'static str {
        match self {
            PtType::Dos => "msdos",
            PtType::Gpt => "gpt",
        }
    }
}

/// Filesystem types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
    Vfat,
}

impl FsType {
    fn parse(s: &str, allowed: &[FsType]) -> Option<Self> {
        let t = match s {
            "ext4" => FsType::Ext4,
            "xfs" => FsType::Xfs,
            "vfat" => FsType::Vfat,
            _ => return None,
        };
        allowed.contains(&t).then_some(t)
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

/// One partition as the manifest gives it (start and size in 512-byte sectors).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partition {
    pub start: Option<u64>,
    pub size: Option<u64>,
    pub ptype: Option<String>,
    pub bootable: bool,
    pub name: Option<String>,
    pub filesystem: Option<Filesystem>,
}

/// The bootloader to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootloader {
    None,
    /// GRUB 2 for BIOS PCs: core image in the MBR gap or the BIOS-boot partition.
    Grub2Bios,
    /// GRUB 2 as `EFI/BOOT/BOOTX64.EFI` on the EFI system partition.
    Grub2Efi,
}

/// The validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOptions {
    pub format: Format,
    pub filename: String,
    pub ptuuid: String,
    /// Bytes, a multiple of 512.
    pub size: u64,
    pub pttype: PtType,
    pub partitions: Vec<Partition>,
    pub bootloader: Bootloader,
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

fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    what: &'static str,
) -> Result<(), AssemblerError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(what, format!("unknown option \"{k}\""))),
        None => Ok(()),
    }
}

fn parse_filesystem(v: &Value, allowed: &[FsType]) -> Result<Filesystem, AssemblerError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("filesystem", "must be an object"))?;
    check_keys(obj, &["type", "uuid", "label", "mountpoint"], "filesystem")?;
    let t = required(obj, "type")?;
    let names: Vec<&str> = allowed
        .iter()
        .map(|f| match f {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Vfat => "vfat",
        })
        .collect();
    let fstype = FsType::parse(&t, allowed)
        .ok_or_else(|| invalid("type", format!("{t:?} is not one of {}", names.join(", "))))?;
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

impl QemuOptions {
    /// Validates the options object.
    pub fn parse(options: &Map<String, Value>) -> Result<Self, AssemblerError> {
        check_keys(
            options,
            &[
                "format",
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
        let f = required(options, "format")?;
        let format = Format::parse(&f).ok_or_else(|| {
            invalid(
                "format",
                format!("{f:?} is not one of raw, raw.xz, qcow2, vdi, vmdk, vpc"),
            )
        })?;
        let filename = required(options, "filename")?;
        check_filename(&filename)?;
        let ptuuid = required(options, "ptuuid")?;
        let size = image_size(options)?;
        let legacy = options.get("root_fs_uuid").is_some();
        let (pttype, partitions) = if legacy {
            if options.contains_key("partitions") || options.contains_key("pttype") {
                return Err(invalid(
                    "root_fs_uuid",
                    "give either root_fs_uuid or pttype with partitions, not both",
                ));
            }
            let t = string(options, "root_fs_type")?.unwrap_or_else(|| "ext4".into());
            let fstype = FsType::parse(&t, &[FsType::Ext4, FsType::Xfs])
                .ok_or_else(|| invalid("root_fs_type", format!("{t:?} is not one of ext4, xfs")))?;
            let root = Partition {
                ptype: Some("83".into()),
                bootable: true,
                filesystem: Some(Filesystem {
                    fstype,
                    uuid: required(options, "root_fs_uuid")?,
                    label: None,
                    mountpoint: "/".into(),
                }),
                ..Partition::default()
            };
            (PtType::Dos, vec![root])
        } else {
            let pttype = match string(options, "pttype")?.as_deref() {
                None | Some("dos") | Some("mbr") => PtType::Dos,
                Some("gpt") => PtType::Gpt,
                Some(other) => {
                    return Err(invalid(
                        "pttype",
                        format!("{other:?} is not one of mbr, dos, gpt"),
                    ))
                }
            };
            let list = match options.get("partitions") {
                Some(Value::Array(a)) => a,
                Some(_) => return Err(invalid("partitions", "must be an array")),
                None => {
                    return Err(invalid(
                        "partitions",
                        "is required (or give root_fs_uuid for a single root partition)",
                    ))
                }
            };
            let mut parts = Vec::new();
            for p in list {
                let obj = p
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
                let filesystem = obj
                    .get("filesystem")
                    .map(|f| parse_filesystem(f, &[FsType::Ext4, FsType::Xfs, FsType::Vfat]))
                    .transpose()?;
                parts.push(Partition {
                    start: sectors(obj, "start")?,
                    size: sectors(obj, "size")?,
                    ptype: string(obj, "type")?,
                    bootable,
                    name: string(obj, "name")?,
                    filesystem,
                });
            }
            (pttype, parts)
        };
        let bootloader = match options.get("bootloader") {
            None => match pttype {
                PtType::Dos => Bootloader::Grub2Bios,
                PtType::Gpt => Bootloader::None,
            },
            Some(Value::Object(b)) => {
                check_keys(b, &["type", "platform"], "bootloader")?;
                let platform = string(b, "platform")?;
                match (string(b, "type")?.as_deref(), platform.as_deref()) {
                    (Some("none"), _) => Bootloader::None,
                    (Some("grub2") | None, None | Some("i386-pc")) => Bootloader::Grub2Bios,
                    (Some("grub2") | None, Some("x86_64-efi")) => Bootloader::Grub2Efi,
                    (Some("grub2") | None, Some(p)) => {
                        return Err(invalid(
                            "bootloader",
                            format!("platform {p:?} is not one of i386-pc, x86_64-efi"),
                        ))
                    }
                    (Some(t), _) => {
                        return Err(invalid(
                            "bootloader",
                            format!("type {t:?} is not supported (grub2 or none)"),
                        ))
                    }
                }
            }
            Some(_) => return Err(invalid("bootloader", "must be an object")),
        };
        Ok(QemuOptions {
            format,
            filename,
            ptuuid,
            size,
            pttype,
            partitions,
            bootloader,
        })
    }

    /// The `sfdisk` script: the label, its id, then one line per partition.
    pub fn sfdisk_script(&self) -> String {
        let mut s = format!(
            "label: {}\nlabel-id: {}\n",
            self.pttype.label(),
            self.ptuuid
        );
        for p in &self.partitions {
            let mut fields = Vec::new();
            if let Some(start) = p.start {
                fields.push(format!("start=\"{start}\""));
            }
            if let Some(size) = p.size {
                fields.push(format!("size=\"{size}\""));
            }
            if let Some(t) = &p.ptype {
                fields.push(format!("type=\"{t}\""));
            }
            if let Some(n) = &p.name {
                fields.push(format!("name=\"{n}\""));
            }
            if p.bootable {
                fields.push("bootable".into());
            }
            s.push_str(&fields.join(", "));
            s.push('\n');
        }
        s
    }
}

/// A partition as laid out on the disk (from `sfdisk --json`), in 512-byte sectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub start: u64,
    pub size: u64,
    pub ptype: String,
}

/// Reads the partitions out of `sfdisk --json` output.
pub fn parse_sfdisk_json(text: &[u8]) -> Result<Vec<Placed>, AssemblerError> {
    let bad = |why: &str| AssemblerError::Tool(format!("unexpected sfdisk --json output: {why}"));
    let v: Value = serde_json::from_slice(text).map_err(|_| bad("not JSON"))?;
    let parts = v
        .pointer("/partitiontable/partitions")
        .and_then(|p| p.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    parts
        .iter()
        .map(|p| {
            Ok(Placed {
                start: p["start"].as_u64().ok_or_else(|| bad("no start"))?,
                size: p["size"].as_u64().ok_or_else(|| bad("no size"))?,
                ptype: p["type"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Removes a file on drop unless disarmed (the image under construction).
pub(crate) struct TempFile(pub(crate) Option<PathBuf>);

impl TempFile {
    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the assembler.
pub fn assemble(args: &Arguments) -> Result<(), AssemblerError> {
    let opts = QemuOptions::parse(&args.options)?;
    let image = TempFile(Some(
        args.output_dir
            .join(format!(".{}.osbuild-raw", opts.filename)),
    ));
    let file = File::create(image.path())
        .and_then(|f| f.set_len(opts.size).map(|_| f))
        .map_err(|e| AssemblerError::Tool(format!("creating the disk image: {e}")))?;
    drop(file);

    partition(&opts, image.path())?;
    let placed = parse_sfdisk_json(&tool::run_args(
        "sfdisk",
        &["--json".as_ref(), image.path().as_os_str()],
    )?)?;
    if placed.len() != opts.partitions.len() {
        return Err(AssemblerError::Tool(format!(
            "sfdisk made {} partitions, the manifest has {}",
            placed.len(),
            opts.partitions.len()
        )));
    }

    let mut order: Vec<usize> = (0..opts.partitions.len())
        .filter(|i| opts.partitions[*i].filesystem.is_some())
        .collect();
    order.sort_by_key(|i| {
        opts.partitions[*i]
            .filesystem
            .as_ref()
            .map(|f| f.mountpoint.len())
    });
    for i in order {
        if let Some(fs) = &opts.partitions[i].filesystem {
            make_filesystem(fs, &placed[i], image.path(), &args.tree)?;
        }
    }

    match opts.bootloader {
        Bootloader::None => {}
        Bootloader::Grub2Bios => install_grub_bios(&opts, &placed, image.path(), &args.tree)?,
        Bootloader::Grub2Efi => install_grub_efi(&opts, &placed, image.path(), &args.tree)?,
    }

    let output = args.output_dir.join(&opts.filename);
    convert(opts.format, image.path(), &output)?;
    if opts.format == Format::Raw {
        image.keep();
    }
    Ok(())
}

/// Writes the partition table with sfdisk.
fn partition(opts: &QemuOptions, image: &Path) -> Result<(), AssemblerError> {
    let mut cmd = tool::command("sfdisk", &["-q".as_ref(), image.as_os_str()]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| AssemblerError::Tool(format!("cannot run sfdisk: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(opts.sfdisk_script().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| AssemblerError::Tool(format!("waiting for sfdisk: {e}")))?;
    if !out.status.success() {
        return Err(AssemblerError::Tool(format!(
            "sfdisk failed ({}) writing the partition table: {}",
            out.status,
            tool::tail(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(())
}

/// The tree directory that goes into a filesystem mounted at `mountpoint`.
fn source_dir(tree: &Path, mountpoint: &str) -> PathBuf {
    tree.join(mountpoint.trim_start_matches('/'))
}

/// Makes and fills one filesystem at its partition's place in the image.
pub(crate) fn make_filesystem(
    fs: &Filesystem,
    part: &Placed,
    image: &Path,
    tree: &Path,
) -> Result<(), AssemblerError> {
    let offset = part.start * 512;
    let bytes = part.size * 512;
    let src = source_dir(tree, &fs.mountpoint);
    let populate = src.is_dir();
    match fs.fstype {
        FsType::Ext4 => {
            let mut a: Vec<String> = vec!["-q".into(), "-F".into(), "-U".into(), fs.uuid.clone()];
            if let Some(l) = &fs.label {
                a.extend(["-L".into(), l.clone()]);
            }
            if populate {
                a.extend(["-d".into(), src.display().to_string()]);
            }
            a.extend([
                "-E".into(),
                format!("offset={offset}"),
                image.display().to_string(),
                format!("{}k", bytes / 1024),
            ]);
            tool::run_args("mkfs.ext4", &a)?;
        }
        FsType::Vfat => {
            let mut a: Vec<String> = vec![
                "--offset".into(),
                part.start.to_string(),
                "-i".into(),
                fs.uuid.replace('-', ""),
            ];
            if let Some(l) = &fs.label {
                a.extend(["-n".into(), l.clone()]);
            }
            a.extend([image.display().to_string(), (bytes / 1024).to_string()]);
            tool::run_args("mkfs.vfat", &a)?;
            if populate {
                copy_into_fat(&src, image, offset)?;
            }
        }
        FsType::Xfs => {
            let dev = remoteloop::device(image, offset, bytes)?;
            let mut a: Vec<String> = vec!["-m".into(), format!("uuid={}", fs.uuid)];
            if let Some(l) = &fs.label {
                a.extend(["-L".into(), l.clone()]);
            }
            a.push(dev.path().display().to_string());
            tool::run_args("mkfs.xfs", &a)?;
            if populate {
                copy_through_mount(dev.path(), "xfs", &src)?;
            }
        }
    }
    Ok(())
}

/// `IMAGE@@OFFSET`, mtools' way to address a filesystem inside a disk image.
fn mtools_image(image: &Path, offset: u64) -> String {
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

/// A mount that is undone on drop (then its directory removed).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = tool::run_args("umount", &[self.0.as_os_str()]).is_ok();
        if !ok {
            let _ = tool::run_args("umount", &["-l".as_ref(), self.0.as_os_str()]);
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Mounts `dev`, copies `src/.` into it with `cp -a`, unmounts.
fn copy_through_mount(dev: &Path, fstype: &str, src: &Path) -> Result<(), AssemblerError> {
    let dir = std::env::temp_dir().join(format!("osbuild-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| AssemblerError::Tool(format!("creating {}: {e}", dir.display())))?;
    tool::run_args(
        "mount",
        &[
            "-t".as_ref(),
            fstype.as_ref(),
            dev.as_os_str(),
            dir.as_os_str(),
        ],
    )
    .inspect_err(|_| {
        let _ = std::fs::remove_dir(&dir);
    })?;
    let mounted = Mounted(dir);
    let from = format!("{}/.", src.display());
    tool::run_args("cp", &["-a".as_ref(), from.as_ref(), mounted.0.as_os_str()])?;
    drop(mounted);
    Ok(())
}

/// Where GRUB's files live in the tree: `boot/grub2` (Fedora) or `boot/grub` (Debian).
fn grub_dir(tree: &Path) -> &'static str {
    if tree.join("boot/grub2").is_dir() {
        "/boot/grub2"
    } else {
        "/boot/grub"
    }
}

/// The partition holding `/boot` (else `/`): its index and filesystem.
fn boot_partition(opts: &QemuOptions) -> Result<(usize, &Filesystem), AssemblerError> {
    let find = |mp: &str| {
        opts.partitions.iter().enumerate().find_map(|(i, p)| {
            p.filesystem
                .as_ref()
                .filter(|f| f.mountpoint == mp)
                .map(|f| (i, f))
        })
    };
    find("/boot").or_else(|| find("/")).ok_or_else(|| {
        invalid(
            "bootloader",
            "grub2 needs a partition with a filesystem mounted at /boot or /",
        )
    })
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
    format!("(,{}{}){rel}", pttype.grub_map(), index + 1)
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
    let out = std::env::temp_dir().join(format!("osbuild-grub-{}.img", std::process::id()));
    let out = TempFile(Some(out));
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

fn install_grub_bios(
    opts: &QemuOptions,
    placed: &[Placed],
    image: &Path,
    tree: &Path,
) -> Result<(), AssemblerError> {
    let (index, fs) = boot_partition(opts)?;
    let prefix = grub_prefix(opts.pttype, index, &fs.mountpoint, grub_dir(tree));
    let mut modules = vec!["biosdisk", part_module(opts.pttype), fs_module(fs)?];
    modules.extend(EXTRA_MODULES);
    let core = mkimage("i386-pc", &prefix, &modules)?;
    let at = core_placement(opts.pttype, placed, core.len() as u64)?;
    let boot = std::fs::read("/usr/lib/grub/i386-pc/boot.img")
        .map_err(|e| AssemblerError::Tool(format!("reading GRUB's boot.img: {e}")))?;
    if boot.len() < 440 {
        return Err(AssemblerError::Tool("GRUB's boot.img is too short".into()));
    }
    let f = OpenOptions::new()
        .write(true)
        .open(image)
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

fn part_module(pttype: PtType) -> &'static str {
    match pttype {
        PtType::Dos => "part_msdos",
        PtType::Gpt => "part_gpt",
    }
}

fn install_grub_efi(
    opts: &QemuOptions,
    placed: &[Placed],
    image: &Path,
    tree: &Path,
) -> Result<(), AssemblerError> {
    let (index, fs) = boot_partition(opts)?;
    let prefix = grub_prefix(opts.pttype, index, &fs.mountpoint, grub_dir(tree));
    let esp = opts
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
        part_module(opts.pttype),
        "part_msdos",
        fs_module(fs)?,
        "fat",
        "all_video",
        "gzio",
    ];
    modules.extend(EXTRA_MODULES);
    let efi = mkimage("x86_64-efi", &prefix, &modules)?;
    let img = mtools_image(image, placed[esp].start * 512);
    for dir in ["::/EFI", "::/EFI/BOOT"] {
        // Fails harmlessly when the tree already had the directory.
        let _ = tool::run_args("mmd", &["-i", &img, dir]);
    }
    let tmp = TempFile(Some(
        std::env::temp_dir().join(format!("osbuild-bootx64-{}.efi", std::process::id())),
    ));
    std::fs::write(tmp.path(), &efi)
        .map_err(|e| AssemblerError::Tool(format!("writing the EFI program: {e}")))?;
    let src = tmp.path().display().to_string();
    tool::run_args(
        "mcopy",
        &["-o", "-i", &img, &src, "::/EFI/BOOT/BOOTX64.EFI"],
    )?;
    Ok(())
}

/// Writes `output` in `format` from the raw image (renamed for raw).
fn convert(format: Format, raw: &Path, output: &Path) -> Result<(), AssemblerError> {
    let tmp = TempFile(Some(output.with_file_name(format!(
        ".{}.osbuild-part",
        output.file_name().unwrap_or_default().to_string_lossy()
    ))));
    match format {
        Format::Raw => {
            std::fs::rename(raw, output)
                .map_err(|e| AssemblerError::Tool(format!("renaming the image: {e}")))?;
            return Ok(());
        }
        Format::RawXz => {
            let mut out = File::create(tmp.path())
                .map_err(|e| AssemblerError::Tool(format!("creating the output: {e}")))?;
            let status = tool::command(
                "xz",
                &[
                    "--keep".as_ref(),
                    "--stdout".as_ref(),
                    "-0".as_ref(),
                    raw.as_os_str(),
                ],
            )
            .stdout(
                out.try_clone()
                    .map_err(|e| AssemblerError::Tool(e.to_string()))?,
            )
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| AssemblerError::Tool(format!("cannot run xz: {e}")))?;
            if !status.success() {
                return Err(AssemblerError::Tool(format!("xz failed ({status})")));
            }
            let _ = out.seek(SeekFrom::End(0));
        }
        _ => {
            let mut a: Vec<String> = vec!["convert".into(), "-f".into(), "raw".into()];
            a.extend(
                format
                    .qemu_img_args()
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.to_string()),
            );
            a.extend([raw.display().to_string(), tmp.path().display().to_string()]);
            tool::run_args("qemu-img", &a)?;
        }
    }
    std::fs::rename(tmp.path(), output)
        .map_err(|e| AssemblerError::Tool(format!("renaming the image: {e}")))?;
    tmp.keep();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> Result<QemuOptions, AssemblerError> {
        let v: Value = serde_json::from_str(json).unwrap();
        QemuOptions::parse(v.as_object().unwrap())
    }

    const BASE: &str = r#""format": "qcow2", "filename": "d.qcow2", "ptuuid": "0x14fc63d2""#;

    #[test]
    fn option_errors_table() {
        let cases: [(String, &str); 10] = [
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
                    r#"{{{BASE}, "size": 512, "partitions": [], "bootloader": {{"type": "zipl"}}}}"#
                ),
                r#"type "zipl" is not supported"#,
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
    fn legacy_root_is_one_bootable_linux_partition() {
        let o = opts(&format!(
            r#"{{{BASE}, "size": 1048576000, "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "root_fs_type": "xfs"}}"#
        ))
        .unwrap();
        assert_eq!(o.pttype, PtType::Dos);
        assert_eq!(o.bootloader, Bootloader::Grub2Bios);
        assert_eq!(
            o.sfdisk_script(),
            "label: dos\nlabel-id: 0x14fc63d2\ntype=\"83\", bootable\n"
        );
        let fs = o.partitions[0].filesystem.as_ref().unwrap();
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
            o.sfdisk_script(),
            format!(
                "label: gpt\nlabel-id: 0x14fc63d2\n\
                 start=\"2048\", size=\"2048\", type=\"{BIOS_BOOT_GUID}\", name=\"bios\"\n\
                 start=\"4096\", type=\"0FC63DAF-8483-4772-8E79-3D69D8477DE4\", bootable\n"
            )
        );
        assert_eq!(o.sfdisk_script().matches("bootable").count(), 1);
    }

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
    fn sfdisk_json_is_read() {
        let text = br#"{"partitiontable": {"label": "dos", "id": "0x1", "device": "d", "unit": "sectors",
            "partitions": [{"node": "d1", "start": 2048, "size": 4096, "type": "83", "bootable": true}]}}"#;
        assert_eq!(
            parse_sfdisk_json(text).unwrap(),
            vec![Placed {
                start: 2048,
                size: 4096,
                ptype: "83".into()
            }]
        );
        assert!(parse_sfdisk_json(b"{").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            Format::parse("vpc").unwrap().qemu_img_args().unwrap(),
            ["-O", "vpc", "-o", "subformat=fixed,force_size"]
        );
        assert_eq!(Format::parse("raw.xz"), Some(Format::RawXz));
        assert!(Format::parse("raw.xz").unwrap().qemu_img_args().is_none());
    }
}
