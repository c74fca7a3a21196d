//! What a module says about itself ([`Meta`]): read from `NAME.meta.json` beside it, else
//! scraped from a foreign Python module's source, else nothing (any options accepted); and
//! the options schema it gives, compiled as osbuild compiles it.

use std::io;
use std::path::{Path, PathBuf};

use osbuild_protocol::meta::{Meta, FILE_SUFFIX as META_SUFFIX};
use serde::Deserialize;

use super::index::{is_plain_name, Index, ModuleKind};
use super::{capabilities, python};
use crate::json;

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

impl Index {
    /// Whether the libdir has module `name`: its executable, or for the inputs, devices and
    /// mounts the engine serves natively, its meta file.
    pub fn knows(&self, kind: ModuleKind, name: &str) -> bool {
        let native = matches!(
            kind,
            ModuleKind::Input | ModuleKind::Device | ModuleKind::Mount
        );
        self.path(kind, name).is_some()
            || (native
                && is_plain_name(name)
                && self
                    .dir(kind)
                    .join(format!("{name}{META_SUFFIX}"))
                    .is_file())
    }

    /// Whether module `name` speaks osbuild HEAD's protocol: its meta has `schema_2`, or it is
    /// a Python module in a libdir of HEAD's layout (with HEAD's `osbuild` package beside).
    pub fn speaks_head(&self, kind: ModuleKind, name: &str) -> bool {
        self.meta(kind, name).is_ok_and(|m| m.schema_2.is_some())
            || self.from_heads_layout(kind, name)
    }

    /// Whether module `name` is one of osbuild HEAD's own Python modules: a Python module in a
    /// libdir of HEAD's layout (with HEAD's `osbuild` package beside the modules).
    pub fn from_heads_layout(&self, kind: ModuleKind, name: &str) -> bool {
        let python = self
            .path(kind, name)
            .and_then(|p| std::fs::read(p).ok())
            .is_some_and(|bytes| python::is_python(&bytes));
        python && self.libdir().join("osbuild").exists()
    }

    /// What module `name` says about itself: from `NAME.meta.json` if present, else from the
    /// schema string embedded in a Python module, else nothing (any options accepted).
    pub fn meta(&self, kind: ModuleKind, name: &str) -> Result<Meta, ModuleError> {
        if let Some((meta, _)) = self.meta_file(kind, name)? {
            return Ok(meta);
        }
        let path = self
            .path(kind, name)
            .ok_or_else(|| not_found(self, kind, name))?;
        let bytes = std::fs::read(&path).map_err(|source| ModuleError::Read {
            path: path.clone(),
            source,
        })?;
        if !python::is_python(&bytes) {
            return Ok(Meta::default());
        }
        let meta =
            python::scrape_meta(&String::from_utf8_lossy(&bytes)).map_err(|e| invalid(&path, e))?;
        if let Some(schema) = &meta.schema {
            check_schema(schema, &path)?;
        }
        Ok(meta)
    }
}

impl Index {
    /// Module `name`'s `NAME.meta.json`, checked, and its path; `None` when it has none.
    pub(super) fn meta_file(
        &self,
        kind: ModuleKind,
        name: &str,
    ) -> Result<Option<(Meta, PathBuf)>, ModuleError> {
        if !self.knows(kind, name) {
            return Err(not_found(self, kind, name));
        }
        let meta_path = self.dir(kind).join(format!("{name}{META_SUFFIX}"));
        match std::fs::read_to_string(&meta_path) {
            Ok(text) => parse_meta_file(&text, &meta_path).map(|meta| Some((meta, meta_path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ModuleError::Read {
                path: meta_path,
                source,
            }),
        }
    }
}

fn not_found(index: &Index, kind: ModuleKind, name: &str) -> ModuleError {
    ModuleError::NotFound {
        kind,
        name: name.to_owned(),
        dir: index.dir(kind),
    }
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

fn parse_meta_file(text: &str, path: &Path) -> Result<Meta, ModuleError> {
    let value = json::parse(text).map_err(|e| invalid(path, format!("invalid JSON: {e}")))?;
    if value.as_object().is_none() {
        return Err(invalid(path, "expected a JSON object"));
    }
    let meta = Meta::deserialize(value.to_serde()).map_err(|e| invalid(path, e.to_string()))?;
    if let Some(schema) = &meta.schema {
        check_schema(schema, path)?;
    }
    capabilities::parse(&meta.capabilities).map_err(|e| invalid(path, e))?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::index::write_exec;

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
    fn meta_reads_python_fragments() {
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
        let asm = dir.path().join("assemblers");
        write_exec(&stages.join("org.osbuild.hostname"), V10_HOSTNAME);
        write_exec(
            &asm.join("org.osbuild.tar"),
            "#!/usr/bin/python3\nSTAGE_OPTS = '\"properties\": {\"filename\": {\"type\": \"string\"}}'\n",
        );
        write_exec(&stages.join("org.osbuild.rust"), "\x7fELF binary");

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
            Meta::default()
        );
    }

    #[test]
    fn meta_reads_meta_files() {
        let dir = tempfile::tempdir().unwrap();
        let stages = dir.path().join("stages");
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
}
