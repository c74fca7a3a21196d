//! `org.osbuild.tar`: archives the `tree` input into `filename` in the tree with GNU `tar`,
//! with HEAD's options (format, compression, ACLs, SELinux labels, xattrs, sparse files,
//! transform, numeric owners, the root node or a list of paths).

use std::path::Path;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::tree;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let source = &args.input("tree")?.path;
    let filename = opts.str("filename")?;
    let target = tree::tree_path(&args.tree, filename.trim_start_matches('/'))?;
    let mut cmd = command::tool("tar");
    cmd.args(options_argv(&opts)?)
        .arg("-cf")
        .arg(&target)
        .arg("-C")
        .arg(source)
        .args(members(&opts, source)?)
        .stdout(std::process::Stdio::null())
        // Let xz use every core, as HEAD does.
        .env("XZ_OPT", "--threads 0");
    command::run(&mut cmd)?;
    Ok(0)
}

/// What goes into the archive: `paths` in their order, else `.` (root node included) or the
/// root's entries (omitted; sorted, so the archive does not depend on directory order).
fn members(opts: &Opts, source: &Path) -> Result<Vec<String>, StageError> {
    let paths = opts.str_list("paths")?;
    let root_node = opts.opt_str("root-node")?;
    if !paths.is_empty() && root_node.is_some() {
        return Err(StageError::option(
            "root-node",
            "cannot be given together with \"paths\"",
        ));
    }
    if !paths.is_empty() {
        return Ok(paths.iter().map(|p| p.to_string()).collect());
    }
    if opts.choice("root-node", &["include", "omit"], Some("include"))? == "include" {
        return Ok(vec![".".to_owned()]);
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(source).map_err(|e| StageError::io("cannot read", source, e))? {
        let entry = entry.map_err(|e| StageError::io("cannot read", source, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The tar options before `-cf`.
fn options_argv(opts: &Opts) -> Result<Vec<String>, StageError> {
    let format = opts.choice(
        "format",
        &["gnu", "oldgnu", "posix", "ustar", "v7"],
        Some("gnu"),
    )?;
    let mut argv = vec![format!("--format={format}")];
    if opts.bool_or("acls", true)? {
        argv.push("--acls".into());
    }
    if opts.bool_or("selinux", true)? {
        argv.push("--selinux".into());
    }
    if opts.bool_or("xattrs", true)? {
        argv.extend(["--xattrs", "--xattrs-include", "*"].map(String::from));
    }
    if opts.bool_or("sparse", false)? {
        argv.push("--sparse".into());
    }
    if let Some(t) = opts.opt_str("transform")?.filter(|t| !t.is_empty()) {
        argv.extend(["--transform".to_owned(), t.to_owned()]);
    }
    if opts.bool_or("numeric-owner", false)? {
        argv.push("--numeric-owner".into());
    }
    let compression = opts.choice("compression", &["auto", "xz", "gzip", "zstd"], Some("auto"))?;
    // The names are GNU tar's long options, as HEAD relies on.
    argv.push(if compression == "auto" {
        "--auto-compress".into()
    } else {
        format!("--{compression}")
    });
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_are_heads() {
        let text = json!({"tree": "/t", "options": {"filename": "a.tar"}}).to_string();
        let args = Args::parse(&text).unwrap();
        assert_eq!(
            options_argv(&args.opts()).unwrap().join(" "),
            "--format=gnu --acls --selinux --xattrs --xattrs-include * --auto-compress"
        );
        let text = json!({"tree": "/t", "options": {"filename": "a", "format": "posix",
            "acls": false, "selinux": false, "xattrs": false, "sparse": true,
            "transform": "s/^/x/", "numeric-owner": true, "compression": "zstd"}})
        .to_string();
        let args = Args::parse(&text).unwrap();
        assert_eq!(
            options_argv(&args.opts()).unwrap().join(" "),
            "--format=posix --sparse --transform s/^/x/ --numeric-owner --zstd"
        );
    }
}
