//! A pipeline's build root: the host's `/` or a build pipeline's tree, made ready (network
//! namespace, `/dev`, and `/etc` holding the runner's set-up) only once a module runs in it, so
//! a cached build costs no set-up at all.
//!
//! The set-up (ldconfig, systemd-sysusers, systemd-tmpfiles, by the runner's flavour) runs once
//! per build root in a sandbox of its own, before any module, and is kept in the store for
//! later builds on the same build root (see `buildroot::setup`).

use std::path::Path;

use super::{BuildError, Builder};
use crate::buildroot::{
    set_up_key, BuildRoot, BuildRootError, ModuleRun, Protocol, SetUpRoot, SharedRoot,
};
use crate::id::SetUpKey;
use crate::modules::ModuleKind;
use crate::store::{Object, TempDir};

/// The build root a pipeline's modules run in (the host, or a build pipeline's tree, kept alive
/// here) and what its modules share.
pub(super) struct BuildEnv {
    pub tree: Option<Object>,
    pub shared: SharedRoot,
    /// Owns the shared directories; dropped last, after `/dev` is unmounted.
    _scratch: TempDir,
}

impl BuildEnv {
    fn new(b: &Builder, tree: Option<Object>, runner: &str) -> Result<Self, BuildError> {
        let scratch = b.store.tempdir("buildenv")?;
        let shared = SharedRoot::new(scratch.path())?;
        let env = Self {
            tree,
            shared,
            _scratch: scratch,
        };
        env.set_up(b, runner)?;
        Ok(env)
    }

    /// Gives the shared `/etc` the runner's set-up: the one kept for this build root, else one
    /// made now, kept when the build root has an identity (the host, or a committed tree; not a
    /// build tree written in this build, which no later build will use as it is).
    fn set_up(&self, b: &Builder, runner: &str) -> Result<(), BuildError> {
        let guard = self.tree.as_ref().map(Object::read).transpose()?;
        let root = guard.as_ref().map_or(Path::new("/"), |g| g.path());
        let libdir = b.index.libdir();
        let key = match &self.tree {
            None => Some(set_up_key(libdir, runner, SetUpRoot::Host(root))),
            Some(tree) => tree
                .committed_path()
                .and(tree.base())
                .map(|id| set_up_key(libdir, runner, SetUpRoot::Object(id.as_str()))),
        };
        if let Some(key) = &key {
            if self.restore(b, key)? {
                return Ok(self.shared.copy_root_config(root)?);
            }
        }
        let dir = self.shared.module_dir()?;
        let plan = ModuleRun {
            kind: ModuleKind::Runner,
            module: runner,
            libdir,
            runner,
            root,
            root_is_build_tree: self.tree.is_some(),
            tree: Path::new(""),
            output: None,
            network: false,
            shared: &self.shared,
            source_epoch: None,
            capabilities: Vec::new(),
            protocol: Protocol::V10,
            timeout: None,
        };
        let sandbox = plan.prepare(&dir)?;
        let run = match BuildRoot::run(&sandbox, "", &b.cancel, &mut |_| {}) {
            Err(BuildRootError::Cancelled) => return Err(BuildError::Cancelled),
            other => other?,
        };
        if !run.success() {
            return Err(BuildError::SetUp {
                runner: runner.to_owned(),
                root: root.to_owned(),
                status: run.describe_status(),
                output: run.output,
            });
        }
        if let Some(key) = &key {
            // Only an optimisation: this build has its set-up either way.
            if let Err(e) = b.store.keep_set_up(key, self.shared.etc_dir()) {
                tracing::warn!("cannot keep the build root's set-up for later builds: {e}");
            }
        }
        Ok(self.shared.copy_root_config(root)?)
    }

    /// Copies the kept set-up `key` into the shared `/etc`; false (and `/etc` empty) when
    /// there is none or it cannot be read whole.
    fn restore(&self, b: &Builder, key: &SetUpKey) -> Result<bool, BuildError> {
        match b.store.restore_set_up(key, self.shared.etc_dir()) {
            Ok(found) => Ok(found),
            Err(e) => {
                tracing::warn!("cannot use the kept set-up {key}, setting up again: {e}");
                self.shared.empty_etc()?;
                Ok(false)
            }
        }
    }
}

/// A pipeline's build root, made ready only once a module runs in it.
pub(super) enum Root {
    /// The host (`None`) or a build pipeline's tree.
    Pending(Option<Object>),
    Ready(BuildEnv),
}

impl Root {
    /// The build root, made ready for modules run by `runner` when it is not yet.
    pub fn env(&mut self, b: &Builder, runner: &str) -> Result<&BuildEnv, BuildError> {
        if let Root::Pending(tree) = self {
            *self = Root::Ready(BuildEnv::new(b, tree.take(), runner)?);
        }
        match self {
            Root::Ready(env) => Ok(env),
            Root::Pending(_) => unreachable!("made ready just above"),
        }
    }
}
