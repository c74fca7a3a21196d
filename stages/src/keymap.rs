//! `org.osbuild.keymap`: sets `KEYMAP` in `/etc/vconsole.conf` as
//! `systemd-firstboot --keymap` does.

use crate::args::Args;
use crate::error::StageError;
use crate::firstboot;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let keymap = args.opts().str("keymap")?;
    if !firstboot::name_is_valid(keymap) {
        return Err(StageError::option(
            "keymap",
            format!("{keymap:?} is not a valid keymap name"),
        ));
    }
    firstboot::replace_notice(&args.tree, "etc/vconsole.conf")?;
    let line = firstboot::env_line("KEYMAP", keymap);
    tree::write_file(&args.tree, "etc/vconsole.conf", line.as_bytes(), 0o644)?;
    println!("/etc/vconsole.conf written.");
    Ok(0)
}
