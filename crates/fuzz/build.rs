//! Embeds the repository's own data as seeds: the manifests and id vectors of tests/vectors,
//! the samples, and the stage and assembler meta files (also the libdir of the manifest-load
//! target). Generated as `include_str!` lists so the binary needs nothing beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Files of `dir` (relative to the repository) whose names end in `suffix`, sorted.
fn files(root: &Path, dir: &str, suffix: &str) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", root.join(dir).display());
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    found.sort();
    found
}

/// `pub const NAME: &[(&str, &str)] = &[(label, include_str!(path)), ...];` where the label is
/// the file name without `strip`.
fn list(out: &mut String, name: &str, paths: &[PathBuf], strip: &str) {
    writeln!(out, "pub const {name}: &[(&str, &str)] = &[").unwrap();
    for p in paths {
        let file = p.file_name().unwrap().to_str().unwrap();
        let label = file.strip_suffix(strip).unwrap_or(file);
        writeln!(
            out,
            "    ({label:?}, include_str!({:?})),",
            p.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("the repository root");
    let is_manifest = |p: &PathBuf| !p.to_str().unwrap().ends_with(".ids.json");
    let mut manifests: Vec<PathBuf> = files(&root, "tests/vectors/ids", ".json");
    manifests.extend(files(&root, "tests/vectors/v2", ".json"));
    let (mut manifests, ids): (Vec<_>, Vec<_>) = manifests.into_iter().partition(is_manifest);
    manifests.extend(files(&root, "samples", ".json"));
    let mut out = String::new();
    list(&mut out, "MANIFESTS", &manifests, ".json");
    list(&mut out, "ID_VECTORS", &ids, ".ids.json");
    let stages = files(&root, "stages/meta", ".meta.json");
    list(&mut out, "STAGE_METAS", &stages, ".meta.json");
    let assemblers = files(&root, "assemblers/meta", ".meta.json");
    list(&mut out, "ASSEMBLER_METAS", &assemblers, ".meta.json");
    let runners = root.join("runners/names.txt");
    println!("cargo:rerun-if-changed={}", runners.display());
    writeln!(
        out,
        "pub const RUNNER_NAMES: &str = include_str!({:?});",
        runners.display().to_string()
    )
    .unwrap();
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("corpus_files.rs");
    std::fs::write(dest, out).expect("writing corpus_files.rs");
}
