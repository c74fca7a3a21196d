//! Debian manifests: resolve a package list with the machine's apt configuration into `.deb`
//! files pinned by SHA256, and write a v1 manifest that installs them with the
//! `org.osbuild.dpkg` stage from `org.osbuild.files` sources.
//!
//! Resolution asks apt what it *would* download for an empty system: `apt-get install
//! --print-uris` with a private, empty dpkg status file (so the whole dependency closure is
//! printed, whatever the host has installed), an empty private archives directory (so nothing
//! is left out because the host happens to have it cached) and `Acquire::ForceHash=SHA256`
//! (so every line carries a SHA256). Repository URLs come from apt at run time; nothing here
//! names a mirror.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

/// The apt pattern for every `Priority: required` package: with `usr-is-merged` (see
/// [`BASE`]) the minimal set a bootable-in-a-container Debian needs besides an init.
pub const REQUIRED_PATTERN: &str = "?priority(required)";

/// What `--base` adds: the required set, and `usr-is-merged` so that apt does not satisfy
/// init-system-helpers' `usrmerge | usr-is-merged` with usrmerge (which pulls in perl).
pub const BASE: &[&str] = &[REQUIRED_PATTERN, "usr-is-merged"];

/// Why a package list could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// apt printed a line that is not `'URL' FILE SIZE SHA256:HEX`.
    #[error("unexpected line {line} from apt-get --print-uris: {message}: {text:?}")]
    PrintUris {
        line: usize,
        message: String,
        text: String,
    },
    /// apt-get could not be started.
    #[error("cannot run apt-get (is apt installed?): {0}")]
    Spawn(#[source] std::io::Error),
    /// apt-get ran and failed (unknown package, unsatisfiable dependencies, no lists).
    #[error("apt-get failed ({status}); run `apt-get update` if the package lists are missing:\n{stderr}")]
    Apt { status: String, stderr: String },
    /// A temporary file for apt could not be prepared.
    #[error("cannot prepare apt's private state in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing to resolve.
    #[error("no packages given")]
    NoPackages,
    /// The request asks for what the chosen manifest format cannot express.
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// One `.deb` to download, pinned by its SHA256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedDeb {
    /// Where apt would fetch it (percent-encoded as apt prints it).
    pub url: String,
    /// The archive file name (`name_version_arch.deb`).
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hexadecimal SHA256.
    pub sha256: String,
}

impl PinnedDeb {
    /// The checksum as sources and stages name the file: `sha256:<hex>`.
    pub fn checksum(&self) -> String {
        format!("sha256:{}", self.sha256)
    }

    /// The package name (the file name up to the first `_`).
    pub fn name(&self) -> &str {
        self.filename.split('_').next().unwrap_or(&self.filename)
    }
}

/// Parses `apt-get install --print-uris` output: one `'URL' FILE SIZE SHA256:HEX` per
/// package; lines not starting with `'` (apt's progress chatter) are skipped. The result is
/// sorted by file name, so the same resolution always gives the same manifest.
pub fn parse_print_uris(text: &str) -> Result<Vec<PinnedDeb>, DebianError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if !line.starts_with('\'') {
            continue;
        }
        let bad = |message: &str| DebianError::PrintUris {
            line: i + 1,
            message: message.to_string(),
            text: line.to_string(),
        };
        let rest = &line[1..];
        let end = rest.find('\'').ok_or_else(|| bad("unterminated URL"))?;
        let url = &rest[..end];
        let mut fields = rest[end + 1..].split_whitespace();
        let (Some(filename), Some(size), Some(hash), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected URL, file name, size and hash"));
        };
        let size: u64 = size.parse().map_err(|_| bad("size is not a number"))?;
        let Some(hex) = hash.strip_prefix("SHA256:") else {
            return Err(bad(
                "not a SHA256 hash (apt needs -o Acquire::ForceHash=SHA256)",
            ));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("SHA256 is not 64 hexadecimal digits"));
        }
        if url.is_empty() || !url.contains("://") {
            return Err(bad("URL has no scheme"));
        }
        out.push(PinnedDeb {
            url: url.to_string(),
            filename: filename.to_string(),
            size,
            sha256: hex.to_ascii_lowercase(),
        });
    }
    out.sort_by(|a, b| a.filename.cmp(&b.filename));
    out.dedup_by(|a, b| a.filename == b.filename);
    Ok(out)
}

/// How to ask apt.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Install Recommends too (off by default, like a minimal image).
    pub recommends: bool,
    /// A dpkg status file of what counts as installed (e.g. an existing tree's
    /// `var/lib/dpkg/status`, to add packages to it); `None` is an empty system.
    pub status: Option<PathBuf>,
    /// Further `-o NAME=VALUE` options for apt-get (e.g. `APT::Architecture=arm64`).
    pub apt_options: Vec<String>,
}

/// The apt-get argument vector for `packages` with private state in `state` (kept apart
/// from running it so it can be checked without apt).
pub fn apt_args(packages: &[String], opts: &ResolveOptions, state: &Path) -> Vec<String> {
    let status = opts.status.clone().unwrap_or_else(|| state.join("status"));
    let mut o = vec![
        format!("Dir::State::status={}", status.display()),
        format!("Dir::Cache::archives={}", state.join("archives").display()),
        "Dir::Cache::pkgcache=".to_string(),
        "Dir::Cache::srcpkgcache=".to_string(),
        "Debug::NoLocking=1".to_string(),
        "Acquire::ForceHash=SHA256".to_string(),
        format!("APT::Install-Recommends={}", opts.recommends),
        "APT::Install-Suggests=false".to_string(),
    ];
    o.extend(opts.apt_options.iter().cloned());
    let mut args = Vec::new();
    for opt in o {
        args.push("-o".to_string());
        args.push(opt);
    }
    args.extend(
        ["install", "--print-uris", "-qq", "-y"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.push("--".to_string());
    args.extend(packages.iter().cloned());
    args
}

/// Resolves `packages` (names or apt patterns such as [`REQUIRED_PATTERN`]) to the pinned
/// `.deb` files of their whole dependency closure, using the machine's apt sources.
pub fn resolve(packages: &[String], opts: &ResolveOptions) -> Result<Vec<PinnedDeb>, DebianError> {
    if packages.is_empty() {
        return Err(DebianError::NoPackages);
    }
    let state = tempfile::tempdir().map_err(|source| DebianError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let io = |path: PathBuf| move |source| DebianError::Io { path, source };
    let status = state.path().join("status");
    fs::write(&status, b"").map_err(io(status.clone()))?;
    let partial = state.path().join("archives/partial");
    fs::create_dir_all(&partial).map_err(io(partial.clone()))?;

    let out = Command::new("apt-get")
        .args(apt_args(packages, opts, state.path()))
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(DebianError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(DebianError::Apt {
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    parse_print_uris(&String::from_utf8_lossy(&out.stdout))
}

/// What `--image` adds to the package list: a kernel, an initrd generator and an init
/// with udev, the least a VM boots to multi-user with.
pub const IMAGE_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
];

/// The initrd modules an image gets unless others are asked for: enough to find an ext4
/// root on a virtio, SCSI or IDE/SATA disk (a 7 MB initrd in seconds instead of 36 MB).
pub const IMAGE_INITRAMFS_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "ata_piix",
    "sd_mod",
    "ext4",
];

/// The probe unit's name; it is not enabled, the kernel argument
/// `systemd.wants=imgtest.service` (which [`ImageOptions::probe`] adds) starts it.
pub const PROBE_UNIT: &str = "imgtest.service";

/// The probe's last console line when the boot reached multi-user with no failed unit.
pub const PROBE_SUCCESS: &str = "IMGTEST-END failed=0";

/// The probe unit: once multi-user is reached it prints the failed units between
/// `IMGTEST-BEGIN` and `IMGTEST-END failed=<count>` on the console, then powers off. (It
/// counts failed units rather than waiting in `systemctl is-system-running --wait`, which
/// would wait for the probe itself, a boot job.)
pub const PROBE_UNIT_TEXT: &str = "[Unit]
Description=osbuild image test probe
After=multi-user.target

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo IMGTEST-BEGIN $(uname -r) $(hostname); systemctl --failed --no-legend; echo \"IMGTEST-END failed=$(systemctl --failed --no-legend | wc -l)\"'
ExecStartPost=/bin/systemctl poweroff --no-block
";

/// How a disk image boots: the partition table, the bootloader and what the tree needs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boot {
    /// BIOS: an MBR with GRUB's boot code, its core after the MBR, one bootable ext4 root.
    #[default]
    Bios,
    /// UEFI: GPT with an EFI system partition (FAT, mounted at `/boot/efi`) and an ext4 root;
    /// GRUB's EFI program at `EFI/BOOT/BOOTX64.EFI` and `EFI/debian/grubx64.efi`.
    Uefi,
    /// Both: GPT with a BIOS boot partition holding GRUB's i386-pc core, the EFI system
    /// partition of [`Boot::Uefi`] and the root.
    Hybrid,
}

impl Boot {
    /// Every kind, by its name on the command line.
    pub const ALL: [(&'static str, Boot); 3] = [
        ("bios", Boot::Bios),
        ("uefi", Boot::Uefi),
        ("hybrid", Boot::Hybrid),
    ];

    /// The kind named `text` (`bios`, `uefi` or `hybrid`).
    pub fn parse(text: &str) -> Result<Boot, String> {
        Boot::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, b)| *b)
            .ok_or_else(|| format!("{text:?} is not one of bios, uefi, hybrid"))
    }

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        Boot::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("bios", |(n, _)| n)
    }

    /// Whether the disk has an EFI system partition.
    pub fn has_esp(self) -> bool {
        self != Boot::Bios
    }

    /// The packages the tree needs besides [`IMAGE_PACKAGES`], as a Debian installation on
    /// such a machine has them: GRUB for EFI (its modules and `grub-install`), for hybrid also
    /// the PC modules, and the FAT tools that check the ESP at boot.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Boot::Bios => &[],
            Boot::Uefi => &["grub-efi-amd64", "dosfstools"],
            Boot::Hybrid => &["grub-efi-amd64", "grub-pc-bin", "dosfstools"],
        }
    }
}

/// The EFI system partition's size unless another is asked for: 200 MiB, as distributions
/// make it (a FAT16 filesystem with room for several bootloaders).
pub const ESP_SIZE: u64 = 200 << 20;

/// GPT type of a BIOS boot partition (where GRUB's core image goes on GPT).
pub const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type of a Linux filesystem partition.
pub const LINUX_FS_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A bootable disk image with an ext4 root and GRUB 2, booting as [`Boot`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// BIOS, UEFI or both.
    pub boot: Boot,
    /// The root filesystem's UUID (fstab, GRUB's search and `root=`).
    pub root_fs_uuid: String,
    /// The partition table's id: for BIOS the MBR's disk identifier (`0x` and up to 8
    /// hexadecimal digits), for GPT a UUID.
    pub ptuuid: String,
    /// The ESP's FAT volume id, `XXXX-XXXX` (fstab's `UUID=`).
    pub esp_fs_uuid: String,
    /// The ESP's size in bytes (a multiple of 512).
    pub esp_size: u64,
    /// Virtual disk size in bytes (a multiple of 512; the qemu assembler checks it).
    pub size: u64,
    /// The assembler's output format: `qcow2`, `raw`, ...
    pub format: String,
    /// A qcow2's clusters compressed with zstd instead of zlib (the assembler's
    /// `qcow2_compression`, the v2 stage's `compression_type`): much faster to write, read
    /// only by qemu 5.1 and later. Off, the manifest does not mention it.
    pub qcow2_zstd: bool,
    /// Kernel command line after `root=UUID=...`.
    pub kernel_opts: String,
    /// Add the test probe ([`PROBE_UNIT`]) and the kernel argument that starts it.
    pub probe: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions::for_boot(Boot::Bios)
    }
}

impl ImageOptions {
    /// The defaults for `boot`: fixed ids (an MBR id for BIOS, a UUID for GPT), a 2 GiB
    /// qcow2 and a serial console.
    pub fn for_boot(boot: Boot) -> Self {
        let ptuuid = match boot {
            Boot::Bios => "0x0b0bcafe",
            Boot::Uefi | Boot::Hybrid => "0b0bcafe-0000-4000-8000-0000000000d1",
        };
        ImageOptions {
            boot,
            root_fs_uuid: "0b0bcafe-0000-4000-8000-000000000001".into(),
            ptuuid: ptuuid.into(),
            esp_fs_uuid: "0B0B-CAFE".into(),
            esp_size: ESP_SIZE,
            size: 2 << 30,
            format: "qcow2".into(),
            qcow2_zstd: false,
            kernel_opts: "ro console=ttyS0,115200".into(),
            probe: false,
        }
    }

    /// The image's file name in the output directory: `disk.<format>`.
    pub fn filename(&self) -> String {
        format!("disk.{}", self.format)
    }

    /// The full kernel command line after `root=UUID=...` (with the probe's argument).
    pub fn kernel_cmdline(&self) -> String {
        let mut s = self.kernel_opts.trim().to_string();
        if self.probe {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str("systemd.wants=");
            s.push_str(PROBE_UNIT);
        }
        s
    }
}

/// Parses a size such as `2G`, `1536M`, `512K` or `1073741824` (binary units) into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 10),
        (i, 'M' | 'm') => (&t[..i], 20),
        (i, 'G' | 'g') => (&t[..i], 30),
        (i, 'T' | 't') => (&t[..i], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// `--image-size`: a size as [`parse_size`] reads it, positive and a multiple of 512 bytes.
pub fn image_size(text: &str) -> Result<u64, String> {
    match parse_size(text) {
        Some(n) if n > 0 && n % 512 == 0 => Ok(n),
        Some(_) => Err("must be a positive multiple of 512 bytes".into()),
        None => Err("expected a number of bytes with an optional K, M, G or T suffix".into()),
    }
}

/// Everything a generator run asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Package names or apt patterns.
    pub packages: Vec<String>,
    /// Add the base system ([`BASE`]); an image always has it.
    pub base: bool,
    /// How to ask apt.
    pub resolve: ResolveOptions,
    /// What the manifest holds besides the packages; an image without initrd modules gets
    /// [`IMAGE_INITRAMFS_MODULES`].
    pub manifest: ManifestOptions,
}

/// What writes the manifest from the resolved packages: [`write_v1`] or, for osbuild's
/// current format, `debian_v2::manifest`.
pub type Writer = fn(&[PinnedDeb], &ManifestOptions) -> Result<Value, DebianError>;

/// The v1 [`Writer`]: [`manifest`].
pub fn write_v1(debs: &[PinnedDeb], opts: &ManifestOptions) -> Result<Value, DebianError> {
    Ok(manifest(debs, opts))
}

/// A generated manifest and the packages it installs.
#[derive(Debug, Clone)]
pub struct Generated {
    pub manifest: Value,
    pub debs: Vec<PinnedDeb>,
}

impl Generated {
    /// `N packages, X MB to download`.
    pub fn summary(&self) -> String {
        let size: u64 = self.debs.iter().map(|d| d.size).sum();
        format!(
            "{} packages, {:.1} MB to download",
            self.debs.len(),
            size as f64 / 1e6
        )
    }
}

/// Resolves what `request` asks for (the base system and an image's packages first) and
/// writes the manifest with `write`.
pub fn generate(request: &Request, write: Writer) -> Result<Generated, DebianError> {
    let image = request.manifest.image.is_some();
    let mut packages: Vec<String> = Vec::new();
    if request.base || image {
        packages.extend(BASE.iter().map(|s| s.to_string()));
    }
    let mut opts = request.manifest.clone();
    if let Some(img) = &opts.image {
        packages.extend(IMAGE_PACKAGES.iter().map(|s| s.to_string()));
        packages.extend(img.boot.packages().iter().map(|s| s.to_string()));
        if opts.initramfs_modules.is_empty() {
            opts.initramfs_modules = IMAGE_INITRAMFS_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
    }
    packages.extend(request.packages.iter().cloned());
    let debs = resolve(&packages, &request.resolve)?;
    let manifest = write(&debs, &opts)?;
    Ok(Generated { manifest, debs })
}

/// What the manifest holds besides the packages.
#[derive(Debug, Clone, Default)]
pub struct ManifestOptions {
    /// An `org.osbuild.hostname` stage after the packages.
    pub hostname: Option<String>,
    /// The dpkg stage's `initramfs.modules` (a small initrd); empty leaves initramfs-tools'
    /// defaults.
    pub initramfs_modules: Vec<String>,
    /// An `org.osbuild.timezone` stage.
    pub timezone: Option<String>,
    /// An `org.osbuild.locale` stage.
    pub locale: Option<String>,
    /// Make a bootable disk image: fstab, grub2 (and the probe) stages and the
    /// `org.osbuild.qemu` assembler. The packages must include [`IMAGE_PACKAGES`].
    pub image: Option<ImageOptions>,
}

/// A v1 manifest installing `debs` with `org.osbuild.dpkg` (plus the stages `opts` asks
/// for), with every file in the `org.osbuild.files` source under its SHA256.
pub fn manifest(debs: &[PinnedDeb], opts: &ManifestOptions) -> Value {
    let mut urls = Map::new();
    for d in debs {
        urls.insert(d.checksum(), Value::String(d.url.clone()));
    }
    let mut dpkg = Map::new();
    dpkg.insert(
        "packages".into(),
        Value::Array(debs.iter().map(|d| Value::String(d.checksum())).collect()),
    );
    if !opts.initramfs_modules.is_empty() {
        dpkg.insert(
            "initramfs".into(),
            json!({ "modules": opts.initramfs_modules }),
        );
    }
    let mut stages = vec![json!({"name": "org.osbuild.dpkg", "options": dpkg})];
    if let Some(h) = &opts.hostname {
        stages.push(json!({"name": "org.osbuild.hostname", "options": {"hostname": h}}));
    }
    if let Some(tz) = &opts.timezone {
        stages.push(json!({"name": "org.osbuild.timezone", "options": {"zone": tz}}));
    }
    if let Some(l) = &opts.locale {
        stages.push(json!({"name": "org.osbuild.locale", "options": {"language": l}}));
    }
    let mut pipeline = Map::new();
    if let Some(img) = &opts.image {
        stages.extend(image_stages(img));
        pipeline.insert("stages".into(), Value::Array(stages));
        pipeline.insert("assembler".into(), image_assembler(img));
    } else {
        pipeline.insert("stages".into(), Value::Array(stages));
    }
    json!({
        "pipeline": pipeline,
        "sources": {"org.osbuild.files": {"urls": urls}},
    })
}

/// The options of the fstab and grub2 stages for `img`'s disk (the same in v1 and v2).
pub(super) fn fstab_and_grub2_options(img: &ImageOptions) -> (Value, Value) {
    let mut filesystems = vec![json!({
        "uuid": img.root_fs_uuid, "vfs_type": "ext4", "path": "/",
        "options": "errors=remount-ro", "passno": 1
    })];
    if img.boot.has_esp() {
        filesystems.push(json!({
            "uuid": img.esp_fs_uuid, "vfs_type": "vfat", "path": "/boot/efi",
            "options": "umask=0077", "passno": 2
        }));
    }
    let mut grub = json!({
        "root_fs_uuid": img.root_fs_uuid,
        "kernel_opts": img.kernel_cmdline(),
        "legacy": if img.boot == Boot::Uefi { json!(false) } else { json!("i386-pc") },
    });
    if img.boot.has_esp() {
        grub["uefi"] = json!({"vendor": "debian", "install": true});
    }
    (json!({"filesystems": filesystems}), grub)
}

/// The stages that make an installed tree bootable from `img`'s disk.
fn image_stages(img: &ImageOptions) -> Vec<Value> {
    let (fstab, grub) = fstab_and_grub2_options(img);
    let mut stages = vec![
        json!({"name": "org.osbuild.fstab", "options": fstab}),
        json!({"name": "org.osbuild.grub2", "options": grub}),
    ];
    if img.probe {
        let script = format!(
            "#!/bin/sh\nset -e\ncat > /etc/systemd/system/{PROBE_UNIT} <<'EOF'\n{PROBE_UNIT_TEXT}EOF\n"
        );
        stages.push(json!({"name": "org.osbuild.script", "options": {"script": script}}));
    }
    stages
}

/// The `org.osbuild.qemu` assembler for `img`: for BIOS an MBR with one bootable ext4 root
/// (v10's `root_fs_uuid` form); for UEFI and hybrid a GPT with the partitions of
/// [`gpt_partitions`]. GRUB's i386-pc core goes after the MBR (BIOS) or into the BIOS boot
/// partition (hybrid); the EFI program comes with the tree's `/boot/efi` (grub2 stage).
fn image_assembler(img: &ImageOptions) -> Value {
    let mut options = json!({
        "format": img.format,
        "filename": img.filename(),
        "ptuuid": img.ptuuid,
        "size": img.size,
    });
    match img.boot {
        Boot::Bios => {
            options["root_fs_uuid"] = json!(img.root_fs_uuid);
            options["bootloader"] = json!({"type": "grub2", "platform": "i386-pc"});
        }
        Boot::Uefi | Boot::Hybrid => {
            options["pttype"] = json!("gpt");
            options["partitions"] = Value::Array(gpt_partitions(img));
            options["bootloader"] = if img.boot == Boot::Hybrid {
                json!({"type": "grub2", "platform": "i386-pc"})
            } else {
                json!({"type": "none"})
            };
        }
    }
    if img.qcow2_zstd {
        options["qcow2_compression"] = json!("zstd");
    }
    json!({"name": "org.osbuild.qemu", "options": options})
}

/// The GPT of a UEFI or hybrid image, in 512-byte sectors from 1 MiB on: (hybrid) a 1 MiB
/// BIOS boot partition, the ESP, and the root filling the rest.
fn gpt_partitions(img: &ImageOptions) -> Vec<Value> {
    let mut start = 2048u64;
    let mut parts = Vec::new();
    if img.boot == Boot::Hybrid {
        parts.push(
            json!({"start": start, "size": 2048, "type": BIOS_BOOT_TYPE, "name": "BIOS boot"}),
        );
        start += 2048;
    }
    parts.push(json!({
        "start": start, "size": img.esp_size / 512, "type": ESP_TYPE, "name": "EFI System",
        "filesystem": {"type": "vfat", "uuid": img.esp_fs_uuid, "mountpoint": "/boot/efi"}
    }));
    start += img.esp_size / 512;
    parts.push(json!({
        "start": start, "type": LINUX_FS_TYPE, "name": "root",
        "filesystem": {"type": "ext4", "uuid": img.root_fs_uuid, "mountpoint": "/"}
    }));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_A: &str = "286f879c537bfba92e59d580c075ad20ab49020244c79634656850a306dd462b";
    const HEX_B: &str = "e3dc84316cfdf7e3feefe4eaf507758d2630ea131e1834e1f07525b3e537db2d";

    #[test]
    fn print_uris_lines() {
        let text = format!(
            "Reading package lists...\n\
             'http://m.example/debian/pool/main/s/systemd/systemd-sysv_252.39-1%7edeb12u2_amd64.deb' systemd-sysv_252.39-1~deb12u2_amd64.deb 42884 SHA256:{HEX_B}\n\
             'http://m.example/debian/pool/main/s/systemd/systemd_252.39-1%7edeb12u2_amd64.deb' systemd_252.39-1~deb12u2_amd64.deb 3043940 SHA256:{HEX_A}\n"
        );
        let debs = parse_print_uris(&text).unwrap();
        assert_eq!(debs.len(), 2);
        // sorted by file name
        assert_eq!(debs[0].filename, "systemd-sysv_252.39-1~deb12u2_amd64.deb");
        assert_eq!(debs[1].name(), "systemd");
        assert_eq!(
            debs[1].url,
            "http://m.example/debian/pool/main/s/systemd/systemd_252.39-1%7edeb12u2_amd64.deb"
        );
        assert_eq!(debs[1].size, 3043940);
        assert_eq!(debs[1].checksum(), format!("sha256:{HEX_A}"));
        assert!(parse_print_uris("").unwrap().is_empty());
    }

    #[test]
    fn print_uris_errors() {
        let cases = [
            (
                "'http://x/a.deb' a.deb 10 MD5Sum:0123456789abcdef0123456789abcdef".to_string(),
                "line 1 from apt-get --print-uris: not a SHA256 hash (apt needs -o Acquire::ForceHash=SHA256)",
            ),
            (
                format!("'http://x/a.deb a.deb 10 SHA256:{HEX_A}"),
                "unterminated URL",
            ),
            (
                format!("'http://x/a.deb' a.deb ten SHA256:{HEX_A}"),
                "size is not a number",
            ),
            ("'http://x/a.deb' a.deb 10".to_string(), "expected URL, file name, size and hash"),
            (
                "'http://x/a.deb' a.deb 10 SHA256:abc".to_string(),
                "SHA256 is not 64 hexadecimal digits",
            ),
            (format!("'a.deb' a.deb 10 SHA256:{HEX_A}"), "URL has no scheme"),
        ];
        for (line, want) in cases {
            let e = parse_print_uris(&format!("{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn apt_arguments() {
        let state = Path::new("/tmp/st");
        let args = apt_args(&["bash".into()], &ResolveOptions::default(), state);
        let joined = args.join(" ");
        for want in [
            "-o Dir::State::status=/tmp/st/status",
            "-o Dir::Cache::archives=/tmp/st/archives",
            "-o Acquire::ForceHash=SHA256",
            "-o APT::Install-Recommends=false",
            "install --print-uris -qq -y -- bash",
        ] {
            assert!(joined.contains(want), "{joined} lacks {want}");
        }
        let opts = ResolveOptions {
            recommends: true,
            status: Some("/t/var/lib/dpkg/status".into()),
            apt_options: vec!["APT::Architecture=arm64".into()],
        };
        let joined = apt_args(&["-x".into()], &opts, state).join(" ");
        assert!(joined.contains("Dir::State::status=/t/var/lib/dpkg/status"));
        assert!(joined.contains("APT::Install-Recommends=true"));
        assert!(joined.contains("-o APT::Architecture=arm64"));
        // a package list can never be taken for an option
        assert!(joined.ends_with("-- -x"));
    }

    #[test]
    fn manifest_shape() {
        let debs = vec![PinnedDeb {
            url: "http://m.example/pool/a_1_all.deb".into(),
            filename: "a_1_all.deb".into(),
            size: 1,
            sha256: HEX_A.into(),
        }];
        let m = manifest(
            &debs,
            &ManifestOptions {
                hostname: Some("deb12".into()),
                initramfs_modules: vec!["virtio_blk".into()],
                ..Default::default()
            },
        );
        let sum = format!("sha256:{HEX_A}");
        assert_eq!(
            m["sources"]["org.osbuild.files"]["urls"][&sum],
            "http://m.example/pool/a_1_all.deb"
        );
        let stages = m["pipeline"]["stages"].as_array().unwrap();
        assert_eq!(stages[0]["name"], "org.osbuild.dpkg");
        assert_eq!(stages[0]["options"]["packages"], json!([sum]));
        assert_eq!(
            stages[0]["options"]["initramfs"]["modules"],
            json!(["virtio_blk"])
        );
        assert_eq!(stages[1]["options"]["hostname"], "deb12");
        assert_eq!(stages.len(), 2);
        assert!(resolve(&[], &ResolveOptions::default()).is_err());
    }

    #[test]
    fn sizes() {
        let cases = [
            ("2G", Some(2u64 << 30)),
            ("1536M", Some(1536u64 << 20)),
            ("512k", Some(512u64 << 10)),
            ("1048576", Some(1048576)),
            ("", None),
            ("G", None),
            ("1.5G", None),
            ("-1M", None),
            ("2X", None),
            ("99999999999T", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), want, "{text:?}");
        }
    }

    #[test]
    fn kernel_cmdline_with_and_without_probe() {
        let mut img = ImageOptions::default();
        assert_eq!(img.kernel_cmdline(), "ro console=ttyS0,115200");
        img.probe = true;
        assert_eq!(
            img.kernel_cmdline(),
            "ro console=ttyS0,115200 systemd.wants=imgtest.service"
        );
        img.kernel_opts = String::new();
        assert_eq!(img.kernel_cmdline(), "systemd.wants=imgtest.service");
    }

    #[test]
    fn image_manifest_shape() {
        let img = ImageOptions {
            probe: true,
            ..Default::default()
        };
        let m = manifest(
            &[],
            &ManifestOptions {
                hostname: Some("deb12".into()),
                image: Some(img.clone()),
                ..Default::default()
            },
        );
        let names: Vec<&str> = m["pipeline"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "org.osbuild.dpkg",
                "org.osbuild.hostname",
                "org.osbuild.fstab",
                "org.osbuild.grub2",
                "org.osbuild.script"
            ]
        );
        let stages = &m["pipeline"]["stages"];
        assert_eq!(
            stages[2]["options"]["filesystems"][0],
            json!({"uuid": img.root_fs_uuid, "vfs_type": "ext4", "path": "/",
                   "options": "errors=remount-ro", "passno": 1})
        );
        assert_eq!(
            stages[3]["options"]["kernel_opts"],
            "ro console=ttyS0,115200 systemd.wants=imgtest.service"
        );
        assert_eq!(stages[3]["options"]["root_fs_uuid"], img.root_fs_uuid);
        let script = stages[4]["options"]["script"].as_str().unwrap();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(script.contains("cat > /etc/systemd/system/imgtest.service <<'EOF'\n[Unit]\n"));
        assert!(script.contains("ExecStartPost=/bin/systemctl poweroff --no-block\nEOF\n"));
        assert!(script
            .contains(r#"echo "IMGTEST-END failed=$(systemctl --failed --no-legend | wc -l)""#));
        let asm = &m["pipeline"]["assembler"];
        assert_eq!(asm["name"], "org.osbuild.qemu");
        assert_eq!(
            asm["options"],
            json!({"format": "qcow2", "filename": "disk.qcow2", "ptuuid": "0x0b0bcafe",
                   "root_fs_uuid": img.root_fs_uuid, "size": 2u64 << 30,
                   "bootloader": {"type": "grub2", "platform": "i386-pc"}})
        );

        // zstd clusters: the assembler's qcow2_compression, absent unless asked.
        let zstd = ManifestOptions {
            image: Some(ImageOptions {
                qcow2_zstd: true,
                ..ImageOptions::default()
            }),
            ..Default::default()
        };
        let m = manifest(&[], &zstd);
        assert_eq!(
            m["pipeline"]["assembler"]["options"]["qcow2_compression"],
            "zstd"
        );

        // Without the probe: no script stage, no probe argument.
        let m = manifest(
            &[],
            &ManifestOptions {
                image: Some(ImageOptions::default()),
                ..Default::default()
            },
        );
        let stages = m["pipeline"]["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(
            stages[2]["options"]["kernel_opts"],
            "ro console=ttyS0,115200"
        );
        // Without an image: no assembler.
        let m = manifest(&[], &ManifestOptions::default());
        assert!(m["pipeline"].get("assembler").is_none());
    }

    /// The stage and assembler options of an image of `boot`.
    fn image_parts(boot: Boot) -> (ImageOptions, Value, Value, Value) {
        let img = ImageOptions::for_boot(boot);
        let m = manifest(
            &[],
            &ManifestOptions {
                image: Some(img.clone()),
                ..Default::default()
            },
        );
        let stages = &m["pipeline"]["stages"];
        assert_eq!(stages[1]["name"], "org.osbuild.fstab");
        assert_eq!(stages[2]["name"], "org.osbuild.grub2");
        let (fstab, grub) = (stages[1]["options"].clone(), stages[2]["options"].clone());
        (
            img,
            fstab,
            grub,
            m["pipeline"]["assembler"]["options"].clone(),
        )
    }

    #[test]
    fn uefi_image_is_gpt_with_an_esp() {
        let (img, fstab, grub, asm) = image_parts(Boot::Uefi);
        assert_eq!(
            fstab["filesystems"][1],
            json!({"uuid": "0B0B-CAFE", "vfs_type": "vfat", "path": "/boot/efi",
                   "options": "umask=0077", "passno": 2})
        );
        assert_eq!(grub["legacy"], false);
        assert_eq!(grub["uefi"], json!({"vendor": "debian", "install": true}));
        assert_eq!(asm["pttype"], "gpt");
        assert_eq!(asm["ptuuid"], "0b0bcafe-0000-4000-8000-0000000000d1");
        assert_eq!(asm["bootloader"], json!({"type": "none"}));
        assert!(asm.get("root_fs_uuid").is_none(), "{asm:#}");
        assert_eq!(
            asm["partitions"],
            json!([
                {"start": 2048, "size": 409600, "type": ESP_TYPE, "name": "EFI System",
                 "filesystem": {"type": "vfat", "uuid": "0B0B-CAFE", "mountpoint": "/boot/efi"}},
                {"start": 411648, "type": LINUX_FS_TYPE, "name": "root",
                 "filesystem": {"type": "ext4", "uuid": img.root_fs_uuid, "mountpoint": "/"}}
            ])
        );
        assert_eq!(
            Boot::Uefi.packages(),
            ["grub-efi-amd64", "dosfstools"],
            "GRUB for EFI and fsck.vfat for the ESP in the tree"
        );
    }

    #[test]
    fn hybrid_image_has_a_bios_boot_partition_and_an_esp() {
        let (img, fstab, grub, asm) = image_parts(Boot::Hybrid);
        assert_eq!(fstab["filesystems"].as_array().unwrap().len(), 2);
        assert_eq!(grub["legacy"], "i386-pc");
        assert_eq!(grub["uefi"], json!({"vendor": "debian", "install": true}));
        assert_eq!(
            asm["bootloader"],
            json!({"type": "grub2", "platform": "i386-pc"})
        );
        let parts = asm["partitions"].as_array().unwrap();
        assert_eq!(
            parts[0],
            json!({"start": 2048, "size": 2048, "type": BIOS_BOOT_TYPE, "name": "BIOS boot"})
        );
        assert_eq!(parts[1]["start"], 4096);
        assert_eq!(parts[1]["size"], img.esp_size / 512);
        assert_eq!(parts[1]["type"], ESP_TYPE);
        assert_eq!(parts[2]["start"], 4096 + 409600);
        assert_eq!(parts[2]["filesystem"]["mountpoint"], "/");
        assert!(Boot::Hybrid.packages().contains(&"grub-pc-bin"));

        // BIOS stays v10's single-root form, without an ESP.
        let (_, fstab, grub, asm) = image_parts(Boot::Bios);
        assert_eq!(fstab["filesystems"].as_array().unwrap().len(), 1);
        assert!(grub.get("uefi").is_none());
        assert!(asm.get("partitions").is_none() && asm.get("pttype").is_none());
        assert!(Boot::Bios.packages().is_empty());
    }

    #[test]
    fn boot_kinds_by_name() {
        for (name, boot) in Boot::ALL {
            assert_eq!(Boot::parse(name), Ok(boot));
            assert_eq!(boot.name(), name);
        }
        assert_eq!(Boot::default(), Boot::Bios);
        assert_eq!(
            Boot::parse("efi").unwrap_err(),
            "\"efi\" is not one of bios, uefi, hybrid"
        );
    }
}
