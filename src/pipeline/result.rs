//! The result of a build in osbuild v10's `--json` shape.
//!
//! Keys appear in v10's order (`success`, `build`, `stages`, `tree_id`, `assembler`,
//! `output_id`), absent ones are left out as v10 does, and the text uses Python's default
//! separators so existing callers parse and compare it unchanged.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::buildroot::RunResult;
use crate::id::ObjectId;
use crate::json;
use crate::manifest::Stage;

/// One stage's or the assembler's result (v10 `BuildResult.as_dict()`).
#[derive(Debug, Clone, Serialize)]
pub struct ModuleResult {
    pub name: String,
    pub id: String,
    /// The options exactly as hashed (Python-compatible JSON).
    pub options: Box<RawValue>,
    pub success: bool,
    /// Everything it printed; `None` (JSON null) when the runner never reached the API.
    pub output: Option<String>,
}

impl ModuleResult {
    pub(crate) fn new(module: &Stage, run: &RunResult) -> Self {
        let options = RawValue::from_string(json::dumps(&module.options))
            .expect("json::dumps produces valid JSON");
        Self {
            name: module.name.clone(),
            id: module.id.to_string(),
            options,
            success: run.success(),
            output: run.connected.then(|| run.output.clone()),
        }
    }
}

/// A pipeline's result; `build` nests the build pipeline's.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineResult {
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Box<PipelineResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<ModuleResult>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_id")]
    pub tree_id: Option<ObjectId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assembler: Option<ModuleResult>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_id")]
    pub output_id: Option<ObjectId>,
}

fn opt_id<S: serde::Serializer>(id: &Option<ObjectId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(id.as_str()),
        None => s.serialize_none(),
    }
}

impl PipelineResult {
    pub(crate) fn success() -> Self {
        Self {
            success: true,
            build: None,
            stages: None,
            tree_id: None,
            assembler: None,
            output_id: None,
        }
    }

    /// v10's short-circuit result when the output is already in the store.
    pub(crate) fn cached_output(output_id: ObjectId, tree_id: Option<ObjectId>) -> Self {
        Self {
            output_id: Some(output_id),
            tree_id,
            ..Self::success()
        }
    }

    /// The result as one line of JSON, as v10's `json.dump(result, sys.stdout)` prints it.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        self.serialize(&mut ser)
            .expect("serializing to memory cannot fail");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// Python's default `json.dumps` separators (`", "` and `": "`), ASCII-only strings.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && c != '\x7f' {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_output_has_v10_shape() {
        let out = ObjectId::parse(&"a".repeat(64)).unwrap();
        let r = PipelineResult::cached_output(out, None);
        assert_eq!(
            r.to_json(),
            format!(r#"{{"success": true, "output_id": "{}"}}"#, "a".repeat(64))
        );
    }

    #[test]
    fn keys_in_v10_order_and_python_separators() {
        let tree = ObjectId::parse(&"b".repeat(64)).unwrap();
        let mut r = PipelineResult::success();
        r.build = Some(Box::new(PipelineResult::success()));
        r.stages = Some(vec![ModuleResult {
            name: "org.osbuild.noop".into(),
            id: tree.to_string(),
            options: RawValue::from_string(r#"{"a": "\u00e9"}"#.into()).unwrap(),
            success: true,
            output: Some("caf\u{e9}\n".into()),
        }]);
        r.tree_id = Some(tree.clone());
        let b = "b".repeat(64);
        assert_eq!(
            r.to_json(),
            format!(
                r#"{{"success": true, "build": {{"success": true}}, "stages": [{{"name": "org.osbuild.noop", "id": "{b}", "options": {{"a": "\u00e9"}}, "success": true, "output": "caf\u00e9\n"}}], "tree_id": "{b}"}}"#
            )
        );
    }
}
