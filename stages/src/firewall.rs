//! `org.osbuild.firewall`: runs the tree's own `firewall-offline-cmd` (chrooted; it has no
//! `--root`) to open `ports` and allow `enabled_services`, then remove `disabled_services`.

use crate::args::Args;
use crate::command;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let mut argv = Vec::new();
    for port in opts.str_list("ports")? {
        if !port_is_valid(port) {
            return Err(StageError::option(
                "ports",
                format!(
                    "{port:?} is not 'port[-port]:protocol' with protocol tcp, udp, sctp or dccp"
                ),
            ));
        }
        argv.push(format!("--port={port}"));
    }
    for s in opts.str_list("enabled_services")? {
        argv.push(format!("--service={s}"));
    }
    for s in opts.str_list("disabled_services")? {
        argv.push(format!("--remove-service={s}"));
    }
    let mut cmd = command::chrooted(&args.tree, "firewall-offline-cmd")?;
    cmd.args(&argv);
    command::run(&mut cmd)?;
    Ok(0)
}

/// The schema's rule: something, then `:tcp`, `:udp`, `:sctp` or `:dccp` at the end.
fn port_is_valid(p: &str) -> bool {
    ["tcp", "udp", "sctp", "dccp"].iter().any(|proto| {
        p.strip_suffix(proto)
            .and_then(|rest| rest.strip_suffix(':'))
            .is_some_and(|port| !port.is_empty())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports() {
        for (p, ok) in [
            ("22:tcp", true),
            ("ssh:tcp", true),
            ("60000-60010:udp", true),
            ("1:dccp", true),
            (":tcp", false),
            ("22", false),
            ("22:icmp", false),
            ("22:tcpx", false),
        ] {
            assert_eq!(super::port_is_valid(p), ok, "{p}");
        }
    }
}
