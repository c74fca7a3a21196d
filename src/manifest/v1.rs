//! v1 manifests: parsing, validation and the ids of every stage.
//!
//! A manifest is `{"pipeline": {"build"?: {"pipeline", "runner"}, "stages"?: [...],
//! "assembler"?: {...}}, "sources"?: {...}}`, or the older bare form with the pipeline at the
//! top level. Without a libdir ([`super::parse`]) the structure is checked (osbuild's v1
//! schema, with paths such as `pipeline.stages[2].options`) and the ids are computed exactly
//! as osbuild v10 does; with one ([`super::load`]) every stage is further checked: the module
//! exists, its options match its schema and each build runner resolves. All errors are
//! reported together.
//!
//! Ids: `sha256(d(name) ‖ d(build) ‖ d(base) ‖ d(options))` with `d` = Python's
//! `json.dumps(x, sort_keys=True)` ([`json::dumps`]); `build` is the build pipeline's tree
//! id or null, `base` the previous stage's id or null (the tree id for the assembler).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{options_path, outcome, JsonPath, ManifestError, ValidationError};
use crate::id::ObjectId;
use crate::json::{self, Map, Value};
use crate::modules::{Index, ModuleKind};

/// A v1 manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub pipeline: Pipeline,
    /// Source options by source name (`org.osbuild.files`: `{"urls": {...}}`).
    pub sources: Map,
}

/// A pipeline: an optional build pipeline, stages and an optional assembler.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    pub build: Option<Build>,
    pub stages: Vec<Stage>,
    pub assembler: Option<Stage>,
}

/// A build section: the pipeline whose tree is the build root, and the runner to use in it.
#[derive(Clone, Debug)]
pub struct Build {
    pub pipeline: Box<Pipeline>,
    /// The runner as requested in the manifest (resolve with [`Index::resolve_runner`]).
    pub runner: String,
}

/// A stage or an assembler.
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    /// Always an object (a missing or null `options` is `{}`).
    pub options: Value,
    pub id: ObjectId,
}

impl Pipeline {
    /// The id of the tree after the last stage, `None` without stages.
    pub fn tree_id(&self) -> Option<&ObjectId> {
        self.stages.last().map(|s| &s.id)
    }

    /// The id of the assembler's output, `None` without an assembler.
    pub fn output_id(&self) -> Option<&ObjectId> {
        self.assembler.as_ref().map(|a| &a.id)
    }

    /// Every stage and assembler of this pipeline and its build pipelines, innermost build
    /// pipeline first, in the order they run.
    pub fn all_stages(&self) -> Vec<&Stage> {
        let mut out = match &self.build {
            Some(b) => b.pipeline.all_stages(),
            None => Vec::new(),
        };
        out.extend(self.stages.iter());
        out.extend(self.assembler.iter());
        out
    }

    /// Recomputes the ids of this pipeline and its build pipelines with `epoch` mixed into
    /// every stage's and the assembler's id (see [`Manifest::set_source_epoch`]).
    fn rehash_with_epoch(&mut self, epoch: u64) {
        let build_id = self.build.as_mut().and_then(|b| {
            b.pipeline.rehash_with_epoch(epoch);
            b.pipeline.tree_id().cloned()
        });
        let mut base: Option<ObjectId> = None;
        for stage in &mut self.stages {
            stage.id = stage.id_under(build_id.as_ref(), base.as_ref(), epoch);
            base = Some(stage.id.clone());
        }
        if let Some(assembler) = &mut self.assembler {
            assembler.id = assembler.id_under(build_id.as_ref(), base.as_ref(), epoch);
        }
    }

    /// The innermost pipeline: the one without a build pipeline, which runs on the host.
    fn innermost_mut(&mut self) -> &mut Pipeline {
        match self.build {
            Some(ref mut b) => b.pipeline.innermost_mut(),
            None => self,
        }
    }

    fn describe(&self) -> Map {
        let mut d = Map::new();
        if let Some(b) = &self.build {
            let mut build = Map::new();
            build.insert("pipeline".into(), Value::Object(b.pipeline.describe()));
            build.insert("runner".into(), Value::from(b.runner.as_str()));
            d.insert("build".into(), Value::Object(build));
        }
        if !self.stages.is_empty() {
            let stages = self.stages.iter().map(Stage::describe).collect();
            d.insert("stages".into(), Value::Array(stages));
        }
        if let Some(a) = &self.assembler {
            d.insert("assembler".into(), a.describe());
        }
        d
    }
}

impl Stage {
    /// The id under a source epoch, after `build` and `base`.
    fn id_under(&self, build: Option<&ObjectId>, base: Option<&ObjectId>, epoch: u64) -> ObjectId {
        stage_id(&self.name, build, base, &self.options, Some(epoch))
    }

    fn describe(&self) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), Value::from(self.name.as_str()));
        if self.options.is_truthy() {
            d.insert("options".into(), self.options.clone());
        }
        d.insert("id".into(), Value::from(self.id.as_str()));
        Value::Object(d)
    }
}

impl Manifest {
    /// The manifest as `osbuild --inspect` prints it: the pipeline (always in the wrapped
    /// form) with an `"id"` on every stage and assembler, recursively into build pipelines;
    /// `options` and `sources` only when not empty.
    pub fn describe(&self) -> Value {
        let mut d = Map::new();
        d.insert("pipeline".into(), Value::Object(self.pipeline.describe()));
        if !self.sources.is_empty() {
            d.insert("sources".into(), Value::Object(self.sources.clone()));
        }
        Value::Object(d)
    }

    /// osbuild v10's `--build-env`: makes `build` the build pipeline of the innermost
    /// pipeline. The ids do not change (v10 computed them at load time, so a store filled
    /// with one build environment gives cache hits for another).
    pub fn prepend_build_env(&mut self, build: Build) {
        self.pipeline.innermost_mut().build = Some(build);
    }

    /// Builds with `SOURCE_DATE_EPOCH` = `epoch`: every id changes (as osbuild HEAD mixes a
    /// pipeline's `source-epoch` into its ids), so a store never mixes trees built with and
    /// without an epoch, or with different ones. Call it before [`Self::prepend_build_env`],
    /// which keeps ids.
    pub fn set_source_epoch(&mut self, epoch: u64) {
        self.pipeline.rehash_with_epoch(epoch);
    }

    /// Every id in the manifest (stages and assemblers of all pipelines, build pipelines
    /// first), e.g. to check that `--checkpoint` names a known id.
    pub fn ids(&self) -> Vec<&ObjectId> {
        self.pipeline
            .all_stages()
            .into_iter()
            .map(|s| &s.id)
            .collect()
    }
}

/// The v10 id of a stage or assembler; under a source epoch, the epoch as JSON follows the
/// options (HEAD's order for a pipeline's `source-epoch`).
fn stage_id(
    name: &str,
    build: Option<&ObjectId>,
    base: Option<&ObjectId>,
    options: &Value,
    epoch: Option<u64>,
) -> ObjectId {
    let as_value = |id: Option<&ObjectId>| Value::from(id.map(|i| i.as_str()));
    let mut h = Sha256::new();
    h.update(json::dumps(&Value::from(name)));
    h.update(json::dumps(&as_value(build)));
    h.update(json::dumps(&as_value(base)));
    h.update(json::dumps(options));
    if let Some(epoch) = epoch {
        h.update(epoch.to_string());
    }
    ObjectId::from_digest(&h.finalize())
}

/// Parses a `--build-env` file: a build section `{"pipeline": {...}, "runner": "..."}`.
pub fn parse_build_env(text: &str) -> Result<Build, ManifestError> {
    let doc = json::parse(text)?;
    let mut c = Checker::new(None);
    let build = c.build(&doc, &JsonPath::root());
    match (c.errors.is_empty(), build) {
        (true, Some(b)) => Ok(b),
        (true, None) => Ok(Build {
            pipeline: Box::default(),
            runner: doc
                .get("runner")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        (false, _) => Err(ManifestError::Invalid(c.errors)),
    }
}

/// Checks a v1 document (against `index` when given) and computes its ids; all errors are
/// collected.
pub(super) fn check(doc: &Value, index: Option<&Index>) -> Result<Manifest, ManifestError> {
    let mut c = Checker::new(index);
    let manifest = c.manifest(doc);
    outcome(manifest, c.errors)
}

/// The top level without a stray `"runner"`, which osbuild v10 ignored (several of its samples
/// carry one), with a warning on stderr; `None` when there is none.
fn without_runner(obj: &Map) -> Option<Map> {
    if !obj.contains_key("runner") {
        return None;
    }
    eprintln!(
        "warning: runner: ignored (osbuild v10 ignores a top-level runner; use pipeline.build.runner)"
    );
    let mut rest = obj.clone();
    rest.shift_remove("runner");
    Some(rest)
}

/// One pass over the document: builds the manifest and collects every error.
struct Checker<'a> {
    index: Option<&'a Index>,
    errors: Vec<ValidationError>,
    validators: HashMap<(ModuleKind, String), Option<jsonschema::Validator>>,
}

impl<'a> Checker<'a> {
    fn new(index: Option<&'a Index>) -> Self {
        Checker {
            index,
            errors: Vec::new(),
            validators: HashMap::new(),
        }
    }

    fn error(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.clone(),
            message: message.into(),
        });
    }

    /// The object at `path`, or an error; unknown keys are reported.
    fn object<'v>(&mut self, v: &'v Value, path: &JsonPath, allowed: &[&str]) -> Option<&'v Map> {
        let Some(obj) = v.as_object() else {
            self.error(path, format!("expected an object, found {}", v.type_name()));
            return None;
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    &path.key(key),
                    format!("unknown key '{key}' (allowed: {})", allowed.join(", ")),
                );
            }
        }
        Some(obj)
    }

    fn manifest(&mut self, doc: &Value) -> Manifest {
        let empty = Manifest {
            pipeline: Pipeline::default(),
            sources: Map::new(),
        };
        let stripped = doc.as_object().and_then(without_runner).map(Value::Object);
        let doc = stripped.as_ref().unwrap_or(doc);
        let Some(obj) = doc.as_object() else {
            self.error(
                &JsonPath::root(),
                format!(
                    "a manifest must be a JSON object, found {}",
                    doc.type_name()
                ),
            );
            return empty;
        };
        let (pipeline, sources) = if obj.contains_key("pipeline") {
            self.object(doc, &JsonPath::root(), &["pipeline", "sources"]);
            let p = self.pipeline(&obj["pipeline"], &JsonPath::root().key("pipeline"));
            (p, obj.get("sources"))
        } else {
            // The bare form (osbuild v10 still accepted it): the document is the pipeline.
            let p = self.pipeline_fields(
                obj,
                &JsonPath::root(),
                &["build", "stages", "assembler", "sources"],
            );
            (p, obj.get("sources"))
        };
        let mut sources_map = Map::new();
        match sources {
            None => {}
            Some(Value::Object(s)) => {
                for (name, opts) in s {
                    if opts.as_object().is_none() {
                        self.error(
                            &JsonPath::root().key("sources").key(name),
                            format!("expected an object, found {}", opts.type_name()),
                        );
                    }
                    sources_map.insert(name.clone(), opts.clone());
                }
            }
            Some(other) => self.error(
                &JsonPath::root().key("sources"),
                format!("expected an object, found {}", other.type_name()),
            ),
        }
        Manifest {
            pipeline,
            sources: sources_map,
        }
    }

    fn pipeline(&mut self, v: &Value, path: &JsonPath) -> Pipeline {
        match v.as_object() {
            Some(obj) => self.pipeline_fields(obj, path, &["build", "stages", "assembler"]),
            None => {
                self.error(path, format!("expected an object, found {}", v.type_name()));
                Pipeline::default()
            }
        }
    }

    fn pipeline_fields(&mut self, obj: &Map, path: &JsonPath, allowed: &[&str]) -> Pipeline {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    &path.key(key),
                    format!("unknown key '{key}' (allowed: {})", allowed.join(", ")),
                );
            }
        }
        let build = obj
            .get("build")
            .and_then(|b| self.build(b, &path.key("build")));
        let build_id = build.as_ref().and_then(|b| b.pipeline.tree_id()).cloned();

        let mut stages = Vec::new();
        if let Some(list) = obj.get("stages") {
            let stages_path = path.key("stages");
            match list.as_array() {
                Some(items) => {
                    let mut base: Option<ObjectId> = None;
                    for (i, item) in items.iter().enumerate() {
                        let item_path = stages_path.index(i);
                        if let Some(stage) = self.stage(
                            item,
                            &item_path,
                            ModuleKind::Stage,
                            build_id.as_ref(),
                            base.as_ref(),
                        ) {
                            base = Some(stage.id.clone());
                            stages.push(stage);
                        }
                    }
                }
                None => self.error(
                    &stages_path,
                    format!("expected an array, found {}", list.type_name()),
                ),
            }
        }
        let tree_id = stages.last().map(|s: &Stage| s.id.clone());
        let assembler = obj.get("assembler").and_then(|a| {
            self.stage(
                a,
                &path.key("assembler"),
                ModuleKind::Assembler,
                build_id.as_ref(),
                tree_id.as_ref(),
            )
        });
        Pipeline {
            build,
            stages,
            assembler,
        }
    }

    /// A build section; `None` when its pipeline is empty (v10 then drops it).
    fn build(&mut self, v: &Value, path: &JsonPath) -> Option<Build> {
        let obj = self.object(v, path, &["pipeline", "runner"])?;
        let runner = match obj.get("runner") {
            Some(Value::String(r)) => {
                if let Some(index) = self.index {
                    if let Err(e) = index.resolve_runner(r) {
                        self.error(&path.key("runner"), e.to_string());
                    }
                }
                Some(r.clone())
            }
            Some(other) => {
                self.error(
                    &path.key("runner"),
                    format!("expected a string, found {}", other.type_name()),
                );
                None
            }
            None => {
                self.error(path, "'runner' is required");
                None
            }
        };
        let pipeline = match obj.get("pipeline") {
            None => {
                self.error(path, "'pipeline' is required");
                return None;
            }
            // Python's truthiness: an empty (or null) pipeline means no build pipeline.
            Some(p) if !p.is_truthy() && (p.is_null() || p.as_object().is_some()) => return None,
            Some(p) => self.pipeline(p, &path.key("pipeline")),
        };
        Some(Build {
            pipeline: Box::new(pipeline),
            runner: runner?,
        })
    }

    fn stage(
        &mut self,
        v: &Value,
        path: &JsonPath,
        kind: ModuleKind,
        build: Option<&ObjectId>,
        base: Option<&ObjectId>,
    ) -> Option<Stage> {
        let obj = self.object(v, path, &["name", "options"])?;
        let name = match obj.get("name") {
            Some(Value::String(n)) => Some(n.clone()),
            Some(other) => {
                self.error(
                    &path.key("name"),
                    format!("expected a string, found {}", other.type_name()),
                );
                None
            }
            None => {
                self.error(path, "'name' is required");
                None
            }
        };
        let options = match obj.get("options") {
            None | Some(Value::Null) => Some(Value::Object(Map::new())),
            Some(o @ Value::Object(_)) => Some(o.clone()),
            Some(other) => {
                self.error(
                    &path.key("options"),
                    format!("expected an object, found {}", other.type_name()),
                );
                None
            }
        };
        let name = name?;
        if let Some(index) = self.index {
            self.check_module(index, kind, &name, options.as_ref(), path);
        }
        let options = options?;
        Some(Stage {
            id: stage_id(&name, build, base, &options, None),
            name,
            options,
        })
    }

    fn check_module(
        &mut self,
        index: &Index,
        kind: ModuleKind,
        name: &str,
        options: Option<&Value>,
        path: &JsonPath,
    ) {
        let key = (kind, name.to_owned());
        if !self.validators.contains_key(&key) {
            let validator = if index.path(kind, name).is_none() {
                self.error(
                    &path.key("name"),
                    format!(
                        "unknown {kind} '{name}' (not in {})",
                        index.libdir().join(kind.dir_name()).display()
                    ),
                );
                None
            } else {
                match index.meta(kind, name) {
                    Err(e) => {
                        self.error(path, e.to_string());
                        None
                    }
                    // A native stage made for HEAD's v2 protocol (devices, mounts, inputs)
                    // cannot run from a v1 manifest.
                    Ok(meta) if meta.schema.is_none() && meta.schema_2.is_some() => {
                        self.error(
                            &path.key("name"),
                            format!("the {kind} '{name}' exists only for version 2 manifests"),
                        );
                        None
                    }
                    Ok(meta) => meta.schema.and_then(|schema| {
                        match crate::modules::options_validator(&schema) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                self.error(
                                    path,
                                    format!("the {kind}'s options schema is invalid: {e}"),
                                );
                                None
                            }
                        }
                    }),
                }
            };
            self.validators.insert(key.clone(), validator);
        }
        let (Some(Some(validator)), Some(options)) = (self.validators.get(&key), options) else {
            return;
        };
        let instance = options.to_schema_instance();
        let found: Vec<ValidationError> = validator
            .iter_errors(&instance)
            .map(|e| ValidationError {
                path: options_path(&path.key("options"), options, &e.instance_path),
                message: e.to_string(),
            })
            .collect();
        self.errors.extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;

    const NOOP: &str = "beda46704765a47e6d4f44aff22168ae36866c9c0e6e11552b775b77776b2969";

    #[test]
    fn ids_of_small_manifests() {
        // (manifest, tree id, output id)
        let cases: [(&str, Option<&str>, Option<&str>); 6] = [
            ("{}", None, None),
            (r#"{"pipeline": {}}"#, None, None),
            (
                r#"{"pipeline":{"stages":[{"name":"org.osbuild.noop"}]}}"#,
                Some(NOOP),
                None,
            ),
            (
                r#"{"pipeline":{"stages":[{"name":"org.osbuild.noop","options":null}]}}"#,
                Some(NOOP),
                None,
            ),
            (
                r#"{"stages":[{"name":"org.osbuild.noop", "options": {}}]}"#,
                Some(NOOP),
                None,
            ),
            (
                r#"{"stages":[{"name":"org.osbuild.noop"}],"assembler":{"name":"org.osbuild.noop"}}"#,
                Some(NOOP),
                Some("7a3f428423152989c6fbfac6c74f2a231670a195803fd804fd63b432fbbd0b9f"),
            ),
        ];
        for (text, tree, output) in cases {
            let m = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.pipeline.tree_id().map(ObjectId::as_str), tree, "{text}");
            assert_eq!(
                m.pipeline.output_id().map(ObjectId::as_str),
                output,
                "{text}"
            );
        }
    }

    #[test]
    fn a_top_level_runner_is_ignored_as_v10_did() {
        for (with, without) in [
            (
                r#"{"runner":"org.osbuild.fedora30","stages":[{"name":"org.osbuild.noop"}]}"#,
                r#"{"stages":[{"name":"org.osbuild.noop"}]}"#,
            ),
            (
                r#"{"runner":"x","pipeline":{"stages":[{"name":"org.osbuild.noop"}]}}"#,
                r#"{"pipeline":{"stages":[{"name":"org.osbuild.noop"}]}}"#,
            ),
        ] {
            let m = parse(with).unwrap_or_else(|e| panic!("{with}: {e}"));
            assert_eq!(
                m.pipeline.describe(),
                parse(without).unwrap().pipeline.describe()
            );
            assert_eq!(m.pipeline.tree_id().map(ObjectId::as_str), Some(NOOP));
        }
    }

    #[test]
    fn structural_errors_are_all_reported_with_paths() {
        let cases: [(&str, &[&str]); 9] = [
            ("[]", &["a manifest must be a JSON object, found array"]),
            (
                r#"{"pipeline": [], "extra": 1}"#,
                &[
                    "extra: unknown key 'extra' (allowed: pipeline, sources)",
                    "pipeline: expected an object, found array",
                ],
            ),
            (
                r#"{"stages": {}}"#,
                &["stages: expected an array, found object"],
            ),
            (
                r#"{"pipeline": {"stages": [{"options": 1}, {"name": 2, "x": 0}, 3]}}"#,
                &[
                    "pipeline.stages[0]: 'name' is required",
                    "pipeline.stages[0].options: expected an object, found integer",
                    "pipeline.stages[1].x: unknown key 'x' (allowed: name, options)",
                    "pipeline.stages[1].name: expected a string, found integer",
                    "pipeline.stages[2]: expected an object, found integer",
                ],
            ),
            (
                r#"{"pipeline": {"build": {"pipeline": {"stages": [{}]}}}}"#,
                &[
                    "pipeline.build: 'runner' is required",
                    "pipeline.build.pipeline.stages[0]: 'name' is required",
                ],
            ),
            (
                r#"{"pipeline": {"build": {"runner": 1, "pipeline": {}}}}"#,
                &["pipeline.build.runner: expected a string, found integer"],
            ),
            (
                r#"{"pipeline": {"assembler": {"name": "a", "options": []}}}"#,
                &["pipeline.assembler.options: expected an object, found array"],
            ),
            (
                r#"{"pipeline": {}, "sources": {"org.osbuild.files": 1}}"#,
                &["sources.org.osbuild.files: expected an object, found integer"],
            ),
            (
                r#"{"pipeline": {"build": {"runner": "r"}}}"#,
                &["pipeline.build: 'pipeline' is required"],
            ),
        ];
        for (text, want) in cases {
            match parse(text) {
                Err(ManifestError::Invalid(errors)) => {
                    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    assert_eq!(got, want, "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn json_errors_carry_line_and_column() {
        let e = parse("{\n  \"pipeline\": {,}\n}").unwrap_err();
        assert!(matches!(e, ManifestError::Json(_)));
        assert_eq!(
            e.to_string(),
            "invalid JSON: line 2, column 16: expected a property name in double quotes, found ','"
        );
    }

    #[test]
    fn describe_prints_ids_recursively() {
        let text = r#"{"pipeline":{"build":{"pipeline":{"stages":[{"name":"org.osbuild.noop"}]},"runner":"org.osbuild.fedora30"},"stages":[{"name":"org.osbuild.noop","options":{}}],"assembler":{"name":"org.osbuild.noop"}},"sources":{"org.osbuild.files":{"urls":{}}}}"#;
        let m = parse(text).unwrap();
        let want = format!(
            r#"{{"pipeline": {{"assembler": {{"id": "759dac31e596f43ec3cfa83dbd6aadd7bd9df4608913a392bf53ad89ffe73a0e", "name": "org.osbuild.noop"}}, "build": {{"pipeline": {{"stages": [{{"id": "{NOOP}", "name": "org.osbuild.noop"}}]}}, "runner": "org.osbuild.fedora30"}}, "stages": [{{"id": "4cb4309012cfae231a45f624f1ff0935449ce1f80653f9b17296479b2165f46f", "name": "org.osbuild.noop"}}]}}, "sources": {{"org.osbuild.files": {{"urls": {{}}}}}}}}"#
        );
        assert_eq!(json::dumps(&m.describe()), want);
        assert_eq!(
            json::dumps(&parse("{}").unwrap().describe()),
            r#"{"pipeline": {}}"#
        );
        let ids: Vec<&str> = m.ids().into_iter().map(ObjectId::as_str).collect();
        assert_eq!(
            ids,
            [
                NOOP,
                "4cb4309012cfae231a45f624f1ff0935449ce1f80653f9b17296479b2165f46f",
                "759dac31e596f43ec3cfa83dbd6aadd7bd9df4608913a392bf53ad89ffe73a0e"
            ]
        );
    }

    #[test]
    fn build_env_goes_innermost_and_keeps_ids() {
        let text = r#"{"pipeline":{"build":{"pipeline":{"stages":[{"name":"org.osbuild.noop","options":{"level":1}}]},"runner":"org.osbuild.linux"},"stages":[{"name":"org.osbuild.noop"}]}}"#;
        let mut m = parse(text).unwrap();
        let before: Vec<ObjectId> = m.ids().into_iter().cloned().collect();
        let env = parse_build_env(
            r#"{"pipeline": {"stages": [{"name": "org.osbuild.env"}]}, "runner": "org.osbuild.fedora30"}"#,
        )
        .unwrap();
        assert_eq!(env.runner, "org.osbuild.fedora30");
        m.prepend_build_env(env);
        let inner = m
            .pipeline
            .build
            .as_ref()
            .unwrap()
            .pipeline
            .build
            .as_ref()
            .unwrap();
        assert_eq!(inner.runner, "org.osbuild.fedora30");
        assert_eq!(inner.pipeline.stages[0].name, "org.osbuild.env");
        let after: Vec<ObjectId> = m.ids().into_iter().skip(1).cloned().collect();
        assert_eq!(after, before);

        let e = parse_build_env(r#"{"pipeline": {}, "runner": 3}"#).unwrap_err();
        assert_eq!(e.to_string(), "runner: expected a string, found integer");
        let empty = parse_build_env(r#"{"pipeline": {}, "runner": "org.osbuild.linux"}"#).unwrap();
        assert!(empty.pipeline.stages.is_empty());
        assert_eq!(empty.runner, "org.osbuild.linux");
    }
}
