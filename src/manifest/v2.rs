//! v2 manifests (osbuild HEAD's format): parsing, validation, the ids of every stage, input,
//! device and mount, and the `--inspect` description.
//!
//! A manifest is `{"version": "2", "pipelines": [...], "sources"?: {TYPE: {"items",
//! "options"?}}, "metadata"?: {...}}`. A pipeline has a `name`, an optional `build`
//! (`"name:X"`, an earlier pipeline), `runner` and `source-epoch`, and `stages` of `{type,
//! options, inputs, devices, mounts}`. The structure is checked by hand against the rules of
//! HEAD's v2 schema; with a libdir every stage, input, device, mount and source is further
//! checked against the module's own v2 schema (`schema_2` in `NAME.meta.json`, built into a
//! whole schema as HEAD builds it, see `schema`). All errors are collected with their paths.
//!
//! Ids, with `d` = Python's `json.dumps(x, sort_keys=True)` ([`json::dumps`]):
//! - stage: `d(type) ‖ d(build) ‖ d(base) ‖ d(options)`, then `d(source-epoch)` if set,
//!   `d({input name: input id})` if it has inputs, `d([mount id, ...])` if it has mounts;
//! - input: `d(type) ‖ d(origin) ‖ d({reference: options}) ‖ d(options)`, pipeline
//!   references resolved to pipeline ids;
//! - device: `d(type) ‖ [d(parent id)] ‖ d(options)`;
//! - mount: `d(type) ‖ [d(device id)] ‖ [d(partition)] ‖ [d(target)] ‖ d(options)` (partition
//!   and target only when truthy, as in Python);
//! - pipeline: its last stage's id (none without stages).

mod check;
mod schema;

use indexmap::IndexMap;
use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::ManifestError;
use crate::id::ObjectId;
use crate::json::{self, Map, Value};
use crate::modules::Index;

/// The `version` of a v2 manifest.
pub const VERSION: &str = "2";

/// A v2 manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// In manifest order; a pipeline only refers to earlier ones.
    pub pipelines: Vec<Pipeline>,
    /// `{TYPE: {"items", "options"?}}` as given.
    pub sources: Map,
    /// `{"generators"?, "exports"?}` as given.
    pub metadata: Map,
}

/// A pipeline of a v2 manifest.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    /// The id of the build pipeline; `None` runs on the host (also when the build pipeline
    /// has no stages, as in HEAD).
    pub build: Option<ObjectId>,
    /// The runner named in the manifest: HEAD uses it for the pipelines built on this one.
    pub runner: Option<String>,
    /// `SOURCE_DATE_EPOCH` for the stages (an integer, possibly beyond 64 bits).
    pub source_epoch: Option<Value>,
    pub stages: Vec<Stage>,
}

/// A stage of a v2 pipeline.
#[derive(Clone, Debug)]
pub struct Stage {
    /// The stage module (`type`).
    pub module: String,
    /// Always an object (a missing `options` is `{}`).
    pub options: Value,
    /// By input name, in the manifest's order (as HEAD hands them to the stage).
    pub inputs: IndexMap<String, Input>,
    /// Parents before the devices that use them.
    pub devices: Vec<Device>,
    /// In manifest order.
    pub mounts: Vec<Mount>,
    pub id: ObjectId,
}

/// Where an input's references point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Items of the manifest's sources (`org.osbuild.source`).
    Source,
    /// Pipelines of the manifest (`org.osbuild.pipeline`).
    Pipeline,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Source => "org.osbuild.source",
            Origin::Pipeline => "org.osbuild.pipeline",
        }
    }

    fn parse(s: &str) -> Option<Origin> {
        [Origin::Source, Origin::Pipeline]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An input of a stage.
#[derive(Clone, Debug)]
pub struct Input {
    pub module: String,
    pub origin: Origin,
    /// `(reference, options)` in manifest order, each reference once (the last options win,
    /// as in a Python dict). Pipeline references are pipeline ids (`"null"` for a pipeline
    /// without stages, as Python writes `None` as a key).
    pub references: Vec<(String, Value)>,
    pub options: Value,
    pub id: ObjectId,
}

/// A device of a stage.
#[derive(Clone, Debug)]
pub struct Device {
    pub name: String,
    pub module: String,
    /// The name of the parent device.
    pub parent: Option<String>,
    pub options: Value,
    pub id: ObjectId,
}

/// A mount of a stage.
#[derive(Clone, Debug)]
pub struct Mount {
    pub name: String,
    pub module: String,
    /// The name of the device mounted.
    pub source: Option<String>,
    pub target: Option<String>,
    /// The partition number (a JSON number, as the schema allows).
    pub partition: Option<Value>,
    pub options: Value,
    pub id: ObjectId,
}

/// Checks a v2 document (against `index` when given) and computes its ids.
pub(super) fn check(doc: &Value, index: Option<&Index>) -> Result<Manifest, ManifestError> {
    check::check(doc, index)
}

/// sha256 over `d(part)` for every part, in order.
fn hash<'a>(parts: impl IntoIterator<Item = &'a Value>) -> ObjectId {
    let mut h = Sha256::new();
    for part in parts {
        h.update(json::dumps(part));
    }
    ObjectId::from_digest(&h.finalize())
}

fn id_value(id: Option<&ObjectId>) -> Value {
    Value::from(id.map(ObjectId::as_str))
}

/// `(key, value)` pairs as a JSON object (a later duplicate wins, as in Python).
fn object_of(pairs: &[(String, Value)]) -> Value {
    Value::Object(pairs.iter().cloned().collect())
}

impl Input {
    fn compute_id(
        module: &str,
        origin: Origin,
        refs: &[(String, Value)],
        options: &Value,
    ) -> ObjectId {
        hash(&[
            Value::from(module),
            Value::from(origin.as_str()),
            object_of(refs),
            options.clone(),
        ])
    }
}

impl Device {
    fn compute_id(module: &str, parent: Option<&ObjectId>, options: &Value) -> ObjectId {
        let mut parts = vec![Value::from(module)];
        parts.extend(parent.map(|p| id_value(Some(p))));
        parts.push(options.clone());
        hash(&parts)
    }
}

impl Mount {
    fn compute_id(
        module: &str,
        device: Option<&ObjectId>,
        partition: Option<&Value>,
        target: Option<&str>,
        options: &Value,
    ) -> ObjectId {
        let mut parts = vec![Value::from(module)];
        parts.extend(device.map(|d| id_value(Some(d))));
        parts.extend(partition.filter(|p| p.is_truthy()).cloned());
        parts.extend(target.filter(|t| !t.is_empty()).map(Value::from));
        parts.push(options.clone());
        hash(&parts)
    }
}

/// What a stage's id depends on besides its own contents.
struct StageContext<'a> {
    build: Option<&'a ObjectId>,
    base: Option<&'a ObjectId>,
    source_epoch: Option<&'a Value>,
}

impl Stage {
    fn compute_id(&self, ctx: &StageContext<'_>) -> ObjectId {
        let mut parts = vec![
            Value::from(self.module.as_str()),
            id_value(ctx.build),
            id_value(ctx.base),
            self.options.clone(),
        ];
        parts.extend(ctx.source_epoch.cloned());
        if !self.inputs.is_empty() {
            let ids = self
                .inputs
                .iter()
                .map(|(name, input)| (name.clone(), Value::from(input.id.as_str())))
                .collect();
            parts.push(Value::Object(ids));
        }
        if !self.mounts.is_empty() {
            // HEAD writes this list without sort_keys; a list of strings encodes the same.
            let ids = self.mounts.iter().map(|m| Value::from(m.id.as_str()));
            parts.push(Value::Array(ids.collect()));
        }
        hash(&parts)
    }
}

impl Pipeline {
    /// The id of the tree this pipeline builds: its last stage's id.
    pub fn id(&self) -> Option<&ObjectId> {
        self.stages.last().map(|s| &s.id)
    }
}

impl Manifest {
    /// The pipeline named `name`.
    pub fn get(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// The manifest as `osbuild --inspect` prints it (HEAD's `describe(manifest,
    /// with_id=True)`): build and pipeline references as ids, every stage with its `"id"`, the
    /// runner on each pipeline other pipelines are built on (the manifest's, else
    /// `host_runner`), `metadata` and `sources` (their items only) when not empty.
    pub fn describe(&self, host_runner: Option<&str>) -> Value {
        let mut d = Map::new();
        d.insert("version".into(), Value::from(VERSION));
        let pipelines = self
            .pipelines
            .iter()
            .map(|p| p.describe(self.runner_for(p).and_then(|r| r.or(host_runner))));
        d.insert("pipelines".into(), Value::Array(pipelines.collect()));
        if !self.metadata.is_empty() {
            d.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        if !self.sources.is_empty() {
            let sources = self.sources.iter().map(|(name, source)| {
                let mut s = Map::new();
                let items = source.get("items").cloned().unwrap_or(Value::Null);
                s.insert("items".into(), items);
                (name.clone(), Value::Object(s))
            });
            d.insert("sources".into(), Value::Object(sources.collect()));
        }
        Value::Object(d)
    }

    /// The runner HEAD shows on `p`: `Some(..)` (possibly the host's, `None` inside) only when
    /// some pipeline is built on `p`'s tree; it is that of the last pipeline with `p`'s id.
    fn runner_for(&self, p: &Pipeline) -> Option<Option<&str>> {
        let id = p.id()?;
        let used: BTreeSet<&ObjectId> = self
            .pipelines
            .iter()
            .filter_map(|q| q.build.as_ref())
            .collect();
        if !used.contains(id) {
            return None;
        }
        let last = self.pipelines.iter().rev().find(|q| q.id() == Some(id))?;
        Some(last.runner.as_deref())
    }
}

impl Pipeline {
    fn describe(&self, runner: Option<&str>) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), Value::from(self.name.as_str()));
        if let Some(build) = &self.build {
            d.insert("build".into(), Value::from(build.as_str()));
        }
        if let Some(runner) = runner {
            d.insert("runner".into(), Value::from(runner));
        }
        if !self.stages.is_empty() {
            let stages = self.stages.iter().map(Stage::describe).collect();
            d.insert("stages".into(), Value::Array(stages));
        }
        Value::Object(d)
    }
}

/// Inserts `value` under `key` when truthy (Python's `if x: desc[key] = x`).
fn insert_truthy(d: &mut Map, key: &str, value: &Value) {
    if value.is_truthy() {
        d.insert(key.into(), value.clone());
    }
}

impl Stage {
    fn describe(&self) -> Value {
        let mut d = Map::new();
        d.insert("type".into(), Value::from(self.module.as_str()));
        d.insert("id".into(), Value::from(self.id.as_str()));
        insert_truthy(&mut d, "options", &self.options);
        let devices = self.devices.iter().map(|dev| {
            let mut desc = Map::new();
            desc.insert("type".into(), Value::from(dev.module.as_str()));
            insert_truthy(&mut desc, "options", &dev.options);
            (dev.name.clone(), Value::Object(desc))
        });
        insert_truthy(&mut d, "devices", &Value::Object(devices.collect()));
        let mounts = self.mounts.iter().map(Mount::describe).collect();
        insert_truthy(&mut d, "mounts", &Value::Array(mounts));
        let inputs = self
            .inputs
            .iter()
            .map(|(name, input)| (name.clone(), input.describe()));
        insert_truthy(&mut d, "inputs", &Value::Object(inputs.collect()));
        Value::Object(d)
    }
}

impl Mount {
    fn describe(&self) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), Value::from(self.name.as_str()));
        d.insert("type".into(), Value::from(self.module.as_str()));
        d.insert("target".into(), Value::from(self.target.as_deref()));
        if let Some(source) = &self.source {
            d.insert("source".into(), Value::from(source.as_str()));
        }
        insert_truthy(&mut d, "options", &self.options);
        if let Some(p) = &self.partition {
            insert_truthy(&mut d, "partition", p);
        }
        Value::Object(d)
    }
}

impl Input {
    fn describe(&self) -> Value {
        let mut d = Map::new();
        d.insert("type".into(), Value::from(self.module.as_str()));
        d.insert("origin".into(), Value::from(self.origin.as_str()));
        insert_truthy(&mut d, "options", &self.options);
        insert_truthy(&mut d, "references", &object_of(&self.references));
        Value::Object(d)
    }
}
