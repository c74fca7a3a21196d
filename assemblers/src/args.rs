//! The JSON arguments an assembler gets on stdin (osbuild v10 protocol).

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::AssemblerError;

/// `{"tree": ..., "options": {...}, "output_dir": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arguments {
    /// The tree to assemble (read-only).
    pub tree: PathBuf,
    /// Where the artifact goes.
    pub output_dir: PathBuf,
    /// The assembler's options; absent means `{}`.
    pub options: Map<String, Value>,
}

impl Arguments {
    /// Parses the arguments text.
    pub fn parse(text: &str) -> Result<Self, AssemblerError> {
        let bad = |why: String| AssemblerError::Arguments(why);
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let path = |key: &str| -> Result<PathBuf, AssemblerError> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(PathBuf::from(s)),
                _ => Err(bad(format!("\"{key}\" must be a non-empty string"))),
            }
        };
        let options = match obj.get("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(bad("\"options\" must be an object".into())),
        };
        Ok(Arguments {
            tree: path("tree")?,
            output_dir: path("output_dir")?,
            options,
        })
    }
}

/// An invalid option, for every assembler's messages.
pub fn invalid(option: &'static str, reason: impl Into<String>) -> AssemblerError {
    AssemblerError::InvalidOption {
        option,
        reason: reason.into(),
    }
}

/// An optional string option (`null` is absent).
pub fn string(
    obj: &Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, AssemblerError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "must be a string")),
    }
}

/// A required string option.
pub fn required(obj: &Map<String, Value>, key: &'static str) -> Result<String, AssemblerError> {
    string(obj, key)?.ok_or_else(|| invalid(key, "is required"))
}

/// The `size` option of disk and filesystem images: bytes, positive, a multiple of 512.
pub fn image_size(obj: &Map<String, Value>) -> Result<u64, AssemblerError> {
    let size = obj
        .get("size")
        .ok_or_else(|| invalid("size", "is required"))?
        .as_u64()
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("size", "must be a positive integer (bytes)"))?;
    if size % 512 != 0 {
        return Err(invalid(
            "size",
            format!(
                "{size} is not a multiple of 512 bytes (the sector size); use {}",
                size.div_ceil(512) * 512
            ),
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (tree, output_dir, number of options) or a message fragment.
    type Want = Result<(&'static str, &'static str, usize), &'static str>;

    #[test]
    fn parse_table() {
        let cases: [(&str, Want); 6] = [
            (
                r#"{"tree": "/t", "options": {"a": 1}, "output_dir": "/o"}"#,
                Ok(("/t", "/o", 1)),
            ),
            (r#"{"tree": "/t", "output_dir": "/o"}"#, Ok(("/t", "/o", 0))),
            (
                r#"{"tree": "/t"}"#,
                Err(r#""output_dir" must be a non-empty string"#),
            ),
            (
                r#"{"tree": "/t", "output_dir": "/o", "options": []}"#,
                Err(r#""options" must be an object"#),
            ),
            ("[]", Err("not a JSON object")),
            ("", Err("not JSON")),
        ];
        for (text, want) in cases {
            match (Arguments::parse(text), want) {
                (Ok(a), Ok((t, o, n))) => {
                    assert_eq!((a.tree, a.output_dir), (t.into(), o.into()), "{text}");
                    assert_eq!(a.options.len(), n, "{text}");
                }
                (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }
}
