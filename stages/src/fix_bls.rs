//! `org.osbuild.fix-bls`: in every `/boot/loader/entries/*.conf`, replaces a path that ends
//! in `/boot` (as written by tools that saw the build's own mount of the tree, e.g.
//! `/run/osbuild/tree/boot`) with `prefix` (default `/boot`).

use std::fs;

use crate::args::Args;
use crate::error::StageError;
use crate::tree::tree_path;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let prefix = args.opts().opt_str("prefix")?.unwrap_or("/boot");
    let dir = tree_path(&args.tree, "boot/loader/entries")?;
    let entries = match fs::read_dir(&dir) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StageError::io("cannot read", &dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StageError::io("cannot read", &dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".conf") && !name.starts_with('.') {
            names.push(name.into_owned());
        }
    }
    names.sort();
    for name in names {
        let path = tree_path(&args.tree, format!("boot/loader/entries/{name}"))?;
        if !path.is_file() {
            continue;
        }
        let old = fs::read_to_string(&path).map_err(|e| StageError::io("cannot read", &path, e))?;
        let new: String = old
            .split_inclusive('\n')
            .map(|l| fix_line(l, prefix))
            .collect();
        if new != old {
            fs::write(&path, new).map_err(|e| StageError::io("cannot write", &path, e))?;
        }
    }
    Ok(0)
}

/// Replaces the span from the first `/` to the end of the last `/boot` after it (the
/// leftmost, longest match of `(/.*)+/boot` within the line) with `prefix`.
fn fix_line(line: &str, prefix: &str) -> String {
    let (body, end) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    if let Some(first) = body.find('/') {
        if let Some(last) = body.rfind("/boot") {
            if last > first {
                return format!("{}{prefix}{}{end}", &body[..first], &body[last + 5..]);
            }
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fix_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "linux /run/osbuild/tree/boot/vmlinuz-5.6\n",
                "/boot",
                "linux /boot/vmlinuz-5.6\n",
            ),
            ("linux /boot/vmlinuz\n", "/boot", "linux /boot/vmlinuz\n"),
            ("initrd /a/boot/b/boot/initrd", "", "initrd /initrd"),
            ("title Fedora\n", "/boot", "title Fedora\n"),
            (
                "options root=/dev/sda1 x=/tmp/boot\n",
                "/boot",
                "options root=/boot\n",
            ),
            ("linux /x/bootfoo\n", "/p", "linux /pfoo\n"),
        ];
        for (line, prefix, want) in cases {
            assert_eq!(super::fix_line(line, prefix), *want, "{line:?}");
        }
    }
}
