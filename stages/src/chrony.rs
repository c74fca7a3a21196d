//! `org.osbuild.chrony`: in `/etc/chrony.conf`, drops every `server`/`pool` line and puts
//! one `server <host> iburst` line per entry of `timeservers` at the top.

use crate::args::Args;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let servers = args.opts().required_str_list("timeservers")?;
    let host = tree::tree_path(&args.tree, "etc/chrony.conf")?;
    let old =
        std::fs::read_to_string(&host).map_err(|e| StageError::io("cannot read", &host, e))?;
    let new = rewrite(&old, &servers);
    std::fs::write(&host, new).map_err(|e| StageError::io("cannot write", &host, e))?;
    Ok(0)
}

/// The new configuration text.
fn rewrite(old: &str, servers: &[&str]) -> String {
    let kept = old
        .split('\n')
        .filter(|l| !(l.starts_with("server ") || l.starts_with("pool ")));
    servers
        .iter()
        .map(|s| format!("server {s} iburst"))
        .chain(kept.map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rewrite() {
        let cases: &[(&str, &[&str], &str)] = &[
            (
                "pool 2.fedora.pool.ntp.org iburst\ndriftfile /var/lib/chrony/drift\n",
                &["a.example", "b.example"],
                "server a.example iburst\nserver b.example iburst\ndriftfile /var/lib/chrony/drift\n",
            ),
            ("server x\n#server y\n  pool z\nserverfoo\n", &[], "#server y\n  pool z\nserverfoo\n"),
            ("", &["t"], "server t iburst\n"),
        ];
        for (old, servers, want) in cases {
            assert_eq!(super::rewrite(old, servers), *want, "{old:?}");
        }
    }
}
