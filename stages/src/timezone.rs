//! `org.osbuild.timezone`: points `/etc/localtime` at `../usr/share/zoneinfo/<zone>` as
//! `systemd-firstboot --timezone` does, after checking the zone exists in the tree.

use crate::args::Args;
use crate::error::StageError;
use crate::firstboot;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let zone = args.opts().str("zone")?;
    firstboot::check_timezone(&args.tree, zone).map_err(|m| StageError::option("zone", m))?;
    firstboot::replace_notice(&args.tree, "etc/localtime")?;
    tree::write_symlink(
        &args.tree,
        "etc/localtime",
        &format!("../usr/share/zoneinfo/{zone}"),
    )?;
    println!("/etc/localtime written.");
    Ok(0)
}
