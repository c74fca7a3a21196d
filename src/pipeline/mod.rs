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

mod result;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::buildroot::{BuildRoot, BuildRootError, Cancel, DevDir, NetNs, Sandbox, SourcesHandler};
use crate::id::ObjectId;
use crate::json::{self, Value};
use crate::manifest::{Manifest, Pipeline, Stage};
use crate::modules::{Index, ModuleKind, RunnerError};
use crate::sources::{SourceError, Sources};
use crate::store::{Object, ObjectKind, Store, StoreError, TempDir};

pub use crate::sources::Progress as SourceProgress;
pub use result::{ModuleResult, PipelineResult};

/// What happens during a build, for progress displays, logs and D-Bus signals.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage or assembler is about to run. `index` counts from 0 within its pipeline;
    /// `depth` is 0 for the main pipeline, 1 for its build pipeline, and so on.
    ModuleStarted {
        kind: ModuleKind,
        name: &'a str,
        id: &'a ObjectId,
        options: &'a Value,
        depth: usize,
        index: usize,
        total: usize,
    },
    /// One line the module printed.
    Output { line: &'a str },
    /// The module ended.
    ModuleFinished {
        kind: ModuleKind,
        name: &'a str,
        id: &'a ObjectId,
        success: bool,
        seconds: f64,
    },
    /// A source starts fetching `files` files, before any stage runs.
    SourceStarted { name: &'a str, files: usize },
    /// Files and bytes a source has in place so far.
    SourceProgress {
        name: &'a str,
        progress: SourceProgress,
    },
    /// A source is done fetching (when `success` is false the build stops with its error).
    SourceFinished {
        name: &'a str,
        success: bool,
        seconds: f64,
    },
}

/// Receives [`Event`]s.
pub trait Monitor {
    fn event(&mut self, event: Event<'_>);

    /// Whether to commit the tree after stage `id` although it is not a checkpoint: the
    /// service answers yes when another queued job needs that stage, so it is built once.
    fn keep(&mut self, _id: &ObjectId) -> bool {
        false
    }
}

/// A monitor that ignores everything.
pub struct NullMonitor;

impl Monitor for NullMonitor {
    fn event(&mut self, _: Event<'_>) {}
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
    #[error("checkpoint {0} not found in the manifest")]
    UnknownCheckpoint(ObjectId),
    #[error("aborted")]
    Cancelled,
}

/// Everything a build needs besides the manifest.
pub struct Builder<'a> {
    pub store: &'a Store,
    pub index: &'a Index,
    /// Stage ids after which the tree is committed.
    pub checkpoints: BTreeSet<ObjectId>,
    pub cancel: Cancel,
}

impl Builder<'_> {
    /// Builds `manifest`. `Ok` with `success: false` when a stage or the assembler failed.
    pub fn build(
        &self,
        manifest: &Manifest,
        monitor: &mut dyn Monitor,
    ) -> Result<PipelineResult, BuildError> {
        self.build_with_secrets(manifest, None, monitor)
    }

    /// [`Self::build`] with secrets for the sources (`--secrets`: `{SOURCE: {...}}`), which
    /// reach the source processes' stdin and nothing else.
    pub fn build_with_secrets(
        &self,
        manifest: &Manifest,
        secrets: Option<&Value>,
        monitor: &mut dyn Monitor,
    ) -> Result<PipelineResult, BuildError> {
        let known: BTreeSet<&ObjectId> = manifest.ids().into_iter().collect();
        if let Some(missing) = self.checkpoints.iter().find(|c| !known.contains(c)) {
            return Err(BuildError::UnknownCheckpoint(missing.clone()));
        }
        let pipeline = &manifest.pipeline;
        if let Some(output_id) = pipeline.output_id() {
            if self.store.contains(output_id) {
                let tree_id = pipeline
                    .tree_id()
                    .filter(|t| self.store.contains(t))
                    .cloned();
                return Ok(PipelineResult::cached_output(output_id.clone(), tree_id));
            }
        }
        let runner = self.runner_for(pipeline)?;
        // Everything the manifest names is fetched before the first stage: a missing file
        // fails the build here, with nothing built.
        let sources = Sources::new(self.index, self.store, &manifest.sources, secrets)
            .map_err(source_error)?;
        sources
            .fetch_all(self.store, &self.cancel, monitor)
            .map_err(source_error)?;
        let mut run = Run {
            b: self,
            monitor,
            sources: Arc::new(sources),
        };
        let (mut result, built) =
            run.build_tree(pipeline, &runner, 0, pipeline.assembler.is_some())?;
        let Some((mut build_root, tree)) = built else {
            return Ok(result);
        };
        if let Some(assembler) = &pipeline.assembler {
            let env = build_root.env(self.store)?;
            let r = run.assemble(assembler, env, &tree, &runner)?;
            result.success = r.success;
            if r.success {
                result.output_id = Some(assembler.id.clone());
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

/// The build root a pipeline's modules run in (the host, or a build pipeline's tree, kept alive
/// here) and what its modules share: `/dev` and `/etc` (where the runner's set-up lands once).
struct BuildEnv {
    tree: Option<Object>,
    netns: Arc<NetNs>,
    dev: DevDir,
    etc: PathBuf,
    /// Owns the directories above; dropped last, after `dev` is unmounted.
    _scratch: TempDir,
}

impl BuildEnv {
    fn new(store: &Store, tree: Option<Object>) -> Result<Self, BuildError> {
        let scratch = store.tempdir("buildenv")?;
        let dev = DevDir::new(&make_dir(scratch.path(), "dev")?)?;
        let etc = make_dir(scratch.path(), "etc")?;
        let netns = Arc::new(NetNs::new()?);
        Ok(Self {
            tree,
            netns,
            dev,
            etc,
            _scratch: scratch,
        })
    }
}

/// A pipeline's build root, set up (namespace, `/dev`, `/etc`) only once a module runs in it,
/// so a cached build costs no set-up at all.
enum Root {
    /// The host (`None`) or a build pipeline's tree.
    Pending(Option<Object>),
    Ready(BuildEnv),
}

impl Root {
    fn env(&mut self, store: &Store) -> Result<&BuildEnv, BuildError> {
        if let Root::Pending(tree) = self {
            *self = Root::Ready(BuildEnv::new(store, tree.take())?);
        }
        match self {
            Root::Ready(env) => Ok(env),
            Root::Pending(_) => unreachable!("set up just above"),
        }
    }
}

fn make_dir(parent: &Path, name: &str) -> Result<PathBuf, BuildError> {
    let p = parent.join(name);
    std::fs::create_dir(&p).map_err(crate::buildroot::io_err(format!(
        "creating {}",
        p.display()
    )))?;
    Ok(p)
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
    monitor: &'m mut dyn Monitor,
    sources: Arc<Sources>,
}

impl Run<'_, '_> {
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
            result.tree_id = pipeline.tree_id().cloned();
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
            result.tree_id = pipeline.tree_id().cloned();
            let tree = store.new_object(pipeline.tree_id())?;
            return Ok((result, Some((build_root, tree))));
        }

        let resume = pipeline.stages.iter().rposition(|s| store.contains(&s.id));
        let tree = store.new_object(resume.map(|i| &pipeline.stages[i].id))?;
        let first = resume.map_or(0, |i| i + 1);
        let mut stages = Vec::new();
        let env = build_root.env(store)?;
        for (index, stage) in pipeline.stages.iter().enumerate().skip(first) {
            let r = self.run_stage(
                stage,
                env,
                &tree,
                runner,
                depth,
                index,
                pipeline.stages.len(),
            )?;
            let ok = r.success;
            stages.push(r);
            if !ok {
                result.success = false;
                result.stages = Some(stages);
                return Ok((result, None));
            }
            if self.b.checkpoints.contains(&stage.id) || self.monitor.keep(&stage.id) {
                store.commit(&tree, &stage.id, ObjectKind::Tree)?;
            }
        }
        result.stages = Some(stages);
        result.tree_id = pipeline.tree_id().cloned();
        Ok((result, Some((build_root, tree))))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &mut self,
        stage: &Stage,
        env: &BuildEnv,
        tree: &Object,
        runner: &str,
        depth: usize,
        index: usize,
        total: usize,
    ) -> Result<ModuleResult, BuildError> {
        let args = json::dumps(&stage_args(&stage.options));
        let build_guard = env.tree.as_ref().map(Object::read).transpose()?;
        let root = build_guard.as_ref().map_or(Path::new("/"), |g| g.path());
        let tree_guard = tree.write()?;
        self.run_module(
            ModuleKind::Stage,
            stage,
            env,
            root,
            build_guard.is_some(),
            tree_guard.path(),
            None,
            runner,
            &args,
            depth,
            index,
            total,
        )
    }

    fn assemble(
        &mut self,
        assembler: &Stage,
        env: &BuildEnv,
        tree: &Object,
        runner: &str,
    ) -> Result<ModuleResult, BuildError> {
        let store = self.b.store;
        let mut options = json::Map::new();
        options.insert(
            "tree".into(),
            Value::String(crate::buildroot::TREE_DIR.into()),
        );
        options.insert("options".into(), assembler.options.clone());
        options.insert(
            "output_dir".into(),
            Value::String(crate::buildroot::OUTPUT_DIR.into()),
        );
        let args = json::dumps(&Value::Object(options));
        let output = store.new_object(None)?;
        let r = {
            let build_guard = env.tree.as_ref().map(Object::read).transpose()?;
            let root = build_guard.as_ref().map_or(Path::new("/"), |g| g.path());
            let tree_guard = tree.read()?;
            let out_guard = output.write()?;
            self.run_module(
                ModuleKind::Assembler,
                assembler,
                env,
                root,
                build_guard.is_some(),
                tree_guard.path(),
                Some(out_guard.path()),
                runner,
                &args,
                0,
                0,
                1,
            )?
        };
        if r.success {
            store.commit(&output, &assembler.id, ObjectKind::Output)?;
        }
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_module(
        &mut self,
        kind: ModuleKind,
        module: &Stage,
        env: &BuildEnv,
        root: &Path,
        root_is_build_tree: bool,
        tree: &Path,
        output: Option<&Path>,
        runner: &str,
        args: &str,
        depth: usize,
        index: usize,
        total: usize,
    ) -> Result<ModuleResult, BuildError> {
        let index_ = self.b.index;
        if index_.path(kind, &module.name).is_none() {
            return Err(BuildError::MissingModule {
                kind,
                name: module.name.clone(),
                libdir: index_.libdir().to_owned(),
            });
        }
        let network = index_
            .meta(kind, &module.name)
            .map(|m| m.network)
            .unwrap_or(false);
        let scratch = self.b.store.tempdir("module")?;
        let (var, api) = (
            make_dir(scratch.path(), "var")?,
            make_dir(scratch.path(), "api")?,
        );
        let var_tmp = make_dir(&var, "tmp")?;
        std::fs::set_permissions(
            &var_tmp,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .map_err(crate::buildroot::io_err("chmod /var/tmp"))?;
        let sources = (kind == ModuleKind::Stage)
            .then(|| make_dir(scratch.path(), "sources"))
            .transpose()?;
        if let Some(dir) = &sources {
            self.sources.expose(dir).map_err(BuildError::Source)?;
        }
        let sandbox = Sandbox {
            root: root.to_owned(),
            root_is_build_tree,
            libdir: index_.libdir().to_owned(),
            runner: runner.to_owned(),
            kind,
            module: module.name.clone(),
            dev: env.dev.path().to_owned(),
            etc: Some(env.etc.clone()),
            var,
            api,
            tree: tree.to_owned(),
            output: output.map(Path::to_owned),
            sources,
            netns: (!network).then(|| env.netns.clone()),
            capabilities: Sandbox::default_capabilities(),
        };
        self.monitor.event(Event::ModuleStarted {
            kind,
            name: &module.name,
            id: &module.id,
            options: &module.options,
            depth,
            index,
            total,
        });
        let started = Instant::now();
        let monitor = &mut *self.monitor;
        // The stage's sources API: files land in its own sources directory, read-only inside.
        let sources_api = sandbox.sources.clone().map(|dir| {
            let (sources, cancel) = (self.sources.clone(), self.b.cancel.clone());
            let handler: SourcesHandler =
                Arc::new(move |request: &[u8]| sources.api_reply(request, &dir, &cancel));
            handler
        });
        let run =
            BuildRoot::run_with_sources(&sandbox, args, sources_api, &self.b.cancel, &mut |line| {
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
            seconds: started.elapsed().as_secs_f64(),
        });
        if !run.success() {
            tracing::warn!(module = %module.name, id = %module.id, "{} {} failed: {}", kind.noun(), module.name, run.describe_status());
        }
        Ok(ModuleResult::new(module, &run))
    }
}

/// `{"tree", "sources", "options"}` as v10 hands it to a stage.
fn stage_args(options: &Value) -> Value {
    let mut m = json::Map::new();
    m.insert(
        "tree".into(),
        Value::String(crate::buildroot::TREE_DIR.into()),
    );
    m.insert(
        "sources".into(),
        Value::String(crate::buildroot::SOURCES_DIR.into()),
    );
    m.insert("options".into(), options.clone());
    Value::Object(m)
}
