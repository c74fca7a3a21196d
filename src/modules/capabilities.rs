//! Which capabilities a module gets beyond the sandbox's default set (which lacks
//! `CAP_SYS_ADMIN`): those its `NAME.meta.json` declares (osbuild HEAD's `capabilities`), or,
//! for a module without one, those [`OSBUILD_V10`] names for osbuild v10's own Python modules.
//! Any other module (a foreign one without a meta file) gets none. osbuild HEAD's own Python
//! modules (from a libdir of HEAD's layout) get HEAD's default set, which has it.

use osbuild_sys::caps::Capability;

use super::index::{Index, ModuleKind};
use super::meta::ModuleError;

/// osbuild v10's own modules that need more than the default set, and why. They have no
/// meta file and cannot declare it; v10 gave every module `CAP_SYS_ADMIN`.
const OSBUILD_V10: &[(ModuleKind, &str, Capability, &str)] = &[
    (
        ModuleKind::Stage,
        "org.osbuild.dnf",
        Capability::CAP_SYS_ADMIN,
        "bind-mounts /dev, /sys and /proc into the tree",
    ),
    (
        ModuleKind::Stage,
        "org.osbuild.rpm",
        Capability::CAP_SYS_ADMIN,
        "bind-mounts /dev, /sys and /proc into the tree",
    ),
    (
        ModuleKind::Stage,
        "org.osbuild.yum",
        Capability::CAP_SYS_ADMIN,
        "mounts devtmpfs, sysfs and proc into the tree",
    ),
    (
        ModuleKind::Stage,
        "org.osbuild.selinux",
        Capability::CAP_SYS_ADMIN,
        "setfiles writes security.selinux, which needs it where no SELinux policy is loaded",
    ),
    (
        ModuleKind::Assembler,
        "org.osbuild.qemu",
        Capability::CAP_SYS_ADMIN,
        "mounts the image's file systems",
    ),
    (
        ModuleKind::Assembler,
        "org.osbuild.rawfs",
        Capability::CAP_SYS_ADMIN,
        "mounts the image's file system",
    ),
];

/// The capabilities `names` (`["CAP_MAC_ADMIN", ...]`) stand for; the error names the first
/// unknown one.
pub(super) fn parse(names: &[String]) -> Result<Vec<Capability>, String> {
    names
        .iter()
        .map(|name| {
            name.parse().map_err(|_| {
                format!("unknown capability '{name}' in 'capabilities' (see capabilities(7))")
            })
        })
        .collect()
}

impl Index {
    /// The capabilities module `name` gets beyond the sandbox's default set.
    pub fn capabilities(
        &self,
        kind: ModuleKind,
        name: &str,
    ) -> Result<Vec<Capability>, ModuleError> {
        let mut caps = match self.meta_file(kind, name)? {
            // Checked when the file was read.
            Some((meta, path)) => parse(&meta.capabilities)
                .map_err(|message| ModuleError::InvalidMeta { path, message })?,
            None => OSBUILD_V10
                .iter()
                .filter(|(k, n, _, _)| *k == kind && *n == name)
                .map(|(_, _, cap, _)| *cap)
                .collect(),
        };
        // osbuild HEAD's own modules were written for HEAD's default set, which has it (many
        // mount or chroot): they get HEAD's set, as under HEAD.
        if self.from_heads_layout(kind, name) && !caps.contains(&Capability::CAP_SYS_ADMIN) {
            caps.push(Capability::CAP_SYS_ADMIN);
        }
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::index::write_exec;

    #[test]
    fn declared_capabilities_are_granted_and_unknown_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
        let assemblers = dir.path().join("assemblers");
        for name in ["org.osbuild.mounts", "org.osbuild.bad", "org.osbuild.plain"] {
            write_exec(&stages.join(name), "\x7fELF binary");
        }
        std::fs::write(
            stages.join("org.osbuild.mounts.meta.json"),
            r#"{"capabilities": ["CAP_SYS_ADMIN", "CAP_MAC_ADMIN"]}"#,
        )
        .unwrap();
        std::fs::write(
            stages.join("org.osbuild.bad.meta.json"),
            r#"{"capabilities": ["CAP_SYS_ADMIN", "CAP_ROOT"]}"#,
        )
        .unwrap();
        std::fs::write(stages.join("org.osbuild.plain.meta.json"), "{}").unwrap();
        // osbuild v10's own modules have no meta file.
        write_exec(&stages.join("org.osbuild.rpm"), "#!/usr/bin/python3\n");
        write_exec(&stages.join("org.osbuild.foreign"), "#!/usr/bin/python3\n");
        write_exec(&assemblers.join("org.osbuild.qemu"), "#!/usr/bin/python3\n");
        write_exec(&assemblers.join("org.osbuild.tar"), "#!/usr/bin/python3\n");
        let index = Index::new(dir.path());
        let caps = |kind, name| index.capabilities(kind, name).map_err(|e| e.to_string());

        let admin = Capability::CAP_SYS_ADMIN;
        assert_eq!(
            caps(ModuleKind::Stage, "org.osbuild.mounts"),
            Ok(vec![admin, Capability::CAP_MAC_ADMIN])
        );
        assert_eq!(caps(ModuleKind::Stage, "org.osbuild.plain"), Ok(vec![]));
        assert_eq!(caps(ModuleKind::Stage, "org.osbuild.rpm"), Ok(vec![admin]));
        assert_eq!(caps(ModuleKind::Stage, "org.osbuild.foreign"), Ok(vec![]));
        assert_eq!(
            caps(ModuleKind::Assembler, "org.osbuild.qemu"),
            Ok(vec![admin])
        );
        assert_eq!(caps(ModuleKind::Assembler, "org.osbuild.tar"), Ok(vec![]));

        // Refused when the file is read, for validation and for the build alike.
        let meta_file = stages.join("org.osbuild.bad.meta.json");
        let want = format!(
            "invalid module description {}: unknown capability 'CAP_ROOT' in 'capabilities' \
             (see capabilities(7))",
            meta_file.display()
        );
        assert_eq!(
            caps(ModuleKind::Stage, "org.osbuild.bad"),
            Err(want.clone())
        );
        let e = index
            .meta(ModuleKind::Stage, "org.osbuild.bad")
            .unwrap_err();
        assert_eq!(e.to_string(), want);
    }
}
