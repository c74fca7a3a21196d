//! `org.osbuild.test`: installs `osbuild-test.service`, which runs `script` at boot with its
//! output on `/dev/vport0p1`, then powers the machine off; enabled for `multi-user.target`.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let script = args.opts().str("script")?;
    if script.contains('\n') {
        return Err(StageError::option("script", "must be a single line"));
    }
    let unit = format!(
        "
[Unit]
Description=Boot Test
Wants=dev-vport0p1.device
After=dev-vport0p1.device

[Service]
StandardOutput=file:/dev/vport0p1
ExecStart={script}
ExecStopPost=/usr/bin/systemctl poweroff
"
    );
    tree::write_file(
        &args.tree,
        "etc/systemd/system/osbuild-test.service",
        unit.as_bytes(),
        0o644,
    )?;
    tree::write_symlink(
        &args.tree,
        "etc/systemd/system/multi-user.target.wants/osbuild-test.service",
        "../osbuild-test.service",
    )?;
    Ok(0)
}
