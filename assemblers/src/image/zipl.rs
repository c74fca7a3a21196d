//! zipl, the s390x boot loader, as osbuild v10's qemu assembler runs it (its f30-s390x
//! sample): the build root's `/usr/sbin/zipl` writes the boot map into `/boot` of the image's
//! filesystem and the IPL record onto the disk, for SCSI IPL with 512-byte blocks.
//!
//! The filesystem is already made (by [`super::filesystem`], without mounting); zipl needs it
//! mounted and the whole disk as a block device, so both come from the engine's `remoteloop`
//! API: one loop device over the image, one over the partition holding `/boot`, mounted while
//! zipl runs. The kernel, initrd and command line are the first boot loader entry
//! (`/boot/loader/entries/*.conf`, by name, rescue entries skipped), as v10 read them.

use std::path::{Path, PathBuf};

use crate::args::invalid;
use crate::image::mount::Mount;
use crate::image::partition::PartitionTable;
use crate::image::Placed;
use crate::{remoteloop, tool, AssemblerError};

/// Runs zipl for the image laid out as `table`/`placed`.
pub fn install(
    table: &PartitionTable,
    placed: &[Placed],
    image: &Path,
) -> Result<(), AssemblerError> {
    let (index, fs) = table.boot_filesystem().ok_or_else(|| {
        invalid(
            "bootloader",
            "zipl needs a partition with a filesystem mounted at /boot or /",
        )
    })?;
    let part = &placed[index];
    let disk = remoteloop::device(image, 0, 0)?;
    let partition = remoteloop::device(image, part.start * 512, part.size * 512)?;
    let mounted = Mount::new(partition.path(), fs.fstype.name())?;
    // Paths as the filesystem's own root sees them: `/boot/...` on a root partition.
    let within = |p: &str| mounted.path().join(p.trim_start_matches('/'));
    let boot_dir = if fs.mountpoint == "/" {
        within("/boot")
    } else {
        mounted.path().to_owned()
    };
    let entry = first_entry(&boot_dir.join("loader/entries"))?;
    let args = zipl_args(
        &boot_dir,
        &within(&entry.linux),
        &within(&entry.initrd),
        &entry.options,
        disk.path(),
        part.start,
    );
    tool::run(tool::command("zipl", &args))?;
    mounted.unmount()?;
    // What zipl wrote through the loop devices sits in their caches until the last close,
    // which is the engine's, after this assembler has converted the image: flush it now.
    for dev in [disk.path(), partition.path()] {
        std::fs::File::open(dev)
            .and_then(|f| f.sync_all())
            .map_err(|e| AssemblerError::Tool(format!("flushing {}: {e}", dev.display())))?;
    }
    Ok(())
}

/// zipl's command line, v10's.
fn zipl_args(
    boot_dir: &Path,
    kernel: &Path,
    initrd: &Path,
    options: &str,
    disk: &Path,
    start: u64,
) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    [
        "--verbose",
        "--target",
        &s(boot_dir),
        "--image",
        &s(kernel),
        "--ramdisk",
        &s(initrd),
        "--parameters",
        options,
        "--targetbase",
        &s(disk),
        "--targettype",
        "SCSI",
        "--targetblocksize",
        "512",
        "--targetoffset",
        &start.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// A boot loader entry's kernel, initrd and command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    linux: String,
    initrd: String,
    options: String,
}

/// The first entry in `dir` by name that is not a rescue entry.
fn first_entry(dir: &Path) -> Result<Entry, AssemblerError> {
    let missing = |what: String| {
        invalid(
            "bootloader",
            format!("zipl needs a boot loader entry with linux and initrd: {what}"),
        )
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| missing(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "conf")
                && !p
                    .file_stem()
                    .is_some_and(|s| s.to_string_lossy().ends_with("rescue"))
        })
        .collect();
    names.sort();
    let path = names
        .first()
        .ok_or_else(|| missing(format!("none in {}", dir.display())))?;
    let text =
        std::fs::read_to_string(path).map_err(|e| missing(format!("{}: {e}", path.display())))?;
    parse_entry(&text).ok_or_else(|| missing(format!("{} lacks one", path.display())))
}

fn parse_entry(text: &str) -> Option<Entry> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(char::is_whitespace)?;
            (k == key).then(|| v.trim().to_owned())
        })
    };
    Some(Entry {
        linux: value("linux")?,
        initrd: value("initrd")?,
        options: value("options").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_as_v10_reads_them() {
        let text = "title Fedora\nversion 5.3\nlinux /boot/vmlinuz-5.3\ninitrd /boot/initramfs-5.3.img\noptions root=UUID=x ro  console=ttyS0\n";
        assert_eq!(
            parse_entry(text),
            Some(Entry {
                linux: "/boot/vmlinuz-5.3".into(),
                initrd: "/boot/initramfs-5.3.img".into(),
                options: "root=UUID=x ro  console=ttyS0".into(),
            })
        );
        assert_eq!(parse_entry("linux /v\n"), None, "no initrd");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-rescue.conf"), "linux /r\ninitrd /r\n").unwrap();
        std::fs::write(dir.path().join("b.conf"), "linux /b\ninitrd /bi\n").unwrap();
        std::fs::write(dir.path().join("c.conf"), "linux /c\ninitrd /ci\n").unwrap();
        assert_eq!(first_entry(dir.path()).unwrap().linux, "/b");
        let e = first_entry(&dir.path().join("none")).unwrap_err();
        assert!(
            e.to_string().contains("zipl needs a boot loader entry"),
            "{e}"
        );
    }

    #[test]
    fn the_command_line_is_v10s() {
        let args = zipl_args(
            Path::new("/m/boot"),
            Path::new("/m/boot/vmlinuz"),
            Path::new("/m/boot/initrd"),
            "root=x",
            Path::new("/dev/loop7"),
            2048,
        );
        assert_eq!(
            args.join(" "),
            "--verbose --target /m/boot --image /m/boot/vmlinuz --ramdisk /m/boot/initrd \
             --parameters root=x --targetbase /dev/loop7 --targettype SCSI --targetblocksize 512 \
             --targetoffset 2048"
        );
    }
}
