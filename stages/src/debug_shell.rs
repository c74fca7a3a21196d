//! `org.osbuild.debug-shell`: installs `osbuild-debug-shell.service`, an early-boot root
//! shell on `tty`, enabled for `sysinit.target`. For debugging images only.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let tty = args.opts().str("tty")?;
    if tty.contains('\n') {
        return Err(StageError::option("tty", "must be a single line"));
    }
    let unit = format!(
        "
[Unit]
Description=Early root shell on {tty} FOR DEBUGGING ONLY
DefaultDependencies=no
IgnoreOnIsolate=yes
ConditionPathExists={tty}

[Service]
Environment=TERM=linux
ExecStart=/bin/sh
Restart=always
RestartSec=0
StandardInput=tty
TTYPath={tty}
TTYReset=yes
TTYVHangup=yes
KillMode=process
IgnoreSIGPIPE=no
# an interactive shell ignores SIGTERM, so stop it with SIGHUP
KillSignal=SIGHUP

# run without a locale: the console may not render translated messages
UnsetEnvironment=LANG LANGUAGE LC_CTYPE LC_NUMERIC LC_TIME LC_COLLATE LC_MONETARY LC_MESSAGES LC_PAPER LC_NAME LC_ADDRESS LC_TELEPHONE LC_MEASUREMENT LC_IDENTIFICATION
"
    );
    tree::write_file(
        &args.tree,
        "etc/systemd/system/osbuild-debug-shell.service",
        unit.as_bytes(),
        0o644,
    )?;
    tree::write_symlink(
        &args.tree,
        "etc/systemd/system/sysinit.target.wants/osbuild-debug-shell.service",
        "../osbuild-debug-shell.service",
    )?;
    Ok(0)
}
