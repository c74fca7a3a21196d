//! `org.osbuild.fstab`: replaces `/etc/fstab` with one line per filesystem: `UUID=` (v10's
//! only form), or under osbuild HEAD's protocol also `LABEL=`, `PARTLABEL=` or a device node,
//! as HEAD's stage picks them (uuid, then label, then partlabel, then device).

use crate::args::{Args, Opts};
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    if args.opts().opt_object("ostree")?.is_some() {
        return Err(StageError::option(
            "ostree",
            "ostree deployments are not supported by this native stage",
        ));
    }
    let mut out = String::new();
    for fs in args.opts().object_list("filesystems")? {
        let (spec_key, spec) = if args.is_head() {
            fs_spec(&fs)?
        } else {
            ("uuid", format!("UUID={}", fs.str("uuid")?))
        };
        let path = fs.str("path")?;
        let vfs_type = fs.opt_str("vfs_type")?.unwrap_or("none");
        let options = fs.opt_str("options")?.unwrap_or("defaults");
        let freq = dump_field(&fs, "freq")?;
        let passno = dump_field(&fs, "passno")?;
        for (key, v) in [
            (spec_key, spec.as_str()),
            ("path", path),
            ("vfs_type", vfs_type),
            ("options", options),
        ] {
            if v.contains(['\n', '\t']) {
                return Err(StageError::option(
                    fs.name(key),
                    "must not contain tabs or newlines",
                ));
            }
        }
        out.push_str(&format!(
            "{spec}\t{path}\t{vfs_type}\t{options}\t{freq}\t{passno}\n"
        ));
    }
    tree::write_file(&args.tree, "etc/fstab", out.as_bytes(), 0o644)?;
    Ok(0)
}

/// HEAD's fs_spec of a filesystem and the option it came from: the first of `uuid`,
/// `label`, `partlabel` and `device` given (and not empty).
fn fs_spec(fs: &Opts) -> Result<(&'static str, String), StageError> {
    for (key, prefix) in [
        ("uuid", "UUID="),
        ("label", "LABEL="),
        ("partlabel", "PARTLABEL="),
        ("device", ""),
    ] {
        if let Some(v) = fs.opt_str(key)?.filter(|v| !v.is_empty()) {
            if v.contains(' ') {
                return Err(StageError::option(fs.name(key), "must not contain spaces"));
            }
            return Ok((key, format!("{prefix}{v}")));
        }
    }
    Err(StageError::option(
        fs.name("uuid"),
        "one of uuid, label, partlabel or device is required",
    ))
}

/// `freq` or `passno`, `0` when absent: a number, or a string of digits, written as given (a
/// v10 sample has `"freq": "1"`; v10 wrote any value as Python's `str()` of it).
fn dump_field(fs: &Opts, key: &str) -> Result<String, StageError> {
    if let Ok(Some(s)) = fs.opt_str(key) {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StageError::option(
                fs.name(key),
                "must be a number or a string of digits",
            ));
        }
        return Ok(s.to_owned());
    }
    Ok(fs.opt_number(key)?.map_or("0".into(), |n| n.to_string()))
}
