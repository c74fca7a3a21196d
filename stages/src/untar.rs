//! `org.osbuild.untar`: extracts the one file of the `file` input (any compression tar
//! recognises) into the tree at `prefix` (default `/`), as HEAD does.

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let prefix = args.opts().opt_str("prefix")?.unwrap_or("/");
    let source = args.single_file("file")?;
    let target = tree::tree_path(&args.tree, prefix.trim_start_matches('/'))?;
    let mut cmd = command::tool("tar");
    cmd.args(["--auto-compress", "-x", "-f"])
        .arg(source)
        .arg("-C")
        .arg(target);
    command::run(&mut cmd)?;
    Ok(0)
}
