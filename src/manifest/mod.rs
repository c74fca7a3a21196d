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
    pub path: JsonPath,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
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

/// Where in a manifest a problem is: the object keys and array indices from the top, shown as
/// `pipelines[1].stages[0].options.foo` and given to `--json` as osbuild's list
/// (`["pipelines", 1, "stages", 0, "options", "foo"]`), so a key with a dot stays one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonPath(Vec<Segment>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// The document itself.
    pub fn root() -> JsonPath {
        JsonPath::default()
    }

    /// This path + member `key`.
    pub fn key(&self, key: &str) -> JsonPath {
        self.with(Segment::Key(key.to_owned()))
    }

    /// This path + array item `i`.
    pub fn index(&self, i: usize) -> JsonPath {
        self.with(Segment::Index(i))
    }

    fn with(&self, segment: Segment) -> JsonPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        JsonPath(segments)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// osbuild's form: a list of keys (strings) and indices (numbers).
    pub fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|s| match s {
                Segment::Key(k) => serde_json::Value::from(k.as_str()),
                Segment::Index(i) => serde_json::Value::from(*i),
            })
            .collect()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if n == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// `pipeline.stages[0].options` + the JSON pointer `/a/0/b` → `...options.a[0].b`, looking at
/// the value to tell an array index from an object key that happens to be a number.
fn options_path(
    prefix: &JsonPath,
    options: &Value,
    pointer: &jsonschema::paths::Location,
) -> JsonPath {
    let mut path = prefix.clone();
    let mut cur = Some(options);
    for seg in pointer {
        let key = match seg {
            jsonschema::paths::LocationSegment::Property(p) => p.into_owned(),
            jsonschema::paths::LocationSegment::Index(i) => i.to_string(),
        };
        match (cur, key.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(i)) => {
                path = path.index(i);
                cur = items.get(i);
            }
            (other, _) => {
                path = path.key(&key);
                cur = other.and_then(|v| v.get(&key));
            }
        }
    }
    path
}
