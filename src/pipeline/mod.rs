//! Running a manifest: what is cached, where to resume, which sandbox runs what, and the result.
//!
//! The semantics are osbuild v10's (the seed's design):
//! - if the output is in the store, return at once;
//! - build the build pipeline (recursively) and use its tree as the build root; the innermost
//!   pipeline runs on the host;
//! - if the tree is in the store, run no stage; otherwise resume after the last stage whose id
//!   is in the store;
//! - commit a checkpoint only after its stage succeeded; always commit the assembler's output;
//! - stop at the first failure and commit nothing for it.
//!
//! One deliberate difference: a build pipeline is only built when something will run in it
//! (v10 built it even when the tree was cached and no assembler followed).

mod buildenv;
mod request;
mod result;
mod v2;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use osbuild_protocol::args::{AssemblerArgs, StageArgs};

use crate::buildroot::{
    BuildRoot, BuildRootError, Cancel, Gate, ModuleDir, ModuleRun, Sandbox, SourcesHandler, Started,
};
use crate::events::{Event, Monitor};
use crate::id::ObjectId;
use crate::manifest::{Pipeline, Stage};
use crate::modules::{Index, ModuleError, ModuleKind, RunnerError};
use crate::sources::{SourceError, Sources};
use crate::store::{Object, ObjectKind, Store, StoreError};
use buildenv::{BuildEnv, Root};

pub use request::{Overrides, Request, RequestError, Secrets};
pub use result::{ModuleResult, PipelineResult};
pub use v2::{
    find as find_v2_pipeline, fnmatch, mark_checkpoints, StageLog, V2Request, V2RequestError,
    V2Result,
};

/// Which stage trees a build commits besides the request's checkpoints.
pub trait CommitPolicy {
    /// Whether to commit the tree after stage `id`, which is not a checkpoint.
    fn also_commit(&self, id: &ObjectId) -> bool;
}

/// Commits the checkpoints only (`osbuild`).
pub struct CheckpointsOnly;

impl CommitPolicy for CheckpointsOnly {
    fn also_commit(&self, _: &ObjectId) -> bool {
        false
    }
}

/// Why a build could not be carried out (a stage that fails is not an error: it is a result).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    BuildRoot(#[from] BuildRootError),
    /// A source could not fetch what the manifest names; no stage ran.
    #[error("fetching sources failed, nothing was built: {0}")]
    Source(SourceError),
    #[error("{} {name} is not in the libdir {}", kind.noun(), libdir.display())]
    MissingModule {
        kind: ModuleKind,
        name: String,
        libdir: PathBuf,
    },
    /// A stage's input could not be given to it (v2 manifests).
    #[error("{0}")]
    Input(String),
    /// A module's description (its capabilities) could not be read.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The runner's set-up of the build root failed, before any module ran.
    #[error(
        "the build root's set-up by runner {runner} failed ({status}; build root {}){}",
        root.display(),
        last_lines(output)
    )]
    SetUp {
        runner: String,
        root: PathBuf,
        status: String,
        /// What the runner printed.
        output: String,
    },
    #[error("aborted")]
    Cancelled,
    /// The build itself broke (its thread panicked, or could not start); a bug, not a result.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything a build needs besides the request.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub index: &'a Index,
    /// Which trees are committed besides the checkpoints.
    pub commit: &'a dyn CommitPolicy,
    pub cancel: Cancel,
}

impl Builder<'_> {
    /// Builds `request`. `Ok` with `success: false` when a stage or the assembler failed.
    /// Secrets reach the source processes' stdin and nothing else.
    pub fn build(
        &self,
        request: &Request,
        monitor: &mut dyn Monitor,
    ) -> Result<PipelineResult, BuildError> {
        let pipeline = &request.manifest.pipeline;
        if let Some(output_id) = pipeline.output_id() {
            if self.store.contains(output_id) {
                let tree_id = pipeline
                    .tree_id()
                    .filter(|t| self.store.contains(t))
                    .map(ObjectId::to_string);
                return Ok(PipelineResult::cached_output(
                    output_id.to_string(),
                    tree_id,
                ));
            }
        }
        let runner = self.runner_for(pipeline)?;
        // Everything the manifest names is fetched before the first stage: a missing file
        // fails the build here, with nothing built.
        let secrets = request.secrets.as_ref().map(Secrets::value);
        let sources = Sources::new(self.index, self.store, &request.manifest.sources, secrets)
            .map_err(source_error)?
            .for_unprivileged_caller(request.unprivileged_caller);
        sources
            .fetch_all(self.store, &self.cancel, monitor)
            .map_err(source_error)?;
        let mut run = Run {
            b: self,
            request,
            monitor,
            sources: Arc::new(sources),
        };
        let (mut result, built) =
            run.build_tree(pipeline, &runner, 0, pipeline.assembler.is_some())?;
        let Some((mut build_root, tree)) = built else {
            return Ok(result);
        };
        if let Some(assembler) = &pipeline.assembler {
            let env = build_root.env(self, &runner)?;
            let r = run.assemble(assembler, env, &tree, &runner)?;
            result.success = r.success;
            if r.success {
                result.output_id = Some(assembler.id.to_string());
            }
            result.assembler = Some(r);
        }
        Ok(result)
    }

    /// The runner file for a pipeline's stages: the build section's, else the host's.
    fn runner_for(&self, pipeline: &Pipeline) -> Result<String, RunnerError> {
        match &pipeline.build {
            Some(build) => self.index.resolve_runner(&build.runner),
            None => self.index.host_runner(),
        }
    }
}

/// The end of a module's output for an error message: its last lines, after a colon and a
/// newline; nothing when it printed nothing.
fn last_lines(output: &str) -> String {
    const LINES: usize = 20;
    let lines: Vec<&str> = output.lines().collect();
    match lines.len() {
        0 => String::new(),
        n => format!(":\n{}", lines[n.saturating_sub(LINES)..].join("\n")),
    }
}

fn source_error(e: SourceError) -> BuildError {
    match e {
        SourceError::Cancelled => BuildError::Cancelled,
        SourceError::Store(e) => BuildError::Store(e),
        e => BuildError::Source(e),
    }
}

struct Run<'a, 'm> {
    b: &'a Builder<'a>,
    request: &'a Request,
    monitor: &'m mut dyn Monitor,
    sources: Arc<Sources>,
}

impl<'a> Run<'a, '_> {
    /// Builds a pipeline's tree. Returns its result and, when the caller needs them (`need`),
    /// the build root and the tree object; `None` for them after a failure.
    #[allow(clippy::type_complexity)]
    fn build_tree(
        &mut self,
        pipeline: &Pipeline,
        runner: &str,
        depth: usize,
        need: bool,
    ) -> Result<(PipelineResult, Option<(Root, Object)>), BuildError> {
        let store = self.b.store;
        let mut result = PipelineResult::success();
        let tree_cached = pipeline.tree_id().is_none_or(|t| store.contains(t));
        if pipeline.stages.is_empty() || (tree_cached && !need) {
            result.tree_id = pipeline.tree_id().map(ObjectId::to_string);
            let tree = store.new_object(pipeline.tree_id())?;
            return Ok((result, Some((Root::Pending(None), tree))));
        }

        let mut build_root = match &pipeline.build {
            None => Root::Pending(None),
            Some(build) => {
                let inner_runner = self.b.runner_for(&build.pipeline)?;
                let (r, built) =
                    self.build_tree(&build.pipeline, &inner_runner, depth + 1, true)?;
                let ok = r.success;
                result.build = Some(Box::new(r));
                match built {
                    Some((_, tree)) if ok => Root::Pending(Some(tree)),
                    _ => {
                        result.success = false;
                        return Ok((result, None));
                    }
                }
            }
        };

        if tree_cached {
            result.tree_id = pipeline.tree_id().map(ObjectId::to_string);
            let tree = store.new_object(pipeline.tree_id())?;
            return Ok((result, Some((build_root, tree))));
        }

        let resume = pipeline.stages.iter().rposition(|s| store.contains(&s.id));
        let tree = store.new_object(resume.map(|i| &pipeline.stages[i].id))?;
        let mut first = resume.map_or(0, |i| i + 1);
        let mut stages = Vec::new();
        let env = build_root.env(self.b, runner)?;
        let total = pipeline.stages.len();
        while first < total {
            // Up to and including the next stage whose tree is committed.
            let end = (first..total)
                .find(|&i| self.commits(&pipeline.stages[i].id))
                .map_or(total, |i| i + 1);
            let at = Position {
                depth,
                index: first,
                total,
            };
            let ok = self.run_stages(
                &pipeline.stages[first..end],
                env,
                &tree,
                runner,
                at,
                &mut stages,
            )?;
            if !ok {
                result.success = false;
                result.stages = Some(stages);
                return Ok((result, None));
            }
            let last = &pipeline.stages[end - 1].id;
            if self.commits(last) {
                self.clamp_times(&tree)?;
                store.commit(&tree, last, ObjectKind::Tree)?;
            }
            first = end;
        }
        result.stages = Some(stages);
        result.tree_id = pipeline.tree_id().map(ObjectId::to_string);
        Ok((result, Some((build_root, tree))))
    }

    /// Whether the tree after stage `id` is committed (a checkpoint, or the policy's choice).
    fn commits(&self, id: &ObjectId) -> bool {
        self.request.checkpoints.contains(id) || self.b.commit.also_commit(id)
    }

    /// Runs `stages` (the first at `at`) one after the other on one writable view of `tree`,
    /// adding their results to `results`; false at the first that fails, and no stage after
    /// it runs. Each stage's sandbox is started while the stage before it runs, and held
    /// until that one has finished (see [`BuildRoot::start`]): bubblewrap's few milliseconds
    /// of namespaces and mounts overlap the previous stage instead of following it.
    fn run_stages(
        &mut self,
        stages: &[Stage],
        env: &BuildEnv,
        tree: &Object,
        runner: &str,
        at: Position,
        results: &mut Vec<ModuleResult>,
    ) -> Result<bool, BuildError> {
        let build_guard = env.tree.as_ref().map(Object::read).transpose()?;
        let tree_guard = tree.write()?;
        let view = View {
            root: build_guard.as_ref().map_or(Path::new("/"), |g| g.path()),
            root_is_build_tree: build_guard.is_some(),
            tree: tree_guard.path(),
        };
        let mut next = None;
        for (k, stage) in stages.iter().enumerate() {
            let current = match next.take() {
                Some(started) => started,
                None => self.start_stage(stage, env, runner, &view, Gate::open_now())?,
            };
            // A stage that cannot be started early is started again in its turn, which
            // reports why it cannot.
            next = stages.get(k + 1).and_then(|s| {
                self.start_stage(s, env, runner, &view, Gate::default())
                    .ok()
            });
            let at = Position {
                index: at.index + k,
                ..at
            };
            let r = self.finish_module(stage, current, at)?;
            let ok = r.success;
            results.push(r);
            if !ok {
                // Dropping `next` kills its sandbox before its stage ever ran.
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Starts `stage`'s sandbox on `view`; its stage runs once `gate` is open.
    fn start_stage<'e>(
        &self,
        stage: &'e Stage,
        env: &'e BuildEnv,
        runner: &'e str,
        view: &View<'e>,
        gate: Gate,
    ) -> Result<StartedModule<'e>, BuildError>
    where
        'a: 'e,
    {
        let args = StageArgs::in_sandbox(&stage.options).to_json();
        let plan = self.plan(ModuleKind::Stage, stage, env, runner)?;
        let plan = ModuleRun {
            root: view.root,
            root_is_build_tree: view.root_is_build_tree,
            tree: view.tree,
            ..plan
        };
        self.start_module(plan, &args, gate)
    }

    fn assemble(
        &mut self,
        assembler: &Stage,
        env: &BuildEnv,
        tree: &Object,
        runner: &str,
    ) -> Result<ModuleResult, BuildError> {
        let store = self.b.store;
        let args = AssemblerArgs::in_sandbox(&assembler.options).to_json();
        self.clamp_times(tree)?;
        let output = store.new_object(None)?;
        let r = {
            let build_guard = env.tree.as_ref().map(Object::read).transpose()?;
            let root = build_guard.as_ref().map_or(Path::new("/"), |g| g.path());
            let tree_guard = tree.read()?;
            let out_guard = output.write()?;
            let plan = self.plan(ModuleKind::Assembler, assembler, env, runner)?;
            let plan = ModuleRun {
                root,
                root_is_build_tree: build_guard.is_some(),
                tree: tree_guard.path(),
                output: Some(out_guard.path()),
                ..plan
            };
            let at = Position {
                depth: 0,
                index: 0,
                total: 1,
            };
            let started = self.start_module(plan, &args, Gate::open_now())?;
            self.finish_module(assembler, started, at)?
        };
        if r.success {
            self.clamp_times(&output)?;
            store.commit(&output, &assembler.id, ObjectKind::Output)?;
        }
        Ok(r)
    }

    /// In a reproducible build, clamps the times of `object`'s tree to the source epoch
    /// (before it is committed or assembled).
    fn clamp_times(&self, object: &Object) -> Result<(), BuildError> {
        match self.request.source_epoch {
            Some(epoch) => Ok(object.clamp_times(epoch)?),
            None => Ok(()),
        }
    }

    /// The part of a module's plan that follows from the module and its pipeline; the caller
    /// fills in the trees it holds guards for. Refuses a module the libdir does not have.
    fn plan<'e>(
        &self,
        kind: ModuleKind,
        module: &'e Stage,
        env: &'e BuildEnv,
        runner: &'e str,
    ) -> Result<ModuleRun<'e>, BuildError>
    where
        'a: 'e,
    {
        let index = self.b.index;
        if index.path(kind, &module.name).is_none() {
            return Err(BuildError::MissingModule {
                kind,
                name: module.name.clone(),
                libdir: index.libdir().to_owned(),
            });
        }
        Ok(ModuleRun {
            kind,
            module: &module.name,
            libdir: index.libdir(),
            runner,
            root: Path::new("/"),
            root_is_build_tree: false,
            tree: Path::new(""),
            output: None,
            network: index.meta(kind, &module.name).is_ok_and(|m| m.network),
            shared: &env.shared,
            source_epoch: self.request.source_epoch,
            capabilities: index.capabilities(kind, &module.name)?,
            protocol: crate::buildroot::Protocol::V10,
            timeout: None,
        })
    }

    /// Starts one module's sandbox (see [`BuildRoot::start`]) in a module directory of its own.
    fn start_module<'e>(
        &self,
        plan: ModuleRun<'e>,
        args: &str,
        gate: Gate,
    ) -> Result<StartedModule<'e>, BuildError> {
        let dir = plan.shared.module_dir()?;
        let sandbox = plan.prepare(&dir)?;
        if let Some(dir) = &sandbox.sources {
            self.sources.expose(dir).map_err(BuildError::Source)?;
        }
        // The stage's sources API: files land in its own sources directory, read-only inside.
        let sources_api = sandbox.sources.clone().map(|dir| {
            let (sources, cancel) = (self.sources.clone(), self.b.cancel.clone());
            let handler: SourcesHandler =
                Arc::new(move |request: &[u8]| sources.api_reply(request, &dir, &cancel));
            handler
        });
        let started = BuildRoot::start(&sandbox, args, sources_api, gate)?;
        Ok(StartedModule {
            started,
            sandbox,
            _dir: dir,
        })
    }

    /// Lets a started module run to its end, telling the monitor about it.
    fn finish_module(
        &mut self,
        module: &Stage,
        started: StartedModule<'_>,
        at: Position,
    ) -> Result<ModuleResult, BuildError> {
        let kind = started.sandbox.kind;
        self.monitor.event(Event::ModuleStarted {
            kind,
            name: &module.name,
            id: &module.id,
            options: &module.options,
            depth: at.depth,
            index: at.index,
            total: at.total,
        });
        let begun = Instant::now();
        let monitor = &mut *self.monitor;
        let StartedModule {
            started,
            sandbox,
            _dir,
        } = started;
        let run = started.finish(&sandbox, &self.b.cancel, &mut |line| {
            monitor.event(Event::Output { line })
        });
        let run = match run {
            Err(BuildRootError::Cancelled) => return Err(BuildError::Cancelled),
            other => other?,
        };
        self.monitor.event(Event::ModuleFinished {
            kind,
            name: &module.name,
            id: &module.id,
            success: run.success(),
            seconds: begun.elapsed().as_secs_f64(),
            error: None,
            metadata: None,
        });
        if !run.success() {
            tracing::warn!(module = %module.name, id = %module.id, "{} {} failed: {}", kind.noun(), module.name, run.describe_status());
        }
        Ok(result::module_result(module, &run))
    }
}

/// The trees a stage's sandbox is made of: the build root (`/` or a build pipeline's tree)
/// and the tree the stage writes.
struct View<'g> {
    root: &'g Path,
    root_is_build_tree: bool,
    tree: &'g Path,
}

/// A module's sandbox, started, and the module directory it holds. The sandbox goes first
/// when dropped, then the directory is free for another module.
struct StartedModule<'e> {
    started: Started,
    sandbox: Sandbox,
    _dir: ModuleDir<'e>,
}

/// Where a module stands in the build, for its events: `index` of `total` within its
/// pipeline, at build-pipeline `depth` (0 for the main pipeline).
struct Position {
    depth: usize,
    index: usize,
    total: usize,
}
