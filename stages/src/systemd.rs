//! `org.osbuild.systemd`: `systemctl --root TREE enable` each of `enabled_services`, then
//! `disable` each of `disabled_services`, then `set-default` the `default_target`.

use crate::args::Args;
use crate::command;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let enabled = opts.required_str_list("enabled_services")?;
    let disabled = opts.str_list("disabled_services")?;
    let default_target = opts.opt_str("default_target")?;
    let systemctl = |verb: &str, unit: &str| {
        let mut cmd = command::tool("systemctl");
        cmd.arg("--root")
            .arg(&args.tree)
            .arg(verb)
            .arg("--")
            .arg(unit);
        command::run(&mut cmd)
    };
    for unit in enabled {
        systemctl("enable", unit)?;
    }
    for unit in disabled {
        systemctl("disable", unit)?;
    }
    if let Some(target) = default_target.filter(|t| !t.is_empty()) {
        systemctl("set-default", target)?;
    }
    Ok(0)
}
