//! Building a v2 manifest as osbuild HEAD does.
//!
//! - Only what the exports need is built: the exported pipelines, their build pipelines and
//!   the pipelines their stages take as inputs, skipping every pipeline whose tree the store
//!   has (HEAD's `Manifest.depsolve`), in dependency order.
//! - A pipeline resumes after its last stage the store has; a pipeline with a `build` runs its
//!   stages in that pipeline's tree (with the runner named there), else on the host.
//! - A module whose meta has `schema_2` (or a Python module of HEAD's layout) is run with
//!   HEAD's protocol: arguments file, inputs at `/run/osbuild/inputs`, metadata file,
//!   exceptions on the API socket. Other modules get v10's protocol with the stage's options.
//! - Inputs are served natively: `org.osbuild.tree` (a pipeline's tree, read-only),
//!   `org.osbuild.files` (downloaded files, or files of a pipeline's tree), `org.osbuild.noop`.
//! - Trees are committed after checkpointed stages and at the end of every pipeline (so a
//!   rebuild of the same manifest runs nothing, and other pipelines can use the tree).
//! - The first failing stage stops the build; nothing is committed for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{BuildEnv, BuildError, Builder, Position, Root};
use crate::buildroot::{BuildRoot, BuildRootError, ModuleRun, Protocol, INPUTS_DIR, TREE_DIR};
use crate::events::{Event, Monitor};
use crate::hostsvc::StageServices;
use crate::id::ObjectId;
use crate::json::{self, Map, Value};
use crate::manifest::v2::{Input, Manifest, Origin, Pipeline, Stage};
use crate::modules::ModuleKind;
use crate::sources::{SourceError, Sources};
use crate::store::{Object, ObjectKind, ReadGuard, Store};

/// The most metadata a stage may report (HEAD's rpm stage lists every package: ~1 MiB for
/// a large image).
const MAX_METADATA_BYTES: u64 = 4 * 1024 * 1024;

/// A v2 manifest to build, with what the caller wants of it.
pub struct V2Request {
    pub manifest: Manifest,
    /// Pipelines (names or ids) to build; nothing else is built.
    pub exports: Vec<String>,
    /// Stage ids after which the tree is committed ([`mark_checkpoints`]).
    pub checkpoints: BTreeSet<ObjectId>,
    /// The caller is not root: sources read no host files for it (see `sources`).
    pub unprivileged_caller: bool,
    /// How long one stage may run before it is killed and fails (HEAD's `--stage-timeout`).
    pub stage_timeout: Option<std::time::Duration>,
}

/// Why a v2 request is refused before anything is built.
#[derive(Debug, thiserror::Error)]
pub enum V2RequestError {
    #[error("export {name} is not a pipeline of the manifest (pipelines: {available})")]
    UnknownExport { name: String, available: String },
    #[error("no checkpoint matches the patterns {0:?}")]
    NoCheckpoint(Vec<String>),
}

/// Stage ids of the pipelines (their last stage), stages and stage types that match one of the
/// `fnmatch` patterns (HEAD's `mark_checkpoints`); an error when nothing matches.
pub fn mark_checkpoints(
    manifest: &Manifest,
    patterns: &[String],
) -> Result<BTreeSet<ObjectId>, V2RequestError> {
    let matching = |s: &str| patterns.iter().any(|p| fnmatch(p, s));
    let mut marked = BTreeSet::new();
    for pipeline in &manifest.pipelines {
        if let Some(last) = pipeline.id().filter(|_| matching(&pipeline.name)) {
            marked.insert(last.clone());
        }
        for stage in &pipeline.stages {
            if matching(stage.id.as_str()) || matching(&stage.module) {
                marked.insert(stage.id.clone());
            }
        }
    }
    if marked.is_empty() && !patterns.is_empty() {
        return Err(V2RequestError::NoCheckpoint(patterns.to_vec()));
    }
    Ok(marked)
}

impl V2Request {
    /// Checks that every export names a pipeline.
    pub fn new(
        manifest: Manifest,
        exports: Vec<String>,
        checkpoints: &[String],
    ) -> Result<Self, V2RequestError> {
        if let Some(name) = exports.iter().find(|e| find(&manifest, e).is_none()) {
            let names: Vec<&str> = manifest.pipelines.iter().map(|p| p.name.as_str()).collect();
            return Err(V2RequestError::UnknownExport {
                name: name.clone(),
                available: names.join(", "),
            });
        }
        let checkpoints = mark_checkpoints(&manifest, checkpoints)?;
        Ok(Self {
            manifest,
            exports,
            checkpoints,
            unprivileged_caller: false,
            stage_timeout: None,
        })
    }
}

impl V2Request {
    /// The exported pipelines.
    fn targets(&self) -> Vec<&Pipeline> {
        let exports = self.exports.iter();
        exports.filter_map(|e| find(&self.manifest, e)).collect()
    }

    /// How many pipelines a build of this request runs stages in, for progress displays.
    pub fn pipelines_to_build(&self, store: &Store) -> usize {
        depsolve(store, &self.manifest, &self.targets()).len()
    }
}

/// The pipelines to build for `targets`, dependencies first (HEAD's `depsolve`): pipelines
/// whose tree the store has are skipped, and so are the inputs of stages it has.
fn depsolve<'m>(
    store: &Store,
    manifest: &'m Manifest,
    targets: &[&'m Pipeline],
) -> Vec<&'m Pipeline> {
    let mut check: Vec<&Pipeline> = targets.to_vec();
    let mut order: Vec<&Pipeline> = Vec::new();
    while let Some(p) = check.pop() {
        let Some(id) = p.id() else { continue };
        if store.contains(id) {
            continue;
        }
        order.retain(|q| q.id() != Some(id));
        order.push(p);
        if let Some(build) = p.build.as_ref().and_then(|b| find(manifest, b.as_str())) {
            check.push(build);
        }
        for stage in p.stages.iter().rev() {
            if store.contains(&stage.id) {
                break;
            }
            let refs = stage
                .inputs
                .values()
                .filter(|i| i.origin == Origin::Pipeline);
            let ids = refs.flat_map(|i| i.references.iter().map(|(r, _)| r.as_str()));
            check.extend(ids.filter_map(|id| find(manifest, id)));
        }
    }
    order.reverse();
    order
}

/// The pipeline named `name_or_id`, or the last one with that id.
pub fn find<'m>(manifest: &'m Manifest, name_or_id: &str) -> Option<&'m Pipeline> {
    manifest.get(name_or_id).or_else(|| {
        let by_id = |p: &&Pipeline| p.id().is_some_and(|id| id.as_str() == name_or_id);
        manifest.pipelines.iter().rev().find(by_id)
    })
}

/// One stage's entry in the result's log.
#[derive(Debug, Clone)]
pub struct StageLog {
    pub id: ObjectId,
    pub module: String,
    pub output: String,
    pub success: bool,
    /// HEAD's `{"type": "exception", "data": {"type", "value", "traceback"}}` of a module
    /// that reported one.
    pub error: Option<Value>,
}

/// What a v2 build did.
#[derive(Debug, Default)]
pub struct V2Result {
    pub success: bool,
    /// The pipelines that ran stages, in build order: name and the stages' logs.
    pub log: Vec<(String, Vec<StageLog>)>,
    /// Pipeline name -> stage type -> the metadata the stage wrote.
    pub metadata: Map,
    /// The source (type) that could not fetch what the manifest names, and why; no stage ran.
    pub source_error: Option<(String, String)>,
}

impl V2Result {
    /// The failed stage (the last stage logged) of a failed build.
    pub fn failed_stage(&self) -> Option<&StageLog> {
        self.log
            .last()
            .and_then(|(_, l)| l.last())
            .filter(|s| !s.success)
    }

    /// HEAD's `--json` result (`formats/v2.output`).
    pub fn to_json(&self) -> Value {
        let mut r = Map::new();
        if let Some((source, output)) = &self.source_error {
            let details = Map::from_iter([(
                "source".to_owned(),
                Value::Object(Map::from_iter([
                    ("type".to_owned(), source.as_str().into()),
                    ("output".to_owned(), output.as_str().into()),
                ])),
            )]);
            r.insert("type".into(), "error".into());
            r.insert("success".into(), false.into());
            let error = Map::from_iter([
                ("type".to_owned(), "org.osbuild.error.source".into()),
                ("details".to_owned(), Value::Object(details)),
            ]);
            r.insert("error".into(), Value::Object(error));
            let sources = Map::from_iter([("success".to_owned(), false.into())]);
            r.insert("sources".into(), Value::Object(sources));
            r.insert("log".into(), Value::Object(Map::new()));
            return Value::Object(r);
        }
        match self.failed_stage().filter(|_| !self.success) {
            None => {
                r.insert("type".into(), "result".into());
                r.insert("success".into(), true.into());
                r.insert("metadata".into(), Value::Object(self.metadata.clone()));
            }
            Some(failed) => {
                let mut stage = Map::new();
                stage.insert("id".into(), failed.id.as_str().into());
                stage.insert("type".into(), failed.module.as_str().into());
                stage.insert("output".into(), failed.output.as_str().into());
                stage.insert("error".into(), failed.error.clone().unwrap_or(Value::Null));
                let details = Map::from_iter([("stage".to_owned(), Value::Object(stage))]);
                let error = Map::from_iter([
                    ("type".to_owned(), "org.osbuild.error.stage".into()),
                    ("details".to_owned(), Value::Object(details)),
                ]);
                r.insert("type".into(), "error".into());
                r.insert("success".into(), false.into());
                r.insert("error".into(), Value::Object(error));
            }
        }
        let sources = Map::from_iter([("success".to_owned(), true.into())]);
        r.insert("sources".into(), Value::Object(sources));
        let log = self
            .log
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(name, stages)| {
                let entries = stages.iter().map(StageLog::to_json).collect();
                (name.clone(), Value::Array(entries))
            });
        r.insert("log".into(), Value::Object(log.collect()));
        Value::Object(r)
    }
}

impl StageLog {
    fn to_json(&self) -> Value {
        let mut d = Map::new();
        d.insert("id".into(), self.id.as_str().into());
        d.insert("type".into(), self.module.as_str().into());
        d.insert("output".into(), self.output.as_str().into());
        if !self.success {
            d.insert("success".into(), false.into());
            if let Some(e) = &self.error {
                d.insert("error".into(), e.clone());
            }
        }
        Value::Object(d)
    }
}

impl Builder<'_> {
    /// Builds what `request` exports. `Ok` with `success: false` when a stage failed.
    pub fn build_v2(
        &self,
        request: &V2Request,
        monitor: &mut dyn Monitor,
    ) -> Result<V2Result, BuildError> {
        let manifest = &request.manifest;
        let targets = request.targets();
        // Everything the sources name is fetched before any stage (HEAD's Manifest.download).
        let sources = Sources::for_v2(self.index, self.store, &manifest.sources, None)
            .map_err(super::source_error)?
            .for_unprivileged_caller(request.unprivileged_caller);
        match sources.fetch_all(self.store, &self.cancel, monitor) {
            Ok(()) => {}
            Err(SourceError::Failed { name, message }) => {
                return Ok(V2Result {
                    source_error: Some((name, message)),
                    ..V2Result::default()
                })
            }
            Err(e) => return Err(super::source_error(e)),
        }
        let mut run = V2Run {
            b: self,
            request,
            monitor,
            result: V2Result {
                success: true,
                ..V2Result::default()
            },
        };
        for pipeline in depsolve(self.store, manifest, &targets) {
            if !run.build_pipeline(pipeline)? {
                run.result.success = false;
                break;
            }
        }
        if run.result.success {
            run.collect_metadata();
        }
        Ok(run.result)
    }

    /// Copies the tree of the (built) pipeline `name_or_id` to `dir` (as `cp -a`).
    pub fn export_v2(
        &self,
        request: &V2Request,
        name_or_id: &str,
        dir: &Path,
    ) -> Result<(), BuildError> {
        let id = find(&request.manifest, name_or_id).and_then(Pipeline::id);
        let object = self.store.new_object(id)?;
        let guard = object.read()?;
        Ok(crate::store::copy_tree(guard.path(), dir)?)
    }
}

struct V2Run<'a, 'm> {
    b: &'a Builder<'a>,
    request: &'a V2Request,
    monitor: &'m mut dyn Monitor,
    result: V2Result,
}

impl<'a> V2Run<'a, '_> {
    fn manifest(&self) -> &'a Manifest {
        &self.request.manifest
    }

    /// The runner for the stages of `p`: the one named on its build pipeline, else the host's.
    fn runner_for(&self, p: &Pipeline) -> Result<String, BuildError> {
        let index = self.b.index;
        let named = p.build.as_ref().and_then(|b| {
            let last = self.manifest().pipelines.iter().rev();
            last.filter(|q| q.id() == Some(b))
                .find_map(|q| q.runner.as_deref())
        });
        Ok(match named {
            Some(runner) => index.resolve_runner(runner)?,
            None => index.host_runner()?,
        })
    }

    /// Builds one pipeline's tree and commits it; false when a stage failed.
    fn build_pipeline(&mut self, p: &'a Pipeline) -> Result<bool, BuildError> {
        let store = self.b.store;
        let runner = self.runner_for(p)?;
        let build_tree = p
            .build
            .as_ref()
            .map(|b| store.new_object(Some(b)))
            .transpose()?;
        let mut root = Root::Pending(build_tree);
        let resume = p.stages.iter().rposition(|s| store.contains(&s.id));
        let tree = store.new_object(resume.map(|i| &p.stages[i].id))?;
        let first = resume.map_or(0, |i| i + 1);
        self.result.log.push((p.name.clone(), Vec::new()));
        self.monitor.event(Event::PipelineStarted {
            name: &p.name,
            id: p.id(),
            stages: p.stages.len(),
        });
        let ok = self.run_stages(p, &mut root, &tree, &runner, first)?;
        self.monitor.event(Event::PipelineFinished {
            name: &p.name,
            success: ok,
        });
        Ok(ok)
    }

    /// Runs the stages of `p` from `first` on, committing checkpoints and the last tree.
    fn run_stages(
        &mut self,
        p: &'a Pipeline,
        root: &mut Root,
        tree: &Object,
        runner: &str,
        first: usize,
    ) -> Result<bool, BuildError> {
        let store = self.b.store;
        let env = root.env(self.b, runner)?;
        for (index, stage) in p.stages.iter().enumerate().skip(first) {
            let at = Position {
                depth: 0,
                index,
                total: p.stages.len(),
            };
            let log = self.run_stage(p, stage, env, tree, runner, at)?;
            let ok = log.success;
            if let Some((_, logs)) = self.result.log.last_mut() {
                logs.push(log);
            }
            if !ok {
                return Ok(false);
            }
            let last = index + 1 == p.stages.len();
            let checkpoint = self.request.checkpoints.contains(&stage.id);
            if last || checkpoint || self.b.commit.also_commit(&stage.id) {
                if let Some(epoch) = epoch_of(p) {
                    tree.clamp_times(epoch)?;
                }
                store.commit(tree, &stage.id, ObjectKind::Tree)?;
            }
        }
        Ok(true)
    }

    fn run_stage(
        &mut self,
        p: &Pipeline,
        stage: &Stage,
        env: &BuildEnv,
        tree: &Object,
        runner: &str,
        at: Position,
    ) -> Result<StageLog, BuildError> {
        let (b, kind) = (self.b, ModuleKind::Stage);
        if b.index.path(kind, &stage.module).is_none() {
            return Err(BuildError::MissingModule {
                kind,
                name: stage.module.clone(),
                libdir: b.index.libdir().to_owned(),
            });
        }
        let head = b.index.speaks_head(kind, &stage.module);
        let dir = env.shared.module_dir()?;
        // Objects first, then the guards that borrow them, dropped in reverse.
        let input_objects = self.input_objects(stage)?;
        let mut input_guards = Vec::new();
        let inputs = self.map_inputs(stage, dir.path(), &input_objects, &mut input_guards)?;
        let binds: Vec<(String, PathBuf)> = inputs
            .iter()
            .map(|m| (m.name.clone(), m.host.clone()))
            .collect();
        let v10_args = osbuild_protocol::args::StageArgs::in_sandbox(&stage.options).to_json();

        let build_guard = env.tree.as_ref().map(Object::read).transpose()?;
        let tree_guard = tree.write()?;
        // Devices and mounts live until the sandbox is gone, and go before the tree's guard.
        let mounts_root = ModuleRun::mounts_dir(dir.path());
        std::fs::create_dir(&mounts_root)
            .map_err(|e| BuildError::Input(format!("creating {}: {e}", mounts_root.display())))?;
        let services =
            StageServices::open(stage, tree_guard.path(), env.shared.dev_dir(), &mounts_root)
                .map_err(|e| BuildError::Input(format!("stage {}: {e}", stage.module)))?;
        let arguments = json::dumps_in_order(&arguments(p, stage, &inputs, services.arguments()));
        let plan = ModuleRun {
            kind,
            module: &stage.module,
            libdir: b.index.libdir(),
            runner,
            root: build_guard.as_ref().map_or(Path::new("/"), |g| g.path()),
            root_is_build_tree: build_guard.is_some(),
            tree: tree_guard.path(),
            output: None,
            network: b.index.meta(kind, &stage.module).is_ok_and(|m| m.network),
            shared: &env.shared,
            source_epoch: epoch_of(p),
            capabilities: b.index.capabilities(kind, &stage.module)?,
            protocol: if head {
                Protocol::Head {
                    arguments: &arguments,
                    inputs: &binds,
                }
            } else {
                Protocol::V10
            },
            timeout: self.request.stage_timeout,
        };
        let sandbox = plan.prepare(&dir)?;
        let started = Instant::now();
        let run = self.run_sandbox(stage, &sandbox, &v10_args, at)?;
        // What a successful stage wrote must reach its devices (a flush, a staged FAT written
        // back); after a failure, the stage's own error is the one to report.
        if run.success() {
            services
                .release()
                .map_err(|e| BuildError::Input(format!("stage {}: {e}", stage.module)))?;
        }
        self.finish_stage(stage, run, &dir.path().join("meta"), started)
    }

    /// What a stage's run leaves: its metadata kept, the monitor told, its log entry.
    fn finish_stage(
        &mut self,
        stage: &Stage,
        run: crate::buildroot::RunResult,
        meta_file: &Path,
        started: Instant,
    ) -> Result<StageLog, BuildError> {
        let metadata = if run.success() {
            self.keep_metadata(stage, meta_file)?
        } else {
            tracing::warn!(module = %stage.module, id = %stage.id, "stage {} failed: {}", stage.module, run.describe_status());
            None
        };
        let error = run.exception.clone().map(|data| {
            Value::Object(Map::from_iter([
                ("type".to_owned(), "exception".into()),
                ("data".to_owned(), data),
            ]))
        });
        self.monitor.event(Event::ModuleFinished {
            kind: ModuleKind::Stage,
            name: &stage.module,
            id: &stage.id,
            success: run.success(),
            seconds: started.elapsed().as_secs_f64(),
            error: error.as_ref(),
            metadata: metadata.as_ref(),
        });
        Ok(StageLog {
            id: stage.id.clone(),
            module: stage.module.clone(),
            output: run.output,
            success: run.status.success(),
            error,
        })
    }

    /// Runs a prepared sandbox, telling the monitor that the stage starts and what it prints.
    fn run_sandbox(
        &mut self,
        stage: &Stage,
        sandbox: &crate::buildroot::Sandbox,
        v10_args: &str,
        at: Position,
    ) -> Result<crate::buildroot::RunResult, BuildError> {
        let kind = ModuleKind::Stage;
        self.monitor.event(Event::ModuleStarted {
            kind,
            name: &stage.module,
            id: &stage.id,
            options: &stage.options,
            depth: at.depth,
            index: at.index,
            total: at.total,
        });
        let monitor = &mut *self.monitor;
        let run = BuildRoot::run(sandbox, v10_args, &self.b.cancel, &mut |line| {
            monitor.event(Event::Output { line })
        });
        match run {
            Err(BuildRootError::Cancelled) => Err(BuildError::Cancelled),
            other => Ok(other?),
        }
    }

    /// Keeps what a stage wrote to its metadata file in the store (a JSON object; anything
    /// else is ignored with a warning, as it is no metadata).
    fn keep_metadata(&self, stage: &Stage, file: &Path) -> Result<Option<Value>, BuildError> {
        // What a stage writes is bounded like its output: it is kept and sent to clients.
        let size = std::fs::metadata(file).map_or(0, |m| m.len());
        if size > MAX_METADATA_BYTES {
            tracing::warn!(
                "stage {}: its metadata ({size} bytes) is over {MAX_METADATA_BYTES} bytes; ignored",
                stage.module
            );
            return Ok(None);
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(None);
        }
        match json::parse(&text) {
            Ok(md @ Value::Object(_)) => {
                self.b.store.set_stage_metadata(&stage.id, &md)?;
                Ok(Some(md))
            }
            _ => {
                tracing::warn!(
                    "stage {}: its metadata is not a JSON object; ignored",
                    stage.module
                );
                Ok(None)
            }
        }
    }

    /// The result's metadata: for every pipeline of the manifest, what its stages reported,
    /// merged per stage type (HEAD's `collect_metadata`).
    fn collect_metadata(&mut self) {
        for p in &self.manifest().pipelines {
            let mut data = Map::new();
            for stage in &p.stages {
                let Some(Value::Object(md)) = self.b.store.stage_metadata(&stage.id) else {
                    continue;
                };
                let entry = data
                    .entry(stage.module.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(e) = entry {
                    e.extend(md);
                }
            }
            if !data.is_empty() {
                self.result
                    .metadata
                    .insert(p.name.clone(), Value::Object(data));
            }
        }
    }

    /// The objects of the pipelines a stage's inputs name (tree inputs and files of trees).
    fn input_objects(&self, stage: &Stage) -> Result<Vec<(String, Object)>, BuildError> {
        let mut objects = Vec::new();
        for input in stage
            .inputs
            .values()
            .filter(|i| i.origin == Origin::Pipeline)
        {
            for (reference, _) in &input.references {
                // A pipeline without stages (HEAD writes its id as null): an empty tree.
                let empty = reference.is_empty() || reference == "null";
                if empty || objects.iter().any(|(r, _)| r == reference) {
                    continue;
                }
                let id = ObjectId::parse(reference)
                    .ok()
                    .filter(|id| self.b.store.contains(id));
                let Some(id) = id else {
                    return Err(BuildError::Input(format!(
                        "stage {}: the pipeline {reference} that an input names was not built",
                        stage.module
                    )));
                };
                objects.push((reference.clone(), self.b.store.new_object(Some(&id))?));
            }
        }
        Ok(objects)
    }

    /// Maps every input of `stage` to a directory on the host (bound read-only at
    /// `/run/osbuild/inputs/NAME`) and the data HEAD's input service would reply.
    fn map_inputs<'o>(
        &self,
        stage: &Stage,
        scratch: &Path,
        objects: &'o [(String, Object)],
        guards: &mut Vec<ReadGuard<'o>>,
    ) -> Result<Vec<MappedInput>, BuildError> {
        let mut mapped = Vec::new();
        for (name, input) in &stage.inputs {
            let what =
                |m: &str| BuildError::Input(format!("stage {}, input {name}: {m}", stage.module));
            // The name becomes a directory in the sandbox: one plain component (HEAD's
            // pattern does not forbid a '/').
            if name.contains(['/', '\0']) {
                return Err(what("an input name must not contain '/'"));
            }
            let host = scratch.join(format!("input-{}", mapped.len()));
            std::fs::create_dir(&host)
                .map_err(|e| what(&format!("creating {}: {e}", host.display())))?;
            let tree_of =
                |reference: &str, guards: &mut Vec<ReadGuard<'o>>| -> Result<PathBuf, BuildError> {
                    let object = objects.iter().find(|(r, _)| r == reference).map(|(_, o)| o);
                    let guard = object.ok_or_else(|| what("no such pipeline"))?.read()?;
                    let path = guard.path().to_owned();
                    guards.push(guard);
                    Ok(path)
                };
            let (host, data) = match input.module.as_str() {
                "org.osbuild.tree" => {
                    let (reference, _) = input.references.first().ok_or_else(|| what("no pipeline named"))?;
                    if reference.is_empty() || reference == "null" {
                        (host, None)
                    } else {
                        (tree_of(reference, guards)?, None)
                    }
                }
                "org.osbuild.files" => {
                    let files = self.map_files(input, &host, objects).map_err(|m| what(&m))?;
                    (host, Some(Value::Object(Map::from_iter([("files".to_owned(), Value::Object(files))]))))
                }
                "org.osbuild.noop" => {
                    let refs = input.references.iter().cloned().collect();
                    (host, Some(Value::Object(Map::from_iter([("refs".to_owned(), Value::Object(refs))]))))
                }
                other => return Err(what(&format!("unknown input type {other} (known: org.osbuild.tree, org.osbuild.files, org.osbuild.noop)"))),
            };
            mapped.push(MappedInput {
                name: name.clone(),
                host,
                data,
            });
        }
        Ok(mapped)
    }

    /// An `org.osbuild.files` input in `dir`: downloaded files hard-linked by checksum, or
    /// files of a pipeline's tree linked at their path. Returns `{reference: metadata}`.
    fn map_files(
        &self,
        input: &Input,
        dir: &Path,
        objects: &[(String, Object)],
    ) -> Result<Map, String> {
        let mut files = Map::new();
        for (reference, options) in &input.references {
            let metadata = options
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| Value::Object(Map::new()));
            match input.origin {
                Origin::Source => {
                    let cached = crate::sources::cached_file(self.b.store, reference)
                        .ok_or_else(|| format!("{reference} is not among the downloaded files"))?;
                    let dest = dir.join(reference);
                    std::fs::hard_link(&cached, &dest)
                        .map_err(|e| format!("linking {}: {e}", cached.display()))?;
                    files.insert(reference.clone(), metadata);
                }
                Origin::Pipeline => {
                    let file = options
                        .get("file")
                        .and_then(Value::as_str)
                        .ok_or("a pipeline reference needs a \"file\"")?;
                    // HEAD strips the leading slashes; the file is opened inside the tree.
                    let relative = file.trim_start_matches('/');
                    if relative.is_empty()
                        || Path::new(relative)
                            .components()
                            .any(|c| !matches!(c, std::path::Component::Normal(_)))
                    {
                        return Err(format!("file {file:?} is not a plain path inside the tree"));
                    }
                    // The committed object itself (the same mount as the input's directory):
                    // the file gets a second name, no copy, holes kept (disk images).
                    let tree = objects
                        .iter()
                        .find(|(r, _)| r == reference)
                        .and_then(|(_, o)| o.committed_path())
                        .ok_or_else(|| format!("the pipeline {reference} was not built"))?;
                    let src = osbuild_sys::fs::open_in_root(&tree, Path::new(relative))
                        .map_err(|e| format!("{file}: {e}"))?;
                    let dest = dir.join(relative);
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("{}: {e}", parent.display()))?;
                    }
                    osbuild_sys::fs::link_open_file(&src, &dest)
                        .map_err(|e| format!("linking {file}: {e}"))?;
                    files.insert(relative.to_owned(), metadata);
                }
            }
        }
        Ok(files)
    }
}

/// An input as the stage gets it.
struct MappedInput {
    name: String,
    /// The directory or tree bound at `/run/osbuild/inputs/NAME`.
    host: PathBuf,
    /// The reply's `data`, if the input type gives one.
    data: Option<Value>,
}

/// HEAD's arguments file for `stage` (`Stage.run` and `prepare_arguments`): paths re-rooted
/// at their place in the sandbox. `services` has the `devices` and `mounts` entries.
fn arguments(p: &Pipeline, stage: &Stage, inputs: &[MappedInput], services: Map) -> Value {
    let mut meta = Map::from_iter([("id".to_owned(), Value::from(stage.id.as_str()))]);
    if let Some(epoch) = &p.source_epoch {
        meta.insert("source-epoch".into(), epoch.clone());
    }
    let inputs = inputs.iter().map(|i| {
        let mut entry = Map::from_iter([(
            "path".to_owned(),
            Value::from(format!("{INPUTS_DIR}/{}", i.name)),
        )]);
        if let Some(data) = &i.data {
            entry.insert("data".into(), data.clone());
        }
        (i.name.clone(), Value::Object(entry))
    });
    let paths = Map::from_iter([
        ("devices".to_owned(), Value::from("/dev")),
        ("inputs".to_owned(), Value::from(INPUTS_DIR)),
        (
            "mounts".to_owned(),
            Value::from(crate::buildroot::MOUNTS_DIR),
        ),
    ]);
    Value::Object(Map::from_iter([
        ("tree".to_owned(), Value::from(TREE_DIR)),
        ("paths".to_owned(), Value::Object(paths)),
        (
            "devices".to_owned(),
            rerooted(services.get("devices"), "/dev"),
        ),
        ("inputs".to_owned(), Value::Object(inputs.collect())),
        (
            "mounts".to_owned(),
            rerooted(services.get("mounts"), crate::buildroot::MOUNTS_DIR),
        ),
        ("options".to_owned(), stage.options.clone()),
        ("meta".to_owned(), Value::Object(meta)),
    ]))
}

/// `{name: {"path": relative, ...}}` with each non-empty `path` joined to `root` as Python's
/// `os.path.join` does (HEAD's `prepare_arguments`: a mount at "/" is `ROOT/.`).
fn rerooted(group: Option<&Value>, root: &str) -> Value {
    let Some(Value::Object(group)) = group else {
        return Value::Object(Map::new());
    };
    let items = group.iter().map(|(name, item)| {
        let mut item = item.clone();
        if let Value::Object(fields) = &mut item {
            if let Some(path) = fields
                .get("path")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
            {
                let joined = if path.starts_with('/') {
                    path.to_owned()
                } else {
                    format!("{root}/{path}")
                };
                fields.insert("path".into(), Value::from(joined));
            }
        }
        (name.clone(), item)
    });
    Value::Object(items.collect())
}

/// The pipeline's `source-epoch` as seconds (an epoch beyond 64 bits is not one).
fn epoch_of(p: &Pipeline) -> Option<u64> {
    p.source_epoch
        .as_ref()
        .and_then(Value::as_int)
        .and_then(|i| i.as_u64())
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`; everything else literal.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    matches_from(&p, &n)
}

fn matches_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| matches_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && matches_from(&p[1..], &n[1..]),
        Some('[') => match (class_end(p), n.first()) {
            (Some(end), Some(c)) => {
                in_class(&p[1..end], *c) && matches_from(&p[end + 1..], &n[1..])
            }
            (Some(_), None) => false,
            (None, _) => n.first() == Some(&'[') && matches_from(&p[1..], &n[1..]),
        },
        Some(c) => n.first() == Some(c) && matches_from(&p[1..], &n[1..]),
    }
}

/// The index of the `]` closing the class that starts at `p[0]` (a `]` right after `[` or
/// `[!` belongs to the class).
fn class_end(p: &[char]) -> Option<usize> {
    let mut i = 1;
    if p.get(i) == Some(&'!') {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    (i..p.len()).find(|&j| p[j] == ']')
}

fn in_class(class: &[char], c: char) -> bool {
    let (negated, class) = match class.first() {
        Some('!') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            found |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn fnmatch_is_pythons() {
        assert!(fnmatch("build", "build"));
        assert!(!fnmatch("build", "builds"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("org.osbuild.*", "org.osbuild.rpm"));
        assert!(fnmatch("b?ild", "build"));
        assert!(fnmatch("[ab]uild", "build"));
        assert!(!fnmatch("[!ab]uild", "build"));
        assert!(fnmatch("[a-c]*", "build"));
        assert!(fnmatch("[]]x", "]x"));
        assert!(fnmatch("[x", "[x"), "an unclosed [ is literal");
        assert!(!fnmatch("Build", "build"), "case-sensitive");
    }
}
