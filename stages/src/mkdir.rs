//! `org.osbuild.mkdir`: creates directories in the tree or a mount (`tree://`, `mount://`
//! or, as HEAD still allows, a plain path), with `mode` (umask applied) for new ones only,
//! optionally with their parents, optionally accepting ones that exist.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;

use crate::args::{Args, Opts};
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let items = args.opts().opt_object_list("paths")?.unwrap_or_default();
    for item in &items {
        make(args, item)?;
    }
    Ok(0)
}

fn make(args: &Args, item: &Opts) -> Result<(), StageError> {
    let path = item.str("path")?;
    let mode = match item.opt_i64("mode")? {
        None => 0o777,
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| StageError::option(item.name("mode"), "must be a mode (0 to 0o7777)"))?,
    };
    let parents = item.bool_or("parents", false)?;
    let exist_ok = item.bool_or("exist_ok", false)?;
    if !path.contains("://") && !path.starts_with('/') {
        println!("WARNING: relative path used, this is discouraged!");
    }
    let target = args.location(path, false)?;
    if parents {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| StageError::io("cannot create directory", parent, e))?;
        }
    }
    match fs::DirBuilder::new().mode(mode).create(&target) {
        Ok(()) => Ok(()),
        // An existing directory (or a link to one) is fine when asked; anything else is not.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && exist_ok && target.is_dir() => Ok(()),
        Err(e) => Err(StageError::io("cannot create directory", &target, e)),
    }
}
