//! The command lines of the manifest generators `osbuild-mkmanifest-debian` and
//! `osbuild-mkmanifest-dnf` (the generators themselves are [`crate::mkmanifest`]); here, beside
//! the other command lines, so that their man pages and completions come from the same
//! definitions.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use crate::mkmanifest::depsolve::{self, DEFAULT_DEPSOLVER};
use crate::mkmanifest::dnf::{self, InstallOptions, RepoSpec, Target};
use crate::mkmanifest::{debian, debian_v2};

/// Print a v1 osbuild manifest that installs PACKAGES (and their dependencies, resolved by
/// apt from this machine's configured repositories) into an empty tree, each .deb pinned by
/// SHA256 in the org.osbuild.files source.
#[derive(Parser, Debug)]
#[command(name = "osbuild-mkmanifest-debian", version)]
pub struct DebianArgs {
    /// Package names or apt patterns (e.g. systemd-sysv, '?priority(required)').
    pub packages: Vec<String>,
    /// Add the base system: every Priority: required package and usr-is-merged.
    #[arg(long)]
    pub base: bool,
    /// Also install Recommends.
    #[arg(long)]
    pub recommends: bool,
    /// Resolve against this dpkg status file instead of an empty system (to add packages to
    /// an existing tree).
    #[arg(long, value_name = "FILE")]
    pub status: Option<PathBuf>,
    /// An extra apt option NAME=VALUE (repeatable).
    #[arg(short = 'o', long = "apt-option", value_name = "NAME=VALUE")]
    pub apt_options: Vec<String>,
    /// Add an org.osbuild.hostname stage.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Add an org.osbuild.timezone stage (e.g. Etc/UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Add an org.osbuild.locale stage (e.g. C.UTF-8).
    #[arg(long)]
    pub locale: Option<String>,
    /// A kernel module for a small initrd (MODULES=list; repeatable).
    #[arg(long = "initramfs-module", value_name = "MODULE")]
    pub initramfs_modules: Vec<String>,
    /// Make a bootable disk image (ext4 root, GRUB 2; see --boot): adds --base, the kernel,
    /// initramfs-tools, systemd-sysv and udev, a small virtio/SCSI/IDE initrd unless
    /// --initramfs-module is given, the fstab and grub2 stages and the qemu assembler.
    #[arg(long)]
    pub image: bool,
    /// How the image boots: bios (MBR, GRUB in the MBR gap), uefi (GPT, an EFI system
    /// partition at /boot/efi with GRUB as EFI/BOOT/BOOTX64.EFI, grub-efi-amd64 in the tree)
    /// or hybrid (GPT with a BIOS boot partition and an ESP: boots both ways).
    #[arg(long, value_name = "KIND", default_value = "bios", requires = "image", value_parser = debian::Boot::parse)]
    pub boot: debian::Boot,
    /// The EFI system partition's size (uefi and hybrid), e.g. 200M.
    #[arg(long, value_name = "SIZE", default_value = "200M", requires = "image", value_parser = debian::image_size)]
    pub esp_size: u64,
    /// Image format (qcow2, raw, raw.xz, vdi, vmdk, vpc); the output file is disk.FORMAT.
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "qcow2",
        requires = "image"
    )]
    pub image_format: String,
    /// How a qcow2's clusters are compressed: zlib (every reader) or zstd (about 5x faster
    /// to write; only qemu 5.1 and later read it). Sets the qemu assembler's
    /// qcow2_compression (v1) or the qemu stage's compression_type (v2).
    #[arg(long, value_name = "TYPE", default_value = "zlib", requires = "image", value_parser = ["zlib", "zstd"])]
    pub qcow2_compression: String,
    /// Virtual disk size, e.g. 2G or 1536M.
    #[arg(long, value_name = "SIZE", default_value = "2G", requires = "image", value_parser = debian::image_size)]
    pub image_size: u64,
    /// The kernel command line after root=UUID=...
    #[arg(
        long,
        value_name = "OPTS",
        default_value = "ro console=ttyS0,115200",
        requires = "image"
    )]
    pub kernel_opts: String,
    /// The root filesystem's UUID.
    #[arg(long, value_name = "UUID", requires = "image")]
    pub root_fs_uuid: Option<String>,
    /// For tests: install imgtest.service and start it by kernel argument; at multi-user it
    /// prints `IMGTEST-END failed=<failed units>` on the console and powers off.
    #[arg(long, requires = "image")]
    pub boot_probe: bool,
    /// The manifest's format: v1 (osbuild v10's) or v2 (osbuild's current one: pipelines os,
    /// image and one named after the image format, e.g. `--export qcow2`).
    #[arg(long, value_name = "VERSION", default_value = "v1", value_parser = ["v1", "v2"])]
    pub format: String,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `osbuild-mkmanifest-debian`: resolves and prints (or writes) the manifest.
pub fn run_debian(args: DebianArgs) -> anyhow::Result<()> {
    let qcow2_zstd = args.qcow2_compression == "zstd";
    if qcow2_zstd && args.image_format != "qcow2" {
        anyhow::bail!(
            "--qcow2-compression zstd needs --image-format qcow2 (not {:?})",
            args.image_format
        );
    }
    let image = args.image.then(|| {
        let defaults = debian::ImageOptions::for_boot(args.boot);
        debian::ImageOptions {
            esp_size: args.esp_size,
            size: args.image_size,
            format: args.image_format,
            qcow2_zstd,
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
    let write: debian::Writer = match args.format.as_str() {
        "v2" => debian_v2::manifest,
        _ => debian::write_v1,
    };
    // What the format cannot write is said before apt runs (the same writer, no packages).
    write(&[], &request.manifest)?;
    let generated = debian::generate(&request, write).context("cannot resolve the packages")?;
    eprintln!("{}", generated.summary());
    super::write_manifest(&generated.manifest, args.output.as_deref())
}

/// Print an osbuild manifest that installs PACKAGES from the given repositories. v1 (the
/// default): resolved by dnf when the image is built, each repository pinned by the sha256 of
/// the repodata/repomd.xml this machine's dnf fetches now (org.osbuild.dnf). v2: resolved now
/// by osbuild-depsolve-dnf, each .rpm pinned by its checksum in org.osbuild.curl and
/// installed by org.osbuild.rpm from a files input. Repositories are listed base URLs first,
/// then metalinks, then mirrorlists.
#[derive(Parser, Debug)]
#[command(name = "osbuild-mkmanifest-dnf", version)]
pub struct DnfArgs {
    /// Package specs (names, globs, @groups).
    #[arg(required = true)]
    pub packages: Vec<String>,
    /// A repository by base URL (repeatable; $releasever and $basearch are dnf's).
    #[arg(long = "baseurl", value_name = "URL")]
    pub baseurls: Vec<String>,
    /// A repository by metalink URL (repeatable).
    #[arg(long = "metalink", value_name = "URL")]
    pub metalinks: Vec<String>,
    /// A repository by mirrorlist URL (repeatable).
    #[arg(long = "mirrorlist", value_name = "URL")]
    pub mirrorlists: Vec<String>,
    /// An ASCII-armored GPG key file the packages of every repository must be signed with.
    #[arg(long, value_name = "FILE")]
    pub gpgkey: Option<PathBuf>,
    /// dnf's $releasever (e.g. 39).
    #[arg(long)]
    pub releasever: String,
    /// dnf's $basearch.
    #[arg(long, default_value = std::env::consts::ARCH)]
    pub basearch: String,
    /// A package spec to exclude (repeatable).
    #[arg(long = "exclude", value_name = "SPEC")]
    pub exclude: Vec<String>,
    /// Do not install weak dependencies (Recommends).
    #[arg(long)]
    pub no_weak_deps: bool,
    /// The manifest's format: v1 (org.osbuild.dnf resolves at build time) or v2 (resolved
    /// now, rpms pinned in org.osbuild.curl).
    #[arg(long, value_name = "VERSION", default_value = "v1", value_parser = ["v1", "v2"])]
    pub format: String,
    /// The depsolver for --format v2 (HEAD's osbuild-depsolve-dnf protocol).
    #[arg(long, value_name = "PROGRAM", default_value = DEFAULT_DEPSOLVER)]
    pub depsolver: PathBuf,
    /// Where the depsolver caches repository metadata (--format v2; default: a throwaway
    /// directory).
    #[arg(long, value_name = "DIR")]
    pub cachedir: Option<PathBuf>,
    /// Write the manifest here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `osbuild-mkmanifest-dnf --format v2`: resolves now and pins every rpm.
fn run_dnf_v2(
    args: &DnfArgs,
    repos: &[RepoSpec],
    target: &Target,
    install: &InstallOptions,
) -> anyhow::Result<serde_json::Value> {
    let packages = depsolve::depsolve(
        &args.depsolver,
        repos,
        target,
        install,
        args.cachedir.as_deref(),
    )
    .context("cannot resolve the packages")?;
    for p in &packages {
        eprintln!("{} {}", p.nevra(), p.checksum);
    }
    let mut gpgkeys: Vec<String> = Vec::new();
    for key in repos.iter().filter_map(|r| r.gpgkey.as_ref()) {
        if !gpgkeys.contains(key) {
            gpgkeys.push(key.clone());
        }
    }
    Ok(depsolve::manifest_v2(&packages, &gpgkeys)?)
}

/// `osbuild-mkmanifest-dnf`: pins the repositories (v1) or the packages (v2) and prints (or
/// writes) the manifest.
pub fn run_dnf(args: DnfArgs) -> anyhow::Result<()> {
    let gpgkey = args
        .gpgkey
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let repos = dnf::repositories(
        &args.baseurls,
        &args.metalinks,
        &args.mirrorlists,
        gpgkey.as_deref(),
    );
    let target = Target {
        releasever: args.releasever.clone(),
        basearch: args.basearch.clone(),
    };
    let install = InstallOptions {
        packages: args.packages.clone(),
        exclude: args.exclude.clone(),
        weak_deps: !args.no_weak_deps,
    };
    if args.format == "v2" {
        let manifest = run_dnf_v2(&args, &repos, &target, &install)?;
        return super::write_manifest(&manifest, args.output.as_deref());
    }
    let checksums = dnf::pin(&repos, &target).context("cannot pin the repositories")?;
    for (r, c) in repos.iter().zip(&checksums) {
        eprintln!("{} {c}", r.url);
    }
    let manifest = dnf::manifest(&repos, &checksums, &target, &install)?;
    super::write_manifest(&manifest, args.output.as_deref())
}
