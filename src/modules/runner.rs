//! Choosing the runner: the host's (from its os-release) or a requested one, falling back,
//! as osbuild HEAD does, to the highest older version of the same distribution.

use std::io;
use std::path::{Path, PathBuf};

use super::index::{is_plain_name, Index, ModuleKind};
use super::os_release::describe_os;

/// Why no runner could be chosen.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "no runner '{requested}' and no older version of it in the libdir's runners/ \
         (available: {}); add one there as an executable or as a symlink to a runner that \
         suits this OS, e.g. runners/{requested} -> org.osbuild.linux",
        if available.is_empty() { "none".to_owned() } else { available.join(", ") }
    )]
    NotFound {
        requested: String,
        available: Vec<String>,
    },
    #[error("cannot read {path}: {message}")]
    OsRelease { path: PathBuf, message: String },
}

impl Index {
    /// The runner for this host: `org.osbuild.` + os-release's ID and VERSION_ID (from
    /// `/etc/os-release`, else `/usr/lib/os-release`), resolved by [`Index::resolve_runner`].
    pub fn host_runner(&self) -> Result<String, RunnerError> {
        self.host_runner_from(&[
            Path::new("/etc/os-release"),
            Path::new("/usr/lib/os-release"),
        ])
    }

    fn host_runner_from(&self, paths: &[&Path]) -> Result<String, RunnerError> {
        let mut text = String::new();
        for path in paths {
            match std::fs::read_to_string(path) {
                Ok(t) => {
                    text = t;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(RunnerError::OsRelease {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
                }
            }
        }
        self.resolve_runner(&format!("org.osbuild.{}", describe_os(&text)))
    }

    /// The runner file name to execute for `requested`: the exact name if it exists, else
    /// (osbuild HEAD's rule) the highest version not above the requested one among runners
    /// with exactly the same distro part (`org.osbuild.fedora41` may give
    /// `org.osbuild.fedora38`, never `org.osbuild.linux`).
    pub fn resolve_runner(&self, requested: &str) -> Result<String, RunnerError> {
        let available = self.list(ModuleKind::Runner);
        if is_plain_name(requested) && available.iter().any(|r| r == requested) {
            return Ok(requested.to_owned());
        }
        let (distro, version) = split_runner_name(requested);
        available
            .iter()
            .filter_map(|r| {
                let (d, v) = split_runner_name(r);
                (d == distro && v <= version).then_some((v, r))
            })
            .max()
            .map(|(_, r)| r.clone())
            .ok_or(RunnerError::NotFound {
                requested: requested.to_owned(),
                available,
            })
    }
}

/// Splits `org.osbuild.fedora41` into (`org.osbuild.fedora`, 41); no trailing digits means
/// version 0. As in osbuild, the first character always stays in the distro part.
fn split_runner_name(name: &str) -> (&str, u128) {
    let bytes = name.as_bytes();
    let mut i = bytes.len();
    while i > 1 && bytes[i - 1].is_ascii_digit() {
        i -= 1;
    }
    let version = match &name[i..] {
        "" => 0,
        digits => digits.parse().unwrap_or(u128::MAX),
    };
    (&name[..i], version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::index::write_exec;
    use std::os::unix::fs::symlink;

    /// osbuild HEAD's runners: real files and symlinks.
    fn head_runners() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let runners = dir.path().join("runners");
        for real in [
            "linux",
            "fedora30",
            "fedora38",
            "centos9",
            "rhel7",
            "rhel81",
            "rhel82",
            "ubuntu1804",
        ] {
            write_exec(&runners.join(format!("org.osbuild.{real}")), "#!/bin/sh\n");
        }
        for (link, target) in [
            ("debian", "ubuntu1804"),
            ("arch", "linux"),
            ("almalinux8", "rhel82"),
            ("centos8", "rhel82"),
            ("rhivos", "rhel82"),
            ("AutoSD9", "centos9"),
            ("almalinux9", "centos9"),
            ("autosd", "centos9"),
            ("ol9", "centos9"),
            ("eln11", "fedora38"),
            ("fedora-asahi-remix", "fedora38"),
            ("asahi-fedora-remix", "fedora30"),
        ] {
            symlink(
                format!("org.osbuild.{target}"),
                runners.join(format!("org.osbuild.{link}")),
            )
            .unwrap();
        }
        // Not runners: a meta file, a hidden file, a non-executable file, a dangling link.
        std::fs::write(runners.join("org.osbuild.linux.meta.json"), "{}").unwrap();
        write_exec(&runners.join(".hidden"), "");
        std::fs::write(runners.join("org.osbuild.plain"), "").unwrap();
        symlink("nowhere", runners.join("org.osbuild.dangling")).unwrap();
        dir
    }

    #[test]
    fn resolve_runner_follows_heads_rule() {
        let dir = head_runners();
        let index = Index::new(dir.path());
        let cases = [
            ("org.osbuild.fedora41", Some("org.osbuild.fedora38")),
            ("org.osbuild.fedora38", Some("org.osbuild.fedora38")),
            ("org.osbuild.fedora35", Some("org.osbuild.fedora30")),
            ("org.osbuild.fedora29", None),
            ("org.osbuild.rhel90", Some("org.osbuild.rhel82")),
            ("org.osbuild.rhel810", Some("org.osbuild.rhel82")),
            ("org.osbuild.rhel94", Some("org.osbuild.rhel82")),
            ("org.osbuild.rhel80", Some("org.osbuild.rhel7")),
            ("org.osbuild.centos10", Some("org.osbuild.centos9")),
            ("org.osbuild.debian12", Some("org.osbuild.debian")),
            ("org.osbuild.debian", Some("org.osbuild.debian")),
            ("org.osbuild.ubuntu2404", Some("org.osbuild.ubuntu1804")),
            ("org.osbuild.ubuntu1604", None),
            ("org.osbuild.arch", Some("org.osbuild.arch")),
            ("org.osbuild.almalinux810", Some("org.osbuild.almalinux9")),
            ("org.osbuild.almalinux85", Some("org.osbuild.almalinux9")), // 85 > 9: HEAD's quirk
            ("org.osbuild.almalinux7", None),
            ("org.osbuild.opensuse-tumbleweed20240101", None),
            ("org.osbuild.plain", None),
            ("org.osbuild.dangling", None),
            ("org.osbuild.linux.meta.json", None),
            ("../runners/org.osbuild.linux", None),
            (
                "org.osbuild.fedora99999999999999999999999999999999999999999",
                Some("org.osbuild.fedora38"),
            ),
        ];
        for (requested, want) in cases {
            let got = index.resolve_runner(requested);
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(w), "{requested}"),
                None => assert!(
                    matches!(&got, Err(RunnerError::NotFound { requested: r, .. }) if r == requested),
                    "{requested}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn runner_not_found_names_every_runner() {
        let dir = head_runners();
        let index = Index::new(dir.path());
        let err = index.resolve_runner("org.osbuild.fedora29").unwrap_err();
        let msg = err.to_string();
        let listed = index.list(ModuleKind::Runner);
        assert_eq!(listed.len(), 20);
        for r in &listed {
            assert!(msg.contains(r.as_str()), "{r} missing from: {msg}");
        }
        assert!(!msg.contains("org.osbuild.plain") && !msg.contains("dangling"));
        assert!(msg.contains("no runner 'org.osbuild.fedora29'"), "{msg}");
        assert!(msg.contains("symlink"), "{msg}");

        let empty = tempfile::tempdir().unwrap();
        let msg = Index::new(empty.path())
            .resolve_runner("org.osbuild.linux")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("(available: none)"), "{msg}");
    }

    #[test]
    fn host_runner_uses_first_existing_os_release() {
        let dir = head_runners();
        let index = Index::new(dir.path());
        let etc = dir.path().join("etc-os-release");
        let usr = dir.path().join("usr-os-release");
        std::fs::write(&usr, "ID=fedora\nVERSION_ID=40\n").unwrap();
        assert_eq!(
            index.host_runner_from(&[&etc, &usr]).as_deref(),
            Ok("org.osbuild.fedora38")
        );
        std::fs::write(&etc, "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        assert_eq!(
            index.host_runner_from(&[&etc, &usr]).as_deref(),
            Ok("org.osbuild.debian")
        );
        // Neither file: os-release(5)'s default ID=linux.
        let none = dir.path().join("none");
        assert_eq!(
            index.host_runner_from(&[&none]).as_deref(),
            Ok("org.osbuild.linux")
        );
    }
}
