//! The libdir's layout: the kinds of module, where each kind lives (`stages/NAME`,
//! `assemblers/NAME`, `runners/NAME`, `sources/NAME`, and osbuild HEAD's `inputs/NAME`,
//! `devices/NAME`, `mounts/NAME`; each an executable file or a symlink to one), which names
//! are modules, and finding and listing them.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use osbuild_protocol::meta::FILE_SUFFIX as META_SUFFIX;

/// The libdir used when none is given: `/usr/lib/osbuild`, or the `OSBUILD_LIBDIR` the binaries
/// were built with (`./install.sh install --prefix P` sets `P/lib/osbuild`).
pub const DEFAULT_LIBDIR: &str = match option_env!("OSBUILD_LIBDIR") {
    Some(dir) => dir,
    None => "/usr/lib/osbuild",
};

/// The kinds of module a libdir holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    Stage,
    Assembler,
    Runner,
    Source,
    /// Host services of v2 manifests (osbuild HEAD): what a stage's `inputs`, `devices` and
    /// `mounts` name.
    Input,
    Device,
    Mount,
}

impl ModuleKind {
    /// The libdir subdirectory holding this kind: `stages`, `assemblers`, ...
    pub fn dir_name(self) -> &'static str {
        match self {
            ModuleKind::Stage => "stages",
            ModuleKind::Assembler => "assemblers",
            ModuleKind::Runner => "runners",
            ModuleKind::Source => "sources",
            ModuleKind::Input => "inputs",
            ModuleKind::Device => "devices",
            ModuleKind::Mount => "mounts",
        }
    }

    /// The singular noun used in messages: `stage`, `assembler`, ...
    pub fn noun(self) -> &'static str {
        match self {
            ModuleKind::Stage => "stage",
            ModuleKind::Assembler => "assembler",
            ModuleKind::Runner => "runner",
            ModuleKind::Source => "source",
            ModuleKind::Input => "input",
            ModuleKind::Device => "device",
            ModuleKind::Mount => "mount",
        }
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// The modules of one libdir.
#[derive(Clone, Debug)]
pub struct Index {
    libdir: PathBuf,
}

/// A module name must be a plain file name, never a path or a hidden or meta file.
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with('.')
        && !name.ends_with(META_SUFFIX)
}

fn is_executable_file(path: &Path) -> bool {
    // `metadata` follows symlinks: a symlinked module counts when its target is executable.
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Index {
    pub fn new(libdir: impl Into<PathBuf>) -> Index {
        Index {
            libdir: libdir.into(),
        }
    }

    pub fn libdir(&self) -> &Path {
        &self.libdir
    }

    pub(super) fn dir(&self, kind: ModuleKind) -> PathBuf {
        self.libdir.join(kind.dir_name())
    }

    /// The executable of module `name`, if `name` is a plain file name and it exists.
    pub fn path(&self, kind: ModuleKind, name: &str) -> Option<PathBuf> {
        if !is_plain_name(name) {
            return None;
        }
        let path = self.dir(kind).join(name);
        is_executable_file(&path).then_some(path)
    }

    /// The names of all modules of `kind`, sorted (executables only, meta files excluded).
    pub fn list(&self, kind: ModuleKind) -> Vec<String> {
        let dir = self.dir(kind);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_plain_name(n) && is_executable_file(&dir.join(n)))
            .collect();
        names.sort();
        names
    }
}

/// Writes an executable file, creating its directory.
#[cfg(test)]
pub(super) fn write_exec(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    osbuild_sys::process::write_executable(path, content.as_bytes(), 0o755).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn path_and_list_accept_only_plain_executable_names() {
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
        write_exec(&stages.join("org.osbuild.noop"), "#!/bin/sh\n");
        write_exec(&stages.join("org.osbuild.noop.meta.json"), "{}");
        std::fs::write(stages.join("org.osbuild.notexec"), "").unwrap();
        std::fs::create_dir(stages.join("org.osbuild.dir")).unwrap();
        symlink("org.osbuild.noop", stages.join("org.osbuild.alias")).unwrap();
        let index = Index::new(dir.path());
        assert_eq!(
            index.list(ModuleKind::Stage),
            ["org.osbuild.alias", "org.osbuild.noop"]
        );
        assert!(index.list(ModuleKind::Source).is_empty());
        write_exec(&dir.path().join("mounts/org.osbuild.ext4"), "#!/bin/sh\n");
        assert_eq!(index.list(ModuleKind::Mount), ["org.osbuild.ext4"]);
        assert!(index.path(ModuleKind::Device, "org.osbuild.ext4").is_none());
        let cases = [
            ("org.osbuild.noop", true),
            ("org.osbuild.alias", true),
            ("org.osbuild.noop.meta.json", false),
            ("org.osbuild.notexec", false),
            ("org.osbuild.dir", false),
            ("../stages/org.osbuild.noop", false),
            (".", false),
            ("..", false),
            ("", false),
            ("missing", false),
        ];
        for (name, exists) in cases {
            assert_eq!(
                index.path(ModuleKind::Stage, name).is_some(),
                exists,
                "{name}"
            );
        }
        assert_eq!(
            index.path(ModuleKind::Stage, "org.osbuild.noop"),
            Some(stages.join("org.osbuild.noop"))
        );
        assert!(index
            .path(ModuleKind::Assembler, "org.osbuild.noop")
            .is_none());
    }
}
