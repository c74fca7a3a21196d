//! One pass over a v2 document: checks its structure (the rules of HEAD's v2 schema) and, with
//! a libdir, every module entry against its schema; resolves `name:X` references, orders
//! devices parents first and computes the ids. Every error is collected with its path.

use std::collections::{BTreeSet, HashMap};

use super::{schema, Device, Input, Manifest, Mount, Origin, Pipeline, Stage, StageContext};
use crate::id::ObjectId;
use crate::json::{Map, Value};
use crate::manifest::{options_path, outcome, JsonPath, ManifestError, ValidationError};
use crate::modules::{Index, ModuleKind};

pub(super) fn check(doc: &Value, index: Option<&Index>) -> Result<Manifest, ManifestError> {
    let mut c = Checker {
        index,
        errors: Vec::new(),
        validators: HashMap::new(),
        pipelines: Vec::new(),
        source_refs: BTreeSet::new(),
    };
    let manifest = c.manifest(doc);
    outcome(manifest, c.errors)
}

struct Checker<'a> {
    index: Option<&'a Index>,
    errors: Vec<ValidationError>,
    validators: HashMap<(ModuleKind, String), Option<jsonschema::Validator>>,
    /// The pipelines loaded so far (references may only name these).
    pipelines: Vec<Pipeline>,
    /// Every item of every source, for `org.osbuild.source` references.
    source_refs: BTreeSet<String>,
}

impl Checker<'_> {
    fn error(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.clone(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, path: &JsonPath, expected: &str, found: &Value) {
        self.error(
            path,
            format!("expected {expected}, found {}", found.type_name()),
        );
    }

    /// The object at `path`, or an error; unknown keys and missing `required` ones are
    /// reported.
    fn object<'v>(
        &mut self,
        v: &'v Value,
        path: &JsonPath,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<&'v Map> {
        let Some(obj) = v.as_object() else {
            self.wrong_type(path, "an object", v);
            return None;
        };
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let message = format!("unknown key '{key}' (allowed: {})", allowed.join(", "));
            self.error(&path.key(key), message);
        }
        for key in required.iter().filter(|k| !obj.contains_key(**k)) {
            self.error(path, format!("'{key}' is required"));
        }
        Some(obj)
    }

    /// Member `key` of `obj` if it is a string (a wrong type is reported).
    fn string(&mut self, obj: &Map, path: &JsonPath, key: &str) -> Option<String> {
        match obj.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.wrong_type(&path.key(key), "a string", other);
                None
            }
        }
    }

    /// Member `key` of `obj` if it is an object, `{}` when absent; `None` on a wrong type.
    fn options(&mut self, obj: &Map, path: &JsonPath, key: &str) -> Option<Value> {
        match obj.get(key) {
            None => Some(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => {
                self.wrong_type(&path.key(key), "an object", other);
                None
            }
        }
    }

    /// Member `key` of `obj` as an array (empty when absent).
    fn array<'v>(&mut self, obj: &'v Map, path: &JsonPath, key: &str) -> &'v [Value] {
        match obj.get(key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(&path.key(key), "an array", other);
                &[]
            }
        }
    }

    /// Member `key` of `obj` as an object (empty when absent).
    fn map<'v>(&mut self, obj: &'v Map, path: &JsonPath, key: &str) -> Option<&'v Map> {
        match obj.get(key) {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.wrong_type(&path.key(key), "an object", other);
                None
            }
        }
    }

    fn manifest(&mut self, doc: &Value) -> Manifest {
        let allowed = ["version", "pipelines", "sources", "metadata"];
        let obj = self
            .object(doc, &JsonPath::root(), &allowed, &[])
            .cloned()
            .unwrap_or_default();
        let metadata = self.metadata(&obj);
        let sources = self.sources(&obj);
        for (i, p) in self
            .array(&obj, &JsonPath::root(), "pipelines")
            .iter()
            .enumerate()
        {
            if let Some(p) = self.pipeline(p, &JsonPath::root().key("pipelines").index(i)) {
                self.pipelines.push(p);
            }
        }
        Manifest {
            pipelines: std::mem::take(&mut self.pipelines),
            sources,
            metadata,
        }
    }

    fn metadata(&mut self, obj: &Map) -> Map {
        let Some(v) = obj.get("metadata") else {
            return Map::new();
        };
        let Some(meta) = self.object(
            v,
            &JsonPath::root().key("metadata"),
            &["exports", "generators"],
            &[],
        ) else {
            return Map::new();
        };
        let lists = [
            ("exports", &["name"][..]),
            ("generators", &["name", "version"][..]),
        ];
        for (list, keys) in lists {
            let path = JsonPath::root().key("metadata").key(list);
            for (i, item) in self
                .array(meta, &JsonPath::root().key("metadata"), list)
                .iter()
                .enumerate()
            {
                let item_path = path.index(i);
                if let Some(entry) = self.object(item, &item_path, keys, &["name"]) {
                    for key in keys {
                        self.string(entry, &item_path, key);
                    }
                }
            }
        }
        meta.clone()
    }

    fn sources(&mut self, obj: &Map) -> Map {
        let Some(sources) = self.map(obj, &JsonPath::root(), "sources") else {
            return Map::new();
        };
        for (name, source) in sources {
            let path = JsonPath::root().key("sources").key(name);
            self.check_module(ModuleKind::Source, name, source, &path, "");
            let Some(s) = self.object(source, &path, &["items", "options"], &["items"]) else {
                continue;
            };
            self.options(s, &path, "options");
            if let Some(items) = s.get("items") {
                let refs = self.references(items, &path.key("items"));
                self.source_refs.extend(refs.into_iter().map(|(r, _)| r));
            }
        }
        sources.clone()
    }

    fn pipeline(&mut self, v: &Value, path: &JsonPath) -> Option<Pipeline> {
        let allowed = ["name", "build", "runner", "source-epoch", "stages"];
        let obj = self.object(v, path, &allowed, &["name"])?;
        let name = self.string(obj, path, "name");
        if let Some(n) = &name {
            if self.pipelines.iter().any(|p| &p.name == n) {
                self.error(
                    &path.key("name"),
                    format!("a pipeline named '{n}' comes earlier"),
                );
            }
        }
        let build = self.build(obj, path);
        let runner = self.string(obj, path, "runner");
        if let (Some(r), Some(index)) = (&runner, self.index) {
            if let Err(e) = index.resolve_runner(r) {
                self.error(&path.key("runner"), e.to_string());
            }
        }
        let source_epoch = match obj.get("source-epoch") {
            None => None,
            Some(v @ Value::Int(_)) => Some(v.clone()),
            Some(other) => {
                self.wrong_type(&path.key("source-epoch"), "an integer", other);
                None
            }
        };
        let stages = self.stages(obj, path, build.as_ref(), source_epoch.as_ref());
        Some(Pipeline {
            name: name?,
            build,
            runner,
            source_epoch,
            stages,
        })
    }

    /// The build pipeline's id (`None` for none, one without stages, or an error).
    fn build(&mut self, obj: &Map, path: &JsonPath) -> Option<ObjectId> {
        let build = self.string(obj, path, "build").filter(|b| !b.is_empty())?;
        let found = self.pipeline_id(&build);
        if found.is_none() {
            self.error(&path.key("build"), unknown_pipeline(&build));
        }
        found.flatten()
    }

    /// The id of the earlier pipeline `reference` names (`name:X`, or its id).
    fn pipeline_id(&self, reference: &str) -> Option<Option<ObjectId>> {
        let by_name = |p: &&Pipeline| Some(p.name.as_str()) == reference.strip_prefix("name:");
        let by_id = |p: &&Pipeline| p.id().map(ObjectId::as_str) == Some(reference);
        let found = match reference.starts_with("name:") {
            true => self.pipelines.iter().find(by_name),
            false => self.pipelines.iter().find(by_id),
        };
        found.map(|p| p.id().cloned())
    }

    /// The stages that could be read (any other is reported).
    fn stages(
        &mut self,
        obj: &Map,
        path: &JsonPath,
        build: Option<&ObjectId>,
        source_epoch: Option<&Value>,
    ) -> Vec<Stage> {
        let mut stages: Vec<Stage> = Vec::new();
        for (i, item) in self.array(obj, path, "stages").iter().enumerate() {
            let ctx = StageContext {
                build,
                base: stages.last().map(|s| &s.id),
                source_epoch,
            };
            let stage_path = path.key("stages").index(i);
            if let Some(stage) = self.stage(item, &stage_path, &ctx) {
                stages.push(stage);
            }
        }
        stages
    }

    fn stage(&mut self, v: &Value, path: &JsonPath, ctx: &StageContext<'_>) -> Option<Stage> {
        let allowed = ["type", "options", "inputs", "devices", "mounts"];
        let obj = self.object(v, path, &allowed, &["type"])?;
        let module = self.string(obj, path, "type");
        if let Some(m) = &module {
            self.check_module(ModuleKind::Stage, m, v, path, "type");
        }
        let options = self.options(obj, path, "options");
        let devices = self.devices(obj, path);
        let inputs = self.inputs(obj, path);
        let mounts = self.mounts(obj, path, devices.as_deref());
        let mut stage = Stage {
            module: module?,
            options: options?,
            inputs: inputs?,
            devices: devices?,
            mounts: mounts?,
            id: ObjectId::from_digest(&[]),
        };
        stage.id = stage.compute_id(ctx);
        Some(stage)
    }

    /// Checks `value` (the entry of module `name` at `path`) against the module's v2 schema;
    /// an unknown module is reported at `path` + `type_key`.
    fn check_module(
        &mut self,
        kind: ModuleKind,
        name: &str,
        value: &Value,
        path: &JsonPath,
        type_key: &str,
    ) {
        let Some(index) = self.index else {
            return;
        };
        let key = (kind, name.to_owned());
        if !self.validators.contains_key(&key) {
            let validator = self.validator(index, kind, name, path, type_key);
            self.validators.insert(key.clone(), validator);
        }
        let Some(Some(validator)) = self.validators.get(&key) else {
            return;
        };
        let instance = value.to_schema_instance();
        let found: Vec<ValidationError> = validator
            .iter_errors(&instance)
            .map(|e| ValidationError {
                path: options_path(path, value, &e.instance_path),
                message: e.to_string(),
            })
            .collect();
        self.errors.extend(found);
    }

    fn validator(
        &mut self,
        index: &Index,
        kind: ModuleKind,
        name: &str,
        path: &JsonPath,
        type_key: &str,
    ) -> Option<jsonschema::Validator> {
        if !index.knows(kind, name) {
            let dir = index.libdir().join(kind.dir_name());
            let message = format!("unknown {kind} '{name}' (not in {})", dir.display());
            let at = match type_key {
                "" => path.to_owned(),
                key => path.key(key),
            };
            self.error(&at, message);
            return None;
        }
        let built = index
            .meta(kind, name)
            .map_err(|e| e.to_string())
            .and_then(|meta| schema::for_module(kind, name, &meta))
            .and_then(|s| {
                crate::modules::options_validator(&s)
                    .map_err(|e| format!("the {kind}'s v2 schema is invalid: {e}"))
            });
        match built {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }
}

fn unknown_pipeline(reference: &str) -> String {
    format!("unknown pipeline '{reference}' (expected name:PIPELINE naming an earlier pipeline, or its id)")
}

/// Inserts as a Python dict does: a new key at the end, a known one keeps its place.
fn put(pairs: &mut Vec<(String, Value)>, key: String, value: Value) {
    match pairs.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => pairs.push((key, value)),
    }
}

/// `options or {}`.
fn or_empty(v: &Value) -> Value {
    if v.is_truthy() {
        v.clone()
    } else {
        Value::Object(Map::new())
    }
}

impl Checker<'_> {
    /// References or source items: `{ref: options}`, `[ref, ...]` or `[{"id", "options"?}]`.
    fn references(&mut self, v: &Value, path: &JsonPath) -> Vec<(String, Value)> {
        let mut refs = Vec::new();
        match v {
            Value::Object(m) => {
                for (r, opts) in m {
                    put(&mut refs, r.clone(), or_empty(opts));
                }
            }
            Value::Array(items) if items.iter().all(|i| i.as_str().is_some()) && !items.is_empty() => {
                for r in items.iter().filter_map(Value::as_str) {
                    put(&mut refs, r.to_owned(), Value::Object(Map::new()));
                }
            }
            Value::Array(items) if items.iter().all(|i| i.as_object().is_some()) && !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = path.index(i);
                    let Some(obj) = self.object(item, &item_path, &["id", "options"], &["id"]) else {
                        continue;
                    };
                    let id = self.string(obj, &item_path, "id");
                    let opts = self.options(obj, &item_path, "options");
                    if let (Some(id), Some(opts)) = (id, opts) {
                        put(&mut refs, id, or_empty(&opts));
                    }
                }
            }
            other => self.error(
                path,
                format!(
                    "expected an object, a non-empty array of strings or a non-empty array of {{\"id\", \"options\"}} objects, found {}",
                    other.type_name()
                ),
            ),
        }
        refs
    }

    fn inputs(&mut self, obj: &Map, path: &JsonPath) -> Option<indexmap::IndexMap<String, Input>> {
        let mut inputs = indexmap::IndexMap::new();
        let Some(map) = self.map(obj, path, "inputs") else {
            return obj.get("inputs").is_none().then_some(inputs);
        };
        let mut ok = true;
        for (name, v) in map {
            let input_path = path.key("inputs").key(name);
            if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                self.error(&input_path, "an input name must start with a letter");
                ok = false;
            }
            match self.input(v, &input_path) {
                Some(input) => {
                    inputs.insert(name.clone(), input);
                }
                None => ok = false,
            }
        }
        ok.then_some(inputs)
    }

    fn input(&mut self, v: &Value, path: &JsonPath) -> Option<Input> {
        let allowed = ["type", "origin", "references", "options"];
        let required = ["type", "origin", "references"];
        let obj = self.object(v, path, &allowed, &required)?;
        let module = self.string(obj, path, "type");
        if let Some(m) = &module {
            self.check_module(ModuleKind::Input, m, v, path, "type");
        }
        let origin = match self.string(obj, path, "origin") {
            Some(o) => Origin::parse(&o).or_else(|| {
                let message = format!(
                    "unknown origin '{o}' (allowed: org.osbuild.source, org.osbuild.pipeline)"
                );
                self.error(&path.key("origin"), message);
                None
            }),
            None => None,
        };
        let options = self.options(obj, path, "options");
        let refs_path = path.key("references");
        let refs = obj
            .get("references")
            .map(|r| self.references(r, &refs_path));
        let references = self.resolve(origin?, refs?, &refs_path)?;
        let (module, options) = (module?, or_empty(&options?));
        Some(Input {
            id: Input::compute_id(&module, origin?, &references, &options),
            module,
            origin: origin?,
            references,
            options,
        })
    }

    /// Pipeline references become pipeline ids (HEAD ignores those not starting with
    /// `name:`); source references must be items of the manifest's sources.
    fn resolve(
        &mut self,
        origin: Origin,
        refs: Vec<(String, Value)>,
        path: &JsonPath,
    ) -> Option<Vec<(String, Value)>> {
        let mut resolved = Vec::new();
        let mut ok = true;
        for (r, opts) in refs {
            match origin {
                Origin::Source if !self.source_refs.contains(&r) => {
                    self.error(
                        path,
                        format!("unknown source reference '{r}' (not an item of any source)"),
                    );
                    ok = false;
                }
                Origin::Source => put(&mut resolved, r, opts),
                Origin::Pipeline if !r.starts_with("name:") => {}
                Origin::Pipeline => match self.pipeline_id(&r) {
                    Some(id) => {
                        let key = id.map_or_else(|| "null".to_owned(), |i| i.as_str().to_owned());
                        put(&mut resolved, key, opts);
                    }
                    None => {
                        self.error(path, unknown_pipeline(&r));
                        ok = false;
                    }
                },
            }
        }
        ok.then_some(resolved)
    }

    /// The devices, parents before their children (HEAD's `sort_devices`).
    fn devices(&mut self, obj: &Map, path: &JsonPath) -> Option<Vec<Device>> {
        let Some(map) = self.map(obj, path, "devices") else {
            return obj.get("devices").is_none().then_some(Vec::new());
        };
        let devices_path = path.key("devices");
        let mut todo: Vec<(String, String, Option<String>, Value)> = Vec::new();
        let mut ok = true;
        for (name, v) in map {
            let dev_path = devices_path.key(name);
            match self.device(v, &dev_path) {
                Some((module, parent, options)) => {
                    todo.push((name.clone(), module, parent, options))
                }
                None => ok = false,
            }
        }
        for (name, _, parent, _) in &todo {
            if let Some(p) = parent.as_ref().filter(|p| !map.contains_key(*p)) {
                self.error(
                    &devices_path.key(name),
                    format!("missing parent device '{p}' for '{name}'"),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let mut sorted: Vec<Device> = Vec::new();
        while !todo.is_empty() {
            let before = todo.len();
            todo.retain(|(name, module, parent, options)| {
                let parent_id = match parent {
                    None => None,
                    Some(p) => match sorted.iter().find(|d| &d.name == p) {
                        Some(d) => Some(d.id.clone()),
                        None => return true,
                    },
                };
                sorted.push(Device {
                    id: Device::compute_id(module, parent_id.as_ref(), options),
                    name: name.clone(),
                    module: module.clone(),
                    parent: parent.clone(),
                    options: options.clone(),
                });
                false
            });
            if todo.len() == before {
                self.error(&devices_path, "the devices' parents form a cycle");
                return None;
            }
        }
        Some(sorted)
    }

    /// A device's module, parent (a non-empty name) and options.
    fn device(&mut self, v: &Value, path: &JsonPath) -> Option<(String, Option<String>, Value)> {
        let obj = self.object(v, path, &["type", "parent", "options"], &["type"])?;
        let module = self.string(obj, path, "type");
        if let Some(m) = &module {
            self.check_module(ModuleKind::Device, m, v, path, "type");
        }
        let parent = self.string(obj, path, "parent");
        let bad_parent = obj.contains_key("parent") && parent.is_none();
        let options = self.options(obj, path, "options");
        if bad_parent {
            return None;
        }
        Some((
            module?,
            parent.filter(|p| !p.is_empty()),
            or_empty(&options?),
        ))
    }

    fn mounts(
        &mut self,
        obj: &Map,
        path: &JsonPath,
        devices: Option<&[Device]>,
    ) -> Option<Vec<Mount>> {
        let mut mounts: Vec<Mount> = Vec::new();
        let mut ok = obj.get("mounts").is_none_or(|m| m.as_array().is_some());
        for (i, v) in self.array(obj, path, "mounts").iter().enumerate() {
            let mount_path = path.key("mounts").index(i);
            match self.mount(v, &mount_path, devices) {
                Some(m) if mounts.iter().any(|o| o.name == m.name) => {
                    self.error(
                        &mount_path.key("name"),
                        format!("duplicated mount '{}'", m.name),
                    );
                    ok = false;
                }
                Some(m) => mounts.push(m),
                None => ok = false,
            }
        }
        ok.then_some(mounts)
    }

    fn mount(&mut self, v: &Value, path: &JsonPath, devices: Option<&[Device]>) -> Option<Mount> {
        let allowed = ["name", "type", "source", "target", "partition", "options"];
        let obj = self.object(v, path, &allowed, &["name", "type"])?;
        let module = self.string(obj, path, "type");
        if let Some(m) = &module {
            self.check_module(ModuleKind::Mount, m, v, path, "type");
        }
        let name = self.string(obj, path, "name");
        let source = self.string(obj, path, "source").filter(|s| !s.is_empty());
        let target = self.string(obj, path, "target");
        let partition = match obj.get("partition") {
            None => Some(None),
            Some(v @ (Value::Int(_) | Value::Float(_))) => Some(Some(v.clone())),
            Some(other) => {
                self.wrong_type(&path.key("partition"), "a number", other);
                None
            }
        };
        let options = self.options(obj, path, "options");
        let device = match &source {
            None => None,
            // The devices were wrong (and reported): nothing to look up.
            Some(_) if devices.is_none() => return None,
            Some(s) => match devices.unwrap_or_default().iter().find(|d| &d.name == s) {
                Some(d) => Some(d.id.clone()),
                None => {
                    let n = name.as_deref().unwrap_or_default();
                    self.error(
                        &path.key("source"),
                        format!("unknown device '{s}' for mount '{n}'"),
                    );
                    return None;
                }
            },
        };
        let (module, partition, options) = (module?, partition?, options?);
        Some(Mount {
            id: Mount::compute_id(
                &module,
                device.as_ref(),
                partition.as_ref(),
                target.as_deref(),
                &options,
            ),
            name: name?,
            module,
            source,
            target,
            partition,
            options,
        })
    }
}
