//! `org.osbuild.kernel-cmdline`: writes `/etc/kernel/cmdline` (`root=UUID=<uuid> <opts>`,
//! no trailing newline), read by kernel-install.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let mut params = Vec::new();
    if let Some(uuid) = opts.opt_str("root_fs_uuid")?.filter(|u| !u.is_empty()) {
        params.push(format!("root=UUID={uuid}"));
    }
    if let Some(extra) = opts.opt_str("kernel_opts")?.filter(|k| !k.is_empty()) {
        params.push(extra.to_string());
    }
    tree::write_file(
        &args.tree,
        "etc/kernel/cmdline",
        params.join(" ").as_bytes(),
        0o644,
    )?;
    Ok(0)
}
