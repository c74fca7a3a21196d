//! `org.osbuild.noop`: prints its options and leaves the tree alone.

use crate::args::Args;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let json = serde_json::to_string(&args.options).unwrap_or_default();
    println!("Not doing anything with these options: {json}");
    Ok(0)
}
