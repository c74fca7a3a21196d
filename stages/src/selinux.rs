//! `org.osbuild.selinux`: labels every file of the tree with the build root's `setfiles`,
//! using the policy's `file_contexts` from the tree.
//!
//! Under osbuild HEAD's protocol HEAD's options: `target` (the tree or a mount, labelled
//! relative to its root), `file_contexts` as a location, `exclude_paths` (below the target,
//! `setfiles -e`), `labels` (a context set on each location's `security.selinux`, links
//! followed) and `force_autorelabel` (`/.autorelabel` holding `-F`).

use std::ffi::CString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::args::Args;
use crate::command;
use crate::error::StageError;
use crate::tree::{self, tree_path};

pub fn run(args: &Args) -> Result<i32, StageError> {
    if args.is_head() {
        return run_head(args);
    }
    let rel = args.opts().str("file_contexts")?;
    let fc = tree_path(&args.tree, rel)
        .map_err(|e| StageError::option("file_contexts", e.to_string()))?;
    setfiles(&fc, rel, &args.tree, &args.tree, &[])?;
    Ok(0)
}

/// `setfiles -F -r ROOT [-e EXCLUDE]... FC TARGET`, after checking `fc` (option value `rel`)
/// is a file.
fn setfiles(
    fc: &Path,
    rel: &str,
    root: &Path,
    target: &Path,
    exclude: &[std::path::PathBuf],
) -> Result<(), StageError> {
    if !fc.is_file() {
        return Err(StageError::option(
            "file_contexts",
            format!("{rel:?} is not a file in the tree"),
        ));
    }
    let mut cmd = command::tool_keeping_admin("setfiles");
    cmd.arg("-F").arg("-r").arg(root);
    for e in exclude {
        cmd.arg("-e").arg(e);
    }
    cmd.arg(fc).arg(target);
    command::run(&mut cmd)
}

fn run_head(args: &Args) -> Result<i32, StageError> {
    let opts = args.opts();
    let target = opts.opt_str("target")?.unwrap_or("tree:///");
    let root = args.location_root(target)?;
    // Without the `.` a trailing `/` leaves (setfiles would look up `/./etc`).
    let target_path: std::path::PathBuf = args.location(target, true)?.components().collect();
    let file_contexts = opts.opt_str("file_contexts")?;
    let labels = args.str_map("labels")?;
    if file_contexts.is_none() && labels.is_empty() {
        return Err(StageError::option(
            "file_contexts",
            "\"file_contexts\" or \"labels\" is required",
        ));
    }
    if let Some(rel) = file_contexts {
        let fc = args.location(rel, true)?;
        let exclude = opts
            .str_list("exclude_paths")?
            .iter()
            .enumerate()
            .map(|(i, p)| {
                tree_path(&target_path, p)
                    .map_err(|e| StageError::option(format!("exclude_paths[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        setfiles(&fc, rel, &root, &target_path, &exclude)?;
    }
    for (loc, context) in labels {
        let path = args.location(loc, true)?;
        set_label(&path, context).map_err(|m| StageError::option(format!("labels.{loc}"), m))?;
    }
    if opts.bool_or("force_autorelabel", false)? {
        tree::write_file(&root, ".autorelabel", b"-F", 0o644)?;
    }
    Ok(0)
}

/// Sets `security.selinux` of `path` (links followed) to `context`.
fn set_label(path: &Path, context: &str) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let name = CString::new("security.selinux").expect("no NUL");
    osbuild_sys::fs::set_xattr(&file, &name, context.as_bytes())
        .map_err(|e| format!("cannot label {} {context:?}: {e}", path.display()))
}
