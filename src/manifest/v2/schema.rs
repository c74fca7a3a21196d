//! The schema a v2 manifest's module entry is checked against, built from the module's
//! [`Meta`] by osbuild HEAD's rules (`ModuleInfo.get_schema(version="2")`):
//! - a stage: the whole stage object, `{"type": <its name>}` plus the fragments of `schema_2`
//!   (`options`, `inputs`, `devices`, `mounts`), or `{"options": schema}` without `schema_2`;
//!   no other member (a stage whose schema names no `inputs` takes none), `mounts` any array
//!   and `devices` any object unless the module says more;
//! - a device: `{"type", "options": schema_2 or schema}`, other members allowed;
//! - a mount: `schema_2` is the whole schema (required);
//! - an input or a source: `schema_2`, else `schema`, is the whole schema.
//!
//! A `definitions` fragment (of the stage or of its options) moves to the top, where the
//! module's `$ref`s expect it.

use serde_json::{json, Map, Value};

use crate::modules::{Meta, ModuleKind};

/// A schema of `meta` that is a non-empty object (HEAD treats an empty one as absent).
fn present(schema: Option<&Value>) -> Option<&Map<String, Value>> {
    schema.and_then(Value::as_object).filter(|m| !m.is_empty())
}

/// The schema for an entry of module `name` of `kind` in a v2 manifest; an error says why the
/// module has none.
pub(super) fn for_module(kind: ModuleKind, name: &str, meta: &Meta) -> Result<Value, String> {
    let v2 = present(meta.schema_2.as_ref());
    let v1 = present(meta.schema.as_ref());
    let missing = || format!("the {kind} '{name}' has no schema for v2 manifests (schema_2)");
    let mut schema = match kind {
        ModuleKind::Stage | ModuleKind::Assembler => stage(name, v2, meta.schema.as_ref()),
        ModuleKind::Device => {
            let options = v2.or(v1).ok_or_else(missing)?;
            json!({
                "type": "object",
                "additionalProperties": true,
                "properties": {"type": {"enum": [name]}, "options": options},
            })
        }
        ModuleKind::Mount => {
            let mut schema = whole(v2.ok_or_else(missing)?);
            let props = schema.entry("properties").or_insert_with(|| json!({}));
            if let Some(props) = props.as_object_mut() {
                props.insert("type".into(), json!({"enum": [name]}));
            }
            Value::Object(schema)
        }
        ModuleKind::Input | ModuleKind::Source | ModuleKind::Runner => {
            Value::Object(whole(v2.or(v1).ok_or_else(missing)?))
        }
    };
    hoist_definitions(&mut schema);
    Ok(schema)
}

/// `{"type": "object", "additionalProperties": false}` overridden by the module's schema.
fn whole(module: &Map<String, Value>) -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("additionalProperties".into(), json!(false));
    schema.extend(module.clone());
    schema
}

fn stage(name: &str, v2: Option<&Map<String, Value>>, v1: Option<&Value>) -> Value {
    let mut props = match v2 {
        Some(fragments) => fragments.clone(),
        None => {
            let options = v1.cloned().unwrap_or_else(|| json!({}));
            Map::from_iter([("options".to_owned(), options)])
        }
    };
    props.insert("type".into(), json!({"enum": [name]}));
    props
        .entry("mounts")
        .or_insert_with(|| json!({"type": "array"}));
    props
        .entry("devices")
        .or_insert_with(|| json!({"type": "object", "additionalProperties": true}));
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "required": ["type"],
    })
}

/// Moves `properties.definitions` and then `properties.options.definitions` to the top.
fn hoist_definitions(schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    let mut found = props.remove("definitions");
    if let Some(options) = props.get_mut("options").and_then(Value::as_object_mut) {
        if let Some(defs) = options.remove("definitions") {
            found = Some(defs);
        }
    }
    if let (Some(defs), Some(top)) = (found, schema.as_object_mut()) {
        top.insert("definitions".into(), defs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(schema: Option<Value>, schema_2: Option<Value>) -> Meta {
        Meta {
            schema,
            schema_2,
            ..Meta::default()
        }
    }

    #[test]
    fn stages_use_fragments_or_fall_back_to_the_options_schema() {
        let v1 = meta(Some(json!({"properties": {"a": {"type": "string"}}})), None);
        let s = for_module(ModuleKind::Stage, "org.osbuild.x", &v1).unwrap();
        assert_eq!(
            s["properties"]["options"]["properties"]["a"]["type"],
            "string"
        );
        assert_eq!(s["properties"]["type"], json!({"enum": ["org.osbuild.x"]}));
        assert_eq!(s["properties"]["mounts"], json!({"type": "array"}));
        assert!(s["properties"].get("inputs").is_none());
        assert_eq!(s["additionalProperties"], false);

        let v2 = meta(
            None,
            Some(json!({"options": {"definitions": {"d": {}}}, "inputs": {"type": "object"}})),
        );
        let s = for_module(ModuleKind::Stage, "x", &v2).unwrap();
        assert_eq!(s["properties"]["inputs"], json!({"type": "object"}));
        assert_eq!(s["definitions"], json!({"d": {}}));
        assert!(s["properties"]["options"].get("definitions").is_none());
        // No schema at all: any options, no inputs.
        let s = for_module(ModuleKind::Stage, "x", &Meta::default()).unwrap();
        assert_eq!(s["properties"]["options"], json!({}));
    }

    #[test]
    fn host_services_need_a_schema() {
        let e = for_module(ModuleKind::Mount, "m", &meta(Some(json!({"a": 1})), None));
        assert_eq!(
            e.unwrap_err(),
            "the mount 'm' has no schema for v2 manifests (schema_2)"
        );
        let m = meta(
            None,
            Some(json!({"required": ["name"], "properties": {"name": {}}})),
        );
        let s = for_module(ModuleKind::Mount, "m", &m).unwrap();
        assert_eq!(s["properties"]["type"], json!({"enum": ["m"]}));
        assert_eq!(s["required"], json!(["name"]));
        let d = meta(Some(json!({"properties": {"filename": {}}})), None);
        let s = for_module(ModuleKind::Device, "d", &d).unwrap();
        assert_eq!(
            s["properties"]["options"]["properties"]["filename"],
            json!({})
        );
        assert_eq!(s["additionalProperties"], true);
        let i = meta(Some(json!({"additionalProperties": true})), None);
        let s = for_module(ModuleKind::Input, "i", &i).unwrap();
        assert_eq!(s["additionalProperties"], true);
        assert!(for_module(ModuleKind::Input, "i", &Meta::default()).is_err());
    }
}
