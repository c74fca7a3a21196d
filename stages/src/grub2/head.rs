//! `org.osbuild.grub2` under osbuild HEAD's protocol: HEAD's options (`rootfs`/`bootfs` by
//! UUID or label, `config`, `saved_entry`, `write_cmdline`, `write_defaults`, `greenboot`,
//! `ignition`, `compat_version`, `uefi.unified`, `uefi.efi_src_dir`) and HEAD's files.
//!
//! In a BLS tree the configuration is HEAD's: `/boot/grub2/grub.cfg` loads the environment,
//! honours `next_entry`/`saved_entry`, searches GRUB's filesystem and runs `blscfg`;
//! `/boot/grub2/grubenv` holds `kernelopts` (and `saved_entry`), padded to 1024 bytes;
//! `/etc/default/grub` the `config` values. The comments of HEAD's grub.cfg are not
//! reproduced (their lines are).
//!
//! In a tree without BLS (Debian) the configuration is the static one of v10's form
//! (`/boot/grub/grub.cfg` booting the newest kernel), with HEAD's `config` timeout, serial and
//! terminal settings, a root by label or UUID, and `/etc/default/grub` without BLS. Options
//! that only make sense with BLS (`saved_entry`, `greenboot`, `ignition`, `uefi.unified`) are
//! refused there by name.

use std::path::Path;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::tree;

use super::{copy_modules, install_efi_program, newest_kernel_of, redirect_cfg};

/// How GRUB and the kernel find a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsId {
    Uuid(String),
    Label(String),
}

impl FsId {
    /// The arguments of GRUB's `search` for it.
    fn search(&self) -> String {
        match self {
            FsId::Uuid(u) => format!("--fs-uuid {u}"),
            FsId::Label(l) => format!("--label {l}"),
        }
    }

    /// The kernel's `root=` value for it.
    fn kernel_root(&self) -> String {
        match self {
            FsId::Uuid(u) => format!("UUID={u}"),
            FsId::Label(l) => format!("LABEL={l}"),
        }
    }
}

/// `uefi`.
#[derive(Debug, Default)]
struct Uefi {
    vendor: String,
    efi_src_dir: Option<String>,
    install: bool,
    unified: bool,
}

/// `config`: what goes into `/etc/default/grub` and the terminal lines of `grub.cfg`.
#[derive(Debug, Default)]
pub struct GrubConfig {
    pub default: Option<String>,
    pub disable_recovery: Option<bool>,
    pub disable_submenu: Option<bool>,
    pub distributor: Option<String>,
    pub serial: Option<String>,
    pub terminal: Option<Vec<String>>,
    pub terminal_input: Option<Vec<String>>,
    pub terminal_output: Option<Vec<String>>,
    pub timeout: i64,
    pub timeout_style: Option<String>,
}

/// HEAD's options.
#[derive(Debug)]
struct HeadOptions {
    root: FsId,
    boot: Option<FsId>,
    kernel_opts: String,
    legacy: Option<String>,
    uefi: Option<Uefi>,
    write_cmdline: bool,
    write_defaults: bool,
    saved_entry: Option<String>,
    ignition: bool,
    greenboot: bool,
    /// `compat_version` 2: unset terminal lines leave nothing (1 leaves HEAD's literal
    /// `${serial}`-style placeholders, which GRUB expands to nothing).
    compat_2: bool,
    config: GrubConfig,
}

/// A filesystem given as `{"uuid"}` or `{"label"}` (`key`), else the v10 string `uuid_key`.
fn fs_id(opts: &Opts, key: &str, uuid_key: &str) -> Result<Option<FsId>, StageError> {
    if let Some(fs) = opts.opt_object(key)? {
        if let Some(u) = fs.opt_str("uuid")?.filter(|u| !u.is_empty()) {
            return Ok(Some(FsId::Uuid(plain(&fs, "uuid", u)?)));
        }
        if let Some(l) = fs.opt_str("label")?.filter(|l| !l.is_empty()) {
            return Ok(Some(FsId::Label(plain(&fs, "label", l)?)));
        }
        return Err(StageError::option(
            opts.name(key),
            "needs \"uuid\" or \"label\"",
        ));
    }
    Ok(match opts.opt_str(uuid_key)? {
        Some(u) => Some(FsId::Uuid(plain(opts, uuid_key, u)?)),
        None => None,
    })
}

/// `value` of option `key`, refused when it would break a GRUB command line.
fn plain(opts: &Opts, key: &str, value: &str) -> Result<String, StageError> {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || "\"'$;\\".contains(c)) {
        return Err(StageError::option(
            opts.name(key),
            format!("{value:?} cannot be used in GRUB's configuration"),
        ));
    }
    Ok(value.to_owned())
}

fn str_list(opts: &Opts, key: &str) -> Result<Option<Vec<String>>, StageError> {
    Ok(opts
        .opt_str_list(key)?
        .map(|l| l.into_iter().map(str::to_owned).collect()))
}

impl GrubConfig {
    fn parse(opts: Option<Opts>) -> Result<GrubConfig, StageError> {
        let Some(c) = opts else {
            return Ok(GrubConfig::default());
        };
        Ok(GrubConfig {
            default: c.opt_str("default")?.map(str::to_owned),
            disable_recovery: c.opt_bool("disable_recovery")?,
            disable_submenu: c.opt_bool("disable_submenu")?,
            distributor: c.opt_str("distributor")?.map(str::to_owned),
            serial: c.opt_str("serial")?.map(str::to_owned),
            terminal: str_list(&c, "terminal")?,
            terminal_input: str_list(&c, "terminal_input")?,
            terminal_output: str_list(&c, "terminal_output")?,
            timeout: c.opt_i64("timeout")?.unwrap_or(0),
            timeout_style: c.opt_str("timeout_style")?.map(str::to_owned),
        })
    }

    /// `/etc/default/grub` as HEAD writes it (`bls`: with `GRUB_ENABLE_BLSCFG=true`).
    pub fn defaults(&self, kernel_opts: &str, bls: bool) -> String {
        let mut d = format!(
            "GRUB_CMDLINE_LINUX=\"{kernel_opts}\"\nGRUB_TIMEOUT={}\n",
            self.timeout
        );
        if bls {
            d.push_str("GRUB_ENABLE_BLSCFG=true\n");
        }
        let flag = |b: bool| if b { "true" } else { "false" };
        if let Some(b) = self.disable_recovery {
            d.push_str(&format!("GRUB_DISABLE_RECOVERY={}\n", flag(b)));
        }
        if let Some(b) = self.disable_submenu {
            d.push_str(&format!("GRUB_DISABLE_SUBMENU={}\n", flag(b)));
        }
        let quoted = [
            ("GRUB_DISTRIBUTOR", self.distributor.clone()),
            ("GRUB_SERIAL_COMMAND", self.serial.clone()),
            ("GRUB_TERMINAL", self.terminal.as_ref().map(|t| t.join(" "))),
            (
                "GRUB_TERMINAL_INPUT",
                self.terminal_input.as_ref().map(|t| t.join(" ")),
            ),
            (
                "GRUB_TERMINAL_OUTPUT",
                self.terminal_output.as_ref().map(|t| t.join(" ")),
            ),
        ];
        for (key, value) in quoted {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                d.push_str(&format!("{key}=\"{v}\"\n"));
            }
        }
        if let Some(s) = self.timeout_style.as_ref().filter(|s| !s.is_empty()) {
            d.push_str(&format!("GRUB_TIMEOUT_STYLE={s}\n"));
        }
        if let Some(e) = &self.default {
            d.push_str(&format!("GRUB_DEFAULT={e}\n"));
        }
        d
    }

    /// The serial and terminal lines of `grub.cfg` (each after a newline); with `literal`,
    /// an unset one is HEAD's compat-1 placeholder.
    fn terminal_lines(&self, literal: bool) -> String {
        let mut s = String::new();
        match self.serial.as_ref().filter(|v| !v.is_empty()) {
            Some(v) => s.push_str(&format!("\n{v}")),
            None if literal => s.push_str("${serial}"),
            None => {}
        }
        for (name, value) in [
            ("terminal_input", &self.terminal_input),
            ("terminal_output", &self.terminal_output),
        ] {
            match value.as_ref().filter(|v| !v.is_empty()) {
                Some(v) => s.push_str(&format!("\n{name} {}", v.join(" "))),
                None if literal => s.push_str(&format!("${{{name}}}")),
                None => {}
            }
        }
        s
    }
}

impl HeadOptions {
    fn parse(args: &Args) -> Result<HeadOptions, StageError> {
        let o = args.opts();
        let root = fs_id(&o, "rootfs", "root_fs_uuid")?.ok_or_else(|| {
            StageError::option("rootfs", "\"rootfs\" or \"root_fs_uuid\" is required")
        })?;
        let legacy = match args.options.get("legacy") {
            // HEAD installs modules only for a truthy value.
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => None,
            Some(serde_json::Value::String(p)) if p.is_empty() => None,
            Some(serde_json::Value::Bool(true)) => Some("i386-pc".to_owned()),
            Some(serde_json::Value::String(p))
                if !p.is_empty() && !p.contains('/') && p != ".." =>
            {
                Some(p.clone())
            }
            Some(_) => {
                return Err(StageError::option(
                    "legacy",
                    "must be true, false or a GRUB platform name such as \"i386-pc\"",
                ))
            }
        };
        let uefi = match o.opt_object("uefi")? {
            None => None,
            Some(u) => Some(Uefi {
                vendor: u.str("vendor")?.to_owned(),
                efi_src_dir: u.opt_str("efi_src_dir")?.map(str::to_owned),
                install: u.bool_or("install", false)?,
                unified: u.bool_or("unified", false)?,
            }),
        };
        if let Some(u) = &uefi {
            if u.vendor.is_empty() || u.vendor.contains('/') || u.vendor == ".." {
                return Err(StageError::option(
                    "uefi.vendor",
                    "must be a directory name under /boot/efi/EFI",
                ));
            }
        }
        Ok(HeadOptions {
            root,
            boot: fs_id(&o, "bootfs", "boot_fs_uuid")?,
            kernel_opts: o.opt_str("kernel_opts")?.unwrap_or("").to_owned(),
            legacy,
            uefi,
            write_cmdline: o.bool_or("write_cmdline", true)?,
            write_defaults: o.bool_or("write_defaults", true)?,
            saved_entry: o.opt_str("saved_entry")?.map(str::to_owned),
            ignition: o.bool_or("ignition", false)?,
            greenboot: o.bool_or("greenboot", false)?,
            compat_2: o.opt_i64("compat_version")?.unwrap_or(1) >= 2,
            config: GrubConfig::parse(o.opt_object("config")?)?,
        })
    }

    fn grub_fs(&self) -> &FsId {
        self.boot.as_ref().unwrap_or(&self.root)
    }

    /// Where GRUB's files are on GRUB's filesystem: `/` on a separate `/boot`, else `/boot/`.
    fn grub_home(&self) -> &'static str {
        if self.boot.is_some() {
            "/"
        } else {
            "/boot/"
        }
    }

    fn hybrid(&self) -> bool {
        self.uefi.is_some() && self.legacy.is_some()
    }
}

/// Ignition's first-boot hook, reading `ignition.firstboot` from GRUB's home.
fn ignition_cfg(home: &str) -> String {
    format!(
        "\n# Ignition: networking arguments for the first boot\n\
         set ignition_firstboot=\"\"\n\
         if [ -f \"{home}ignition.firstboot\" ]; then\n\
         \x20   set ignition_network_kcmdline=''\n\n\
         \x20   source \"{home}ignition.firstboot\"\n\n\
         \x20   set ignition_firstboot=\"ignition.firstboot ${{ignition_network_kcmdline}}\"\n\
         fi\n"
    )
}

/// greenboot's boot counting: fall back to entry 1 when the counter runs out.
const GREENBOOT_CFG: &str = "\n# greenboot: count boots until one is reported good\n\
insmod increment\n\
if [ -n \"${boot_counter}\" -a \"${boot_success}\" = \"0\" ]; then\n\
\x20 if  [ \"${boot_counter}\" = \"0\" -o \"${boot_counter}\" = \"-1\" ]; then\n\
\x20   set default=1\n\
\x20   set boot_counter=-1\n\
\x20 else\n\
\x20   decrement boot_counter\n\
\x20 fi\n\
\x20 save_env boot_counter\n\
fi\n\n\
set boot_success=0\n\
save_env boot_success\n";

/// HEAD's BLS `grub.cfg`.
fn bls_cfg(o: &HeadOptions) -> String {
    let features: Vec<String> = [
        o.ignition.then(|| ignition_cfg(o.grub_home())),
        o.greenboot.then(|| GREENBOOT_CFG.to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "\nset timeout={timeout}\n\n\
         # the environment block: next_entry, saved_entry, kernelopts\n\
         load_env\n\n\
         if [ \"${{next_entry}}\" ] ; then\n\
         \x20  set default=\"${{next_entry}}\"\n\
         \x20  set next_entry=\n\
         \x20  save_env next_entry\n\
         \x20  set boot_once=true\n\
         else\n\
         \x20  set default=\"${{saved_entry}}\"\n\
         fi\n\n\
         search --no-floppy --set=root {search}\n\
         set boot=${{root}}\n\
         function load_video {{\n\
         \x20 insmod all_video\n\
         }}\n\
         {features}{terminal}\n\
         blscfg\n",
        timeout = o.config.timeout,
        search = o.grub_fs().search(),
        features = features.join("\n"),
        terminal = o.config.terminal_lines(!o.compat_2),
    )
}

/// The ESP's `grub.cfg` that finds the canonical one (hybrid or `uefi.unified`).
fn bls_redirect(home: &str) -> String {
    format!(
        "\nsearch --no-floppy --set prefix --file {home}grub2/grub.cfg\n\
         set prefix=($prefix){home}grub2\n\
         configfile $prefix/grub.cfg\n"
    )
}

/// HEAD's `grubenv`: `kernelopts` and `saved_entry`, padded with `#` to 1024 bytes.
fn bls_grubenv(o: &HeadOptions) -> Result<String, StageError> {
    let mut s = String::from("# GRUB Environment Block\n");
    if o.write_cmdline {
        s.push_str(&format!(
            "kernelopts=root={} {}\n",
            o.root.kernel_root(),
            o.kernel_opts
        ));
    }
    if let Some(e) = &o.saved_entry {
        s.push_str(&format!("saved_entry={e}\n"));
    }
    if s.len() > 1024 {
        return Err(StageError::option(
            "kernel_opts",
            "too long: the grubenv block holds 1024 bytes",
        ));
    }
    while s.len() < 1024 {
        s.push('#');
    }
    Ok(s)
}

/// `uefi.install`: the EFI programs of the build root's `efi_src_dir` (`EFI/BOOT` and
/// `EFI/<vendor>`) copied to the ESP, as HEAD does; without that directory in the build
/// root and no `efi_src_dir` given, GRUB's EFI program is built with `grub-mkimage`.
fn install_efi(t: &Path, u: &Uefi, grub_dir: &str) -> Result<(), StageError> {
    let src = u.efi_src_dir.as_deref().unwrap_or("/boot/efi/EFI");
    let dirs = ["BOOT", u.vendor.as_str()].map(|d| Path::new(src).join(d));
    if u.efi_src_dir.is_none() && !dirs.iter().all(|d| d.is_dir()) {
        println!("no EFI programs in the build root's {src}: building GRUB's with grub-mkimage");
        return install_efi_program(t, &u.vendor, grub_dir);
    }
    for (dir, name) in dirs.iter().zip(["BOOT", u.vendor.as_str()]) {
        if !dir.is_dir() {
            return Err(StageError::option(
                "uefi.efi_src_dir",
                format!("{} is not a directory in the build root", dir.display()),
            ));
        }
        let target = tree::create_dirs(t, &format!("boot/efi/EFI/{name}"), 0o755)?;
        let mut cp = command::tool("cp");
        cp.args(["-rL", "--preserve=mode,timestamps"])
            .arg(dir.join("."))
            .arg(&target);
        command::run(&mut cp)?;
    }
    Ok(())
}

/// The options only a BLS configuration has, refused in a tree without BLS.
fn refuse_bls_only(o: &HeadOptions) -> Result<(), StageError> {
    let bls_only = [
        ("saved_entry", o.saved_entry.is_some()),
        ("greenboot", o.greenboot),
        ("ignition", o.ignition),
        ("uefi.unified", o.uefi.as_ref().is_some_and(|u| u.unified)),
    ];
    match bls_only.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(StageError::option(
            *name,
            "needs a BLS tree (/boot/loader/entries); this tree boots with a static grub.cfg",
        )),
        None => Ok(()),
    }
}

fn run_bls(t: &Path, o: &HeadOptions) -> Result<(), StageError> {
    tree::create_dirs(t, "boot/grub2", 0o755)?;
    if o.hybrid() {
        // grub2-efi's grubenv link into the ESP would split the environment.
        tree::remove_file(t, "boot/grub2/grubenv")?;
    }
    tree::write_file(t, "boot/grub2/grubenv", bls_grubenv(o)?.as_bytes(), 0o644)?;
    let mut main_cfg = "boot/grub2/grub.cfg".to_owned();
    if let Some(u) = &o.uefi {
        if u.install {
            install_efi(t, u, "boot/grub2")?;
        }
        let esp_cfg = format!("boot/efi/EFI/{}/grub.cfg", u.vendor);
        if o.hybrid() || u.unified {
            println!("hybrid boot or unified configuration: the ESP's grub.cfg finds /boot/grub2/grub.cfg");
            tree::write_file(t, &esp_cfg, bls_redirect(o.grub_home()).as_bytes(), 0o644)?;
        } else {
            main_cfg = esp_cfg;
        }
    }
    tree::write_file(t, &main_cfg, bls_cfg(o).as_bytes(), 0o644)?;
    if let Some(platform) = &o.legacy {
        copy_modules(t, "boot/grub2", platform)?;
    }
    Ok(())
}

fn run_static(t: &Path, o: &HeadOptions) -> Result<(), StageError> {
    refuse_bls_only(o)?;
    let k = newest_kernel_of(t)?;
    let prefix = if o.boot.is_some() { "" } else { "/boot" };
    let mut cfg = format!(
        "set timeout={}\nsearch --no-floppy --set=root {}{}\n",
        o.config.timeout,
        o.grub_fs().search(),
        o.config.terminal_lines(false)
    );
    let opts = if o.kernel_opts.is_empty() {
        String::new()
    } else {
        format!(" {}", o.kernel_opts)
    };
    cfg.push_str(&format!(
        "menuentry 'Linux {}' {{\n  linux {prefix}/{} root={}{opts}\n",
        k.version,
        k.kernel,
        o.root.kernel_root()
    ));
    if let Some(i) = &k.initrd {
        cfg.push_str(&format!("  initrd {prefix}/{i}\n"));
    }
    cfg.push_str("}\n");
    tree::create_dirs(t, "boot/grub", 0o755)?;
    tree::write_file(t, "boot/grub/grub.cfg", cfg.as_bytes(), 0o644)?;
    if let Some(u) = &o.uefi {
        if u.install {
            install_efi(t, u, "boot/grub")?;
        }
        let on_fs = if o.boot.is_some() {
            "/grub"
        } else {
            "/boot/grub"
        };
        let esp_cfg = format!("boot/efi/EFI/{}/grub.cfg", u.vendor);
        tree::write_file(t, &esp_cfg, redirect_cfg(on_fs).as_bytes(), 0o644)?;
    }
    if let Some(platform) = &o.legacy {
        copy_modules(t, "boot/grub", platform)?;
    }
    Ok(())
}

/// The stage under HEAD's protocol; `bls` when the tree has `/boot/loader/entries`.
pub fn run(args: &Args, bls: bool) -> Result<i32, StageError> {
    let o = HeadOptions::parse(args)?;
    let t = &args.tree;
    if o.write_defaults {
        let defaults = o.config.defaults(&o.kernel_opts, bls);
        tree::write_file(t, "etc/default/grub", defaults.as_bytes(), 0o644)?;
    }
    if bls {
        run_bls(t, &o)?;
    } else {
        run_static(t, &o)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: FsId) -> HeadOptions {
        HeadOptions {
            root,
            boot: None,
            kernel_opts: "ro".into(),
            legacy: None,
            uefi: None,
            write_cmdline: true,
            write_defaults: true,
            saved_entry: None,
            ignition: false,
            greenboot: false,
            compat_2: false,
            config: GrubConfig::default(),
        }
    }

    #[test]
    fn bls_cfg_searches_and_keeps_compat_placeholders() {
        let mut o = options(FsId::Uuid("u-1".into()));
        let cfg = bls_cfg(&o);
        assert!(cfg.starts_with("\nset timeout=0\n"), "{cfg}");
        assert!(cfg.contains("search --no-floppy --set=root --fs-uuid u-1\nset boot=${root}\n"));
        assert!(cfg.ends_with("}\n${serial}${terminal_input}${terminal_output}\nblscfg\n"));
        o.compat_2 = true;
        o.boot = Some(FsId::Label("boot".into()));
        o.config.serial = Some("serial --unit=0".into());
        o.config.terminal_output = Some(vec!["serial".into(), "console".into()]);
        o.greenboot = true;
        let cfg = bls_cfg(&o);
        assert!(cfg.contains("--set=root --label boot\n"));
        assert!(cfg.contains("insmod increment\n"));
        assert!(cfg.ends_with("save_env boot_success\n\nserial --unit=0\nterminal_output serial console\nblscfg\n"), "{cfg}");
    }

    #[test]
    fn grubenv_is_one_block() {
        let mut o = options(FsId::Label("root".into()));
        o.saved_entry = Some("abc-6.1".into());
        let env = bls_grubenv(&o).unwrap();
        assert_eq!(env.len(), 1024);
        assert!(env.starts_with(
            "# GRUB Environment Block\nkernelopts=root=LABEL=root ro\nsaved_entry=abc-6.1\n#"
        ));
        o.kernel_opts = "x".repeat(1100);
        assert!(bls_grubenv(&o).is_err());
    }

    #[test]
    fn defaults_follow_config() {
        let c = GrubConfig {
            timeout: 5,
            disable_recovery: Some(true),
            distributor: Some("Debian".into()),
            terminal: Some(vec!["serial".into(), "console".into()]),
            timeout_style: Some("menu".into()),
            default: Some("saved".into()),
            ..GrubConfig::default()
        };
        assert_eq!(
            c.defaults("console=ttyS0", true),
            "GRUB_CMDLINE_LINUX=\"console=ttyS0\"\nGRUB_TIMEOUT=5\nGRUB_ENABLE_BLSCFG=true\n\
             GRUB_DISABLE_RECOVERY=true\nGRUB_DISTRIBUTOR=\"Debian\"\n\
             GRUB_TERMINAL=\"serial console\"\nGRUB_TIMEOUT_STYLE=menu\nGRUB_DEFAULT=saved\n"
        );
        assert!(!c.defaults("", false).contains("BLSCFG"));
    }
}
