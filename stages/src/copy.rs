//! `org.osbuild.copy`: copies files and trees from inputs, mounts or the tree to mounts or
//! the tree (`input://NAME/p`, `mount://NAME/p`, `tree:///p`; a trailing `/` copies a
//! directory's contents) with `cp -a --reflink=auto`, as HEAD does.

use crate::args::Args;
use crate::command;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let items = args.opts().object_list("paths")?;
    if items.is_empty() {
        return Err(StageError::option("paths", "must name at least one item"));
    }
    for item in &items {
        let remove_destination = item.bool_or("remove_destination", false)?;
        let (from, to) = (item.str("from")?, item.str("to")?);
        if to.starts_with("input://") {
            return Err(StageError::option(
                item.name("to"),
                "inputs are read-only: copy to tree:// or mount://",
            ));
        }
        // cp -a copies a link as a link; a destination link is written through (inside its
        // root) unless it is to be replaced.
        let src = args.location(from, false)?;
        let dst = args.location(to, !remove_destination)?;
        println!("copying '{}' -> '{}'", src.display(), dst.display());
        let mut cmd = command::tool("cp");
        cmd.args(["-a", "--reflink=auto"]);
        if remove_destination {
            cmd.arg("--remove-destination");
        }
        command::run(cmd.arg(src).arg(dst))?;
    }
    Ok(0)
}
