//! `org.osbuild.hostname`: writes `/etc/hostname` as `systemd-firstboot --hostname` does.

use crate::args::Args;
use crate::error::StageError;
use crate::firstboot;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let hostname = args.opts().str("hostname")?;
    if !firstboot::hostname_is_valid(hostname) {
        return Err(StageError::option(
            "hostname",
            format!("{hostname:?} is not a valid host name (letters, digits, inner hyphens and dots, at most 64 characters)"),
        ));
    }
    firstboot::replace_notice(&args.tree, "etc/hostname")?;
    let line = format!("{}\n", firstboot::hostname_cleanup(hostname));
    tree::write_file(&args.tree, "etc/hostname", line.as_bytes(), 0o644)?;
    println!("/etc/hostname written.");
    Ok(0)
}
