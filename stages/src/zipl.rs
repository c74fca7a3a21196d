//! `org.osbuild.zipl`: writes a minimal `/etc/zipl.conf` for the assembler's zipl run.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let timeout = args
        .opts()
        .opt_number("timeout")?
        .map_or("0".into(), |n| n.to_string());
    let conf = format!("[defaultboot]\ndefaultauto\nprompt=1\ntimeout={timeout}\ntarget=/boot\n");
    tree::write_file(&args.tree, "etc/zipl.conf", conf.as_bytes(), 0o644)?;
    Ok(0)
}
