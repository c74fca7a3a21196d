//! `org.osbuild.chmod`: changes the mode of paths in the tree with `chmod(1)` (symbolic or
//! octal modes, optionally recursive), as HEAD does; each path must exist in the tree.

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    for (path, item) in args.opts().object_map("items")? {
        if !path.starts_with('/') {
            return Err(StageError::option(
                format!("items.{path}"),
                "must be an absolute path in the tree",
            ));
        }
        let mode = item.str("mode")?;
        let recursive = item.bool_or("recursive", false)?;
        let host = tree::tree_path(&args.tree, path)?;
        if std::fs::symlink_metadata(&host).is_err() {
            return Err(StageError::Other(format!("path {path} not in tree")));
        }
        let mut cmd = command::tool("chmod");
        cmd.arg(mode);
        if recursive {
            cmd.arg("--recursive");
        }
        command::run(cmd.arg("--").arg(host))?;
    }
    Ok(0)
}
