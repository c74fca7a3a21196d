//! `org.osbuild.selinux`: labels every file of the tree with the build root's `setfiles`,
//! using the policy's `file_contexts` from the tree.

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree::tree_path;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let rel = args.opts().str("file_contexts")?;
    let fc = tree_path(&args.tree, rel)
        .map_err(|e| StageError::option("file_contexts", e.to_string()))?;
    if !fc.is_file() {
        return Err(StageError::option(
            "file_contexts",
            format!("{rel:?} is not a file in the tree"),
        ));
    }
    let mut cmd = command::tool_keeping_admin("setfiles");
    cmd.arg("-F")
        .arg("-r")
        .arg(&args.tree)
        .arg(&fc)
        .arg(&args.tree);
    command::run(&mut cmd)?;
    Ok(0)
}
