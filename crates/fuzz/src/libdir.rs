//! A throwaway libdir for the manifest-load target, laid out as `./install.sh libdir` lays one
//! out: `stages/NAME.meta.json` with an executable `stages/NAME` beside it (likewise for the
//! assemblers), every runner of `runners/names.txt`, and the inputs, devices, mounts and
//! sources that the v2 vectors name (executables without a meta file accept any options).
//! Removed when dropped.

use std::path::Path;

use osbuild::modules::Index;

use crate::corpus::{ASSEMBLER_METAS, RUNNER_NAMES, STAGE_METAS};

/// The host services of v2 manifests the vectors use.
const V2_MODULES: &[(&str, &[&str])] = &[
    (
        "inputs",
        &["org.osbuild.tree", "org.osbuild.files", "org.osbuild.noop"],
    ),
    (
        "devices",
        &[
            "org.osbuild.loopback",
            "org.osbuild.luks2",
            "org.osbuild.lvm2.lv",
            "org.osbuild.noop",
        ],
    ),
    (
        "mounts",
        &[
            "org.osbuild.ext4",
            "org.osbuild.xfs",
            "org.osbuild.btrfs",
            "org.osbuild.fat",
            "org.osbuild.bind",
            "org.osbuild.noop",
        ],
    ),
    (
        "sources",
        &[
            "org.osbuild.curl",
            "org.osbuild.inline",
            "org.osbuild.files",
        ],
    ),
];

pub struct Libdir {
    dir: tempfile::TempDir,
    index: Index,
}

fn write_executable(path: &Path) -> std::io::Result<()> {
    osbuild_sys::process::write_executable(path, b"#!/bin/sh\nexit 1\n", 0o755)
}

fn write_kind(root: &Path, kind: &str, metas: &[(&str, &str)]) -> std::io::Result<()> {
    let dir = root.join(kind);
    std::fs::create_dir_all(&dir)?;
    for (name, meta) in metas {
        std::fs::write(dir.join(format!("{name}.meta.json")), meta)?;
        write_executable(&dir.join(name))?;
    }
    Ok(())
}

impl Libdir {
    pub fn new() -> std::io::Result<Libdir> {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-fuzz-libdir-")
            .tempdir()?;
        write_kind(dir.path(), "stages", STAGE_METAS)?;
        write_kind(dir.path(), "assemblers", ASSEMBLER_METAS)?;
        // Aliases are plain executables here: the index only asks whether a runner exists.
        let runners = RUNNER_NAMES
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| !n.starts_with('#'));
        std::fs::create_dir_all(dir.path().join("runners"))?;
        for name in runners {
            write_executable(&dir.path().join("runners").join(name))?;
        }
        for (kind, names) in V2_MODULES {
            std::fs::create_dir_all(dir.path().join(kind))?;
            for name in *names {
                write_executable(&dir.path().join(kind).join(name))?;
            }
        }
        let index = Index::new(dir.path());
        Ok(Libdir { dir, index })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osbuild::modules::ModuleKind;

    #[test]
    fn the_libdir_holds_every_stage_assembler_and_runner_and_loads_the_sample() {
        let libdir = Libdir::new().unwrap();
        let index = libdir.index();
        assert_eq!(index.list(ModuleKind::Stage).len(), STAGE_METAS.len());
        assert_eq!(
            index.list(ModuleKind::Assembler).len(),
            ASSEMBLER_METAS.len()
        );
        assert!(index
            .path(ModuleKind::Runner, "org.osbuild.linux")
            .is_some());
        let sample = crate::corpus::MANIFESTS
            .iter()
            .find(|(name, _)| *name == "hello-tar")
            .unwrap();
        osbuild::manifest::load_document(sample.1, index).unwrap();
        let path = libdir.path().to_owned();
        drop(libdir);
        assert!(!path.exists(), "the libdir is removed");
    }
}
