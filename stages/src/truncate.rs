//! `org.osbuild.truncate`: creates `filename` in the tree or sets its size, with `size` in
//! `truncate(1)`'s syntax (`10G`, `+1M`, ...), by running `truncate` as HEAD does.

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let filename = opts.str("filename")?;
    let size = opts.str("size")?;
    let dest = tree::tree_path(&args.tree, filename.trim_start_matches('/'))?;
    command::run(command::tool("truncate").arg("--size").arg(size).arg(dest))?;
    Ok(0)
}
