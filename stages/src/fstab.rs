//! `org.osbuild.fstab`: replaces `/etc/fstab` with one `UUID=` line per filesystem.

use crate::args::{Args, Opts};
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let mut out = String::new();
    for fs in args.opts().object_list("filesystems")? {
        let uuid = fs.str("uuid")?;
        let path = fs.str("path")?;
        let vfs_type = fs.opt_str("vfs_type")?.unwrap_or("none");
        let options = fs.opt_str("options")?.unwrap_or("defaults");
        let freq = dump_field(&fs, "freq")?;
        let passno = dump_field(&fs, "passno")?;
        for (key, v) in [
            ("uuid", uuid),
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
            "UUID={uuid}\t{path}\t{vfs_type}\t{options}\t{freq}\t{passno}\n"
        ));
    }
    tree::write_file(&args.tree, "etc/fstab", out.as_bytes(), 0o644)?;
    Ok(0)
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
