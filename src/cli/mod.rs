//! The command-line front ends; `src/bin/*` only call into these.

mod jsonseq;
pub mod mkmanifest;
pub mod osbuild;
pub mod osbuildctl;
pub mod pages;
mod progress;

use std::path::Path;

/// Writes a generated manifest to `output`, or to standard output when there is none.
pub fn write_manifest(manifest: &serde_json::Value, output: Option<&Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    let text = serde_json::to_string_pretty(manifest)? + "\n";
    match output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The text of a manifest (or another input) named on the command line; `-` is stdin.
pub fn read_input(path: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Read;
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the manifest from stdin")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    }
    Ok(text)
}
