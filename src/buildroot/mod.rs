//! The build root: runs one stage or assembler inside a bubblewrap sandbox.
//!
//! The sandbox's `/usr` (and `bin sbin lib lib64`) come read-only from the *build tree*: the
//! host's `/` or the tree of the manifest's build pipeline. It has new mount, PID, IPC and
//! network namespaces, a private `/dev` with only the basic nodes, `/proc`, a read-only `/sys`,
//! tmpfs `/run` and `/tmp`, a private `/var`, the libdir read-only at `/run/osbuild/lib`, the API
//! sockets at `/run/osbuild/api` (`osbuild`, and `remoteloop` for assemblers), and the tree at `/run/osbuild/tree` (read-write for stages,
//! read-only for assemblers, which get `/run/osbuild/output`). Capabilities are cut to
//! osbuild's default set without `CAP_SYS_ADMIN`, plus what the module declares.
//!
//! Inside, the runner (`runners/<name>`) asks the `osbuild` API socket for its stdio
//! (`setup-stdio`, v10's protocol) and executes the module. stdin is the arguments JSON;
//! stdout and stderr are one pipe that [`BuildRoot::run`] reads line by line as the module runs,
//! within [`MAX_LINE_BYTES`] per line and [`MAX_OUTPUT_BYTES`] kept per module.
//!
//! The argv is plain data ([`Sandbox::argv`]) so the plan is tested without root.

mod api;
mod dev;
mod head_api;
mod netns;
mod prepare;
mod remoteloop;
mod scratch;
mod seccomp;
mod setup;

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use osbuild_sys::caps::Capability;
use osbuild_sys::process::Child;
use osbuild_sys::spawn::Exec;

use crate::modules::ModuleKind;

pub use api::{ApiServer, Gate, SourcesHandler, SourcesServer};
pub use head_api::HeadApiServer;
pub use prepare::{ModuleRun, Protocol, SharedRoot};
pub use remoteloop::LoopServer;
pub use scratch::ModuleDir;
pub use setup::{set_up_key, SetUpRoot};

/// Capabilities every module keeps: osbuild's `DEFAULT_CAPABILITIES` without `CAP_SYS_ADMIN`
/// (with it, a module could mount a fresh procfs, whose /proc/sys no read-only bind covers,
/// and set the host's core_pattern). A module gets more only if it declares them
/// ([`Sandbox::capabilities_with`]); all others are dropped.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_IPC_LOCK,
    Capability::CAP_LINUX_IMMUTABLE,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_SYS_NICE,
    Capability::CAP_SYS_RESOURCE,
];

/// Parts of the sandbox's /proc that reach the kernel as a whole, bound read-only over the
/// sandbox's own /proc. bubblewrap's `--proc` itself binds sysrq-trigger, irq and bus read-only
/// whenever access(2) says they are writable; it does not cover these two: access(2) does not
/// say /proc/sys is writable as root (/proc/sys/kernel/core_pattern would run a program as the
/// host's root), and /proc/fs is not on its list. (Each bind costs bubblewrap a read of the
/// mount table: binding those three again cost every sandbox ~0.5 ms.)
const PROC_READ_ONLY: &[&str] = &["/proc/sys", "/proc/fs"];

/// The default capabilities and `extra` that this process's bounding set still has.
/// bubblewrap keeps *every* capability when asked to add one that the bounding set lacks (as
/// in some containers), so asking only for what we can have is what keeps the sandbox confined.
fn grantable_capabilities(extra: &[Capability]) -> Vec<Capability> {
    let mut wanted = DEFAULT_CAPABILITIES.to_vec();
    wanted.extend(extra.iter().filter(|c| !DEFAULT_CAPABILITIES.contains(c)));
    osbuild_sys::caps::in_bounding_set(&wanted)
}

/// Where things appear inside the sandbox.
pub use osbuild_protocol::paths::{
    API_DIR, INPUTS_DIR, LIB_DIR, META_FILE, MOUNTS_DIR, OUTPUT_DIR, SOURCES_DIR, TREE_DIR,
};

/// The directories of the build tree that make up the sandbox's root filesystem.
const ROOT_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// The host's name resolution, for modules that declare they need the network.
const NETWORK_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

/// Configuration of the build tree that tools in the sandbox need and that is too big to copy
/// into its /etc (SELinux policy: tens of MiB), bound read-only when the build tree has it.
/// Small files are copied instead (see `SharedRoot::copy_root_config`).
const ROOT_CONFIG_DIRS: &[&str] = &["etc/selinux"];

/// Whether `path` is a directory (`dir`) or a regular file itself, not a symlink to one.
fn is_real(path: &std::path::Path, dir: bool) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
}

#[derive(Debug, thiserror::Error)]
pub enum BuildRootError {
    #[error("the build root has no /usr at {0}: is the build pipeline's tree a real OS tree?")]
    NoUsr(PathBuf),
    #[error("cannot start bubblewrap (is the 'bubblewrap' package installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("build root set-up failed: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Seccomp(String),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildRootError {
    let context = context.into();
    move |source| BuildRootError::Io { context, source }
}

/// A shared flag that stops a running module: the sandbox is killed, nothing is committed.
///
/// It may also follow a process-wide flag that a signal handler sets ([`Cancel::with_signal`]),
/// since a handler can only store to a static.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    signal: Option<&'static AtomicBool>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    /// A token that is also cancelled when `flag` becomes true.
    pub fn with_signal(flag: &'static AtomicBool) -> Self {
        Self {
            flag: Arc::default(),
            signal: Some(flag),
        }
    }
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.signal.is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// The host name every sandbox sees (fixed: what a stage prints or writes never depends on
/// the build host's name).
pub const SANDBOX_HOSTNAME: &str = "osbuild";

/// Everything that describes one sandboxed run; the argv follows from it alone.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The build tree whose `/usr` etc. form the sandbox's root.
    pub root: PathBuf,
    /// True when `root` is a build pipeline's tree (then its `/boot` is visible too, as in HEAD).
    pub root_is_build_tree: bool,
    pub libdir: PathBuf,
    /// The runner's file name in `libdir/runners`.
    pub runner: String,
    /// What runs: a stage or an assembler (`module`, with the tree), or for
    /// [`ModuleKind::Runner`] the runner's set-up of the build root alone (no tree).
    pub kind: ModuleKind,
    pub module: String,
    /// Prepared private `/dev` (see [`dev::DevDir`]).
    pub dev: PathBuf,
    /// `/etc`, shared by the modules of one pipeline; an empty one when `None`.
    pub etc: Option<PathBuf>,
    /// Private `/var`.
    pub var: PathBuf,
    /// Directory holding the API sockets.
    pub api: PathBuf,
    /// The tree: read-write for a stage, read-only for an assembler.
    pub tree: PathBuf,
    /// The assembler's output directory.
    pub output: Option<PathBuf>,
    /// The sources output directory (stages).
    pub sources: Option<PathBuf>,
    /// Capabilities the module keeps ([`Sandbox::capabilities_with`]).
    pub capabilities: Vec<Capability>,
    /// The network namespace to run in (loopback only); `None` shares the host's network,
    /// for modules that declare they need it (never decided by a manifest).
    pub netns: Option<Arc<NetNs>>,
    /// `SOURCE_DATE_EPOCH` of a reproducible build (the reproducible-builds convention that
    /// dpkg, initramfs-tools, mkfs.fat and the assemblers honour).
    pub source_epoch: Option<u64>,
    /// For a module that speaks osbuild HEAD's protocol: what its sandbox adds to v10's.
    pub head: Option<HeadLayout>,
    /// How long the module may run (`osbuild --stage-timeout`); it is killed after that.
    pub timeout: Option<Duration>,
    /// The host's `osbuild` Python package, bound at `/run/osbuild/lib/osbuild` when the
    /// libdir has an empty `osbuild` directory ([`crate::modules::osbuild_package_for`]).
    pub python_package: Option<PathBuf>,
}

impl HeadLayout {
    /// bubblewrap's arguments for the inputs, mounts and metadata file.
    fn binds(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut bind = |how: &str, from: &std::path::Path, to: &str| {
            a.extend([how.into(), from.into(), to.into()]);
        };
        bind("--ro-bind", &self.inputs_dir, INPUTS_DIR);
        for (name, path) in &self.inputs {
            bind("--ro-bind", path, &format!("{INPUTS_DIR}/{name}"));
        }
        bind("--bind", &self.mounts_dir, MOUNTS_DIR);
        bind("--bind", &self.meta_file, META_FILE);
        a
    }
}

/// What a sandbox of HEAD's protocol has besides v10's: the arguments file is in the API
/// directory; inputs, mounts and the metadata file are bound at HEAD's paths.
#[derive(Debug, Clone)]
pub struct HeadLayout {
    /// Bound read-only at `/run/osbuild/inputs`; holds an empty directory per input.
    pub inputs_dir: PathBuf,
    /// `(name, host path)`: each input bound read-only at `/run/osbuild/inputs/NAME`.
    pub inputs: Vec<(String, PathBuf)>,
    /// Bound read-write at `/run/osbuild/mounts` (with the mounts made below it).
    pub mounts_dir: PathBuf,
    /// Bound read-write at `/run/osbuild/meta`.
    pub meta_file: PathBuf,
}

impl Sandbox {
    /// The default set, limited to what this host can grant.
    pub fn default_capabilities() -> Vec<Capability> {
        grantable_capabilities(&[])
    }

    /// The default set and `extra` (what a module declares), limited to what this host can
    /// grant.
    pub fn capabilities_with(extra: &[Capability]) -> Vec<Capability> {
        grantable_capabilities(extra)
    }

    /// The bubblewrap command line, program name first; `seccomp` is the descriptor bubblewrap
    /// reads the sandbox's seccomp filter from (see the seccomp module).
    pub fn argv(&self, seccomp: Option<RawFd>) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            a.extend(items.iter().map(|i| i.as_ref().to_owned()));
        };
        push(&[
            &"bwrap",
            &"--chdir",
            &"/",
            &"--die-with-parent",
            &"--new-session",
        ]);
        // No network: BuildRoot::run starts bubblewrap inside `netns` (see the netns module).
        // A UTS namespace of its own: a stage calling sethostname renames only its sandbox.
        push(&[&"--unshare-ipc", &"--unshare-pid", &"--unshare-uts"]);
        push(&[&"--hostname", &SANDBOX_HOSTNAME]);
        push(&[&"--cap-drop", &"ALL"]);
        for cap in &self.capabilities {
            push(&[&"--cap-add", &cap.to_string()]);
        }
        for arg in self.root_dirs() {
            push(&[&arg]);
        }
        if self.root_is_build_tree && self.root.join("boot").is_dir() {
            push(&[&"--ro-bind", &self.root.join("boot"), &"/boot"]);
        }
        push(&[&"--dev-bind", &self.dev, &"/dev", &"--tmpfs", &"/dev/shm"]);
        match &self.etc {
            Some(etc) => push(&[&"--bind", etc, &"/etc"]),
            None => push(&[&"--dir", &"/etc"]),
        }
        if self.netns.is_none() {
            // A module with the host's network resolves names as the host does.
            for file in NETWORK_FILES {
                push(&[&"--ro-bind-try", file, file]);
            }
        }
        push(&[&"--tmpfs", &"/run", &"--tmpfs", &"/tmp"]);
        push(&[&"--bind", &self.var, &"/var"]);
        for dir in ROOT_CONFIG_DIRS {
            let src = self.root.join(dir);
            // Only the build tree's own directory, never one a symlink leads to on the host.
            if is_real(&self.root.join("etc"), true) && is_real(&src, true) {
                push(&[&"--ro-bind", &src, &format!("/{dir}")]);
            }
        }
        push(&[&"--ro-bind", &self.libdir, &LIB_DIR]);
        if let Some(package) = &self.python_package {
            push(&[&"--ro-bind", package, &format!("{LIB_DIR}/osbuild")]);
        }
        push(&[&"--ro-bind", &self.api, &API_DIR]);
        match self.kind {
            ModuleKind::Assembler => {
                push(&[&"--ro-bind", &self.tree, &TREE_DIR]);
                if let Some(output) = &self.output {
                    push(&[&"--bind", output, &OUTPUT_DIR]);
                }
            }
            ModuleKind::Runner => {}
            _ => push(&[&"--bind", &self.tree, &TREE_DIR]),
        }
        if let Some(sources) = &self.sources {
            push(&[&"--ro-bind", sources, &SOURCES_DIR]);
        }
        if let Some(head) = &self.head {
            for arg in head.binds() {
                push(&[&arg]);
            }
        }
        // Last: every bind makes bubblewrap read the whole mount table, and /sys brings a
        // dozen mounts (cgroups) into it.
        push(&[&"--proc", &"/proc", &"--ro-bind", &"/sys", &"/sys"]);
        for dir in PROC_READ_ONLY {
            push(&[&"--ro-bind-try", dir, dir]);
        }
        push(&[&"--ro-bind-try", &"/sys/fs/selinux", &"/sys/fs/selinux"]);
        if let Some(fd) = seccomp {
            push(&[&"--seccomp", &fd.to_string()]);
        }
        let runner = format!("{LIB_DIR}/runners/{}", self.runner);
        let module = match self.kind {
            ModuleKind::Runner => osbuild_protocol::runner::SET_UP_ARG.to_owned(),
            kind => format!("{LIB_DIR}/{}/{}", kind.dir_name(), self.module),
        };
        push(&[&"--", &runner, &module]);
        a
    }

    /// bubblewrap's arguments for the build tree's `/usr` and friends: directories bound
    /// read-only, symlinks (merged /usr) made again.
    fn root_dirs(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        for dir in ROOT_DIRS {
            let src = self.root.join(dir);
            let dst = OsString::from(format!("/{dir}"));
            match std::fs::symlink_metadata(&src) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&src) {
                        a.extend(["--symlink".into(), target.into(), dst]);
                    }
                }
                Ok(m) if m.is_dir() => a.extend(["--ro-bind".into(), src.into(), dst]),
                _ => {}
            }
        }
        a
    }

    /// The environment of the sandbox; nothing is inherited from the engine.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = [
            ("PATH", "/usr/sbin:/usr/bin"),
            ("LC_CTYPE", "C.UTF-8"),
            ("container", "bwrap-osbuild"),
            ("PYTHONPATH", LIB_DIR),
            ("PYTHONUNBUFFERED", "1"),
            ("TERM", "dumb"),
        ]
        .map(|(k, v)| (k, v.to_owned()))
        .into();
        if let Some(epoch) = self.source_epoch {
            env.push(("SOURCE_DATE_EPOCH", epoch.to_string()));
        }
        env
    }
}

/// How a module ended.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: ExitStatus,
    /// Everything the module (and the runner, and bubblewrap itself) printed.
    pub output: String,
    /// False when the runner never asked for its stdio (it could not start); always true
    /// for HEAD's protocol, which has no such call.
    pub connected: bool,
    /// What a module of HEAD's protocol reported on its API socket before failing:
    /// `{"type", "value", "traceback"}`.
    pub exception: Option<crate::json::Value>,
}

impl RunResult {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// "exit status 3" / "killed by signal 9", for error messages.
    pub fn describe_status(&self) -> String {
        osbuild_sys::process::describe_status(self.status)
    }
}

/// Runs modules in sandboxes built from one [`Sandbox`] plan.
pub struct BuildRoot;

impl BuildRoot {
    /// Runs the plan with `args` (the module's arguments JSON) on its stdin, calling `on_line`
    /// for each line of output as it arrives. Returns when the sandbox is gone: every process
    /// in it has died (PID namespace), and its API sockets are closed.
    pub fn run(
        sandbox: &Sandbox,
        args: &str,
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunResult, BuildRootError> {
        Self::run_with_sources(sandbox, args, None, cancel, on_line)
    }

    /// [`Self::run`], also serving the sources API (`/run/osbuild/api/sources`) with `sources`.
    pub fn run_with_sources(
        sandbox: &Sandbox,
        args: &str,
        sources: Option<SourcesHandler>,
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunResult, BuildRootError> {
        Self::start(sandbox, args, sources, Gate::open_now())?.finish(sandbox, cancel, on_line)
    }

    /// Starts the sandbox. Its module runs once `gate` is open: until then a v10 runner waits
    /// for its stdio, having done nothing (HEAD's protocol has no such wait: give it an open
    /// gate). [`Started::finish`] opens the gate and waits for the end.
    pub fn start(
        sandbox: &Sandbox,
        args: &str,
        sources: Option<SourcesHandler>,
        gate: Gate,
    ) -> Result<Started, BuildRootError> {
        if !sandbox.root.join("usr").is_dir() {
            return Err(BuildRootError::NoUsr(sandbox.root.clone()));
        }
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("creating the output pipe")(e.into()))?;
        let server = match sandbox.head {
            None => Api::V10(ApiServer::start(
                &sandbox.api,
                args,
                &writer,
                sandbox.netns.as_deref(),
                gate.clone(),
            )?),
            Some(_) => Api::Head(HeadApiServer::start(&sandbox.api)?),
        };
        let sources = sources
            .map(|h| SourcesServer::start(&sandbox.api, h, sandbox.netns.as_deref()))
            .transpose()?;
        // Assemblers may ask for loop devices; the server detaches them all when dropped
        // (after the sandbox is gone).
        let loops = match sandbox.kind {
            ModuleKind::Assembler => {
                Some(LoopServer::start(&sandbox.api, sandbox.netns.as_deref())?)
            }
            _ => None,
        };
        let child = spawn_bubblewrap(sandbox, writer)?;
        let output = OutputReader::new(reader)?;
        Ok(Started {
            child: Unfinished(Some(child)),
            output,
            gate,
            server,
            _sources: sources,
            _loops: loops,
        })
    }
}

/// A sandbox started by [`BuildRoot::start`]. Dropping it unfinished kills the sandbox and
/// waits until every process in it is gone, then stops its servers (the fields drop in this
/// order).
pub struct Started {
    child: Unfinished,
    output: OutputReader,
    gate: Gate,
    server: Api,
    _sources: Option<SourcesServer>,
    _loops: Option<LoopServer>,
}

impl Started {
    /// Lets the module run, and returns when the sandbox is gone: every process in it has
    /// died (PID namespace), and its API sockets are closed. The timeout counts from here.
    pub fn finish(
        self,
        sandbox: &Sandbox,
        cancel: &Cancel,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunResult, BuildRootError> {
        let Started {
            mut child,
            mut output,
            gate,
            server,
            _sources,
            _loops,
        } = self;
        let mut child = child
            .0
            .take()
            .expect("a started sandbox has its bubblewrap");
        gate.open();
        let waited = wait_for(&mut child, &mut output, sandbox, cancel, on_line);
        // Gone before the servers stop: killed and reaped if the wait failed.
        drop(child);
        let (status, timed_out) = waited?;
        // The v10 server holds the last write end outside the sandbox: once it is gone, EOF
        // comes as soon as the (already dead) sandbox processes have released theirs.
        let (connected, exception) = match server {
            Api::V10(server) => (server.stdio_requested(), None),
            Api::Head(server) => (true, server.finish()),
        };
        output.drain(on_line);
        if timed_out {
            let secs = sandbox.timeout.unwrap_or_default().as_secs_f64();
            let line =
                format!("osbuild: the stage ran longer than its timeout ({secs} s) and was killed");
            on_line(&line);
            output.tail.push(&format!("{line}\n"));
        }
        Ok(RunResult {
            status,
            output: output.into_text(),
            connected,
            exception,
        })
    }
}

/// The bubblewrap of a sandbox that was started and not finished.
struct Unfinished(Option<Child>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            child.kill_with_pid_namespace(SANDBOX_EXIT_TIMEOUT);
        }
    }
}

/// Starts bubblewrap for `sandbox` with its stdout and stderr on `writer`, on this thread
/// (bubblewrap dies with it).
fn spawn_bubblewrap(sandbox: &Sandbox, writer: OwnedFd) -> Result<Child, BuildRootError> {
    let filter = seccomp::filter_pipe().map_err(BuildRootError::Seccomp)?;
    let argv = sandbox.argv(Some(filter.as_raw_fd()));
    let env: Vec<(OsString, OsString)> = sandbox
        .env()
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let null = std::fs::File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
    let netns = sandbox
        .netns
        .as_ref()
        .map(|n| n.try_clone_fd())
        .transpose()
        .map_err(io_err("duplicating the network namespace"))?;
    let exec = Exec::new(&argv, &env, [null.into(), dup(&writer)?, writer])
        .map_err(BuildRootError::Spawn)?
        .keep(vec![filter])
        .in_network_namespace(netns);
    // bwrap dies with this thread: spawn and wait here, on the caller's own thread.
    exec.spawn().map_err(BuildRootError::Spawn)
    // `exec` drops here: our copies of the pipe's write end close
}

/// Waits until the sandbox ends, reading its output: its status, and whether it was killed
/// for running past its timeout. A cancel kills it and is an error.
fn wait_for(
    child: &mut Child,
    output: &mut OutputReader,
    sandbox: &Sandbox,
    cancel: &Cancel,
    on_line: &mut dyn FnMut(&str),
) -> Result<(ExitStatus, bool), BuildRootError> {
    let deadline = sandbox.timeout.map(|t| std::time::Instant::now() + t);
    let mut timed_out = false;
    let status = loop {
        output.poll(Some(child.pidfd()), Duration::from_millis(100), on_line);
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            child.kill_with_pid_namespace(SANDBOX_EXIT_TIMEOUT);
            timed_out = true;
            break child.wait().map_err(io_err("waiting for bubblewrap"))?;
        }
        if cancel.is_cancelled() {
            // Returns when every process of the sandbox is gone (or after the bound).
            if !child.kill_with_pid_namespace(SANDBOX_EXIT_TIMEOUT) {
                tracing::warn!(
                    "the cancelled sandbox's processes still run after {SANDBOX_EXIT_TIMEOUT:?}"
                );
            }
            return Err(BuildRootError::Cancelled);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(io_err("waiting for bubblewrap")(e)),
        }
    };
    Ok((status, timed_out))
}

/// The `osbuild` API endpoint of a sandbox, in its module's protocol.
enum Api {
    V10(ApiServer),
    Head(HeadApiServer),
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, BuildRootError> {
    fd.try_clone()
        .map_err(io_err("duplicating the output pipe"))
}

/// The most of one output line that is kept: the rest of a longer line is dropped and the line
/// ends with `[... N bytes of this line dropped]`. Each line is one `StageOutput` D-Bus signal
/// of osbuildd, so this also keeps every signal far below the bus's message limit, whatever a
/// module prints (even gigabytes without a newline).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The most of one module's output kept in its [`RunResult`] (and so in the build result and
/// osbuildd's memory): the last this many bytes, after a first line saying how many bytes
/// before them were dropped. Every line still reaches the `on_line` callback as it arrives.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// How long a cancel waits for a killed sandbox's processes to be gone (the kernel kills them
/// all at once; only a process stuck in the kernel, e.g. on a hung mount, takes longer).
const SANDBOX_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the output pipe without blocking the cancellation checks, splitting it into lines of
/// at most [`MAX_LINE_BYTES`] and keeping the last [`MAX_OUTPUT_BYTES`] of them.
struct OutputReader {
    file: std::fs::File,
    /// The current line so far (at most [`MAX_LINE_BYTES`]) and how many bytes of it were
    /// dropped beyond that.
    line: Vec<u8>,
    line_dropped: usize,
    tail: Tail,
}

impl OutputReader {
    fn new(fd: OwnedFd) -> Result<Self, BuildRootError> {
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| io_err("making the output pipe non-blocking")(e.into()))?;
        Ok(Self {
            file: fd.into(),
            line: Vec::new(),
            line_dropped: 0,
            tail: Tail::default(),
        })
    }

    /// Waits up to `timeout` for output (or for `also` to become readable) and consumes what
    /// is there. Returns false at EOF.
    fn poll(
        &mut self,
        also: Option<BorrowedFd<'_>>,
        timeout: Duration,
        on_line: &mut dyn FnMut(&str),
    ) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = vec![PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
        if let Some(also) = also {
            fds.push(PollFd::new(also, PollFlags::POLLIN));
        }
        let ms = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => true,
            Ok(_) => self.read_available(on_line),
            Err(_) => true,
        }
    }

    fn read_available(&mut self, on_line: &mut dyn FnMut(&str)) -> bool {
        let mut buf = [0u8; 32 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => {
                    self.flush_partial(on_line);
                    return false;
                }
                Ok(n) => self.feed(&buf[..n], on_line),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn feed(&mut self, mut data: &[u8], on_line: &mut dyn FnMut(&str)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let part = &data[..newline.unwrap_or(data.len())];
            let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
            let kept = part.len().min(room);
            self.line.extend_from_slice(&part[..kept]);
            self.line_dropped += part.len() - kept;
            match newline {
                Some(pos) => {
                    self.end_line(true, on_line);
                    data = &data[pos + 1..];
                }
                None => data = &[],
            }
        }
    }

    /// Hands the current line to `on_line` (without its newline) and keeps it.
    fn end_line(&mut self, newline: bool, on_line: &mut dyn FnMut(&str)) {
        let mut line = String::from_utf8_lossy(&self.line).into_owned();
        if self.line_dropped > 0 {
            line.push_str(&format!(
                "[... {} bytes of this line dropped]",
                self.line_dropped
            ));
        }
        on_line(&line);
        if newline {
            line.push('\n');
        }
        self.tail.push(&line);
        self.line.clear();
        self.line_dropped = 0;
    }

    fn flush_partial(&mut self, on_line: &mut dyn FnMut(&str)) {
        if !self.line.is_empty() || self.line_dropped > 0 {
            self.end_line(false, on_line);
        }
    }

    /// Reads to EOF, bounded in time in case a process escaped with the pipe (it cannot: the
    /// PID namespace is gone, but an engine must never hang on it).
    fn drain(&mut self, on_line: &mut dyn FnMut(&str)) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if !self.poll(None, Duration::from_millis(100), on_line) {
                return;
            }
        }
        self.flush_partial(on_line);
    }

    /// The output kept (see [`MAX_OUTPUT_BYTES`]).
    fn into_text(self) -> String {
        self.tail.into_text()
    }
}

/// The last [`MAX_OUTPUT_BYTES`] (in whole lines) of an output, and how much came before them.
#[derive(Default)]
struct Tail {
    text: String,
    dropped: usize,
}

impl Tail {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        // Trimming only past twice the bound keeps the copying linear in the output.
        if self.text.len() > 2 * MAX_OUTPUT_BYTES {
            self.trim();
        }
    }

    /// Drops whole lines from the start until at most [`MAX_OUTPUT_BYTES`] remain.
    fn trim(&mut self) {
        let Some(excess) = self.text.len().checked_sub(MAX_OUTPUT_BYTES) else {
            return;
        };
        let cut = match self.text.as_bytes()[excess..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(pos) => excess + pos + 1,
            None => (excess..)
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(excess),
        };
        self.text.drain(..cut);
        self.dropped += cut;
    }

    fn into_text(mut self) -> String {
        self.trim();
        if self.dropped == 0 {
            return self.text;
        }
        format!(
            "[... the first {} bytes of this output dropped]\n{}",
            self.dropped, self.text
        )
    }
}

pub use dev::DevDir;
pub use netns::NetNs;

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kind: ModuleKind) -> Sandbox {
        Sandbox {
            root: PathBuf::from("/"),
            root_is_build_tree: false,
            libdir: "/usr/lib/osbuild".into(),
            runner: "org.osbuild.linux".into(),
            kind,
            module: "org.osbuild.noop".into(),
            dev: "/s/tmp/dev".into(),
            etc: None,
            var: "/s/tmp/var".into(),
            api: "/s/tmp/api".into(),
            tree: "/s/tmp/tree".into(),
            output: (kind == ModuleKind::Assembler).then(|| "/s/tmp/out".into()),
            sources: (kind == ModuleKind::Stage).then(|| "/s/tmp/src".into()),
            netns: None,
            capabilities: DEFAULT_CAPABILITIES.to_vec(),
            source_epoch: None,
            head: None,
            python_package: None,
            timeout: None,
        }
    }

    #[test]
    fn a_head_module_gets_inputs_mounts_and_meta_at_heads_paths() {
        let sandbox = Sandbox {
            head: Some(HeadLayout {
                inputs_dir: "/s/tmp/inputs".into(),
                inputs: vec![("tree".into(), "/store/objects/x".into())],
                mounts_dir: "/s/tmp/mounts".into(),
                meta_file: "/s/tmp/meta".into(),
            }),
            ..plan(ModuleKind::Stage)
        };
        let argv = strings(&sandbox.argv(None));
        let inputs = find(&argv, ["--ro-bind", "/s/tmp/inputs", INPUTS_DIR]).unwrap();
        let tree = find(
            &argv,
            ["--ro-bind", "/store/objects/x", "/run/osbuild/inputs/tree"],
        );
        assert!(
            tree.unwrap() > inputs,
            "each input is bound inside the inputs directory"
        );
        assert!(find(&argv, ["--bind", "/s/tmp/mounts", MOUNTS_DIR]).is_some());
        assert!(find(&argv, ["--bind", "/s/tmp/meta", META_FILE]).is_some());
        let plain = strings(&plan(ModuleKind::Stage).argv(None));
        assert!(!plain.iter().any(|a| a.starts_with("/run/osbuild/inputs")));
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The index of `[flag, a, b]` in argv, if present.
    fn find(argv: &[String], triple: [&str; 3]) -> Option<usize> {
        argv.windows(3)
            .position(|w| w[0] == triple[0] && w[1] == triple[1] && w[2] == triple[2])
    }

    #[test]
    fn stage_gets_tree_read_write_and_no_network() {
        let argv = strings(&plan(ModuleKind::Stage).argv(None));
        assert!(find(&argv, ["--bind", "/s/tmp/tree", TREE_DIR]).is_some());
        assert!(find(&argv, ["--ro-bind", "/s/tmp/src", SOURCES_DIR]).is_some());
        assert!(find(&argv, ["--ro-bind", "/usr/lib/osbuild", LIB_DIR]).is_some());
        assert!(
            !argv.contains(&"--unshare-net".to_string()),
            "the engine makes the netns"
        );
        assert!(!argv.iter().any(|a| a == OUTPUT_DIR));
        let tail = &argv[argv.len() - 3..];
        assert_eq!(
            tail,
            [
                "--",
                "/run/osbuild/lib/runners/org.osbuild.linux",
                "/run/osbuild/lib/stages/org.osbuild.noop"
            ]
        );
    }

    /// Feeds `chunks` to an output reader and returns the lines it handed on and the text kept.
    fn read_output<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<String>, String) {
        let (reader, _writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut output = OutputReader::new(reader).unwrap();
        let mut lines = Vec::new();
        for chunk in chunks {
            output.feed(chunk, &mut |l| lines.push(l.to_owned()));
        }
        output.flush_partial(&mut |l| lines.push(l.to_owned()));
        (lines, output.into_text())
    }

    #[test]
    fn a_long_line_keeps_its_start_and_says_how_much_was_dropped() {
        let chunk = vec![b'a'; 1024 * 1024];
        let chunks = std::iter::repeat_n(&chunk[..], 10).chain([&b"\nshort\nend"[..]]);
        let (lines, text) = read_output(chunks);
        let dropped = 10 * 1024 * 1024 - MAX_LINE_BYTES;
        let first = format!(
            "{}[... {dropped} bytes of this line dropped]",
            "a".repeat(MAX_LINE_BYTES)
        );
        assert_eq!(lines, [first.clone(), "short".into(), "end".into()]);
        assert_eq!(text, format!("{first}\nshort\nend"));
    }

    #[test]
    fn the_kept_output_is_the_last_lines_after_a_notice() {
        let all: String = (0..400_000).map(|i| format!("line {i:07}\n")).collect();
        let (lines, text) = read_output(all.as_bytes().chunks(4096));
        assert_eq!(lines.len(), 400_000, "every line is handed on");
        let (notice, kept) = text.split_once('\n').unwrap();
        assert!(kept.len() <= MAX_OUTPUT_BYTES, "{}", kept.len());
        assert!(kept.len() > MAX_OUTPUT_BYTES - 100, "{}", kept.len());
        assert!(
            all.ends_with(kept) && kept.starts_with("line "),
            "whole lines"
        );
        let dropped = all.len() - kept.len();
        assert_eq!(
            notice,
            format!("[... the first {dropped} bytes of this output dropped]")
        );
    }

    #[test]
    fn every_sandbox_has_its_own_uts_namespace_and_a_fixed_hostname() {
        for kind in [ModuleKind::Stage, ModuleKind::Assembler] {
            let argv = strings(&plan(kind).argv(None));
            assert!(argv.contains(&"--unshare-uts".to_string()), "{argv:?}");
            let at = argv
                .iter()
                .position(|a| a == "--hostname")
                .expect("--hostname");
            assert_eq!(argv[at + 1], SANDBOX_HOSTNAME);
        }
    }

    #[test]
    fn modules_with_the_host_network_get_its_name_resolution() {
        // `plan` has no netns of its own (making one needs root): the host's network.
        let argv = strings(&plan(ModuleKind::Stage).argv(None));
        for file in NETWORK_FILES {
            assert!(
                find(&argv, ["--ro-bind-try", file, file]).is_some(),
                "{file}"
            );
        }
    }

    #[test]
    fn assembler_gets_tree_read_only_and_output() {
        let argv = strings(&plan(ModuleKind::Assembler).argv(None));
        assert!(find(&argv, ["--ro-bind", "/s/tmp/tree", TREE_DIR]).is_some());
        assert!(find(&argv, ["--bind", "/s/tmp/tree", TREE_DIR]).is_none());
        assert!(find(&argv, ["--bind", "/s/tmp/out", OUTPUT_DIR]).is_some());
        assert!(argv
            .last()
            .unwrap()
            .ends_with("/assemblers/org.osbuild.noop"));
    }

    #[test]
    fn capabilities_are_dropped_then_the_default_set_added() {
        let argv = strings(&plan(ModuleKind::Stage).argv(None));
        let drop_at = argv.iter().position(|a| a == "--cap-drop").unwrap();
        assert_eq!(argv[drop_at + 1], "ALL");
        let added: Vec<&str> = argv
            .windows(2)
            .filter(|w| w[0] == "--cap-add")
            .map(|w| w[1].as_str())
            .collect();
        let all: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        assert_eq!(added, all);
        assert!(argv.iter().position(|a| a == "--cap-add").unwrap() > drop_at);
    }

    #[test]
    fn declared_capabilities_join_a_default_set_without_sys_admin() {
        use Capability::{CAP_CHOWN, CAP_MAC_ADMIN, CAP_SYS_ADMIN};
        assert!(!DEFAULT_CAPABILITIES.contains(&CAP_SYS_ADMIN));
        assert!(!Sandbox::default_capabilities().contains(&CAP_SYS_ADMIN));
        let with = Sandbox::capabilities_with(&[CAP_SYS_ADMIN, CAP_MAC_ADMIN, CAP_CHOWN]);
        // Granted as far as this host's bounding set goes, once each.
        for cap in osbuild_sys::caps::in_bounding_set(&[CAP_SYS_ADMIN, CAP_MAC_ADMIN]) {
            assert!(with.contains(&cap), "{cap}");
        }
        assert_eq!(with.iter().filter(|c| **c == CAP_CHOWN).count(), 1);
    }

    #[test]
    fn root_dirs_follow_the_build_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("usr")).unwrap();
        std::fs::create_dir(root.path().join("lib64")).unwrap();
        std::fs::create_dir(root.path().join("boot")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
        let mut p = plan(ModuleKind::Stage);
        p.root = root.path().to_owned();
        p.root_is_build_tree = true;
        let argv = strings(&p.argv(None));
        let r = root.path().display();
        assert!(find(&argv, ["--ro-bind", &format!("{r}/usr"), "/usr"]).is_some());
        assert!(find(&argv, ["--ro-bind", &format!("{r}/lib64"), "/lib64"]).is_some());
        assert!(find(&argv, ["--symlink", "usr/bin", "/bin"]).is_some());
        assert!(find(&argv, ["--ro-bind", &format!("{r}/boot"), "/boot"]).is_some());
        assert!(
            !argv.iter().any(|a| a == "/sbin"),
            "absent dirs are not mounted"
        );
    }

    /// The build tree's /etc/selinux is bound when the tree has one of its own; not when
    /// `etc` or `etc/selinux` is a symlink, which would lead to a host directory.
    #[test]
    fn selinux_policy_only_from_the_build_tree_itself() {
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(elsewhere.path().join("selinux")).unwrap();
        let tree = |etc: &dyn Fn(&std::path::Path)| {
            let root = tempfile::tempdir().unwrap();
            etc(root.path());
            let mut p = plan(ModuleKind::Stage);
            p.root = root.path().to_owned();
            let bound = strings(&p.argv(None)).iter().any(|a| a == "/etc/selinux");
            (root, bound)
        };
        let (_r, own) = tree(&|r| std::fs::create_dir_all(r.join("etc/selinux")).unwrap());
        assert!(own);
        let (_r, linked_etc) =
            tree(&|r| std::os::unix::fs::symlink(elsewhere.path(), r.join("etc")).unwrap());
        assert!(!linked_etc);
        let (_r, linked_dir) = tree(&|r| {
            std::fs::create_dir(r.join("etc")).unwrap();
            std::os::unix::fs::symlink(elsewhere.path().join("selinux"), r.join("etc/selinux"))
                .unwrap();
        });
        assert!(!linked_dir);
    }

    #[test]
    fn environment_is_fixed() {
        let env = plan(ModuleKind::Stage).env();
        assert!(env.contains(&("PATH", "/usr/sbin:/usr/bin".into())));
        assert!(env.iter().all(|(k, _)| *k != "HOME"));
        assert!(env.iter().all(|(k, _)| *k != "SOURCE_DATE_EPOCH"));
    }

    #[test]
    fn a_source_epoch_reaches_the_environment() {
        let sandbox = Sandbox {
            source_epoch: Some(1_700_000_000),
            ..plan(ModuleKind::Assembler)
        };
        assert!(sandbox
            .env()
            .contains(&("SOURCE_DATE_EPOCH", "1700000000".into())));
    }
}
