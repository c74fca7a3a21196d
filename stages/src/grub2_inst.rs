//! `org.osbuild.grub2.inst`: GRUB for BIOS PCs (`i386-pc`) and Open Firmware
//! (`powerpc-ieee1275`, the PReP partition) written into a disk image file of the tree.
//!
//! As HEAD does: a core image is made with `grub2-mkimage` (or `core.binary`) from the build
//! root's `/usr/lib/grub/PLATFORM` with the modules that find the prefix (the partition map
//! and the file system of `core`) and the `prefix` option, then written at sector `location`
//! of the image. For `i386-pc` the first 440 bytes of `boot.img` go into the MBR (the
//! partition table after them is left alone) told the core's sector at 0x5c, and a core
//! outside the MBR gap (a BIOS boot partition) is told where its own second sector is. On
//! Open Firmware the firmware loads the core from the PReP partition itself: `location` is
//! that partition's start and nothing else is written. Without `location` the core image
//! replaces the file (an El Torito image for an ISO).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::tree;

/// Where boot.img keeps the core image's first sector (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
const BOOT_KERNEL_SECTOR: u64 = 0x5c;
/// The boot code of an MBR: what of boot.img is written (the partition table follows).
const MBR_CODE: usize = 440;
/// Where the core image's first sector keeps the sector of its second one (the blocklist's
/// start, 0x200 - 12 bytes).
const CORE_NEXT_SECTOR: u64 = 500;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let filename = opts.str("filename")?;
    let platform = opts.str("platform")?;
    if platform.is_empty() || platform.contains('/') || platform.starts_with('.') {
        return Err(StageError::option(
            "platform",
            format!("{platform:?} is not a GRUB platform name (such as i386-pc)"),
        ));
    }
    let sector_size = whole(&opts, "sector-size")?.unwrap_or(512);
    if sector_size == 0 {
        return Err(StageError::option("sector-size", "must be above 0"));
    }
    // As for HEAD, location 0 is no location.
    let location = whole(&opts, "location")?.filter(|s| *s != 0);
    let prefix = prefix(
        &opts
            .opt_object("prefix")?
            .ok_or_else(|| required("prefix"))?,
    )?;
    let core = opts.opt_object("core")?.ok_or_else(|| required("core"))?;
    let image = tree::tree_path(&args.tree, filename.trim_start_matches('/'))?;
    println!("prefix: {prefix}");

    let scratch = std::env::temp_dir().join(format!("osbuild-grub2-inst-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| StageError::io("cannot create", &scratch, e))?;
    let result =
        mkimage(platform, &prefix, &core, &scratch.join("core.img")).and_then(
            |core| match location {
                Some(sector) => install(&image, &core, sector, sector_size, platform),
                None => fs::copy(&core, &image)
                    .map(drop)
                    .map_err(|e| StageError::io("cannot write the core image to", &image, e)),
            },
        );
    let _ = fs::remove_dir_all(&scratch);
    result?;
    Ok(0)
}

fn required(key: &str) -> StageError {
    StageError::option(key, "is required")
}

/// An optional whole number that is not negative.
fn whole(opts: &Opts, key: &str) -> Result<Option<u64>, StageError> {
    match opts.opt_i64(key)? {
        Some(v) if v < 0 => Err(StageError::option(key, "must not be negative")),
        v => Ok(v.map(|v| v as u64)),
    }
}

/// GRUB's prefix: `path` as it is, or `(,gpt3)/boot/grub2` for a partition (`number`
/// counting from 0).
fn prefix(p: &Opts) -> Result<String, StageError> {
    let path = p.str("path")?;
    if !path.starts_with('/') {
        return Err(StageError::option(p.name("path"), "must start with '/'"));
    }
    let Some(number) = p.opt_i64("number")? else {
        return Ok(path.to_owned());
    };
    if number < 0 {
        return Err(StageError::option(p.name("number"), "must not be negative"));
    }
    let label = match p.choice("partlabel", &["gpt", "dos", "mbr"], None)? {
        "gpt" => "gpt",
        _ => "msdos",
    };
    Ok(format!(
        "(,{label}{})/{}",
        number + 1,
        path.trim_start_matches('/')
    ))
}

/// The modules the core needs to read its prefix and the image format, for `core`.
fn core_modules(platform: &str, core: &Opts) -> Result<(Vec<&'static str>, String), StageError> {
    core.choice("type", &["mkimage"], None)?;
    let mut modules = Vec::new();
    if platform == "i386-pc" {
        modules.push("biosdisk");
    }
    modules.push(
        match core.choice("partlabel", &["gpt", "dos", "mbr"], None)? {
            "gpt" => "part_gpt",
            _ => "part_msdos",
        },
    );
    let mut format = platform.to_owned();
    modules.push(
        match core.choice("filesystem", &["ext4", "xfs", "btrfs", "iso9660"], None)? {
            "ext4" => "ext2",
            "xfs" => "xfs",
            "btrfs" => "btrfs",
            _ => {
                format = "i386-pc-eltorito".into();
                "iso9660"
            }
        },
    );
    Ok((modules, format))
}

/// Makes the core image at `out` with the build root's grub-mkimage; returns `out`.
fn mkimage(platform: &str, prefix: &str, core: &Opts, out: &Path) -> Result<PathBuf, StageError> {
    let (modules, format) = core_modules(platform, core)?;
    let dir = Path::new("/usr/lib/grub").join(platform);
    if !dir.is_dir() {
        return Err(StageError::Other(format!(
            "{} is not in the build root: GRUB's {platform} modules are missing",
            dir.display()
        )));
    }
    let program = match core.opt_str("binary")? {
        Some(b) => b,
        // HEAD's default is Fedora's name; Debian calls it grub-mkimage.
        None if find_tool("grub2-mkimage") => "grub2-mkimage",
        None => "grub-mkimage",
    };
    command::run(
        command::tool(program)
            .arg("--verbose")
            .arg("--directory")
            .arg(&dir)
            .args(["--prefix", prefix, "--format", &format])
            .args(["--compression", "auto", "--output"])
            .arg(out)
            .args(&modules),
    )?;
    Ok(out.to_path_buf())
}

fn find_tool(name: &str) -> bool {
    command::PATH
        .split(':')
        .any(|dir| Path::new(dir).join(name).is_file())
}

/// Writes the core image at `sector` of `image` and, for `i386-pc`, boot.img into its MBR.
fn install(
    image: &Path,
    core: &Path,
    sector: u64,
    sector_size: u64,
    platform: &str,
) -> Result<(), StageError> {
    let core = fs::read(core).map_err(|e| StageError::io("cannot read", core, e))?;
    let f = OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| StageError::io("cannot open the disk image", image, e))?;
    let size = f
        .metadata()
        .map_err(|e| StageError::io("cannot inspect", image, e))?
        .len();
    let offset = sector.saturating_mul(sector_size);
    println!("grub core size is {}", core.len());
    println!("writing core to sector {sector} (byte {offset})");
    if offset.saturating_add(core.len() as u64) > size {
        return Err(StageError::option(
            "location",
            format!(
                "the core image ({} bytes) at sector {sector} ends past the end of {} ({size} bytes)",
                core.len(),
                image.display()
            ),
        ));
    }
    let write = |bytes: &[u8], at: u64| {
        f.write_all_at(bytes, at)
            .map_err(|e| StageError::io("cannot write GRUB into", image, e))
    };
    write(&core, offset)?;
    if platform != "i386-pc" {
        return Ok(());
    }
    if offset > 512 {
        write(&(sector + 1).to_le_bytes(), offset + CORE_NEXT_SECTOR)?;
    }
    let boot_img = Path::new("/usr/lib/grub/i386-pc/boot.img");
    let boot = fs::read(boot_img).map_err(|e| StageError::io("cannot read", boot_img, e))?;
    let code = boot.get(..MBR_CODE).ok_or_else(|| {
        StageError::Other(format!("{} is too short for an MBR", boot_img.display()))
    })?;
    write(code, 0)?;
    write(&sector.to_le_bytes(), BOOT_KERNEL_SECTOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_opts<T>(options: serde_json::Value, f: impl FnOnce(&Opts) -> T) -> T {
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        f(&args.opts())
    }

    #[test]
    fn prefixes() {
        let cases = [
            (json!({"path": "/boot/grub2"}), Ok("/boot/grub2")),
            (
                json!({"type": "partition", "partlabel": "gpt", "number": 2, "path": "/boot/grub2"}),
                Ok("(,gpt3)/boot/grub2"),
            ),
            (
                json!({"type": "partition", "partlabel": "dos", "number": 0, "path": "/grub"}),
                Ok("(,msdos1)/grub"),
            ),
            (
                json!({"partlabel": "sun", "number": 0, "path": "/"}),
                Err("option \"partlabel\": \"sun\" is not one of gpt, dos, mbr"),
            ),
            (
                json!({"path": "boot"}),
                Err("option \"path\": must start with '/'"),
            ),
        ];
        for (p, want) in cases {
            let got = with_opts(p, |o| prefix(o).map_err(|e| e.to_string()));
            assert_eq!(got.as_deref(), want.map_err(str::to_owned).as_deref());
        }
    }

    #[test]
    fn modules_for_the_core() {
        let core = |platform: &str, v| with_opts(v, |o| core_modules(platform, o).unwrap());
        assert_eq!(
            core(
                "i386-pc",
                json!({"type": "mkimage", "partlabel": "gpt", "filesystem": "xfs"})
            ),
            (vec!["biosdisk", "part_gpt", "xfs"], "i386-pc".to_owned())
        );
        assert_eq!(
            core(
                "powerpc-ieee1275",
                json!({"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"})
            ),
            (vec!["part_msdos", "ext2"], "powerpc-ieee1275".to_owned())
        );
        assert_eq!(
            core(
                "i386-pc",
                json!({"type": "mkimage", "partlabel": "dos", "filesystem": "iso9660"})
            )
            .1,
            "i386-pc-eltorito"
        );
        let bad = with_opts(
            json!({"type": "mkimage", "partlabel": "gpt", "filesystem": "vfat"}),
            |o| core_modules("i386-pc", o).unwrap_err().to_string(),
        );
        assert_eq!(
            bad,
            "option \"filesystem\": \"vfat\" is not one of ext4, xfs, btrfs, iso9660"
        );
    }
}
