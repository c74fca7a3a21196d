//! `org.osbuild.keymap`: sets `KEYMAP` in `/etc/vconsole.conf` as
//! `systemd-firstboot --keymap` does. Under osbuild HEAD's protocol also `font` (a `FONT=`
//! line) and `x11-keymap` (`/etc/X11/xorg.conf.d/00-keyboard.conf` with the layouts).

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
    let mut line = firstboot::env_line("KEYMAP", keymap);
    if args.is_head() {
        if let Some(font) = args.opts().opt_str("font")?.filter(|f| !f.is_empty()) {
            if !firstboot::name_is_valid(font) {
                return Err(StageError::option(
                    "font",
                    format!("{font:?} is not a valid console font name"),
                ));
            }
            line.push_str(&firstboot::env_line("FONT", font));
        }
        if let Some(x11) = args.opts().opt_object("x11-keymap")? {
            write_xkb(args, &x11.required_str_list("layouts")?)?;
        }
    }
    tree::write_file(&args.tree, "etc/vconsole.conf", line.as_bytes(), 0o644)?;
    println!("/etc/vconsole.conf written.");
    Ok(0)
}

/// The X11 keyboard configuration for `layouts`, as localectl writes it.
fn write_xkb(args: &Args, layouts: &[&str]) -> Result<(), StageError> {
    if let Some(bad) = layouts.iter().find(|l| !firstboot::name_is_valid(l)) {
        return Err(StageError::option(
            "x11-keymap.layouts",
            format!("{bad:?} is not a valid layout name"),
        ));
    }
    let text = format!(
        "# Written by org.osbuild.keymap; change it with localectl(1).\n\
         Section \"InputClass\"\n\
         \x20       Identifier \"system-keyboard\"\n\
         \x20       MatchIsKeyboard \"on\"\n\
         \x20       Option \"XkbLayout\" \"{}\"\n\
         EndSection\n",
        layouts.join(",")
    );
    tree::write_file(
        &args.tree,
        "etc/X11/xorg.conf.d/00-keyboard.conf",
        text.as_bytes(),
        0o644,
    )?;
    println!("/etc/X11/xorg.conf.d/00-keyboard.conf written.");
    Ok(())
}
