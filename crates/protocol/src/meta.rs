//! `NAME.meta.json`: what a module says about itself, in a file beside its executable in the
//! libdir (`stages/NAME` and `stages/NAME.meta.json`), as in osbuild HEAD.
//!
//! The engine reads it to validate a module's options and to decide whether the module gets
//! the network, and for v2 manifests `schema_2` and `capabilities` as osbuild HEAD has them;
//! the modules' crates check theirs against the same type in their tests. Every
//! member is optional and unknown members are ignored (osbuild HEAD's files carry more).

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// How a module's description file is named: `NAME` + this suffix.
pub const FILE_SUFFIX: &str = ".meta.json";

/// The contents of `NAME.meta.json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Meta {
    /// One line saying what the module does (may be empty).
    #[serde(default, deserialize_with = "summary")]
    pub summary: String,
    /// Paragraph lines saying more.
    #[serde(default, deserialize_with = "description")]
    pub description: Vec<String>,
    /// JSON schema (draft 4) of the options object; `None` accepts any options. Any JSON
    /// value is taken here (even `null`); whether it is a usable schema is the reader's check.
    #[serde(default, deserialize_with = "schema")]
    pub schema: Option<Value>,
    /// osbuild HEAD's schema for v2 manifests: for a stage an object of schema fragments
    /// (`options`, `inputs`, `devices`, `mounts`), for a mount its whole schema; `None` means
    /// v2 manifests use `schema` (as HEAD falls back). Taken as any JSON value, like `schema`.
    #[serde(default, deserialize_with = "schema")]
    pub schema_2: Option<Value>,
    /// Capabilities (`CAP_MAC_ADMIN`, ...) the module needs beyond the default set (HEAD).
    #[serde(default, deserialize_with = "capabilities")]
    pub capabilities: Vec<String>,
    /// Whether the module needs the network (sources do; stages normally do not).
    #[serde(default, deserialize_with = "network")]
    pub network: bool,
}

fn summary<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    typed(d, |found| {
        format!("'summary' must be a string, not {found}")
    })
}

fn description<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    typed(d, |_| {
        "'description' must be an array of strings".to_owned()
    })
}

fn capabilities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    typed(d, |_| {
        "'capabilities' must be an array of strings".to_owned()
    })
}

fn schema<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn network<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    typed(d, |found| {
        format!("'network' must be a boolean, not {found}")
    })
}

/// Reads a member as `T`, failing with `message(the JSON type found)`.
fn typed<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    message: impl FnOnce(&str) -> String,
) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    T::deserialize(&value).map_err(|_| D::Error::custom(message(type_name(&value))))
}

/// The JSON type name used in messages, as [`crate::json::Value::type_name`] spells it.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Meta, String> {
        serde_json::from_str::<Value>(text)
            .and_then(serde_json::from_value)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_member_is_optional_and_unknown_ones_are_ignored() {
        assert_eq!(parse("{}"), Ok(Meta::default()));
        let m = parse(
            r#"{"summary": "S", "description": ["a", "b"], "network": true,
                "schema": {"type": "object"}, "schema_2": {}}"#,
        )
        .unwrap();
        assert_eq!(m.summary, "S");
        assert_eq!(m.description, ["a", "b"]);
        assert!(m.network);
        assert_eq!(m.schema, Some(serde_json::json!({"type": "object"})));
        assert_eq!(m.schema_2, Some(serde_json::json!({})));
        assert!(m.capabilities.is_empty());
        let m = parse(r#"{"capabilities": ["CAP_MAC_ADMIN"], "generated": 1}"#).unwrap();
        assert_eq!(m.capabilities, ["CAP_MAC_ADMIN"]);
        assert_eq!(m.schema_2, None);
        // A null schema is still a schema, for the reader to refuse.
        assert_eq!(
            parse(r#"{"schema": null}"#).unwrap().schema,
            Some(Value::Null)
        );
    }

    #[test]
    fn wrong_types_name_the_member() {
        let cases = [
            (
                r#"{"summary": 1}"#,
                "'summary' must be a string, not integer",
            ),
            (
                r#"{"summary": 1.5}"#,
                "'summary' must be a string, not number",
            ),
            (
                r#"{"network": "yes"}"#,
                "'network' must be a boolean, not string",
            ),
            (
                r#"{"network": null}"#,
                "'network' must be a boolean, not null",
            ),
            (
                r#"{"description": "a"}"#,
                "'description' must be an array of strings",
            ),
            (
                r#"{"description": [1]}"#,
                "'description' must be an array of strings",
            ),
            (
                r#"{"capabilities": "CAP_MAC_ADMIN"}"#,
                "'capabilities' must be an array of strings",
            ),
            (
                r#"{"description": null}"#,
                "'description' must be an array of strings",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Err(want.to_owned()), "{text}");
        }
    }
}
