//! `org.osbuild.grub2`: GRUB 2's configuration in the tree, for BIOS (`legacy`) and UEFI.
//!
//! Two kinds of trees:
//! - **BLS** trees (Fedora/RHEL: `/boot/loader/entries` exists): as osbuild v10, a fixed
//!   `blscfg` script in `/boot/grub2/grub.cfg`, the variables it reads in
//!   `/boot/grub2/grubenv` (`GRUB2_ROOT_FS_UUID`, `kernelopts`; padded to GRUB's 1024-byte
//!   environment block, which v10 did not do) and `etc/default/grub` with BLS on.
//! - Trees **without BLS** (Debian): a static `/boot/grub/grub.cfg` that boots the newest
//!   kernel found in the tree's `/boot` (`vmlinuz-V` with `initrd.img-V` or
//!   `initramfs-V.img`) with `root=UUID=<root_fs_uuid> <kernel_opts>`.
//!
//! `legacy` (true, or a platform such as `i386-pc`) copies the build root's GRUB modules
//! (`/usr/lib/grub/<platform>/*.mod|*.lst`, not `fdt.lst`) and `unicode.pf2` next to the
//! configuration; `uefi {vendor}` writes `/boot/efi/EFI/<vendor>/grub.cfg`, the whole
//! configuration (BLS trees, UEFI only), or a short one that finds the canonical file (with
//! `legacy` too, i.e. hybrid, and always in trees without BLS, whose `update-grub` rewrites
//! only the canonical file).
//! `uefi.install` (beyond v10, where packages such as Fedora's shim and grub2-efi put the EFI
//! programs into `/boot/efi`; Debian's grub-efi-amd64 leaves that to `grub-install`) builds
//! GRUB as an x86_64 EFI program with the build root's `grub-mkimage`, its prefix
//! `/EFI/<vendor>` on the partition it is loaded from, and writes it as
//! `/boot/efi/EFI/<vendor>/grubx64.efi` and at the removable-media path
//! `/boot/efi/EFI/BOOT/BOOTX64.EFI` (so firmware finds it without a boot entry in NVRAM),
//! with the x86_64-efi modules next to the canonical configuration as `grub-install` leaves
//! them.

mod head;

use std::path::Path;

use serde_json::Value;

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

/// The BLS configuration (v10's script).
const BLS_CFG: &str = "set timeout=0\n\
load_env\n\
search --no-floppy --fs-uuid --set=root ${GRUB2_ROOT_FS_UUID}\n\
set boot=${root}\n\
function load_video {\n\
\x20 insmod all_video\n\
}\n\
blscfg\n";

/// GRUB's environment block: `text` padded with `#` to 1024 bytes.
pub fn grubenv(grub_fs_uuid: &str, root_fs_uuid: &str, kernel_opts: &str) -> String {
    let mut s = format!(
        "# GRUB Environment Block\nGRUB2_ROOT_FS_UUID={grub_fs_uuid}\n\
         kernelopts=root=UUID={root_fs_uuid} {kernel_opts}\n"
    );
    while s.len() < 1024 {
        s.push('#');
    }
    s
}

/// A kernel and its initrd, as paths relative to `/boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    pub kernel: String,
    pub initrd: Option<String>,
}

/// Compares kernel versions piecewise, numbers as numbers (`6.1.0-10` > `6.1.0-9`).
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while chars.peek().is_some() {
        let mut digits = String::new();
        while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
            digits.push(*c);
            chars.next();
        }
        let mut rest = String::new();
        while let Some(c) = chars.peek().filter(|c| !c.is_ascii_digit()) {
            rest.push(*c);
            chars.next();
        }
        out.push((digits.parse().unwrap_or(0), rest));
    }
    out
}

/// The newest kernel among the names of `/boot`'s entries.
pub fn newest_kernel(names: &[String]) -> Option<Kernel> {
    let version = names
        .iter()
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .filter(|v| !v.contains("rescue"))
        .max_by_key(|v| version_key(v))?
        .to_owned();
    let initrd = [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
    ]
    .into_iter()
    .find(|i| names.contains(i));
    Some(Kernel {
        kernel: format!("vmlinuz-{version}"),
        initrd,
        version,
    })
}

/// The static configuration for a tree without BLS. `boot_prefix` is `/boot` when `/boot` is
/// on the root filesystem, empty when it is a filesystem of its own.
pub fn static_cfg(
    k: &Kernel,
    grub_fs_uuid: &str,
    root_fs_uuid: &str,
    kernel_opts: &str,
    boot_prefix: &str,
) -> String {
    let opts = if kernel_opts.is_empty() {
        String::new()
    } else {
        format!(" {kernel_opts}")
    };
    let mut s = format!(
        "set timeout=0\n\
         search --no-floppy --fs-uuid --set=root {grub_fs_uuid}\n\
         menuentry 'Linux {v}' {{\n\
         \x20 linux {boot_prefix}/{kernel} root=UUID={root_fs_uuid}{opts}\n",
        v = k.version,
        kernel = k.kernel
    );
    if let Some(i) = &k.initrd {
        s.push_str(&format!("  initrd {boot_prefix}/{i}\n"));
    }
    s.push_str("}\n");
    s
}

/// The redirect written to the ESP for hybrid boot.
pub fn redirect_cfg(grub_dir_on_fs: &str) -> String {
    format!(
        "search --no-floppy --set prefix --file {grub_dir_on_fs}/grub.cfg\n\
         set prefix=($prefix){grub_dir_on_fs}\n\
         configfile $prefix/grub.cfg\n"
    )
}

fn copy_modules(tree_root: &Path, grub_dir: &str, platform: &str) -> Result<(), StageError> {
    let source = Path::new("/usr/lib/grub").join(platform);
    let entries = std::fs::read_dir(&source).map_err(|e| {
        StageError::io(
            "cannot read GRUB's modules in the build root (install grub2-pc-modules or \
             grub-pc-bin / grub-efi-amd64-bin there)",
            &source,
            e,
        )
    })?;
    let target = format!("{grub_dir}/{platform}");
    tree::create_dirs(tree_root, &target, 0o755)?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".mod") || n.ends_with(".lst")) && n != "fdt.lst")
        .collect();
    names.sort();
    for name in names {
        let from = source.join(&name);
        let data = std::fs::read(&from).map_err(|e| StageError::io("cannot read", &from, e))?;
        tree::write_file(tree_root, &format!("{target}/{name}"), &data, 0o644)?;
    }
    let font = Path::new("/usr/share/grub/unicode.pf2");
    if let Ok(data) = std::fs::read(font) {
        tree::write_file(
            tree_root,
            &format!("{grub_dir}/fonts/unicode.pf2"),
            &data,
            0o644,
        )?;
    }
    Ok(())
}

/// The stage's options.
struct Options<'a> {
    root_fs_uuid: &'a str,
    boot_fs_uuid: Option<&'a str>,
    kernel_opts: &'a str,
    /// The GRUB platform whose modules go next to the configuration (`legacy`).
    legacy: Option<String>,
    /// The directory under `/boot/efi/EFI` (`uefi.vendor`).
    vendor: Option<String>,
    /// Write GRUB's EFI program into the ESP (`uefi.install`).
    install_efi: bool,
}

impl<'a> Options<'a> {
    fn parse(args: &'a Args) -> Result<Self, StageError> {
        let opts = args.opts();
        Ok(Options {
            root_fs_uuid: opts.str("root_fs_uuid")?,
            boot_fs_uuid: opts.opt_str("boot_fs_uuid")?,
            kernel_opts: opts.opt_str("kernel_opts")?.unwrap_or(""),
            legacy: legacy_platform(args.options.get("legacy"))?,
            vendor: uefi_vendor(args.options.get("uefi"))?,
            install_efi: uefi_install(args.options.get("uefi"))?,
        })
    }

    /// The filesystem GRUB reads its files from: `/boot`'s if separate, else the root's.
    fn grub_fs_uuid(&self) -> &'a str {
        self.boot_fs_uuid.unwrap_or(self.root_fs_uuid)
    }

    /// BIOS and UEFI both.
    fn hybrid(&self) -> bool {
        self.legacy.is_some() && self.vendor.is_some()
    }
}

/// `legacy`: `true` (the default) is `i386-pc`, `false` none, a string a platform name.
fn legacy_platform(value: Option<&Value>) -> Result<Option<String>, StageError> {
    match value {
        None | Some(Value::Bool(true)) => Ok(Some("i386-pc".into())),
        Some(Value::Bool(false)) | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if !p.is_empty() && !p.contains('/') && p != ".." => {
            Ok(Some(p.clone()))
        }
        Some(_) => Err(StageError::option(
            "legacy",
            "must be true, false or a GRUB platform name such as \"i386-pc\"",
        )),
    }
}

/// `uefi.vendor`, a directory name under `/boot/efi/EFI`.
fn uefi_vendor(value: Option<&Value>) -> Result<Option<String>, StageError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(u)) => match u.get("vendor") {
            Some(Value::String(v)) if !v.is_empty() && !v.contains('/') && v != ".." => {
                Ok(Some(v.clone()))
            }
            _ => Err(StageError::option(
                "uefi",
                "\"vendor\" must be a directory name under /boot/efi/EFI",
            )),
        },
        Some(_) => Err(StageError::option("uefi", "must be an object")),
    }
}

/// `uefi.install`, false unless given.
fn uefi_install(value: Option<&Value>) -> Result<bool, StageError> {
    match value.and_then(|u| u.get("install")) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(StageError::option(
            "uefi",
            "\"install\" must be true or false",
        )),
    }
}

/// The GRUB platform of the EFI program `uefi.install` writes.
const EFI_PLATFORM: &str = "x86_64-efi";

/// What the EFI program holds besides its prefix: enough to read a GPT or MBR disk, FAT
/// and ext2/3/4, and run a configuration that searches a filesystem and boots Linux, without a
/// module directory.
pub const EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "ext2",
    "normal",
    "configfile",
    "search",
    "search_fs_uuid",
    "search_fs_file",
    "linux",
    "echo",
    "test",
    "all_video",
    "gzio",
    "boot",
];

/// The `grub-mkimage` arguments for the EFI program at `output`, prefixed `/EFI/<vendor>`.
pub fn efi_mkimage_args(vendor: &str, output: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "--format",
        EFI_PLATFORM,
        "--directory",
        &format!("/usr/lib/grub/{EFI_PLATFORM}"),
        "--prefix",
        &format!("/EFI/{vendor}"),
        "--output",
        output,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(EFI_MODULES.iter().map(|m| m.to_string()));
    a
}

/// `uefi.install`: GRUB's EFI program at `EFI/<vendor>/grubx64.efi` and `EFI/BOOT/BOOTX64.EFI`
/// in the tree's `/boot/efi`, and the platform's modules beside the canonical configuration.
fn install_efi_program(t: &Path, vendor: &str, grub_dir: &str) -> Result<(), StageError> {
    let dir = tree::create_dirs(t, &format!("boot/efi/EFI/{vendor}"), 0o755)?;
    let program = dir.join("grubx64.efi");
    let mkimage = ["grub-mkimage", "grub2-mkimage"]
        .into_iter()
        .find(|p| {
            command::PATH
                .split(':')
                .any(|d| Path::new(d).join(p).is_file())
        })
        .ok_or_else(|| {
            StageError::Other(
                "uefi.install needs grub-mkimage (grub-common) or grub2-mkimage (grub2-tools) \
                 in the build root"
                    .into(),
            )
        })?;
    command::run(
        command::tool(mkimage).args(efi_mkimage_args(vendor, &program.to_string_lossy())),
    )?;
    let data = std::fs::read(&program).map_err(|e| StageError::io("cannot read", &program, e))?;
    tree::write_file(t, "boot/efi/EFI/BOOT/BOOTX64.EFI", &data, 0o644)?;
    copy_modules(t, grub_dir, EFI_PLATFORM)
}

/// The configuration for the tree's kind.
struct Config {
    /// `boot/grub2` (BLS) or `boot/grub`.
    grub_dir: &'static str,
    /// The text of `grub.cfg`.
    cfg: String,
    /// The text of `etc/default/grub`.
    default: &'static str,
}

/// The fixed BLS script, or a static configuration booting the tree's newest kernel.
fn config(t: &Path, opts: &Options, bls: bool) -> Result<Config, StageError> {
    if bls {
        return Ok(Config {
            grub_dir: "boot/grub2",
            cfg: BLS_CFG.to_owned(),
            default: "GRUB_TIMEOUT=0\nGRUB_ENABLE_BLSCFG=true\n",
        });
    }
    let k = newest_kernel_of(t)?;
    let prefix = if opts.boot_fs_uuid.is_some() {
        ""
    } else {
        "/boot"
    };
    Ok(Config {
        grub_dir: "boot/grub",
        cfg: static_cfg(
            &k,
            opts.grub_fs_uuid(),
            opts.root_fs_uuid,
            opts.kernel_opts,
            prefix,
        ),
        default: "GRUB_TIMEOUT=0\n",
    })
}

/// The newest kernel in the tree's `/boot`, or an error saying the tree has none.
fn newest_kernel_of(t: &Path) -> Result<Kernel, StageError> {
    let boot = tree::tree_path(t, "boot")?;
    let mut names: Vec<String> = std::fs::read_dir(&boot)
        .map_err(|e| StageError::io("cannot read", &boot, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    newest_kernel(&names).ok_or_else(|| {
        StageError::option(
            "root_fs_uuid",
            "the tree has neither BLS entries (/boot/loader/entries) nor a kernel \
             (/boot/vmlinuz-*): install a kernel before this stage",
        )
    })
}

/// BLS: the environment block the script reads.
fn write_grubenv(t: &Path, opts: &Options) -> Result<(), StageError> {
    if opts.hybrid() {
        // A grubenv symlink into the ESP (from grub2-efi) would split the environment.
        tree::remove_file(t, "boot/grub2/grubenv")?;
    }
    let env = grubenv(opts.grub_fs_uuid(), opts.root_fs_uuid, opts.kernel_opts);
    tree::write_file(t, "boot/grub2/grubenv", env.as_bytes(), 0o644)?;
    Ok(())
}

/// `/boot/efi/EFI/<vendor>/grub.cfg`: the whole configuration (v10, BLS trees booting by
/// UEFI only), or one that finds the canonical file: for hybrid, and always without BLS, where
/// the canonical file is what the tree's `update-grub` rewrites on a kernel update (a copy on
/// the ESP would go stale).
fn write_esp_cfg(
    t: &Path,
    opts: &Options,
    config: &Config,
    vendor: &str,
    bls: bool,
) -> Result<(), StageError> {
    let path = format!("boot/efi/EFI/{vendor}/grub.cfg");
    let text = if opts.hybrid() || !bls {
        let on_fs = if opts.boot_fs_uuid.is_some() {
            config.grub_dir.trim_start_matches("boot").to_owned()
        } else {
            format!("/{}", config.grub_dir)
        };
        println!(
            "writing a grub.cfg to the ESP that finds /{}/grub.cfg",
            config.grub_dir
        );
        redirect_cfg(&on_fs)
    } else {
        config.cfg.clone()
    };
    tree::write_file(t, &path, text.as_bytes(), 0o644)?;
    Ok(())
}

pub fn run(args: &Args) -> Result<i32, StageError> {
    let t = &args.tree;
    let bls = tree::tree_path(t, "boot/loader/entries")
        .map(|p| p.is_dir())
        .unwrap_or(false);
    if args.is_head() {
        return head::run(args, bls);
    }
    let opts = Options::parse(args)?;
    let config = config(t, &opts, bls)?;
    let canonical = format!("{}/grub.cfg", config.grub_dir);

    tree::write_file(t, "etc/default/grub", config.default.as_bytes(), 0o644)?;
    tree::create_dirs(t, config.grub_dir, 0o755)?;
    if bls {
        write_grubenv(t, &opts)?;
    }
    if let Some(vendor) = &opts.vendor {
        write_esp_cfg(t, &opts, &config, vendor, bls)?;
        if opts.install_efi {
            install_efi_program(t, vendor, config.grub_dir)?;
        }
    }
    if let Some(platform) = &opts.legacy {
        tree::write_file(t, &canonical, config.cfg.as_bytes(), 0o644)?;
        copy_modules(t, config.grub_dir, platform)?;
    } else if opts.vendor.is_none() || !bls {
        // Without BLS the canonical file is always written: the EFI GRUB image built by the
        // qemu assembler reads it from /boot too.
        tree::write_file(t, &canonical, config.cfg.as_bytes(), 0o644)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// (kernel, initrd) expected.
    type Want = Option<(&'static str, Option<&'static str>)>;

    #[test]
    fn newest_kernel_table() {
        let cases: [(&[&str], Want); 5] = [
            (&["config-6.1.0-9-amd64"], None),
            (
                &["initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64"],
                Some(("vmlinuz-6.1.0-9-amd64", Some("initrd.img-6.1.0-9-amd64"))),
            ),
            (
                &["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64"],
                Some(("vmlinuz-6.1.0-10-amd64", None)),
            ),
            (
                &[
                    "initramfs-6.5.6-300.fc39.x86_64.img",
                    "vmlinuz-6.5.6-300.fc39.x86_64",
                ],
                Some((
                    "vmlinuz-6.5.6-300.fc39.x86_64",
                    Some("initramfs-6.5.6-300.fc39.x86_64.img"),
                )),
            ),
            (
                &["vmlinuz-0-rescue-abc", "vmlinuz-5.0"],
                Some(("vmlinuz-5.0", None)),
            ),
        ];
        for (list, want) in cases {
            let got = newest_kernel(&names(list));
            assert_eq!(
                got.as_ref()
                    .map(|k| (k.kernel.as_str(), k.initrd.as_deref())),
                want,
                "{list:?}"
            );
        }
    }

    #[test]
    fn static_cfg_names_kernel_initrd_and_root() {
        let k = Kernel {
            version: "6.1.0-9-amd64".into(),
            kernel: "vmlinuz-6.1.0-9-amd64".into(),
            initrd: Some("initrd.img-6.1.0-9-amd64".into()),
        };
        assert_eq!(
            static_cfg(&k, "B", "R", "ro console=ttyS0", "/boot"),
            "set timeout=0\n\
             search --no-floppy --fs-uuid --set=root B\n\
             menuentry 'Linux 6.1.0-9-amd64' {\n\
             \x20 linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID=R ro console=ttyS0\n\
             \x20 initrd /boot/initrd.img-6.1.0-9-amd64\n\
             }\n"
        );
        assert!(static_cfg(&k, "B", "R", "", "")
            .contains("  linux /vmlinuz-6.1.0-9-amd64 root=UUID=R\n"));
    }

    #[test]
    fn efi_program_arguments() {
        let a = efi_mkimage_args("debian", "/t/boot/efi/EFI/debian/grubx64.efi").join(" ");
        assert!(
            a.starts_with(
                "--format x86_64-efi --directory /usr/lib/grub/x86_64-efi --prefix /EFI/debian \
                 --output /t/boot/efi/EFI/debian/grubx64.efi part_gpt part_msdos fat ext2 "
            ),
            "{a}"
        );
        for m in [
            "linux",
            "search_fs_uuid",
            "search_fs_file",
            "configfile",
            "normal",
        ] {
            assert!(a.split(' ').any(|w| w == m), "{m} missing: {a}");
        }
    }

    #[test]
    fn uefi_install_option() {
        let cases = [
            (None, Ok(false)),
            (Some(serde_json::json!({"vendor": "debian"})), Ok(false)),
            (
                Some(serde_json::json!({"vendor": "debian", "install": true})),
                Ok(true),
            ),
            (
                Some(serde_json::json!({"vendor": "debian", "install": "yes"})),
                Err(()),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(
                uefi_install(v.as_ref()).map_err(|e| assert!(
                    e.to_string().contains("\"install\" must be true or false"),
                    "{e}"
                )),
                want,
                "{v:?}"
            );
        }
    }

    #[test]
    fn grubenv_is_one_block() {
        let env = grubenv("B", "R", "ro");
        assert_eq!(env.len(), 1024);
        assert!(env.starts_with(
            "# GRUB Environment Block\nGRUB2_ROOT_FS_UUID=B\nkernelopts=root=UUID=R ro\n#"
        ));
    }
}
