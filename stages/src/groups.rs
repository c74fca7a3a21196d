//! `org.osbuild.groups`: creates groups with the build root's `groupadd --root TREE`,
//! optionally with a fixed gid. Under osbuild HEAD's protocol names may hold dots and
//! `force` is known (`groupadd --force`: an existing group is success).

use crate::args::Args;
use crate::command;
use crate::error::StageError;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let head = args.is_head();
    let groups = args.opts().object_map("groups")?;
    let force = head && args.opts().bool_or("force", false)?;
    for (name, opts) in &groups {
        let valid = if head {
            check_head_name(name, 32)
        } else {
            check_name(name).map_err(str::to_owned)
        };
        valid.map_err(|m| StageError::option(format!("groups.{name}"), m))?;
        let gid = opts.opt_u32("gid")?;
        let mut cmd = command::tool("groupadd");
        cmd.arg("--root").arg(&args.tree);
        if let Some(gid) = gid {
            cmd.arg("--gid").arg(gid.to_string());
        }
        if force {
            cmd.arg("--force");
        }
        cmd.arg(name);
        command::run(&mut cmd)?;
    }
    Ok(0)
}

/// The user and group name rule of the schema: `^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err("is not a valid name (letters, digits, _ and -, not starting with -, at most 32)")
    }
}

/// HEAD's rule for group (`max` 32) and user (`max` 256) names:
/// `^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,max-1}$`.
pub fn check_head_name(name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "is not a valid name (letters, digits, _, . and -, not starting with -, at most {max})"
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for (n, ok) in [
            ("wheel", true),
            ("_ssh", true),
            ("a-b", true),
            ("", false),
            ("-rf", false),
            ("a:b", false),
            ("../x", false),
            (&"a".repeat(33), false),
        ] {
            assert_eq!(super::check_name(n).is_ok(), ok, "{n}");
            assert_eq!(super::check_head_name(n, 32).is_ok(), ok, "{n}");
        }
        for (n, ok) in [("a.b", true), (".x", true), (&"a".repeat(256), false)] {
            assert_eq!(super::check_head_name(n, 32).is_ok(), ok, "{n}");
        }
    }
}
