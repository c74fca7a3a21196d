//! A build's result in osbuild v10's `--json` shape: what `osbuild --json` prints, what a
//! service job carries, and what `osbuildctl` reads back.
//!
//! Keys appear in v10's order (`success`, `build`, `stages`, `tree_id`, `assembler`,
//! `output_id`) and absent ones are left out, as v10 does. The text is Python's
//! `json.dumps(result)`, written by [`json`](crate::json)'s one encoder, so the options embedded
//! in it are exactly the hashed text: integers of any size and `NaN` survive verbatim.

use std::borrow::Cow;
use std::fmt;

use crate::json::{self, Ordered, Value};

/// One stage's or the assembler's result (v10 `BuildResult.as_dict()`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleResult {
    pub name: String,
    pub id: String,
    /// The options exactly as hashed.
    pub options: Value,
    pub success: bool,
    /// Everything it printed; `None` (JSON null) when the runner never reached the API.
    pub output: Option<String>,
}

/// A pipeline's result; `build` nests the build pipeline's.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineResult {
    pub success: bool,
    /// Why the build could not run at all (the service's `{"success": false, "error": ...}`);
    /// `None` when it ran, whatever its outcome.
    pub error: Option<String>,
    pub build: Option<Box<PipelineResult>>,
    pub stages: Option<Vec<ModuleResult>>,
    pub tree_id: Option<String>,
    pub assembler: Option<ModuleResult>,
    pub output_id: Option<String>,
}

/// Why a text is not a build result.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultError {
    NotJson(json::ParseError),
    /// A member is missing or has the wrong type (`stages[0].name`, ...).
    Member(String),
}

impl fmt::Display for ResultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultError::NotJson(e) => write!(f, "the result is not JSON: {e}"),
            ResultError::Member(m) => write!(f, "the result's {m:?} is missing or malformed"),
        }
    }
}

impl std::error::Error for ResultError {}

impl ModuleResult {
    fn document(&self) -> Ordered<'_> {
        Ordered::Object(vec![
            ("name", leaf(self.name.as_str().into())),
            ("id", leaf(self.id.as_str().into())),
            ("options", Ordered::Value(Cow::Borrowed(&self.options))),
            ("success", leaf(self.success.into())),
            ("output", leaf(self.output.as_deref().into())),
        ])
    }

    fn from_value(v: &Value, at: &str) -> Result<Self, ResultError> {
        let m = Members { v, at };
        Ok(Self {
            name: m.string("name")?,
            id: m.string("id")?,
            options: v.get("options").cloned().ok_or_else(|| m.bad("options"))?,
            success: m.bool("success")?,
            output: m.opt_string("output")?,
        })
    }
}

impl PipelineResult {
    /// A successful result with nothing in it yet.
    pub fn success() -> Self {
        Self {
            success: true,
            error: None,
            build: None,
            stages: None,
            tree_id: None,
            assembler: None,
            output_id: None,
        }
    }

    /// v10's short-circuit result when the output is already in the store.
    pub fn cached_output(output_id: String, tree_id: Option<String>) -> Self {
        Self {
            output_id: Some(output_id),
            tree_id,
            ..Self::success()
        }
    }

    /// The result as one line of JSON, as v10's `json.dump(result, sys.stdout)` prints it.
    pub fn to_json(&self) -> String {
        self.document().dumps()
    }

    fn document(&self) -> Ordered<'_> {
        let mut doc = vec![("success", leaf(self.success.into()))];
        let string = |s: &Option<String>| s.as_deref().map(|s| leaf(s.into()));
        let members = [
            ("error", string(&self.error)),
            ("build", self.build.as_ref().map(|b| b.document())),
            (
                "stages",
                self.stages
                    .as_ref()
                    .map(|s| Ordered::Array(s.iter().map(ModuleResult::document).collect())),
            ),
            ("tree_id", string(&self.tree_id)),
            ("assembler", self.assembler.as_ref().map(|a| a.document())),
            ("output_id", string(&self.output_id)),
        ];
        doc.extend(members.into_iter().filter_map(|(k, v)| Some((k, v?))));
        Ordered::Object(doc)
    }

    /// Reads a result text back (Python-compatible JSON: big integers and `NaN` in options
    /// are kept).
    pub fn parse(text: &str) -> Result<Self, ResultError> {
        let v = json::parse(text).map_err(ResultError::NotJson)?;
        Self::from_value(&v, "")
    }

    fn from_value(v: &Value, at: &str) -> Result<Self, ResultError> {
        let m = Members { v, at };
        let stages = match v.get("stages") {
            None => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        ModuleResult::from_value(s, &format!("{}[{i}].", m.name("stages")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(m.bad("stages")),
        };
        Ok(Self {
            success: m.bool("success")?,
            error: m.opt_string("error")?,
            build: match v.get("build") {
                None => None,
                Some(b) => Some(Box::new(Self::from_value(b, &m.nested("build"))?)),
            },
            stages,
            tree_id: m.opt_string("tree_id")?,
            assembler: match v.get("assembler") {
                None => None,
                Some(a) => Some(ModuleResult::from_value(a, &m.nested("assembler"))?),
            },
            output_id: m.opt_string("output_id")?,
        })
    }
}

fn leaf(v: Value) -> Ordered<'static> {
    Ordered::Value(Cow::Owned(v))
}

/// The members of one object of a result, named in errors by their path (`build.stages[0].id`).
struct Members<'v> {
    v: &'v Value,
    at: &'v str,
}

impl Members<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.at)
    }

    fn nested(&self, key: &str) -> String {
        format!("{}.", self.name(key))
    }

    fn bad(&self, key: &str) -> ResultError {
        ResultError::Member(self.name(key))
    }

    fn bool(&self, key: &str) -> Result<bool, ResultError> {
        self.v
            .get(key)
            .and_then(Value::as_bool)
            .ok_or_else(|| self.bad(key))
    }

    /// A string that may be absent or `null`.
    fn opt_string(&self, key: &str) -> Result<Option<String>, ResultError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(key)),
        }
    }

    fn string(&self, key: &str) -> Result<String, ResultError> {
        self.opt_string(key)?.ok_or_else(|| self.bad(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(options: &str) -> ModuleResult {
        ModuleResult {
            name: "org.osbuild.noop".into(),
            id: "b".repeat(64),
            options: json::parse(options).unwrap(),
            success: true,
            output: Some("caf\u{e9}\n".into()),
        }
    }

    #[test]
    fn cached_output_has_v10_shape() {
        let r = PipelineResult::cached_output("a".repeat(64), None);
        assert_eq!(
            r.to_json(),
            format!(r#"{{"success": true, "output_id": "{}"}}"#, "a".repeat(64))
        );
    }

    #[test]
    fn keys_in_v10_order_and_python_separators() {
        let mut r = PipelineResult::success();
        r.build = Some(Box::new(PipelineResult::success()));
        r.stages = Some(vec![stage(r#"{"a": "\u00e9"}"#)]);
        r.tree_id = Some("b".repeat(64));
        let b = "b".repeat(64);
        assert_eq!(
            r.to_json(),
            format!(
                r#"{{"success": true, "build": {{"success": true}}, "stages": [{{"name": "org.osbuild.noop", "id": "{b}", "options": {{"a": "\u00e9"}}, "success": true, "output": "caf\u00e9\n"}}], "tree_id": "{b}"}}"#
            )
        );
    }

    #[test]
    fn options_keep_big_integers_and_nan() {
        let big = "1234567890123456789012345678901234567890";
        let mut r = PipelineResult::success();
        r.assembler = Some(ModuleResult {
            output: None,
            ..stage(&format!(r#"{{"z": NaN, "big": {big}, "f": 1e100}}"#))
        });
        let b = "b".repeat(64);
        let text = r.to_json();
        assert_eq!(
            text,
            format!(
                r#"{{"success": true, "assembler": {{"name": "org.osbuild.noop", "id": "{b}", "options": {{"z": NaN, "big": {big}, "f": 1e+100}}, "success": true, "output": null}}}}"#
            )
        );
        let back = PipelineResult::parse(&text).unwrap();
        assert_eq!(back.to_json(), text);
        assert!(matches!(
            back.assembler.unwrap().options.get("z"),
            Some(Value::Float(f)) if f.is_nan()
        ));
    }

    #[test]
    fn reads_results_and_service_errors() {
        let r = PipelineResult::parse(r#"{"success":false,"error":"cancelled"}"#).unwrap();
        assert_eq!((r.success, r.error.as_deref()), (false, Some("cancelled")));
        let r = PipelineResult::parse(r#"{"success": true, "tree_id": "t", "output_id": "o"}"#)
            .unwrap();
        assert_eq!(
            (r.tree_id.as_deref(), r.output_id.as_deref()),
            (Some("t"), Some("o"))
        );
        let cases = [
            ("nope", "the result is not JSON: line 1, column 1"),
            ("{}", r#"the result's "success" is missing"#),
            (
                r#"{"success": true, "build": {"success": true, "stages": [{"name": 1}]}}"#,
                r#"the result's "build.stages[0].name" is missing"#,
            ),
        ];
        for (text, want) in cases {
            let e = PipelineResult::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }
}
