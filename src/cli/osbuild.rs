//! `osbuild`: the engine in-process, with osbuild v10's command line, output and exit codes.
//!
//! Exit codes: 0 success, 1 build failure (or an unknown checkpoint, or a set-up error),
//! 2 invalid manifest, 130 interrupted by SIGINT/SIGTERM (after cleaning up).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;

use super::jsonseq::JsonSeqMonitor;
use crate::buildroot::Cancel;
use crate::events::{Event, Monitor, NullMonitor, SourceProgress};
use crate::id::ObjectId;
use crate::json;
use crate::manifest::{self, Document, ManifestError};
use crate::modules::{Index, ModuleKind};
use crate::pipeline::{
    BuildError, Builder, CheckpointsOnly, Overrides, Request, RequestError, V2Request,
    V2RequestError,
};
use crate::store::Store;

/// The osbuild release whose command line, manifest formats and results this `osbuild`
/// implements. osbuild/images runs `osbuild --version` and compares the number with the
/// minimum it needs (`osbuild 191`), so the interface version is what it prints; this
/// project's own version is in `osbuild --help` and `osbuildctl --version`.
pub const INTERFACE_VERSION: &str = "191";

/// Build operating system images.
#[derive(Debug, Parser)]
#[command(
    name = "osbuild",
    version = INTERFACE_VERSION,
    after_help = concat!(
        "The version above is the osbuild interface this engine implements; the engine itself is ",
        env!("CARGO_PKG_VERSION"),
        " (as osbuildd and osbuildctl)."
    )
)]
pub struct Args {
    /// JSON file containing the manifest, or '-' to read it from stdin.
    #[arg(value_name = "MANIFEST", required_unless_present = "verify")]
    pub manifest: Option<String>,
    /// Directory where intermediary trees and outputs are stored (also --cache, as in HEAD).
    #[arg(
        long,
        alias = "cache",
        value_name = "DIRECTORY",
        default_value = ".osbuild"
    )]
    pub store: PathBuf,
    /// Directory containing stages, assemblers, runners and sources.
    #[arg(
        short = 'l',
        long,
        value_name = "DIRECTORY",
        default_value = crate::modules::DEFAULT_LIBDIR
    )]
    pub libdir: PathBuf,
    /// Stage id after which the tree is committed to the store (repeatable). For a v2
    /// manifest a pattern (`*`, `?`, `[...]`) over pipeline names, stage ids and stage types.
    #[arg(long, value_name = "ID")]
    pub checkpoint: Vec<String>,
    /// Build the pipeline NAME (name or id) of a v2 manifest and copy its tree to
    /// OUTPUT_DIRECTORY/NAME (repeatable); only what the exports need is built.
    #[arg(long, value_name = "NAME")]
    pub export: Vec<String>,
    /// Where --export puts the exported trees.
    #[arg(long, value_name = "DIRECTORY")]
    pub output_directory: Option<PathBuf>,
    /// After the build, prune the store to SIZE (bytes, or with kB, MB, GB, TB, KiB, MiB,
    /// GiB, TiB) by least recent use, or keep everything (`unlimited`, the default). The limit
    /// is kept in the store (cache.info) for later builds.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_max_size: Option<Size>,
    /// How a v2 build reports progress: LogMonitor (the human log, the default),
    /// JSONSeqMonitor (RFC 7464 records in osbuild HEAD's shape) or NullMonitor.
    #[arg(long, value_name = "NAME", value_enum)]
    pub monitor: Option<MonitorName>,
    /// The open file descriptor the monitor writes to (default: standard output).
    #[arg(long, value_name = "FD", default_value_t = 1)]
    pub monitor_fd: u32,
    /// Kill a stage of a v2 build that runs longer than SECONDS (it fails the build).
    #[arg(long, value_name = "SECONDS")]
    pub stage_timeout: Option<f64>,
    /// Print nothing but errors (and the result with --json).
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the result as JSON (osbuild v10's shape) instead of the human log.
    #[arg(long)]
    pub json: bool,
    /// Print the manifest back with the id of every stage and assembler, build nothing.
    #[arg(long)]
    pub inspect: bool,
    /// JSON file with a build section {"pipeline", "runner"} to build in (does not change ids).
    #[arg(long, value_name = "FILE")]
    pub build_env: Option<PathBuf>,
    /// JSON file with source options, replacing the manifest's "sources".
    #[arg(long, value_name = "FILE")]
    pub sources: Option<PathBuf>,
    /// JSON file with secrets for the sources (never logged).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Check the store instead of building: hash every object and cached download again,
    /// move what does not match its name to STORE/quarantine and remove the refs naming it
    /// (exit status 1 when anything was found).
    #[arg(long, conflicts_with_all = ["manifest", "inspect", "json", "checkpoint"])]
    pub verify: bool,
}

/// Set by SIGINT/SIGTERM; the running build notices it, cleans up and stops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

/// Runs `osbuild` and returns its exit code.
pub fn main(args: Args) -> i32 {
    init_logging();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osbuild: {e:#}");
            1
        }
    }
}

/// Diagnostics go to stderr (`RUST_LOG` adjusts them); the build log itself is on stdout.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// The reproducible-builds convention: `SOURCE_DATE_EPOCH` in `osbuild`'s environment makes
/// the build reproducible (an empty value counts as unset).
fn source_date_epoch(value: Option<&std::ffi::OsStr>) -> anyhow::Result<Option<u64>> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    v.to_str()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .with_context(|| {
            format!(
                "SOURCE_DATE_EPOCH={} in the environment is not a number of seconds since 1970",
                v.to_string_lossy()
            )
        })
}

/// The text of an optional input file; `what` names it in the error.
fn read_file(path: Option<&Path>, what: &str) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).with_context(|| format!("reading {what}{}", p.display()))
    })
    .transpose()
}

fn run(args: Args) -> anyhow::Result<i32> {
    let Some(manifest) = &args.manifest else {
        return verify(&args.store);
    };
    let text = super::read_input(manifest)?;
    let index = Index::new(&args.libdir);
    let overrides = Overrides {
        build_env: read_file(args.build_env.as_deref(), "")?,
        sources: read_file(args.sources.as_deref(), "sources ")?,
        secrets: read_file(args.secrets.as_deref(), "secrets ")?,
        // --inspect builds nothing, so it ignores checkpoints.
        checkpoints: if args.inspect {
            Vec::new()
        } else {
            args.checkpoint.clone()
        },
        source_epoch: source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH").as_deref())?,
    };
    let request = match Request::new(&text, &index, overrides) {
        Ok(r) => r,
        Err(RequestError::Manifest(ManifestError::V2NotBuildable)) if args.inspect => {
            return Ok(inspect_v2(&text, &index));
        }
        Err(RequestError::Manifest(ManifestError::V2NotBuildable)) => {
            return run_v2(&text, &index, &args);
        }
        Err(e) => return refused(e, &args),
    };
    if args.inspect {
        println!("{}", json::dumps_pretty(&request.manifest.describe()));
        return Ok(0);
    }
    let store = start_building(&args)?;
    let builder = Builder {
        store: &store,
        index: &index,
        commit: &CheckpointsOnly,
        cancel: Cancel::with_signal(&INTERRUPTED),
    };
    build(&builder, &request, args.json)
}

/// The monitors of osbuild HEAD's `--monitor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MonitorName {
    #[value(name = "NullMonitor")]
    Null,
    #[value(name = "LogMonitor")]
    Log,
    #[value(name = "JSONSeqMonitor")]
    JsonSeq,
}

/// The descriptor `--monitor-fd` names, opened again for writing through /proc (so no
/// descriptor number is taken over unchecked).
fn monitor_output(fd: u32) -> anyhow::Result<std::fs::File> {
    if fd == 1 {
        return Ok(std::fs::File::options().write(true).open("/dev/stdout")?);
    }
    std::fs::File::options()
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("--monitor-fd {fd}: not an open file descriptor"))
}

/// `--cache-max-size`: a number of bytes, or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Unlimited,
}

/// HEAD's `parse_size`: `unlimited`, or a number with an optional unit (`kB` = 1000,
/// `KiB` = 1024, up to `TB`/`TiB`; a space between them is allowed).
pub fn parse_size(s: &str) -> Result<Size, String> {
    if s == "unlimited" {
        return Ok(Size::Unlimited);
    }
    const UNITS: &[(&str, u64)] = &[
        ("kB", 1000),
        ("KiB", 1 << 10),
        ("MB", 1_000_000),
        ("MiB", 1 << 20),
        ("GB", 1_000_000_000),
        ("GiB", 1 << 30),
        ("TB", 1_000_000_000_000),
        ("TiB", 1 << 40),
    ];
    let digits = s.trim_end_matches(|c: char| !c.is_ascii_digit());
    let unit = s[digits.len()..].trim();
    let factor = match unit {
        "" => 1,
        u => UNITS.iter().find(|(n, _)| *n == u).map(|(_, f)| *f).ok_or_else(|| {
            format!("unknown unit {u:?} in {s:?} (use bytes, kB, KiB, MB, MiB, GB, GiB, TB, TiB or unlimited)")
        })?,
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{s:?} is not a size (a number with an optional unit, or unlimited)")
    })?;
    n.checked_mul(factor)
        .map(Size::Bytes)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The v2 request the command line asks for and its output directory, or the exit code of a
/// refusal (HEAD's messages: an invalid manifest, an unknown export, no checkpoint matching,
/// an export without an output directory or onto an earlier one).
#[allow(clippy::type_complexity)]
fn v2_request(
    text: &str,
    index: &Index,
    args: &Args,
) -> anyhow::Result<Result<(V2Request, Option<PathBuf>), i32>> {
    let manifest = match manifest::load_document(text, index) {
        Ok(Document::V2(m)) => m,
        Ok(Document::V1(_)) => unreachable!("only v2 manifests come here"),
        Err(e) => return Ok(Err(report_invalid(&e, args.json))),
    };
    let mut request = match V2Request::new(manifest, args.export.clone(), &args.checkpoint) {
        Ok(r) => r,
        Err(V2RequestError::NoCheckpoint(_)) => {
            println!("No checkpoints matched provided patterns!");
            println!("{RESET}{BOLD}{RED}Failed{RESET}");
            return Ok(Err(1));
        }
        Err(e @ V2RequestError::UnknownExport { .. }) => {
            println!("{e}");
            println!("{RESET}{BOLD}{RED}Failed{RESET}");
            return Ok(Err(1));
        }
    };
    request.stage_timeout = stage_timeout(args.stage_timeout)?;
    let output_dir = match (&args.output_directory, request.exports.is_empty()) {
        (None, false) => {
            println!("Need --output-directory for --export");
            return Ok(Err(1));
        }
        (dir, _) => dir.clone(),
    };
    // An export never mixes with files of an earlier one: its directory must be new or empty.
    if let Some(dir) = &output_dir {
        let taken = request
            .exports
            .iter()
            .map(|e| dir.join(e))
            .find(|d| std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()));
        if let Some(taken) = taken {
            println!(
                "{} is not empty: remove it or export elsewhere",
                taken.display()
            );
            return Ok(Err(1));
        }
    }
    Ok(Ok((request, output_dir)))
}

/// Builds a v2 manifest (HEAD's command line and `--json` result); returns the exit code.
fn run_v2(text: &str, index: &Index, args: &Args) -> anyhow::Result<i32> {
    let (request, output_dir) = match v2_request(text, index, args)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let store = start_building(args)?;
    let builder = Builder {
        store: &store,
        index,
        commit: &CheckpointsOnly,
        cancel: Cancel::with_signal(&INTERRUPTED),
    };
    let mut log = HumanLog {
        enabled: !args.json && !args.quiet,
        color: std::io::stdout().is_terminal(),
        fetched: None,
    };
    let mut null = NullMonitor;
    let mut seq;
    let monitor: &mut dyn Monitor = match args.monitor {
        Some(MonitorName::JsonSeq) => {
            let steps = request.manifest.sources.len() + request.pipelines_to_build(&store);
            seq = JsonSeqMonitor::new(monitor_output(args.monitor_fd)?, steps);
            seq.log("starting osbuild", "osbuild.main_cli");
            &mut seq
        }
        Some(MonitorName::Null) => &mut null,
        Some(MonitorName::Log) | None => &mut log,
    };
    let result = match builder.build_v2(&request, monitor) {
        Ok(r) => r,
        Err(BuildError::Cancelled) => {
            println!();
            println!("{}", log.paint(&format!("{BOLD}{RED}Aborted{RESET}")));
            return Ok(130);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(dir) = output_dir.as_deref().filter(|_| result.success) {
        export_all(&builder, &request, dir)?;
    }
    prune_to_limit(&store, args.cache_max_size)?;
    if args.json {
        println!("{}", json::dumps(&result.to_json()));
    } else if result.success {
        println!("\nPipelines");
        for p in &request.manifest.pipelines {
            let id = p.id().map_or("None".to_owned(), ObjectId::to_string);
            println!("  {:<10}\t{id}", format!("{}:", p.name));
        }
    } else {
        println!("{}", log.paint(&format!("{RESET}{BOLD}{RED}Failed{RESET}")));
    }
    Ok(if result.success { 0 } else { 1 })
}

/// Copies every exported pipeline's tree to `dir/NAME`.
fn export_all(builder: &Builder<'_>, request: &V2Request, dir: &Path) -> anyhow::Result<()> {
    for name in &request.exports {
        let dest = dir.join(name);
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        builder
            .export_v2(request, name, &dest)
            .with_context(|| format!("exporting {name} to {}", dest.display()))?;
    }
    Ok(())
}

/// `--cache-max-size`: kept in the store as HEAD keeps it, so later builds without the option
/// hold to it too; the store is pruned to the limit by least recent use.
fn prune_to_limit(store: &Store, given: Option<Size>) -> anyhow::Result<()> {
    if let Some(size) = given {
        let bytes = match size {
            Size::Bytes(b) => Some(b),
            Size::Unlimited => None,
        };
        store
            .set_maximum_size(bytes)
            .context("keeping --cache-max-size in the store")?;
    }
    if let Some(budget) = store.maximum_size() {
        store
            .prune(budget)
            .context("pruning the store to its --cache-max-size")?;
    }
    Ok(())
}

/// `--stage-timeout`: a positive number of seconds.
fn stage_timeout(seconds: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    match seconds {
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
        Some(t) => anyhow::bail!("--stage-timeout {t}: a number of seconds above 0"),
        None => Ok(None),
    }
}

/// Checks that we may build, enters the private mount namespace, opens the store.
fn start_building(args: &Args) -> anyhow::Result<Store> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "building needs root (it creates namespaces and mounts); run it with sudo, or use osbuildctl to build through the osbuildd service"
        );
    }
    // Before any thread exists: every mount we make stays private and dies with us.
    crate::mount::enter_private_namespace().context("entering a private mount namespace")?;
    install_signal_handlers();
    Store::open(&args.store).with_context(|| format!("opening the store {}", args.store.display()))
}

/// `--verify`: checks the store, prints what it found; 0 when clean, 1 otherwise.
fn verify(store: &Path) -> anyhow::Result<i32> {
    if !store.is_dir() {
        anyhow::bail!("no store at {}", store.display());
    }
    let store =
        Store::open(store).with_context(|| format!("opening the store {}", store.display()))?;
    let report = store.verify()?;
    print!("{}", report.to_text());
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// `--inspect` of a valid v2 manifest (which [`Request::new`] refuses to build): prints HEAD's
/// description (compact JSON, as HEAD's `json.dump`); returns the exit code. A v1 manifest is
/// inspected through its request (as v10 does), so it is read once and warned about once.
fn inspect_v2(text: &str, index: &Index) -> i32 {
    match manifest::load_document(text, index) {
        Ok(Document::V2(m)) => {
            let host_runner = index.host_runner().ok();
            println!("{}", json::dumps(&m.describe(host_runner.as_deref())));
            0
        }
        Ok(Document::V1(_)) => unreachable!("Request::new accepts every valid v1 manifest"),
        Err(e) => report_invalid(&e, true),
    }
}

/// Builds `request` and prints the outcome as v10 does; returns the exit code.
fn build(builder: &Builder<'_>, request: &Request, as_json: bool) -> anyhow::Result<i32> {
    let mut log = HumanLog {
        enabled: !as_json,
        color: std::io::stdout().is_terminal(),
        fetched: None,
    };
    match builder.build(request, &mut log) {
        Ok(result) => {
            let pipeline = &request.manifest.pipeline;
            if as_json {
                println!("{}", result.to_json());
            } else if result.success {
                let show = |id: Option<&ObjectId>| id.map_or("None".to_string(), |i| i.to_string());
                println!("tree id: {}", show(pipeline.tree_id()));
                println!("output id: {}", show(pipeline.output_id()));
            } else {
                println!();
                println!("{}", log.paint(&format!("{BOLD}{RED}Failed{RESET}")));
            }
            Ok(if result.success { 0 } else { 1 })
        }
        Err(BuildError::Cancelled) => {
            println!();
            println!("{}", log.paint(&format!("{BOLD}{RED}Aborted{RESET}")));
            Ok(130)
        }
        Err(e) => Err(e.into()),
    }
}

/// v10's answers to a refused request: exit code 2 for an invalid manifest (or build
/// environment), 1 with a message for the rest.
fn refused(e: RequestError, args: &Args) -> anyhow::Result<i32> {
    let path = |p: &Option<PathBuf>| p.as_deref().unwrap_or(Path::new("")).display().to_string();
    match e {
        RequestError::Manifest(e) => Ok(report_invalid(&e, args.json || args.inspect)),
        RequestError::BuildEnv(e) => Ok(report_invalid(&e, args.json)),
        RequestError::SourcesNotJson(e) => {
            anyhow::bail!("sources {}: invalid JSON: {e}", path(&args.sources))
        }
        RequestError::SourcesNotObject => {
            anyhow::bail!("sources {}: expected a JSON object", path(&args.sources))
        }
        RequestError::SecretsNotJson(e) => {
            anyhow::bail!("secrets {}: invalid JSON: {e}", path(&args.secrets))
        }
        RequestError::SecretsNotObject => {
            anyhow::bail!("secrets {}: expected a JSON object", path(&args.secrets))
        }
        RequestError::UnknownCheckpoints(list) => {
            for c in list {
                println!("Checkpoint {BOLD}{c}{RESET} not found!");
            }
            println!("{RESET}{BOLD}{RED}Failed{RESET}");
            Ok(1)
        }
    }
}

fn report_invalid(e: &ManifestError, as_json: bool) -> i32 {
    if as_json {
        let errors: Vec<serde_json::Value> = match e {
            ManifestError::Invalid(list) => list
                .iter()
                .map(|v| serde_json::json!({"message": v.message, "path": v.path.to_json()}))
                .collect(),
            other => vec![serde_json::json!({"message": other.to_string(), "path": []})],
        };
        let out = serde_json::json!({
            "type": "https://osbuild.org/validation-error",
            "title": "JSON Schema validation failed",
            "success": false,
            "errors": errors,
        });
        println!("{out}");
    } else {
        eprintln!("osbuild: invalid manifest:\n{e}");
    }
    2
}

fn install_signal_handlers() {
    use osbuild_sys::signal::{set_handler, Signal};
    // Best effort: without the handlers a signal simply ends the process.
    let _ = set_handler(&[Signal::SIGINT, Signal::SIGTERM], on_signal);
}

/// v10's human output: a bold header per module with its options, then its live output.
struct HumanLog {
    enabled: bool,
    color: bool,
    /// The last progress of the source being fetched.
    fetched: Option<SourceProgress>,
}

impl HumanLog {
    fn paint(&self, s: &str) -> String {
        if self.color {
            s.to_owned()
        } else {
            s.replace(BOLD, "").replace(RED, "").replace(RESET, "")
        }
    }
}

impl Monitor for HumanLog {
    fn event(&mut self, event: Event<'_>) {
        if !self.enabled {
            return;
        }
        let mut out = std::io::stdout().lock();
        match event {
            Event::ModuleStarted {
                kind,
                name,
                id,
                options,
                ..
            } => {
                let prefix = if kind == ModuleKind::Assembler {
                    "Assembler "
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{}",
                    self.paint(&format!("{RESET}{BOLD}{prefix}{name}{RESET}: {id}"))
                );
                let _ = writeln!(out, "{}", json::dumps_pretty(options));
            }
            Event::Output { line } => {
                let _ = writeln!(out, "{line}");
            }
            Event::ModuleFinished { .. } => {
                let _ = writeln!(out);
            }
            Event::PipelineStarted { name, id, .. } => {
                let id = id.map_or("None".to_owned(), ObjectId::to_string);
                let line = format!("{RESET}{BOLD}Pipeline {name}{RESET}: {id}");
                let _ = writeln!(out, "{}", self.paint(&line));
            }
            Event::PipelineFinished { .. } => {}
            Event::SourceStarted { name, files } => {
                self.fetched = None;
                let _ = writeln!(out, "{name}: fetching {files} files");
            }
            Event::SourceProgress { progress, .. } => self.fetched = Some(progress),
            Event::SourceFinished {
                name,
                success: true,
                seconds,
            } => {
                let p = self.fetched.take().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{name}: {} files, {:.1} MiB in {seconds:.1}s",
                    p.files_done,
                    p.bytes_done as f64 / (1024.0 * 1024.0)
                );
            }
            Event::SourceFinished { .. } => {}
        }
        let _ = out.flush();
    }
}
