//! `org.osbuild.users`: creates users (`useradd`) or modifies existing ones (`usermod`),
//! both run chrooted into the tree, and appends `key` to the user's
//! `~/.ssh/authorized_keys` (dir 0700, file 0600, owned by the user).
//!
//! Under osbuild HEAD's protocol HEAD's options and rules apply: names may hold dots,
//! `keys`, `expiredate` and `force_password_reset` exist, a new user's `home` is created
//! (`""`: none), an existing user's missing home is made, a uid equal to the existing one is
//! accepted, and an empty `description` or `password` is set as given.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::args::{Args, Opts};
use crate::command;
use crate::error::StageError;
use crate::groups::{check_head_name, check_name};
use crate::passwd;
use crate::tree::tree_path;

pub fn run(args: &Args) -> Result<i32, StageError> {
    let head = args.is_head();
    let users = args.opts().object_map("users")?;
    for (name, opts) in &users {
        let valid = if head {
            check_head_name(name, 256)
        } else {
            check_name(name).map_err(str::to_owned)
        };
        valid.map_err(|m| StageError::option(format!("users.{name}"), m))?;
        let existing = passwd::lookup(&args.tree, name)?;
        let mut argv: Vec<String> = Vec::new();
        let program = if existing.is_some() {
            if let Some(uid) = opts.opt_u32("uid")? {
                // HEAD accepts the uid the user already has.
                if !head || existing.as_ref().is_some_and(|u| u.uid != uid) {
                    return Err(StageError::option(
                        opts.name("uid"),
                        format!("cannot change the uid of existing user {name:?}"),
                    ));
                }
            }
            common_args(opts, &mut argv, "--home", head)?;
            "usermod"
        } else {
            if let Some(uid) = opts.opt_u32("uid")? {
                argv.extend(["--uid".into(), uid.to_string()]);
                if head {
                    argv.push("-o".into());
                }
            }
            common_args(opts, &mut argv, "--home-dir", head)?;
            if head {
                match opts.opt_str("home")? {
                    Some("") => argv.push("--no-create-home".into()),
                    Some(_) => argv.push("--create-home".into()),
                    None => {}
                }
            }
            "useradd"
        };
        if program == "useradd" || !argv.is_empty() {
            argv.push(name.to_string());
            let mut cmd = command::chrooted(&args.tree, program)?;
            cmd.args(&argv);
            command::run(&mut cmd)?;
        }
        if head {
            head_extras(&args.tree, name, opts, existing.is_some())?;
        } else if let Some(key) = opts.opt_str("key")?.filter(|k| !k.is_empty()) {
            add_ssh_keys(&args.tree, name, &[key])?;
        }
    }
    Ok(0)
}

/// What HEAD does after `useradd`/`usermod`: an existing user's home directory made if
/// missing (`mkhomedir_helper`), `force_password_reset` (`passwd --expire`), and `keys` plus
/// `key` appended to `authorized_keys`.
fn head_extras(tree: &Path, name: &str, opts: &Opts, existed: bool) -> Result<(), StageError> {
    if existed {
        let user = passwd::lookup(tree, name)?;
        if let Some(u) = user.filter(|u| !u.home.is_empty()) {
            if !tree_path(tree, &u.home)?.exists() {
                let mut cmd = command::chrooted(tree, "mkhomedir_helper")?;
                command::run(cmd.arg(name))?;
            }
        }
    }
    if opts.bool_or("force_password_reset", false)? {
        let mut cmd = command::chrooted(tree, "passwd")?;
        command::run(cmd.args(["--expire", name]))?;
    }
    let mut keys = opts.str_list("keys")?;
    if let Some(key) = opts.opt_str("key")?.filter(|k| !k.is_empty()) {
        keys.push(key);
    }
    if !keys.is_empty() {
        add_ssh_keys(tree, name, &keys)?;
    }
    Ok(())
}

/// The options `useradd` and `usermod` share (the home option is spelled differently). Under
/// HEAD's protocol (`head`) an empty description or password is passed on as given, and
/// `expiredate` (days since 1970) is known.
fn common_args(
    opts: &Opts<'_>,
    argv: &mut Vec<String>,
    home_flag: &str,
    head: bool,
) -> Result<(), StageError> {
    if let Some(gid) = opts.opt_u32("gid")? {
        argv.extend(["--gid".into(), gid.to_string()]);
    }
    let groups = opts.str_list("groups")?;
    if !groups.is_empty() {
        argv.extend(["--groups".into(), groups.join(",")]);
    }
    for (key, flag, keep_empty) in [
        ("description", "--comment", head),
        ("home", home_flag, false),
        ("shell", "--shell", false),
        ("password", "--password", head),
    ] {
        if let Some(v) = opts.opt_str(key)?.filter(|v| keep_empty || !v.is_empty()) {
            argv.extend([flag.to_string(), v.to_string()]);
        }
    }
    if head {
        if let Some(days) = opts.opt_i64("expiredate")? {
            argv.extend(["--expiredate".into(), days.to_string()]);
        }
    }
    Ok(())
}

/// Appends `keys` to the user's `authorized_keys`; the home directory comes from the tree's
/// `/etc/passwd` and is resolved inside the tree.
fn add_ssh_keys(tree: &Path, name: &str, keys: &[&str]) -> Result<(), StageError> {
    let user = passwd::lookup(tree, name)?.ok_or_else(|| {
        StageError::Other(format!("user {name:?} is not in the tree's /etc/passwd"))
    })?;
    let home = tree_path(tree, &user.home)?;
    if home == tree {
        return Err(StageError::Other(format!(
            "user {name:?} has the tree root as home directory ({:?}): not adding an SSH key there",
            user.home
        )));
    }
    let (uid, gid) = (Some(user.uid), Some(user.gid));
    if !home.exists() {
        println!("Creating home directory {} for {name}", user.home);
        if let Some(parent) = home.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| StageError::io("cannot create", parent, e))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .map_err(|e| StageError::io("cannot create home directory", &home, e))?;
        std::os::unix::fs::chown(&home, uid, gid)
            .map_err(|e| StageError::io("cannot chown", &home, e))?;
    }
    let ssh = tree_path(tree, format!("{}/.ssh", user.home))?;
    if !ssh.exists() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&ssh)
            .map_err(|e| StageError::io("cannot create", &ssh, e))?;
        std::os::unix::fs::chown(&ssh, uid, gid)
            .map_err(|e| StageError::io("cannot chown", &ssh, e))?;
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700))
            .map_err(|e| StageError::io("cannot chmod", &ssh, e))?;
    }
    let lines: String = keys.iter().map(|k| format!("{k}\n")).collect();
    let keys = tree_path(tree, format!("{}/.ssh/authorized_keys", user.home))?;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&keys)
        .map_err(|e| StageError::io("cannot open", &keys, e))?;
    f.write_all(lines.as_bytes())
        .map_err(|e| StageError::io("cannot write", &keys, e))?;
    std::os::unix::fs::fchown(&f, uid, gid)
        .map_err(|e| StageError::io("cannot chown", &keys, e))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| StageError::io("cannot chmod", &keys, e))?;
    Ok(())
}
