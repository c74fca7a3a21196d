//! `org.osbuild.mkfs.{ext4,xfs,fat,btrfs}`: make a file system on the device `device` with
//! the build root's `mkfs.*`, with HEAD's options mapped to the same command lines.

use std::process::Command;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;

/// The command line for one file system, from the options.
type Argv = fn(&Opts) -> Result<Vec<String>, StageError>;

fn make(args: &Args, program: &str, argv: Argv) -> Result<i32, StageError> {
    let device = args.device("device")?;
    // The one thing this stage declares CAP_SYS_ADMIN for: mkfs sets the device's block size
    // (BLKBSZSET), which the kernel allows only with it.
    let mut cmd: Command = command::tool_keeping_admin(program);
    cmd.args(argv(&args.opts())?).arg(device);
    command::run(&mut cmd)?;
    Ok(0)
}

pub fn run_ext4(args: &Args) -> Result<i32, StageError> {
    make(args, "mkfs.ext4", ext4)
}

pub fn run_xfs(args: &Args) -> Result<i32, StageError> {
    make(args, "mkfs.xfs", xfs)
}

pub fn run_fat(args: &Args) -> Result<i32, StageError> {
    make(args, "mkfs.fat", fat)
}

pub fn run_btrfs(args: &Args) -> Result<i32, StageError> {
    make(args, "mkfs.btrfs", btrfs)
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A label option no longer than `max` characters (the file system's own limit).
fn label<'a>(opts: &Opts<'a>, max: usize) -> Result<Option<&'a str>, StageError> {
    let label = opts.opt_str("label")?.filter(|l| !l.is_empty());
    if let Some(l) = label {
        if l.chars().count() > max {
            return Err(StageError::option(
                "label",
                format!("{l:?} is longer than {max} characters"),
            ));
        }
    }
    Ok(label)
}

fn ext4(opts: &Opts) -> Result<Vec<String>, StageError> {
    let mut argv = strings(["-U", opts.str("uuid")?]);
    if let Some(l) = label(opts, 16)? {
        argv.extend(strings(["-L", l]));
    }
    if let Some(lazy) = opts.opt_bool("lazy_init")? {
        let v = u8::from(lazy);
        argv.extend([
            "-E".into(),
            format!("lazy_itable_init={v}"),
            "-E".into(),
            format!("lazy_journal_init={v}"),
        ]);
    }
    for feature in ["verity", "orphan_file", "metadata_csum_seed"] {
        if let Some(on) = opts.opt_bool(feature)? {
            argv.push("-O".into());
            argv.push(if on {
                feature.to_owned()
            } else {
                format!("^{feature}")
            });
        }
    }
    Ok(argv)
}

fn xfs(opts: &Opts) -> Result<Vec<String>, StageError> {
    let mut argv = vec!["-m".to_owned(), format!("uuid={}", opts.str("uuid")?)];
    if let Some(l) = label(opts, 12)? {
        argv.extend(strings(["-L", l]));
    }
    if let Some(n) = opts.opt_i64("agcount")?.filter(|n| *n != 0) {
        argv.extend(["-d".to_owned(), format!("agcount={n}")]);
    }
    Ok(argv)
}

fn fat(opts: &Opts) -> Result<Vec<String>, StageError> {
    let mut argv = strings(["-I", "-i", opts.str("volid")?]);
    if let Some(l) = label(opts, 11)? {
        argv.extend(strings(["-n", l]));
    }
    match opts.opt_i64("fat-size")? {
        None => {}
        Some(n @ (12 | 16 | 32)) => argv.extend(["-F".to_owned(), n.to_string()]),
        Some(n) => {
            return Err(StageError::option(
                "fat-size",
                format!("{n} is not one of 12, 16, 32"),
            ))
        }
    }
    if let Some(g) = opts.opt_object("geometry")? {
        let heads = g
            .opt_i64("heads")?
            .ok_or_else(|| StageError::option(g.name("heads"), "is required"))?;
        let sectors = g
            .opt_i64("sectors-per-track")?
            .ok_or_else(|| StageError::option(g.name("sectors-per-track"), "is required"))?;
        argv.extend(["-g".to_owned(), format!("{heads}/{sectors}")]);
    }
    Ok(argv)
}

fn btrfs(opts: &Opts) -> Result<Vec<String>, StageError> {
    let mut argv = strings(["-U", opts.str("uuid")?]);
    if let Some(l) = label(opts, 256)? {
        argv.extend(strings(["-L", l]));
    }
    if opts.opt_str("metadata")?.is_some() {
        let m = opts.choice("metadata", &["single", "dup"], None)?;
        argv.extend(strings(["-m", m]));
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn argv(f: Argv, options: Value) -> Result<String, String> {
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        f(&args.opts())
            .map(|v| v.join(" "))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn command_lines_are_heads() {
        let cases: &[(Argv, Value, Result<&str, &str>)] = &[
            (ext4, json!({"uuid": "u"}), Ok("-U u")),
            (
                ext4,
                json!({"uuid": "u", "label": "root", "lazy_init": false, "verity": true, "orphan_file": false}),
                Ok("-U u -L root -E lazy_itable_init=0 -E lazy_journal_init=0 -O verity -O ^orphan_file"),
            ),
            (ext4, json!({"label": "x"}), Err("option \"uuid\": is required")),
            (ext4, json!({"uuid": "u", "label": "a-label-of-17-chr"}), Err("longer than 16")),
            (xfs, json!({"uuid": "u", "label": "boot", "agcount": 4}), Ok("-m uuid=u -L boot -d agcount=4")),
            (fat, json!({"volid": "7B7795E7"}), Ok("-I -i 7B7795E7")),
            (
                fat,
                json!({"volid": "7B7795E7", "label": "EFI", "fat-size": 16, "geometry": {"heads": 64, "sectors-per-track": 32}}),
                Ok("-I -i 7B7795E7 -n EFI -F 16 -g 64/32"),
            ),
            (fat, json!({"volid": "v", "fat-size": 8}), Err("option \"fat-size\": 8 is not one of 12, 16, 32")),
            (fat, json!({"volid": "v", "geometry": {"heads": 1}}), Err("option \"geometry.sectors-per-track\": is required")),
            (btrfs, json!({"uuid": "u", "label": "var", "metadata": "dup"}), Ok("-U u -L var -m dup")),
            (btrfs, json!({"uuid": "u", "metadata": "raid1"}), Err("not one of single, dup")),
        ];
        for (f, options, want) in cases {
            match (argv(*f, options.clone()), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{options}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{options}: {got}"),
                (got, want) => panic!("{options}: got {got:?}, want {want:?}"),
            }
        }
    }
}
