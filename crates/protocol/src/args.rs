//! The arguments a stage or an assembler reads on stdin: `{"tree", "sources", "options"}` and
//! `{"tree", "options", "output_dir"}`.
//!
//! The engine writes them with [`json::dumps_in_order`], as v10 does (`json.dumps(args)`):
//! the options in the manifest's order (a stage that creates users in the order of its options
//! gives them their uids in that order), big integers and `NaN` as written. Our modules parse
//! them with serde_json (order kept) into [`Options`].

use std::fmt;
use std::path::PathBuf;

use crate::json::{self, Value};
use crate::paths::{OUTPUT_DIR, SOURCES_DIR, TREE_DIR};

/// The options as a module reads them.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// What a stage gets on stdin. `O` is [`Options`] on the module's side and the engine's
/// hashed `&Value` on the engine's.
#[derive(Debug, Clone, PartialEq)]
pub struct StageArgs<O = Options> {
    /// The tree to modify.
    pub tree: PathBuf,
    /// Where the sources API puts files, when given.
    pub sources: Option<PathBuf>,
    /// The stage options; an absent or `null` `options` is an empty object.
    pub options: O,
}

/// What an assembler gets on stdin; `O` as for [`StageArgs`].
#[derive(Debug, Clone, PartialEq)]
pub struct AssemblerArgs<O = Options> {
    /// The tree to assemble (read-only).
    pub tree: PathBuf,
    /// Where the artifact goes.
    pub output_dir: PathBuf,
    /// The assembler's options; an absent or `null` `options` is an empty object.
    pub options: O,
}

/// Why a module's stdin is not its arguments.
#[derive(Debug)]
pub enum ArgsError {
    NotJson(serde_json::Error),
    NotObject,
    /// A member is missing or has the wrong type: `"KEY" must be EXPECTED`.
    Member {
        key: &'static str,
        expected: &'static str,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::NotJson(e) => write!(f, "not JSON: {e}"),
            ArgsError::NotObject => f.write_str("not a JSON object"),
            ArgsError::Member { key, expected } => write!(f, "\"{key}\" must be {expected}"),
        }
    }
}

impl std::error::Error for ArgsError {}

impl<'a> StageArgs<&'a Value> {
    /// The arguments of a stage run in the engine's sandbox.
    pub fn in_sandbox(options: &'a Value) -> Self {
        Self {
            tree: TREE_DIR.into(),
            sources: Some(SOURCES_DIR.into()),
            options,
        }
    }

    /// The stdin text, as v10 writes it.
    pub fn to_json(&self) -> String {
        let mut m = json::Map::new();
        m.insert("tree".into(), path_value(&self.tree));
        if let Some(sources) = &self.sources {
            m.insert("sources".into(), path_value(sources));
        }
        m.insert("options".into(), self.options.clone());
        json::dumps_in_order(&Value::Object(m))
    }
}

impl StageArgs {
    /// Parses the stdin text.
    pub fn parse(text: &str) -> Result<Self, ArgsError> {
        let mut obj = object(text)?;
        let tree = path(&obj, "tree")?;
        let sources = match obj.get("sources") {
            Some(serde_json::Value::String(s)) => Some(PathBuf::from(s)),
            None | Some(serde_json::Value::Null) => None,
            Some(_) => return Err(member("sources", "a string")),
        };
        Ok(Self {
            tree,
            sources,
            options: options(&mut obj)?,
        })
    }
}

impl<'a> AssemblerArgs<&'a Value> {
    /// The arguments of an assembler run in the engine's sandbox.
    pub fn in_sandbox(options: &'a Value) -> Self {
        Self {
            tree: TREE_DIR.into(),
            output_dir: OUTPUT_DIR.into(),
            options,
        }
    }

    /// The stdin text, as v10 writes it.
    pub fn to_json(&self) -> String {
        let mut m = json::Map::new();
        m.insert("tree".into(), path_value(&self.tree));
        m.insert("options".into(), self.options.clone());
        m.insert("output_dir".into(), path_value(&self.output_dir));
        json::dumps_in_order(&Value::Object(m))
    }
}

impl AssemblerArgs {
    /// Parses the stdin text.
    pub fn parse(text: &str) -> Result<Self, ArgsError> {
        let mut obj = object(text)?;
        Ok(Self {
            tree: path(&obj, "tree")?,
            output_dir: path(&obj, "output_dir")?,
            options: options(&mut obj)?,
        })
    }
}

/// A path as JSON text (the engine's are the UTF-8 constants of [`crate::paths`]).
fn path_value(p: &std::path::Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

fn member(key: &'static str, expected: &'static str) -> ArgsError {
    ArgsError::Member { key, expected }
}

fn object(text: &str) -> Result<Options, ArgsError> {
    match serde_json::from_str(text).map_err(ArgsError::NotJson)? {
        serde_json::Value::Object(m) => Ok(m),
        _ => Err(ArgsError::NotObject),
    }
}

fn path(obj: &Options, key: &'static str) -> Result<PathBuf, ArgsError> {
    match obj.get(key) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(PathBuf::from(s)),
        _ => Err(member(key, "a non-empty string")),
    }
}

fn options(obj: &mut Options) -> Result<Options, ArgsError> {
    match obj.remove("options") {
        Some(serde_json::Value::Object(m)) => Ok(m),
        None | Some(serde_json::Value::Null) => Ok(Options::new()),
        Some(_) => Err(member("options", "an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: &str = "1234567890123456789012345678901234567890";

    fn hashed_options() -> Value {
        json::parse(&format!(
            r#"{{"z": NaN, "big": {BIG}, "f": 1.0, "u": "caf\u00e9"}}"#
        ))
        .unwrap()
    }

    /// v10's `json.dumps(args)`: its keys in v10's order, the options in the manifest's.
    #[test]
    fn stage_bytes() {
        let options = hashed_options();
        assert_eq!(
            StageArgs::in_sandbox(&options).to_json(),
            format!(
                r#"{{"tree": "/run/osbuild/tree", "sources": "/run/osbuild/sources", "options": {{"z": NaN, "big": {BIG}, "f": 1.0, "u": "caf\u00e9"}}}}"#
            )
        );
    }

    #[test]
    fn assembler_bytes() {
        let options = hashed_options();
        assert_eq!(
            AssemblerArgs::in_sandbox(&options).to_json(),
            format!(
                r#"{{"tree": "/run/osbuild/tree", "options": {{"z": NaN, "big": {BIG}, "f": 1.0, "u": "caf\u00e9"}}, "output_dir": "/run/osbuild/output"}}"#
            )
        );
    }

    #[test]
    fn modules_read_what_the_engine_writes() {
        let options = json::parse(r#"{"n": 1, "s": "x"}"#).unwrap();
        let stage = StageArgs::parse(&StageArgs::in_sandbox(&options).to_json()).unwrap();
        assert_eq!(stage.tree, PathBuf::from(TREE_DIR));
        assert_eq!(stage.sources, Some(PathBuf::from(SOURCES_DIR)));
        assert_eq!(stage.options.len(), 2);
        let asm = AssemblerArgs::parse(&AssemblerArgs::in_sandbox(&options).to_json()).unwrap();
        assert_eq!(asm.output_dir, PathBuf::from(OUTPUT_DIR));
        assert_eq!(asm.options["s"], "x");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("[]", "not a JSON object"),
            ("{", "not JSON: EOF while parsing"),
            (r#"{"options": {}}"#, r#""tree" must be a non-empty string"#),
            (
                r#"{"tree": "/t", "sources": 1}"#,
                r#""sources" must be a string"#,
            ),
            (
                r#"{"tree": "/t", "options": 5}"#,
                r#""options" must be an object"#,
            ),
        ];
        for (text, want) in cases {
            let e = StageArgs::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
        let e = AssemblerArgs::parse(r#"{"tree": "/t"}"#).unwrap_err();
        assert_eq!(e.to_string(), r#""output_dir" must be a non-empty string"#);
    }
}
