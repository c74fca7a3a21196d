//! `org.osbuild.ln`: creates symbolic or hard links at `link_name` (a `tree://` or
//! `mount://` location) pointing to `target`, as HEAD does; a hard link's `target` is a path
//! in the stage's own view (e.g. under `/run/osbuild/tree`).

use std::fs;

use crate::args::Args;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let items = args.opts().object_list("paths")?;
    if items.is_empty() {
        return Err(StageError::option("paths", "must name at least one link"));
    }
    for item in &items {
        let target = item.str("target")?;
        let link_name = item.str("link_name")?;
        if !(link_name.starts_with("tree://") || link_name.starts_with("mount://")) {
            return Err(StageError::option(
                item.name("link_name"),
                format!("{link_name:?} is not a tree:// or mount:// location"),
            ));
        }
        let link = args.location(link_name, false)?;
        println!("Linking '{}' -> '{target}'", link.display());
        if item.bool_or("symbolic", false)? {
            println!("Creating symbolic link: '{}' -> '{target}'", link.display());
            std::os::unix::fs::symlink(target, &link)
                .map_err(|e| StageError::io("cannot create symbolic link", &link, e))?;
        } else {
            println!("Creating hard link: '{}' -> '{target}'", link.display());
            fs::hard_link(target, &link)
                .map_err(|e| StageError::io("cannot create hard link", &link, e))?;
        }
    }
    Ok(0)
}
