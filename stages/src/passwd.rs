//! The tree's user database, read from its own `/etc/passwd` (never through NSS, which
//! would describe the build root instead and cannot be linked statically).

use std::path::Path;

use crate::error::StageError;
use crate::tree::tree_path;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Parses `/etc/passwd` text; lines that are not `name:pw:uid:gid:gecos:home:shell` with
/// numeric ids (comments, NIS `+` entries, garbage) are skipped.
pub fn parse(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// Looks `name` up in the tree's `/etc/passwd` (a missing file means no users).
pub fn lookup(tree: &Path, name: &str) -> Result<Option<PasswdEntry>, StageError> {
    let path = tree_path(tree, "etc/passwd")?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StageError::io("cannot read", &path, e)),
    };
    Ok(parse(&text).into_iter().find(|e| e.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_passwd() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment:x:1:1:c:/c:/c\n\
                    alice:x:1000:1001:Alice A,,,:/home/alice:/bin/sh\n\
                    broken:x:notanumber:1:b:/b:/b\n\
                    short:x:1:1\n\
                    +nis::::::\n\
                    \n\
                    bob::4294967295:5::/srv/bob:";
        let got = parse(text);
        let names: Vec<_> = got
            .iter()
            .map(|e| (e.name.as_str(), e.uid, e.gid, e.home.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("root", 0, 0, "/root"),
                ("alice", 1000, 1001, "/home/alice"),
                ("bob", 4294967295, 5, "/srv/bob"),
            ]
        );
    }
}
