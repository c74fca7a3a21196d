//! `osbuild-mkmanifest-debian`: resolve Debian packages with the machine's apt sources and
//! print a v1 manifest installing them with `org.osbuild.dpkg` (see [`osbuild::mkmanifest::debian`]).

#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use osbuild::mkmanifest::debian;

/// Print a v1 osbuild manifest that installs PACKAGES (and their dependencies, resolved by
/// apt from this machine's configured repositories) into an empty tree, each .deb pinned by
/// SHA256 in the org.osbuild.files source.
#[derive(Parser, Debug)]
#[command(name = "osbuild-mkmanifest-debian", version)]
struct Args {
    /// Package names or apt patterns (e.g. systemd-sysv, '?priority(required)').
    packages: Vec<String>,
    /// Add the base system: every Priority: required package and usr-is-merged.
    #[arg(long)]
    base: bool,
    /// Also install Recommends.
    #[arg(long)]
    recommends: bool,
    /// Resolve against this dpkg status file instead of an empty system (to add packages to
    /// an existing tree).
    #[arg(long, value_name = "FILE")]
    status: Option<PathBuf>,
    /// An extra apt option NAME=VALUE (repeatable).
    #[arg(short = 'o', long = "apt-option", value_name = "NAME=VALUE")]
    apt_options: Vec<String>,
    /// Add an org.osbuild.hostname stage.
    #[arg(long)]
    hostname: Option<String>,
    /// Add an org.osbuild.timezone stage (e.g. Etc/UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Add an org.osbuild.locale stage (e.g. C.UTF-8).
    #[arg(long)]
    locale: Option<String>,
    /// A kernel module for a small initrd (MODULES=list; repeatable).
    #[arg(long = "initramfs-module", value_name = "MODULE")]
    initramfs_modules: Vec<String>,
    /// Make a bootable disk image (ext4 root, GRUB 2; see --boot): adds --base, the kernel,
    /// initramfs-tools, systemd-sysv and udev, a small virtio/SCSI/IDE initrd unless
    /// --initramfs-module is given, the fstab and grub2 stages and the qemu assembler.
    #[arg(long)]
    image: bool,
    /// How the image boots: bios (MBR, GRUB in the MBR gap), uefi (GPT, an EFI system
    /// partition at /boot/efi with GRUB as EFI/BOOT/BOOTX64.EFI, grub-efi-amd64 in the tree)
    /// or hybrid (GPT with a BIOS boot partition and an ESP: boots both ways).
    #[arg(long, value_name = "KIND", default_value = "bios", requires = "image", value_parser = debian::Boot::parse)]
    boot: debian::Boot,
    /// The EFI system partition's size (uefi and hybrid), e.g. 200M.
    #[arg(long, value_name = "SIZE", default_value = "200M", requires = "image", value_parser = debian::image_size)]
    esp_size: u64,
    /// Image format (qcow2, raw, raw.xz, vdi, vmdk, vpc); the output file is disk.FORMAT.
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "qcow2",
        requires = "image"
    )]
    image_format: String,
    /// Virtual disk size, e.g. 2G or 1536M.
    #[arg(long, value_name = "SIZE", default_value = "2G", requires = "image", value_parser = debian::image_size)]
    image_size: u64,
    /// The kernel command line after root=UUID=...
    #[arg(
        long,
        value_name = "OPTS",
        default_value = "ro console=ttyS0,115200",
        requires = "image"
    )]
    kernel_opts: String,
    /// The root filesystem's UUID.
    #[arg(long, value_name = "UUID", requires = "image")]
    root_fs_uuid: Option<String>,
    /// For tests: install imgtest.service and start it by kernel argument; at multi-user it
    /// prints `IMGTEST-END failed=<failed units>` on the console and powers off.
    #[arg(long, requires = "image")]
    boot_probe: bool,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn run(args: Args) -> anyhow::Result<()> {
    let image = args.image.then(|| {
        let defaults = debian::ImageOptions::for_boot(args.boot);
        debian::ImageOptions {
            esp_size: args.esp_size,
            size: args.image_size,
            format: args.image_format,
            kernel_opts: args.kernel_opts,
            probe: args.boot_probe,
            root_fs_uuid: args.root_fs_uuid.unwrap_or(defaults.root_fs_uuid),
            ..defaults
        }
    });
    let request = debian::Request {
        packages: args.packages,
        base: args.base,
        resolve: debian::ResolveOptions {
            recommends: args.recommends,
            status: args.status,
            apt_options: args.apt_options,
        },
        manifest: debian::ManifestOptions {
            hostname: args.hostname,
            initramfs_modules: args.initramfs_modules,
            timezone: args.timezone,
            locale: args.locale,
            image,
        },
    };
    let generated = debian::generate(&request).context("cannot resolve the packages")?;
    eprintln!("{}", generated.summary());
    osbuild::cli::write_manifest(&generated.manifest, args.output.as_deref())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("osbuild-mkmanifest-debian: {e:#}");
        std::process::exit(1);
    }
}
