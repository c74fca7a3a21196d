//! `org.osbuild.sgdisk`: writes a GPT partition table to the device `device` with one
//! `sgdisk` command line, as HEAD does (zap, new GPT, disk GUID, then per partition its
//! range, name, GUID, type and attribute bits), then prints the table read back.

use std::ffi::OsString;
use std::path::Path;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;

/// The GPT attribute bit HEAD sets for `bootable`: legacy BIOS bootable.
const LEGACY_BIOS_BOOTABLE: i64 = 2;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let device = args.device("device")?;
    let argv = sgdisk_args(&args.opts(), device)?;
    command::run(command::tool("sgdisk").args(&argv))?;
    // Shown for the log only, as HEAD does; the write above already succeeded.
    let _ = command::status(command::tool("sgdisk").arg("-p").arg(device));
    Ok(0)
}

/// sgdisk's arguments for the options: `-Z -g -U UUID` and the partitions' `-n`, `-c`, `-u`,
/// `-t` and `-A` options, the device last.
fn sgdisk_args(opts: &Opts, device: &Path) -> Result<Vec<OsString>, StageError> {
    opts.choice("label", &["gpt"], Some("gpt"))?;
    let uuid = opts.str("uuid")?;
    let quote_names = opts.bool_or("quote_partition_name", true)?;
    let mut argv: Vec<String> = vec!["-Z".into(), "-g".into()];
    if !uuid.is_empty() {
        argv.extend(["-U".into(), uuid.into()]);
    }
    let partitions = opts.opt_object_list("partitions")?.unwrap_or_default();
    for (i, p) in partitions.iter().enumerate() {
        argv.extend(partition_args(p, i + 1, quote_names)?);
    }
    let mut argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
    argv.push(device.as_os_str().to_owned());
    Ok(argv)
}

/// One partition's options; `index` is its 1-based place, used when it has no `partnum`.
fn partition_args(p: &Opts, index: usize, quote_names: bool) -> Result<Vec<String>, StageError> {
    let num = match p.opt_i64("partnum")?.filter(|n| *n != 0) {
        Some(n) if (1..=128).contains(&n) => n.to_string(),
        Some(n) => {
            return Err(StageError::option(
                p.name("partnum"),
                format!("{n} is not a GPT partition number (1 to 128)"),
            ))
        }
        None => index.to_string(),
    };
    let start = non_negative(p, "start")?.unwrap_or(0);
    // sgdisk reads a bare number as sectors; `0` is "up to the largest free end".
    let end = match non_negative(p, "size")?.filter(|s| *s != 0) {
        Some(size) => format!("+{size}"),
        None => "0".into(),
    };
    let mut out = vec!["-n".into(), format!("{num}:{start}:{end}")];
    if let Some(name) = p.opt_str("name")?.filter(|n| !n.is_empty()) {
        let name = if quote_names {
            format!("\"{name}\"")
        } else {
            name.to_owned()
        };
        out.extend(["-c".into(), format!("{num}:{name}")]);
    }
    for (key, flag) in [("uuid", "-u"), ("type", "-t")] {
        if let Some(v) = p.opt_str(key)?.filter(|v| !v.is_empty()) {
            out.extend([flag.into(), format!("{num}:{v}")]);
        }
    }
    let mut bits = p.opt_i64_list("attrs")?.unwrap_or_default();
    if let Some(bad) = bits.iter().find(|b| !(0..=63).contains(*b)) {
        return Err(StageError::option(
            p.name("attrs"),
            format!("{bad} is not a GPT attribute bit (0 to 63)"),
        ));
    }
    if p.bool_or("bootable", false)? {
        bits.push(LEGACY_BIOS_BOOTABLE);
    }
    bits.sort_unstable();
    bits.dedup();
    for bit in bits {
        out.extend(["-A".into(), format!("{num}:set:{bit}")]);
    }
    Ok(out)
}

fn non_negative(p: &Opts, key: &str) -> Result<Option<i64>, StageError> {
    match p.opt_i64(key)? {
        Some(v) if v < 0 => Err(StageError::option(p.name(key), "must not be negative")),
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn argv(options: serde_json::Value) -> Result<String, String> {
        let args = Args::parse(&json!({"tree": "/t", "options": options}).to_string()).unwrap();
        sgdisk_args(&args.opts(), Path::new("/dev/loop0"))
            .map(|v| {
                v.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn arguments_as_heads() {
        let got = argv(
            json!({"uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "partitions": [
                {"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649",
                 "bootable": true, "name": "BIOS boot", "attrs": [60, 0]},
                {"partnum": 4, "uuid": "6264D520-3FB9-423F-8AB8-7A0A8E3D3562", "name": ""}
            ]}),
        );
        assert_eq!(
            got.unwrap(),
            "-Z -g -U D209C89E-EA5E-4FBD-B161-B461CCE297E0 \
             -n 1:2048:+2048 -c 1:\"BIOS boot\" -t 1:21686148-6449-6E6F-744E-656564454649 \
             -A 1:set:0 -A 1:set:2 -A 1:set:60 \
             -n 4:0:0 -u 4:6264D520-3FB9-423F-8AB8-7A0A8E3D3562 /dev/loop0"
        );
        let unquoted = argv(json!({"uuid": "", "quote_partition_name": false,
            "partitions": [{"name": "root", "size": 8}]}));
        assert_eq!(unquoted.unwrap(), "-Z -g -n 1:0:+8 -c 1:root /dev/loop0");
    }

    #[test]
    fn bad_options_name_their_path() {
        for (options, want) in [
            (
                json!({"uuid": "u", "label": "dos"}),
                "option \"label\": \"dos\" is not one of gpt",
            ),
            (
                json!({"uuid": "u", "partitions": [{}, {"partnum": 129}]}),
                "option \"partitions[1].partnum\": 129 is not a GPT partition number (1 to 128)",
            ),
            (
                json!({"uuid": "u", "partitions": [{"start": -1}]}),
                "option \"partitions[0].start\": must not be negative",
            ),
            (json!({}), "option \"uuid\": is required"),
        ] {
            assert_eq!(argv(options).unwrap_err(), want);
        }
    }
}
