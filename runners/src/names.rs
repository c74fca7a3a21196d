//! The runner names this binary answers to, and which setup each one does.
//!
//! The engine picks a runner by name (`org.osbuild.` + os-release `ID` + `VERSION_ID` without
//! dots, then "highest version ≤ requested for the same distro"), so every name osbuild v10 or
//! HEAD ships must exist in `libdir/runners/`, aliases included: an alias such as
//! `org.osbuild.fedora33` is what makes `fedora35` resolve to the Fedora 30 family and not fail.
//!
//! Dispatch is by the file name in `argv[0]`, so what an alias links to does not change
//! behaviour; the install step still mirrors osbuild's layout (aliases link to their canonical
//! runner, canonical runners link to the binary) so a directory listing reads like osbuild's.
//! `runners/names.txt` is the same table for install scripts: `NAME` for a canonical runner,
//! `NAME TARGET` for an alias.

/// The kind of per-OS setup a runner does before it executes the stage.
///
/// Each flavour follows the osbuild runner family of the same name (v10 and HEAD); see
/// [`crate::setup::Step`] for what each step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `org.osbuild.linux`: only a minimal `/etc/passwd` when there is none (HEAD).
    Linux,
    /// `org.osbuild.ubuntu1804` (and `debian`): ldconfig, sysusers, CA trust, tmpfiles,
    /// nsswitch.
    Ubuntu,
    /// `org.osbuild.fedora30` family: as [`Flavor::Ubuntu`] plus a placeholder machine-id.
    Fedora30,
    /// `org.osbuild.fedora38` / `centos9` family: as [`Flavor::Fedora30`] plus the default
    /// crypto-policies back-ends (`sequoia` in HEAD).
    Fedora38,
    /// `org.osbuild.rhel82` family: as [`Flavor::Fedora38`] plus the python3 alternatives link
    /// and the aarch64 qemu-img quirk.
    Rhel8,
    /// `org.osbuild.rhel7`: ldconfig with `/usr/lib64/iscsi`, nsswitch.
    Rhel7,
}

/// One entry of the runners directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerName {
    /// Full file name, e.g. `org.osbuild.fedora38`.
    pub name: &'static str,
    /// The canonical runner this name is a symlink to in osbuild, if it is an alias.
    pub alias_of: Option<&'static str>,
    /// What the runner does.
    pub flavor: Flavor,
}

const fn real(name: &'static str, flavor: Flavor) -> RunnerName {
    RunnerName {
        name,
        alias_of: None,
        flavor,
    }
}

const fn alias(name: &'static str, target: &'static str, flavor: Flavor) -> RunnerName {
    RunnerName {
        name,
        alias_of: Some(target),
        flavor,
    }
}

/// Every runner name, sorted: v10's and HEAD's runners and their symlinks.
pub const RUNNERS: &[RunnerName] = &[
    alias(
        "org.osbuild.AutoSD9",
        "org.osbuild.centos9",
        Flavor::Fedora38,
    ),
    alias(
        "org.osbuild.almalinux8",
        "org.osbuild.rhel82",
        Flavor::Rhel8,
    ),
    alias(
        "org.osbuild.almalinux9",
        "org.osbuild.centos9",
        Flavor::Fedora38,
    ),
    alias("org.osbuild.arch", "org.osbuild.linux", Flavor::Linux),
    alias(
        "org.osbuild.asahi-fedora-remix",
        "org.osbuild.fedora30",
        Flavor::Fedora30,
    ),
    alias(
        "org.osbuild.autosd",
        "org.osbuild.centos9",
        Flavor::Fedora38,
    ),
    alias("org.osbuild.centos8", "org.osbuild.rhel82", Flavor::Rhel8),
    real("org.osbuild.centos9", Flavor::Fedora38),
    alias(
        "org.osbuild.debian",
        "org.osbuild.ubuntu1804",
        Flavor::Ubuntu,
    ),
    alias(
        "org.osbuild.eln11",
        "org.osbuild.fedora38",
        Flavor::Fedora38,
    ),
    alias(
        "org.osbuild.fedora-asahi-remix",
        "org.osbuild.fedora38",
        Flavor::Fedora38,
    ),
    real("org.osbuild.fedora27", Flavor::Fedora30),
    real("org.osbuild.fedora30", Flavor::Fedora30),
    alias(
        "org.osbuild.fedora31",
        "org.osbuild.fedora30",
        Flavor::Fedora30,
    ),
    alias(
        "org.osbuild.fedora32",
        "org.osbuild.fedora30",
        Flavor::Fedora30,
    ),
    alias(
        "org.osbuild.fedora33",
        "org.osbuild.fedora30",
        Flavor::Fedora30,
    ),
    real("org.osbuild.fedora38", Flavor::Fedora38),
    real("org.osbuild.linux", Flavor::Linux),
    alias("org.osbuild.ol9", "org.osbuild.centos9", Flavor::Fedora38),
    real("org.osbuild.rhel7", Flavor::Rhel7),
    real("org.osbuild.rhel81", Flavor::Rhel8),
    real("org.osbuild.rhel82", Flavor::Rhel8),
    alias("org.osbuild.rhivos", "org.osbuild.rhel82", Flavor::Rhel8),
    real("org.osbuild.ubuntu1804", Flavor::Ubuntu),
];

/// Looks a runner up by its file name (`org.osbuild.NAME`).
pub fn lookup(name: &str) -> Option<&'static RunnerName> {
    RUNNERS.iter().find(|r| r.name == name)
}

/// The `--list` / `names.txt` text: one runner per line, `NAME` or `NAME TARGET` for an alias.
pub fn listing() -> String {
    let mut out = String::new();
    for r in RUNNERS {
        out.push_str(r.name);
        if let Some(target) = r.alias_of {
            out.push(' ');
            out.push_str(target);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_txt_matches_the_table() {
        let checked_in = include_str!("../names.txt");
        assert_eq!(
            checked_in,
            listing(),
            "runners/names.txt is stale: regenerate it with `osbuild-runners --list`"
        );
    }

    #[test]
    fn aliases_behave_like_their_target() {
        for r in RUNNERS {
            if let Some(target) = r.alias_of {
                let t = lookup(target).unwrap_or_else(|| panic!("{} -> {target}", r.name));
                assert_eq!(t.alias_of, None, "{} links to another alias", r.name);
                assert_eq!(t.flavor, r.flavor, "{} differs from {target}", r.name);
            }
        }
    }

    #[test]
    fn sorted_unique_and_prefixed() {
        for pair in RUNNERS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert!(RUNNERS.iter().all(|r| r.name.starts_with("org.osbuild.")));
    }

    #[test]
    fn lookup_table() {
        let cases = [
            ("org.osbuild.linux", Some(Flavor::Linux)),
            ("org.osbuild.arch", Some(Flavor::Linux)),
            ("org.osbuild.debian", Some(Flavor::Ubuntu)),
            ("org.osbuild.fedora33", Some(Flavor::Fedora30)),
            ("org.osbuild.centos9", Some(Flavor::Fedora38)),
            ("org.osbuild.rhel7", Some(Flavor::Rhel7)),
            ("org.osbuild.rhel82", Some(Flavor::Rhel8)),
            ("org.osbuild.debian12", None),
            ("linux", None),
        ];
        for (name, want) in cases {
            assert_eq!(lookup(name).map(|r| r.flavor), want, "{name}");
        }
    }
}
