//! What the rpm-based installers (`org.osbuild.rpm`, `org.osbuild.dnf`, `org.osbuild.yum`)
//! share about the tree: where its rpm database lives, the placeholder machine-id scriptlets
//! may need, and the per-machine files that must not end up in an image.

use std::fs;
use std::path::Path;

use crate::command;
use crate::error::StageError;
use crate::tree;

/// Where rpm keeps its database on current Fedora and RHEL (relative to the tree).
pub const SYSIMAGE_DBPATH: &str = "/usr/lib/sysimage/rpm";

/// The older location (RHEL 8 and before, Fedora before 36).
const LEGACY_DBPATH: &str = "/var/lib/rpm";

/// The placeholder machine-id (v10's) systemd scriptlets may need while packages install.
const PLACEHOLDER_MACHINE_ID: &[u8] = b"ffffffffffffffffffffffffffffffff\n";

/// The rpm database path to use for `tree`: the one the tree already has; else the build
/// root's rpm default when it is one of the two standard locations (a RHEL 8 build root
/// makes RHEL 8 trees); else [`SYSIMAGE_DBPATH`]. Debian's rpm, for one, defaults to
/// `~/.rpmdb`, which means nothing inside an image.
pub fn dbpath(tree: &Path) -> String {
    let has_db = |p: &str| {
        let dir = tree.join(p.trim_start_matches('/'));
        fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
            && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some())
    };
    for p in [SYSIMAGE_DBPATH, LEGACY_DBPATH] {
        if has_db(p) {
            return p.to_owned();
        }
    }
    let default = command::tool("rpm")
        .args(["--eval", "%{_dbpath}"])
        .env("HOME", "/nonexistent")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    standard_or_sysimage(default.as_deref()).to_owned()
}

/// The build root's default database path if it is a standard one, else [`SYSIMAGE_DBPATH`].
fn standard_or_sysimage(default: Option<&str>) -> &str {
    match default {
        Some(p @ (SYSIMAGE_DBPATH | LEGACY_DBPATH)) => p,
        _ => SYSIMAGE_DBPATH,
    }
}

/// A placeholder `/etc/machine-id`, written when the tree has none (or an empty one) and
/// emptied again by [`MachineId::finish`]; one the tree already had is left alone.
pub struct MachineId {
    created: bool,
}

impl MachineId {
    pub fn placeholder(tree: &Path) -> Result<MachineId, StageError> {
        let path = tree::tree_path(tree, "etc/machine-id")?;
        let had = fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if !had {
            tree::write_file(tree, "etc/machine-id", PLACEHOLDER_MACHINE_ID, 0o444)?;
        }
        Ok(MachineId { created: !had })
    }

    /// Leaves the machine-id empty if it was ours (systemd makes one on first boot, so no
    /// two machines share it), and removes systemd's random seed for the same reason.
    pub fn finish(self, tree: &Path) -> Result<(), StageError> {
        if self.created {
            tree::write_file(tree, "etc/machine-id", b"", 0o444)?;
        }
        tree::remove_file(tree, "var/lib/systemd/random-seed")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_database_decides_where_it_goes() {
        let tree = tempfile::tempdir().unwrap();
        let default = dbpath(tree.path());
        let legacy = tree.path().join("var/lib/rpm");
        fs::create_dir_all(&legacy).unwrap();
        // An empty directory is not a database: the default applies.
        assert_eq!(dbpath(tree.path()), default);
        fs::write(legacy.join("Packages"), b"").unwrap();
        assert_eq!(dbpath(tree.path()), LEGACY_DBPATH);
        let sysimage = tree.path().join("usr/lib/sysimage/rpm");
        fs::create_dir_all(&sysimage).unwrap();
        fs::write(sysimage.join("rpmdb.sqlite"), b"").unwrap();
        assert_eq!(
            dbpath(tree.path()),
            SYSIMAGE_DBPATH,
            "the current location wins"
        );
    }

    #[test]
    fn only_a_standard_default_is_used() {
        for (default, want) in [
            (Some("/nonexistent/.rpmdb"), SYSIMAGE_DBPATH), // Debian's rpm: ~/.rpmdb
            (Some("/var/lib/rpm"), LEGACY_DBPATH),          // RHEL 8
            (Some("/usr/lib/sysimage/rpm"), SYSIMAGE_DBPATH),
            (Some(""), SYSIMAGE_DBPATH),
            (None, SYSIMAGE_DBPATH), // no rpm in the build root
        ] {
            assert_eq!(standard_or_sysimage(default), want, "{default:?}");
        }
    }

    #[test]
    fn placeholder_machine_id_is_emptied_but_an_existing_one_kept() {
        let tree = tempfile::tempdir().unwrap();
        let id = tree.path().join("etc/machine-id");
        let m = MachineId::placeholder(tree.path()).unwrap();
        assert_eq!(fs::read(&id).unwrap(), PLACEHOLDER_MACHINE_ID);
        fs::create_dir_all(tree.path().join("var/lib/systemd")).unwrap();
        fs::write(tree.path().join("var/lib/systemd/random-seed"), b"x").unwrap();
        m.finish(tree.path()).unwrap();
        assert_eq!(fs::read(&id).unwrap(), b"");
        assert!(!tree.path().join("var/lib/systemd/random-seed").exists());

        fs::write(&id, b"0123456789abcdef0123456789abcdef\n").unwrap();
        MachineId::placeholder(tree.path())
            .unwrap()
            .finish(tree.path())
            .unwrap();
        assert_eq!(
            fs::read(&id).unwrap(),
            b"0123456789abcdef0123456789abcdef\n"
        );
    }
}
