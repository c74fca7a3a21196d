//! `org.osbuild.systemd`: `systemctl --root TREE enable` each of `enabled_services`, then
//! `disable` each of `disabled_services`, then `set-default` the `default_target`. Under
//! osbuild HEAD's protocol `enabled_services` is optional, and `mask` each of
//! `masked_services` and a `/dev/null` link in `/etc/systemd/system-generators` for each of
//! `masked_generators` come before `set-default`, as in HEAD's stage.

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let head = args.is_head();
    let enabled = if head {
        opts.str_list("enabled_services")?
    } else {
        opts.required_str_list("enabled_services")?
    };
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
    if head {
        for unit in opts.str_list("masked_services")? {
            systemctl("mask", unit)?;
        }
        mask_generators(args, &opts.str_list("masked_generators")?)?;
    }
    if let Some(target) = default_target.filter(|t| !t.is_empty()) {
        systemctl("set-default", target)?;
    }
    Ok(0)
}

/// Masks each generator with a `/dev/null` link in `/etc/systemd/system-generators`.
fn mask_generators(args: &Args, generators: &[&str]) -> Result<(), StageError> {
    for (i, g) in generators.iter().enumerate() {
        if g.is_empty() || g.contains('/') || *g == "." || *g == ".." {
            return Err(StageError::option(
                format!("masked_generators[{i}]"),
                format!("{g:?} is not a generator's file name"),
            ));
        }
        let link = format!("etc/systemd/system-generators/{g}");
        tree::write_symlink(&args.tree, &link, "/dev/null")?;
    }
    Ok(())
}
