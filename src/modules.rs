//! What a libdir provides: the stages, assemblers, runners and sources it holds, what each
//! module says about itself (summary, options schema, network use), and which runner to use
//! for a given OS.
//!
//! The layout is osbuild's: `stages/NAME`, `assemblers/NAME`, `runners/NAME` and
//! `sources/NAME`, each an executable file or a symlink to one. Beside a module may sit
//! `NAME.meta.json` (`{"summary", "description", "schema", "network"?}`, the `schema` being the
//! JSON schema of its options object, as in osbuild HEAD). A foreign Python module without a
//! meta file (osbuild v10's) carries its schema as a fragment in a `STAGE_OPTS = """..."""`
//! (or `ASSEMBLER_OPTS`, or HEAD's `SCHEMA`) string, which is read from the source without
//! running it.

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::json;

/// The libdir used when none is given: `/usr/lib/osbuild`, or the `OSBUILD_LIBDIR` the binaries
/// were built with (`./install.sh install --prefix P` sets `P/lib/osbuild`).
pub const DEFAULT_LIBDIR: &str = match option_env!("OSBUILD_LIBDIR") {
    Some(dir) => dir,
    None => "/usr/lib/osbuild",
};

/// The four kinds of module a libdir holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    Stage,
    Assembler,
    Runner,
    Source,
}

impl ModuleKind {
    /// The libdir subdirectory holding this kind: `stages`, `assemblers`, ...
    pub fn dir_name(self) -> &'static str {
        match self {
            ModuleKind::Stage => "stages",
            ModuleKind::Assembler => "assemblers",
            ModuleKind::Runner => "runners",
            ModuleKind::Source => "sources",
        }
    }

    /// The singular noun used in messages: `stage`, `assembler`, ...
    pub fn noun(self) -> &'static str {
        match self {
            ModuleKind::Stage => "stage",
            ModuleKind::Assembler => "assembler",
            ModuleKind::Runner => "runner",
            ModuleKind::Source => "source",
        }
    }
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// What a module says about itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModuleMeta {
    /// JSON schema (draft 4) of the options object; `None` accepts any options.
    pub schema: Option<serde_json::Value>,
    /// Whether the module needs the network (sources do; stages normally do not).
    pub network: bool,
    /// One line saying what the module does (may be empty).
    pub summary: String,
}

/// Why a module's description could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("no {kind} '{name}' in {dir}: it must be an executable file there")]
    NotFound {
        kind: ModuleKind,
        name: String,
        dir: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid module description {path}: {message}")]
    InvalidMeta { path: PathBuf, message: String },
}

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

/// The modules of one libdir.
#[derive(Clone, Debug)]
pub struct Index {
    libdir: PathBuf,
}

const META_SUFFIX: &str = ".meta.json";

/// A module name must be a plain file name, never a path or a hidden or meta file.
fn is_plain_name(name: &str) -> bool {
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

    fn dir(&self, kind: ModuleKind) -> PathBuf {
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

    /// What module `name` says about itself: from `NAME.meta.json` if present, else from the
    /// schema string embedded in a Python module, else nothing (any options accepted).
    pub fn meta(&self, kind: ModuleKind, name: &str) -> Result<ModuleMeta, ModuleError> {
        let path = self.path(kind, name).ok_or_else(|| ModuleError::NotFound {
            kind,
            name: name.to_owned(),
            dir: self.dir(kind),
        })?;
        let meta_path = self.dir(kind).join(format!("{name}{META_SUFFIX}"));
        match std::fs::read_to_string(&meta_path) {
            Ok(text) => return parse_meta_file(&text, &meta_path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ModuleError::Read {
                    path: meta_path,
                    source,
                })
            }
        }
        let bytes = std::fs::read(&path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        if !(first_line.starts_with(b"#!") && first_line.windows(6).any(|w| w == b"python")) {
            return Ok(ModuleMeta::default());
        }
        let source = String::from_utf8_lossy(&bytes);
        parse_python_module(&source, &path)
    }

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

/// `ID` + `VERSION_ID` without dots from an os-release text (defaults `linux` and ""), e.g.
/// `debian12`, `fedora41`, `rhel94`.
pub fn describe_os(os_release: &str) -> String {
    let mut id = "linux".to_owned();
    let mut version_id = String::new();
    for line in os_release.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "ID" => id = value,
            "VERSION_ID" => version_id = value,
            _ => {}
        }
    }
    id + &version_id.replace('.', "")
}

/// A shell-style os-release value without its quotes.
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

fn invalid(path: &Path, message: impl Into<String>) -> ModuleError {
    ModuleError::InvalidMeta {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Compiles a module's options schema as osbuild does: JSON schema draft 4, `format` not
/// asserted (osbuild's Draft4Validator has no format checker).
pub(crate) fn options_validator(
    schema: &serde_json::Value,
) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Checks that `schema` compiles as a draft-4 JSON schema.
fn check_schema(schema: &serde_json::Value, path: &Path) -> Result<(), ModuleError> {
    if !schema.is_object() {
        return Err(invalid(path, "the options schema must be an object"));
    }
    options_validator(schema).map(drop).map_err(|e| {
        invalid(
            path,
            format!("the options schema is not a valid JSON schema: {e}"),
        )
    })
}

fn parse_meta_file(text: &str, path: &Path) -> Result<ModuleMeta, ModuleError> {
    let value = json::parse(text).map_err(|e| invalid(path, format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(path, "expected a JSON object"))?;
    let summary = match obj.get("summary") {
        None => String::new(),
        Some(json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(invalid(
                path,
                format!("'summary' must be a string, not {}", other.type_name()),
            ))
        }
    };
    if let Some(desc) = obj.get("description") {
        let lines_ok = desc
            .as_array()
            .is_some_and(|a| a.iter().all(|l| l.as_str().is_some()));
        if !lines_ok {
            return Err(invalid(path, "'description' must be an array of strings"));
        }
    }
    let network = match obj.get("network") {
        None => false,
        Some(json::Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(
                path,
                format!("'network' must be a boolean, not {}", other.type_name()),
            ))
        }
    };
    let schema = match obj.get("schema") {
        None => None,
        Some(s) => {
            let s = s.to_serde();
            check_schema(&s, path)?;
            Some(s)
        }
    };
    Ok(ModuleMeta {
        schema,
        network,
        summary,
    })
}

fn parse_python_module(source: &str, path: &Path) -> Result<ModuleMeta, ModuleError> {
    let summary = python_string_assignment(source, &["STAGE_DESC"]).unwrap_or_default();
    let Some(fragment) =
        python_string_assignment(source, &["STAGE_OPTS", "ASSEMBLER_OPTS", "SCHEMA"])
    else {
        return Ok(ModuleMeta {
            summary,
            ..ModuleMeta::default()
        });
    };
    // v10's fragment is the inside of an object schema (`"properties": {...}`); v10's own
    // test suite wraps it in braces unless it already starts with one.
    let text = if fragment.trim_start().starts_with('{') {
        fragment
    } else {
        format!("{{{fragment}}}")
    };
    let schema = json::parse(&text)
        .map_err(|e| invalid(path, format!("its options schema string is not JSON: {e}")))?
        .to_serde();
    check_schema(&schema, path)?;
    Ok(ModuleMeta {
        schema: Some(schema),
        network: false,
        summary,
    })
}

/// The value of the first top-level `NAME = "..."` (any Python string literal form) for
/// one of `names`, without running the module.
fn python_string_assignment(source: &str, names: &[&str]) -> Option<String> {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        for name in names {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let rest_trimmed = rest.trim_start_matches([' ', '\t']);
            let Some(after_eq) = rest_trimmed.strip_prefix('=') else {
                continue;
            };
            if after_eq.starts_with('=') {
                continue;
            }
            let literal_start = start + line.len() - after_eq.len();
            let literal = source[literal_start..].trim_start_matches([' ', '\t']);
            if let Some(value) = python_string_literal(literal) {
                return Some(value);
            }
        }
    }
    None
}

/// Decodes the Python string literal at the start of `text` (prefixes r/u, single or triple
/// quotes, the common backslash escapes).
fn python_string_literal(text: &str) -> Option<String> {
    let mut rest = text;
    let mut raw = false;
    while let Some(c) = rest.chars().next() {
        match c {
            'r' | 'R' => raw = true,
            'u' | 'U' => {}
            _ => break,
        }
        rest = &rest[1..];
    }
    let quote = ["\"\"\"", "'''", "\"", "'"]
        .into_iter()
        .find(|q| rest.starts_with(q))?;
    let body = &rest[quote.len()..];
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if body[i..].starts_with(quote) {
            return Some(out);
        }
        if c == '\n' && quote.len() == 1 {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let (_, next) = chars.next()?;
        if raw {
            out.push('\\');
            out.push(next);
            continue;
        }
        match next {
            '\n' => {}
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' | '\'' | '"' => out.push(next),
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write_exec(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

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
    fn describe_os_reads_id_and_version_id() {
        let cases = [
            ("ID=debian\nVERSION_ID=\"12\"\n", "debian12"),
            ("ID=fedora\nVERSION_ID=41\n", "fedora41"),
            ("ID=\"rhel\"\nVERSION_ID=\"9.4\"\n", "rhel94"),
            ("ID='centos'\nVERSION_ID='10'\n", "centos10"),
            ("# comment\n\n  ID=arch  \nBUILD_ID=rolling\n", "arch"),
            ("VERSION_ID=1.2.3\n", "linux123"),
            ("", "linux"),
            (
                "ID=opensuse-tumbleweed\nVERSION_ID=\"20240101\"\nNAME=\"openSUSE Tumbleweed\"",
                "opensuse-tumbleweed20240101",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(describe_os(text), want, "{text:?}");
        }
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

    const V10_HOSTNAME: &str = r#"#!/usr/bin/python3

import json

STAGE_DESC = "Set system hostname"
STAGE_INFO = """
Sets system hostname.
"""
STAGE_OPTS = """
"required": ["hostname"],
"properties": {
  "hostname": {
    "type": "string",
    "pattern": "^[a-z]\\\\d*$"
  }
}
"""

def main(tree, options):
    return 0
"#;

    #[test]
    fn meta_reads_meta_files_and_python_fragments() {
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
        let asm = dir.path().join("assemblers");
        write_exec(&stages.join("org.osbuild.hostname"), V10_HOSTNAME);
        write_exec(
            &asm.join("org.osbuild.tar"),
            "#!/usr/bin/python3\nSTAGE_OPTS = '\"properties\": {\"filename\": {\"type\": \"string\"}}'\n",
        );
        write_exec(&stages.join("org.osbuild.rust"), "\x7fELF binary");
        write_exec(&stages.join("org.osbuild.ours"), "\x7fELF binary");
        std::fs::write(
            stages.join("org.osbuild.ours.meta.json"),
            r#"{"summary": "Ours", "description": ["a", "b"], "network": true,
                "schema": {"additionalProperties": false, "properties": {"x": {"type": "integer"}}}}"#,
        )
        .unwrap();
        write_exec(&stages.join("org.osbuild.broken"), "");
        std::fs::write(
            stages.join("org.osbuild.broken.meta.json"),
            "{\"summary\": 1}",
        )
        .unwrap();
        write_exec(&stages.join("org.osbuild.badjson"), "");
        std::fs::write(stages.join("org.osbuild.badjson.meta.json"), "{\n,}").unwrap();
        write_exec(&stages.join("org.osbuild.badschema"), "");
        std::fs::write(
            stages.join("org.osbuild.badschema.meta.json"),
            r#"{"schema": {"type": 12}}"#,
        )
        .unwrap();

        let index = Index::new(dir.path());
        let m = index
            .meta(ModuleKind::Stage, "org.osbuild.hostname")
            .unwrap();
        assert_eq!(m.summary, "Set system hostname");
        assert!(!m.network);
        assert_eq!(
            m.schema,
            Some(serde_json::json!({
                "required": ["hostname"],
                "properties": {"hostname": {"type": "string", "pattern": "^[a-z]\\d*$"}}
            }))
        );
        let m = index
            .meta(ModuleKind::Assembler, "org.osbuild.tar")
            .unwrap();
        assert_eq!(
            m.schema,
            Some(serde_json::json!({"properties": {"filename": {"type": "string"}}}))
        );
        assert_eq!(
            index.meta(ModuleKind::Stage, "org.osbuild.rust").unwrap(),
            ModuleMeta::default()
        );
        let m = index.meta(ModuleKind::Stage, "org.osbuild.ours").unwrap();
        assert_eq!(m.summary, "Ours");
        assert!(m.network);
        assert_eq!(m.schema.unwrap()["properties"]["x"]["type"], "integer");

        for (name, msg) in [
            ("org.osbuild.broken", "'summary' must be a string"),
            ("org.osbuild.badjson", "invalid JSON: line 2, column 1"),
            ("org.osbuild.badschema", "not a valid JSON schema"),
        ] {
            let e = index.meta(ModuleKind::Stage, name).unwrap_err().to_string();
            assert!(e.contains(&format!("{name}.meta.json")), "{e}");
            assert!(e.contains(msg), "{e}");
        }
        let e = index
            .meta(ModuleKind::Stage, "org.osbuild.missing")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no stage 'org.osbuild.missing' in "),
            "{e}"
        );
    }

    #[test]
    fn options_validator_is_draft4_without_formats() {
        let v = options_validator(&serde_json::json!({
            "properties": {
                "ip": {"type": "string", "format": "ipv4"},
                "n": {"type": "number", "minimum": 1, "exclusiveMinimum": true}
            }
        }))
        .unwrap();
        assert!(v.is_valid(&serde_json::json!({"ip": "not an address", "n": 2})));
        // Draft 4's boolean exclusiveMinimum.
        assert!(!v.is_valid(&serde_json::json!({"n": 1})));
    }

    #[test]
    fn python_string_literals() {
        let cases = [
            ("X = \"a\\\"b\"\n", Some("a\"b")),
            ("X = 'it''s'\n", Some("it")),
            ("X = r\"\\d\"\n", Some("\\d")),
            ("X = \"\"\"\nline\\\nmore\"\"\"\n", Some("\nlinemore")),
            ("X == \"no\"\n", None),
            ("  X = \"indented\"\n", None),
            ("X = 1\n", None),
            ("XY = \"other\"\n", None),
            ("X = \"unterminated\n\"\n", None),
        ];
        for (src, want) in cases {
            assert_eq!(
                python_string_assignment(src, &["X"]).as_deref(),
                want,
                "{src:?}"
            );
        }
    }
}
