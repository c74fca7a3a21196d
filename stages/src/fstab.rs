//! `org.osbuild.fstab`: replaces `/etc/fstab` with one `UUID=` line per filesystem.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let mut out = String::new();
    for fs in args.opts().object_list("filesystems")? {
        let uuid = fs.str("uuid")?;
        let path = fs.str("path")?;
        let vfs_type = fs.opt_str("vfs_type")?.unwrap_or("none");
        let options = fs.opt_str("options")?.unwrap_or("defaults");
        let freq = fs.opt_number("freq")?.map_or("0".into(), |n| n.to_string());
        let passno = fs
            .opt_number("passno")?
            .map_or("0".into(), |n| n.to_string());
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
