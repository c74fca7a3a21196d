//! `org.osbuild.script`: runs `script` inside the tree (chrooted) as `/osbuild-script`
//! (mode 0550), removed afterwards; the stage's exit code is the script's.

use std::path::PathBuf;

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

/// Removes the script from the tree when the stage ends, whatever the outcome.
struct ScriptFile(PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(args: &Args) -> Result<i32, StageError> {
    let script = args.opts().str("script")?;
    let host = tree::write_file(&args.tree, "osbuild-script", script.as_bytes(), 0o550)?;
    let _guard = ScriptFile(host);
    let st = command::status(&mut command::chrooted(&args.tree, "/osbuild-script")?)?;
    if !st.success() {
        println!("script {}", command::describe_status(st));
    }
    Ok(command::exit_code(st))
}
