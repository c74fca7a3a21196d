//! `osbuild`: the engine in-process, with osbuild v10's command line, output and exit codes.
//!
//! Exit codes: 0 success, 1 build failure (or an unknown checkpoint, or a set-up error),
//! 2 invalid manifest, 130 interrupted by SIGINT/SIGTERM (after cleaning up).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;

use crate::buildroot::Cancel;
use crate::id::ObjectId;
use crate::json::{self, Value};
use crate::manifest::{self, ManifestError};
use crate::modules::{Index, ModuleKind};
use crate::pipeline::{BuildError, Builder, Event, Monitor};
use crate::store::Store;

/// Build operating system images.
#[derive(Debug, Parser)]
#[command(name = "osbuild", version)]
pub struct Args {
    /// JSON file containing the manifest, or '-' to read it from stdin.
    #[arg(value_name = "MANIFEST")]
    pub manifest: String,
    /// Directory where intermediary trees and outputs are stored.
    #[arg(long, value_name = "DIRECTORY", default_value = ".osbuild")]
    pub store: PathBuf,
    /// Directory containing stages, assemblers, runners and sources.
    #[arg(
        short = 'l',
        long,
        value_name = "DIRECTORY",
        default_value = crate::modules::DEFAULT_LIBDIR
    )]
    pub libdir: PathBuf,
    /// Stage id after which the tree is committed to the store (repeatable).
    #[arg(long, value_name = "ID")]
    pub checkpoint: Vec<String>,
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

fn read_json_file(path: &PathBuf, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    json::parse(&text).map_err(|e| anyhow::anyhow!("{what} {}: invalid JSON: {e}", path.display()))
}

fn run(args: Args) -> anyhow::Result<i32> {
    let text = super::read_input(&args.manifest)?;
    let index = Index::new(&args.libdir);
    let mut manifest = match manifest::load(&text, &index) {
        Ok(m) => m,
        Err(e) => return Ok(report_invalid(&e, args.json || args.inspect)),
    };
    if let Some(path) = &args.build_env {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        match manifest::parse_build_env(&text) {
            Ok(build) => manifest.prepend_build_env(build),
            Err(e) => return Ok(report_invalid(&e, args.json)),
        }
    }
    if let Some(path) = &args.sources {
        manifest.sources = match read_json_file(path, "sources")? {
            Value::Object(map) => map.into_iter().collect::<BTreeMap<_, _>>(),
            _ => anyhow::bail!("sources {}: expected a JSON object", path.display()),
        };
    }
    let secrets = match &args.secrets {
        Some(path) => Some(read_json_file(path, "secrets")?),
        None => None,
    };
    if args.inspect {
        println!("{}", json::dumps_pretty(&manifest.describe()));
        return Ok(0);
    }

    let mut checkpoints = BTreeSet::new();
    let known: BTreeSet<&ObjectId> = manifest.ids().into_iter().collect();
    let mut missed = false;
    for c in &args.checkpoint {
        match ObjectId::parse(c) {
            Ok(id) if known.contains(&id) => {
                checkpoints.insert(id);
            }
            _ => {
                println!("Checkpoint {BOLD}{c}{RESET} not found!");
                missed = true;
            }
        }
    }
    if missed {
        println!("{RESET}{BOLD}{RED}Failed{RESET}");
        return Ok(1);
    }

    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "building needs root (it creates namespaces and mounts); run it with sudo, or use osbuildctl to build through the osbuildd service"
        );
    }
    // Before any thread exists: every mount we make stays private and dies with us.
    crate::mount::enter_private_namespace().context("entering a private mount namespace")?;
    install_signal_handlers();

    let store = Store::open(&args.store)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    let builder = Builder {
        store: &store,
        index: &index,
        checkpoints,
        cancel: Cancel::with_signal(&INTERRUPTED),
    };
    let mut log = HumanLog {
        enabled: !args.json,
        color: std::io::stdout().is_terminal(),
        fetched: None,
    };
    match builder.build_with_secrets(&manifest, secrets.as_ref(), &mut log) {
        Ok(result) => {
            if args.json {
                println!("{}", result.to_json());
            } else if result.success {
                let show = |id: Option<&ObjectId>| id.map_or("None".to_string(), |i| i.to_string());
                println!("tree id: {}", show(manifest.pipeline.tree_id()));
                println!("output id: {}", show(manifest.pipeline.output_id()));
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

fn report_invalid(e: &ManifestError, as_json: bool) -> i32 {
    if as_json {
        let errors: Vec<serde_json::Value> = match e {
            ManifestError::Invalid(list) => list
                .iter()
                .map(|v| serde_json::json!({"message": v.message, "path": v.path}))
                .collect(),
            other => vec![serde_json::json!({"message": other.to_string(), "path": ""})],
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
    fetched: Option<crate::pipeline::SourceProgress>,
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
