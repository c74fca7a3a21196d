//! Manifests in osbuild's two formats, chosen as osbuild HEAD chooses them: a document whose
//! `"version"` is `"2"` is a v2 manifest ([`v2`], HEAD's pipelines with inputs, devices and
//! mounts), anything else is a v1 manifest (`v1`, osbuild v10's single pipeline).
//!
//! This module owns the choice and what both formats share: the errors, with their paths such
//! as `pipelines[1].stages[0].options.foo`. [`load`] and [`parse`] give the v1 manifest the
//! engine builds; a v2 manifest is read with [`load_document`] (for `--inspect`) and is not
//! built yet.

mod v1;
pub mod v2;

use std::fmt;

use crate::json::{self, ParseError, Value};
use crate::modules::Index;

pub use v1::{parse_build_env, Build, Manifest, Pipeline, Stage};

/// One problem in a manifest, at a path such as `pipeline.stages[2].options.hostname`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a manifest was rejected.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid JSON: {0}")]
    Json(#[from] ParseError),
    /// Every problem found, one per line in the message.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ValidationError>),
    /// A valid v2 manifest given to something that builds v1 manifests only (osbuild builds
    /// v2 through its own path; osbuildd does not yet).
    #[error("v2 manifests are built by osbuild; this path (osbuildd's Build) takes v1 manifests only so far")]
    V2NotBuildable,
}

/// A manifest in either format.
#[derive(Clone, Debug)]
pub enum Document {
    V1(Manifest),
    V2(v2::Manifest),
}

/// Whether `doc` is a v2 manifest: osbuild HEAD reads `version` (default `"1"`) to choose.
fn is_v2(doc: &Value) -> bool {
    doc.get("version").and_then(Value::as_str) == Some(v2::VERSION)
}

/// Parses a manifest of either format and checks it (against `index` when given).
fn read(text: &str, index: Option<&Index>) -> Result<Document, ManifestError> {
    let doc = json::parse(text)?;
    if is_v2(&doc) {
        v2::check(&doc, index).map(Document::V2)
    } else {
        v1::check(&doc, index).map(Document::V1)
    }
}

/// Parses a manifest of either format and checks it against `index`: every module exists and
/// its options (and a v2 stage's inputs, devices and mounts) match its schema. All errors are
/// collected.
pub fn load_document(text: &str, index: &Index) -> Result<Document, ManifestError> {
    read(text, Some(index))
}

/// Parses a manifest of either format and computes its ids, without looking at any libdir.
pub fn parse_document(text: &str) -> Result<Document, ManifestError> {
    read(text, None)
}

fn buildable(doc: Document) -> Result<Manifest, ManifestError> {
    match doc {
        Document::V1(m) => Ok(m),
        Document::V2(_) => Err(ManifestError::V2NotBuildable),
    }
}

/// Parses a v1 manifest and computes its ids, without looking at any libdir. A valid v2
/// manifest gives [`ManifestError::V2NotBuildable`].
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    parse_document(text).and_then(buildable)
}

/// Parses a v1 manifest and checks it against `index`: every stage and assembler exists, its
/// options match its schema, and every build runner resolves. All errors are collected. A
/// valid v2 manifest gives [`ManifestError::V2NotBuildable`].
pub fn load(text: &str, index: &Index) -> Result<Manifest, ManifestError> {
    load_document(text, index).and_then(buildable)
}

/// The manifest read, or every error found while reading it.
fn outcome<T>(manifest: T, errors: Vec<ValidationError>) -> Result<T, ManifestError> {
    if errors.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestError::Invalid(errors))
    }
}

/// `path` + `.key` (just `key` at the top).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `pipeline.stages[0].options` + the JSON pointer `/a/0/b` → `...options.a[0].b`, looking at
/// the value to tell an array index from an object key that happens to be a number.
fn options_path(prefix: &str, options: &Value, pointer: &jsonschema::paths::Location) -> String {
    let mut path = prefix.to_owned();
    let mut cur = Some(options);
    for seg in pointer {
        let key = match seg {
            jsonschema::paths::LocationSegment::Property(p) => p.into_owned(),
            jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
        };
        match cur {
            Some(Value::Array(items)) => {
                let i: Option<usize> = key.parse().ok();
                path.push_str(&format!("[{key}]"));
                cur = i.and_then(|i| items.get(i));
            }
            other => {
                path.push('.');
                path.push_str(&key);
                cur = other.and_then(|v| v.get(&key));
            }
        }
    }
    path
}
