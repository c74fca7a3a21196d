//! Preparing a module's build root: what the modules of one pipeline share ([`SharedRoot`]:
//! `/dev`, `/etc`, a network namespace) and each module's own directories and [`Sandbox`]
//! ([`ModuleRun::prepare`]). The pipeline decides *what* runs; this decides how its sandbox
//! is laid out on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use osbuild_sys::caps::Capability;

use super::scratch::{ModuleDir, ModuleScratch};
use super::{io_err, BuildRootError, DevDir, HeadLayout, NetNs, Sandbox};
use crate::modules::ModuleKind;

/// What the modules of one pipeline share: a private `/dev`, an `/etc` where the runner's
/// set-up lands once, a loopback-only network namespace, and the directory each module's own
/// directories are made in, in turn. The directories live in a scratch directory the caller
/// owns and removes after dropping this (`/dev` is unmounted first).
pub struct SharedRoot {
    dev: DevDir,
    etc: PathBuf,
    netns: Arc<NetNs>,
    module: ModuleScratch,
}

impl SharedRoot {
    /// Creates `dev/` (mounted), `etc/` and `module/` in `scratch`, and the network namespace.
    pub fn new(scratch: &Path) -> Result<Self, BuildRootError> {
        let dev = DevDir::new(&make_dir(scratch, "dev")?)?;
        let etc = make_dir(scratch, "etc")?;
        let module = ModuleScratch::new(scratch)?;
        let netns = Arc::new(NetNs::new()?);
        Ok(Self {
            dev,
            etc,
            netns,
            module,
        })
    }

    /// The directory for the next module's own directories, emptied (see the scratch module),
    /// held until dropped.
    pub fn module_dir(&self) -> Result<ModuleDir<'_>, BuildRootError> {
        self.module.take()
    }
}

/// Files of the build tree's `/etc` that tools in the sandbox need (mke2fs reads its defaults).
const ROOT_CONFIG_FILES: &[&str] = &["mke2fs.conf"];

/// One stage or assembler to run, as the pipeline decided it.
pub struct ModuleRun<'a> {
    pub kind: ModuleKind,
    /// The module's name in the libdir.
    pub module: &'a str,
    pub libdir: &'a Path,
    /// The runner's file name in `libdir/runners`.
    pub runner: &'a str,
    /// The build tree: the host's `/` or a build pipeline's tree (`root_is_build_tree`).
    pub root: &'a Path,
    pub root_is_build_tree: bool,
    /// The tree: read-write for a stage, read-only for an assembler.
    pub tree: &'a Path,
    /// The assembler's output directory.
    pub output: Option<&'a Path>,
    /// The module declared it needs the network (then it shares the host's).
    pub network: bool,
    pub shared: &'a SharedRoot,
    /// `SOURCE_DATE_EPOCH` of a reproducible build, in the module's environment.
    pub source_epoch: Option<u64>,
    /// Capabilities beyond the default set that the module declares (see
    /// [`Sandbox::capabilities_with`]).
    pub capabilities: Vec<Capability>,
    pub protocol: Protocol<'a>,
    /// How long the module may run before it is killed.
    pub timeout: Option<std::time::Duration>,
}

/// How the engine and the module talk.
#[derive(Clone, Copy)]
pub enum Protocol<'a> {
    /// osbuild v10's: arguments on stdin through `setup-stdio`.
    V10,
    /// osbuild HEAD's: the arguments file (`arguments`, the JSON text), the inputs (`(name,
    /// host path)`, bound read-only), the mounts made below `scratch/mounts`, the metadata
    /// file.
    Head {
        arguments: &'a str,
        inputs: &'a [(String, PathBuf)],
    },
}

impl SharedRoot {
    /// The build root's `/dev` on the host, where device services make their nodes.
    pub fn dev_dir(&self) -> &Path {
        self.dev.path()
    }

    /// The build root's `/etc` on the host, where the runner's set-up lands.
    pub fn etc_dir(&self) -> &Path {
        &self.etc
    }

    /// Copies the build tree's small configuration files that tools in the sandbox need
    /// (`etc/mke2fs.conf`) from `root` into `/etc`, replacing what the set-up left there: once
    /// per build root, where a read-only bind would cost every module's sandbox a mount.
    pub fn copy_root_config(&self, root: &Path) -> Result<(), BuildRootError> {
        for name in ROOT_CONFIG_FILES {
            let (src, dst) = (root.join("etc").join(name), self.etc.join(name));
            // Whatever is there is not the build tree's (a set-up kept by an older version
            // holds the empty file bubblewrap bound the real one over).
            match std::fs::remove_file(&dst) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(format!("replacing {}", dst.display()))(e));
                }
                _ => {}
            }
            // Neither `etc` nor the file may be a symlink: it would lead out of the build
            // tree, into the host's files.
            if super::is_real(&root.join("etc"), true) && super::is_real(&src, false) {
                std::fs::copy(&src, &dst)
                    .map_err(io_err(format!("copying {} into /etc", src.display())))?;
            }
        }
        Ok(())
    }

    /// Empties `/etc` again (after a set-up could only be copied in part).
    pub fn empty_etc(&self) -> Result<(), BuildRootError> {
        std::fs::remove_dir_all(&self.etc).map_err(io_err("emptying the build root's /etc"))?;
        std::fs::create_dir(&self.etc).map_err(io_err("creating the build root's /etc"))
    }
}

impl ModuleRun<'_> {
    /// Where a module of HEAD's protocol finds its mounts (`dir` is its [`ModuleDir`]'s path):
    /// mounts are made here before [`ModuleRun::prepare`], which binds the directory into the
    /// sandbox.
    pub fn mounts_dir(dir: &Path) -> PathBuf {
        dir.join("mounts")
    }
}

impl ModuleRun<'_> {
    /// Makes the module's private directories in `dir` (`var/`, `var/tmp` with mode 1777,
    /// `api/`, and `sources/` for a stage) and the [`Sandbox`] that runs it.
    pub fn prepare(&self, dir: &ModuleDir) -> Result<Sandbox, BuildRootError> {
        let var = dir.make_dir("var")?;
        dir.make_dir("var/tmp")?;
        let api = dir.make_dir("api")?;
        let sources = (self.kind == ModuleKind::Stage)
            .then(|| dir.make_dir("sources"))
            .transpose()?;
        let head = match self.protocol {
            Protocol::V10 => None,
            Protocol::Head { arguments, inputs } => {
                Some(head_layout(dir, &api, arguments, inputs)?)
            }
        };
        Ok(Sandbox {
            root: self.root.to_owned(),
            root_is_build_tree: self.root_is_build_tree,
            libdir: self.libdir.to_owned(),
            runner: self.runner.to_owned(),
            kind: self.kind,
            module: self.module.to_owned(),
            dev: self.shared.dev.path().to_owned(),
            etc: Some(self.shared.etc.clone()),
            var,
            api,
            tree: self.tree.to_owned(),
            output: self.output.map(Path::to_owned),
            sources,
            netns: (!self.network).then(|| self.shared.netns.clone()),
            capabilities: Sandbox::capabilities_with(&self.capabilities),
            source_epoch: self.source_epoch,
            head,
            python_package: crate::modules::osbuild_package_for(self.libdir),
            timeout: self.timeout,
        })
    }
}

/// HEAD's additions in `scratch`: `inputs/NAME` mount points, `mounts/` (perhaps made
/// already, with mounts in it), the empty `meta` file, and `api/arguments` (read-only inside,
/// since the API directory is).
fn head_layout(
    dir: &ModuleDir,
    api: &Path,
    arguments: &str,
    inputs: &[(String, PathBuf)],
) -> Result<HeadLayout, BuildRootError> {
    let inputs_dir = dir.make_dir("inputs")?;
    for (name, _) in inputs {
        make_dir(&inputs_dir, name)?;
    }
    // Made (with the stage's mounts in it) before the sandbox is prepared.
    let mounts_dir = ModuleRun::mounts_dir(dir.path());
    if !mounts_dir.is_dir() {
        dir.make_dir("mounts")?;
    }
    let meta_file = dir.path().join("meta");
    std::fs::write(&meta_file, b"").map_err(io_err("creating the metadata file"))?;
    let args_file = api.join(osbuild_protocol::paths::ARGUMENTS_NAME);
    std::fs::write(&args_file, arguments).map_err(io_err("writing the arguments file"))?;
    Ok(HeadLayout {
        inputs_dir,
        inputs: inputs.to_vec(),
        mounts_dir,
        meta_file,
    })
}

fn make_dir(parent: &Path, name: &str) -> Result<PathBuf, BuildRootError> {
    let p = parent.join(name);
    std::fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
    Ok(p)
}
