//! The JSON arguments an assembler gets on stdin (osbuild v10 protocol), and typed access
//! to its options.

use osbuild_protocol::args::AssemblerArgs;
use serde_json::{Map, Value};

use crate::AssemblerError;

/// `{"tree": ..., "options": {...}, "output_dir": ...}` (the protocol's [`AssemblerArgs`]).
pub type Arguments = AssemblerArgs;

/// Parses the arguments text.
pub fn parse(text: &str) -> Result<Arguments, AssemblerError> {
    Arguments::parse(text).map_err(|e| AssemblerError::Arguments(e.to_string()))
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
            match (parse(text), want) {
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
