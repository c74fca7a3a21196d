//! `org.osbuild.locale`: sets `LANG` as `systemd-firstboot --locale` does: in
//! `/etc/locale.conf`, or `/etc/default/locale` on Debian-family trees (Debian's systemd
//! reads and writes that file instead).

use crate::args::Args;
use crate::error::StageError;
use crate::firstboot;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let language = args.opts().str("language")?;
    if !firstboot::name_is_valid(language) {
        return Err(StageError::option(
            "language",
            format!("{language:?} is not a valid locale name"),
        ));
    }
    let debian = tree::tree_path(&args.tree, "etc/debian_version")?.exists();
    let path = if debian {
        "etc/default/locale"
    } else {
        "etc/locale.conf"
    };
    firstboot::replace_notice(&args.tree, path)?;
    let line = firstboot::env_line("LANG", language);
    tree::write_file(&args.tree, path, line.as_bytes(), 0o644)?;
    println!("/{path} written.");
    Ok(0)
}
