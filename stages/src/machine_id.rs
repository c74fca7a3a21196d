//! `org.osbuild.machine-id`: what the image's `/etc/machine-id` says at first boot: `yes`
//! writes `uninitialized` (systemd then runs first-boot units), `no` leaves it empty,
//! `preserve` requires the one there.

use std::os::unix::fs::PermissionsExt;

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let mode_option = args
        .opts()
        .choice("first-boot", &["yes", "no", "preserve"], None)?;
    let host = tree::tree_path(&args.tree, "etc/machine-id")?;
    // Rewritten in place, as HEAD does: an existing file keeps its mode.
    let mode = std::fs::metadata(&host).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    match mode_option {
        "yes" => {
            tree::write_file(&args.tree, "etc/machine-id", b"uninitialized\n", mode)?;
        }
        "no" => {
            tree::write_file(&args.tree, "etc/machine-id", b"", mode)?;
        }
        _ => {
            if !host.is_file() {
                println!(
                    "{}/etc/machine-id cannot be preserved, it does not exist",
                    args.tree.display()
                );
                return Ok(1);
            }
        }
    }
    Ok(0)
}
