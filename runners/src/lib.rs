//! osbuild runners: the first program run inside a build root sandbox.
//!
//! One multi-call binary answers to every runner name (`libdir/runners/org.osbuild.NAME` are
//! symlinks to it) and dispatches on the file name of `argv[0]`. Called as
//! `org.osbuild.NAME /run/osbuild/lib/stages/<stage>`, it:
//!
//! 1. gets the stage's stdin/stdout/stderr from the host with v10's `setup-stdio` call on
//!    `/run/osbuild/api/osbuild` ([`stdio`]); failure: message on stderr, exit status 2.
//!    A module of osbuild HEAD's protocol (the engine wrote `/run/osbuild/api/arguments`)
//!    already has its stdio from bubblewrap and reads its arguments from that file;
//! 2. does the per-OS setup of its flavour in the sandbox's root filesystem ([`setup`],
//!    flavours in [`names`]) unless the build root's `/etc` already had it; a fatal setup
//!    failure prints the tool's output and exits 1, otherwise the set-up prints nothing;
//! 3. `exec`s the stage with the remaining arguments, so the stage's exit status (or signal)
//!    is the runner's; if that fails: a message naming the path and the error, exit 127.
//!
//! Called as `org.osbuild.NAME --set-up` ([`osbuild_protocol::runner::SET_UP_ARG`]) it does
//! step 2 alone and exits (0, or 1 after printing a fatal failure): the engine runs that once
//! per build root, before any module, and keeps the `/etc` it leaves for later builds.
//!
//! Modules:
//! - [`names`]: every runner name, its osbuild alias structure and its flavour (`--list`);
//! - [`stdio`]: the `setup-stdio` client;
//! - [`setup`]: the setup steps, as data, run against a root directory.
//!
//! Safety net: the setup writes to `/etc` (it deletes `/etc/nsswitch.conf`!), which is only
//! right inside a sandbox. It runs only when `$container` is set, as every container manager
//! does (osbuild's bwrap sets `container=bwrap-osbuild`, nspawn `container=systemd-nspawn`);
//! otherwise it is skipped with a warning and the stage still runs.
//!
//! Test hook: debug builds only (so never a release binary) read the API socket path from
//! `OSBUILD_API_SOCKET` when it is set; it is removed from the environment before the stage
//! runs.

#![forbid(unsafe_code)]

pub mod names;
pub mod setup;
pub mod stdio;

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Exit status when the runner itself cannot work (setup-stdio, usage, unknown name).
pub const EXIT_RUNNER_FAILED: i32 = 2;
/// Exit status when a required setup step fails.
pub const EXIT_SETUP_FAILED: i32 = 1;
/// Exit status when the stage cannot be executed.
pub const EXIT_EXEC_FAILED: i32 = 127;

/// The environment variable debug builds accept to move the API socket (tests only).
pub const SOCKET_ENV: &str = "OSBUILD_API_SOCKET";

/// Where `setup-stdio` connects: [`stdio::API_SOCKET`], or the test override.
pub fn api_socket_path() -> PathBuf {
    #[cfg(debug_assertions)]
    if let Some(p) = std::env::var_os(SOCKET_ENV) {
        return PathBuf::from(p);
    }
    PathBuf::from(stdio::API_SOCKET)
}

/// The whole runner: returns the exit status on failure, never returns once the stage runs.
pub fn run(argv: &[OsString]) -> i32 {
    let invoked = argv
        .first()
        .map(|a| Path::new(a).file_name().unwrap_or(a.as_os_str()))
        .unwrap_or(OsStr::new("osbuild-runners"))
        .to_string_lossy()
        .into_owned();

    if argv.get(1).is_some_and(|a| a == "--list") {
        print!("{}", names::listing());
        return 0;
    }
    let Some(runner) = names::lookup(&invoked) else {
        let known: Vec<&str> = names::RUNNERS.iter().map(|r| r.name).collect();
        eprintln!(
            "{invoked}: unknown runner name; this binary runs as one of: {} \
             (or run it with --list)",
            known.join(", ")
        );
        return EXIT_RUNNER_FAILED;
    };
    let Some(stage) = argv.get(1) else {
        eprintln!(
            "usage: {invoked} STAGE [ARG...]  (runs STAGE in this build root)\n       \
             {invoked} {}  (sets this build root up, and exits)",
            osbuild_protocol::runner::SET_UP_ARG
        );
        return EXIT_RUNNER_FAILED;
    };
    if stage == osbuild_protocol::runner::SET_UP_ARG {
        return set_up_only(&invoked, runner.flavor);
    }

    // osbuild HEAD's protocol gives a module its arguments in a file and its stdio through
    // bubblewrap; v10's asks for them on the API socket.
    let socket = api_socket_path();
    let head_protocol = Path::new(osbuild_protocol::paths::ARGUMENTS_FILE).exists();
    if !head_protocol {
        if let Err(e) = stdio::setup_stdio(&socket) {
            eprintln!(
                "{invoked}: cannot get the stage's stdio from the host: setup-stdio on {}: {e}",
                socket.display()
            );
            return EXIT_RUNNER_FAILED;
        }
    }
    std::env::remove_var(SOCKET_ENV);

    if in_sandbox() {
        if let Err(status) = set_up_or_report(&invoked, runner.flavor) {
            return status;
        }
    } else {
        eprintln!(
            "{invoked}: warning: $container is not set, so this is not a build root sandbox; \
             skipping the build root setup ({:?}) to leave this system alone",
            runner.flavor.steps()
        );
    }

    let err = std::process::Command::new(stage)
        .args(&argv[2..])
        .envs(runner.flavor.extra_env().iter().copied())
        .exec();
    eprintln!(
        "{invoked}: cannot execute stage {}: {err}",
        Path::new(stage).display()
    );
    EXIT_EXEC_FAILED
}

/// Whether this runs in a container (every container manager sets `$container`).
fn in_sandbox() -> bool {
    std::env::var_os("container").is_some_and(|v| !v.is_empty())
}

/// `RUNNER --set-up`: the build root's set-up alone, refused outside a sandbox.
fn set_up_only(invoked: &str, flavor: names::Flavor) -> i32 {
    if !in_sandbox() {
        eprintln!(
            "{invoked}: {} changes /etc, so it runs only in a build root sandbox \
             ($container is not set)",
            osbuild_protocol::runner::SET_UP_ARG
        );
        return EXIT_RUNNER_FAILED;
    }
    match set_up_or_report(invoked, flavor) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

/// [`set_up_once`], printing a fatal failure (the tool's output, then what failed); the exit
/// status to end with when it failed.
fn set_up_or_report(invoked: &str, flavor: names::Flavor) -> Result<(), i32> {
    set_up_once(flavor).map_err(|e| {
        if let setup::SetupError::ToolFailed { output, .. } = &e {
            eprint!("{output}");
        }
        eprintln!("{invoked}: build root setup failed: {e}");
        EXIT_SETUP_FAILED
    })
}

/// Marks a build root whose `/etc` was already set up, and how far (`FLAVOR` or
/// `FLAVOR ca-trust`): the engine sets a build root up once with `--set-up`, keeps that `/etc`
/// and gives every later module of that build root a copy of it, marker included.
const SETUP_MARKER: &str = "/etc/.osbuild-runner-setup";

/// What the set-up tools whose failure is tolerated printed ([`setup::Setup::log`]): kept in
/// the build root's `/etc` for debugging, never in a stage's output.
const SETUP_LOG: &str = "/etc/.osbuild-runner-setup.log";

/// Runs what the flavour's set-up still lacks in this build root: all of it the first time,
/// except the CA trust steps, which only a sandbox with a network interface besides loopback
/// needs (without network nothing uses them, and they are the slowest by far, about 2 s): they
/// run the first time a module with the network runs here.
fn set_up_once(flavor: names::Flavor) -> Result<(), setup::SetupError> {
    let base = format!("{flavor:?}");
    let with_ca = format!("{base} ca-trust");
    let marker = std::fs::read_to_string(SETUP_MARKER).unwrap_or_default();
    let marker = marker.trim_end();
    let ca_done = marker == with_ca;
    let base_done = ca_done || marker == base;
    let network = has_network();
    let steps: Vec<setup::Step> = flavor
        .steps()
        .iter()
        .copied()
        .filter(|s| match s.is_ca_trust() {
            true => network && !ca_done,
            false => !base_done,
        })
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let setup = setup::Setup::new("/");
    setup.run_all(&steps)?;
    // Best effort, both: the log is for debugging only, and without the marker the next module
    // simply sets up again.
    let log = setup.log();
    if !log.is_empty() {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(SETUP_LOG)
            .and_then(|mut f| f.write_all(log.as_bytes()));
    }
    let done = if network || ca_done { with_ca } else { base };
    let _ = std::fs::write(SETUP_MARKER, format!("{done}\n"));
    Ok(())
}

/// Whether this network namespace has an interface other than `lo` (`/proc/net/dev` is per
/// namespace, unlike `/sys/class/net` of a bind-mounted host `/sys`).
fn has_network() -> bool {
    std::fs::read_to_string("/proc/net/dev").is_ok_and(|dev| {
        dev.lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .any(|name| name.trim() != "lo")
    })
}
