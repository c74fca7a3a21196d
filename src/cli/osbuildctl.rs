//! `osbuildctl`: the client of `osbuildd` (`org.osbuild.Builder1`), plus a local `inspect`.
//!
//! Exit codes: 0 success; 1 the build failed (or another request failed); 2 the daemon refused
//! the request (invalid manifest, option or argument); 3 not authorized; 4 the daemon or the
//! bus is unreachable; 130 the build was cancelled (Ctrl-C cancels the job).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use osbuild_protocol::result::PipelineResult;
use zbus::{Connection, OwnedObjectPath};

use super::progress::{Display, Download};
use crate::json;
use crate::manifest;
use crate::modules::Index;
pub use crate::service::client::{error_reply, Builder1Proxy, JobProxy};
use crate::service::client::{JobFinished, StageFinished, StageOutput, StageStarted};
use crate::service::wire::BuildOptions;

/// Build OS images through the osbuildd service.
///
/// Exit codes: 0 success; 1 the build (or request) failed; 2 the daemon refused the request
/// (invalid manifest, option or argument); 3 not authorized; 4 the daemon or bus is
/// unreachable; 130 the build was cancelled (Ctrl-C cancels the job).
#[derive(Debug, Parser)]
#[command(name = "osbuildctl", version)]
pub struct Args {
    /// Bus address (default: DBUS_SYSTEM_BUS_ADDRESS, else the system bus).
    #[arg(long, value_name = "BUS_ADDRESS", global = true)]
    pub address: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build MANIFEST ('-' for stdin), following its progress.
    ///
    /// A v1 manifest builds its pipeline and, with --output, writes the assembler's output into
    /// DIR. A v2 manifest builds the pipelines named with --export (and what they need) and,
    /// with --output, writes each exported pipeline's tree into DIR/NAME.
    Build {
        manifest: String,
        /// Commit the tree after this stage (repeatable). v1: a stage id; v2: a glob over
        /// pipeline names, stage ids and stage types (as osbuild's --checkpoint).
        #[arg(long, value_name = "ID|PATTERN")]
        checkpoint: Vec<String>,
        /// Build the v2 pipeline NAME (a name or id; repeatable); with --output, its tree
        /// goes into DIR/NAME.
        #[arg(long, value_name = "NAME")]
        export: Vec<String>,
        /// Write the output (v1) or each export's tree (v2, into DIR/NAME) into DIR (created
        /// if needed; files owned by you).
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Print the result JSON (osbuild v10's shape; osbuild HEAD's for v2 manifests)
        /// instead of progress.
        #[arg(long)]
        json: bool,
        /// Print the job's object path and return at once; the job runs on.
        #[arg(long)]
        detach: bool,
        /// JSON file with source options, replacing the manifest's "sources".
        #[arg(long, value_name = "FILE")]
        sources: Option<PathBuf>,
        /// JSON file with secrets for the sources (sent to the daemon, never logged).
        #[arg(long, value_name = "FILE")]
        secrets: Option<PathBuf>,
        /// Build reproducibly with this SOURCE_DATE_EPOCH (seconds; changes every id).
        #[arg(long, value_name = "SECONDS")]
        source_epoch: Option<u64>,
    },
    /// Cancel a job (its number or object path).
    Cancel { job: String },
    /// List jobs.
    Jobs,
    /// List the store's objects.
    Objects,
    /// Write output (or tree) ID into DIR.
    Export { id: String, dir: PathBuf },
    /// Remove least recently used objects until the store fits in BUDGET bytes.
    Prune { budget: u64 },
    /// Hash every object and download of the store again; quarantine what does not match its
    /// name (exit status 1 when anything was found).
    Verify,
    /// Print MANIFEST with every stage's id (local, no daemon).
    Inspect {
        manifest: String,
        /// Libdir whose stage schemas validate the manifest.
        #[arg(short = 'l', long, default_value = crate::modules::DEFAULT_LIBDIR)]
        libdir: PathBuf,
        /// The ids of a build with this SOURCE_DATE_EPOCH (as `build --source-epoch`).
        #[arg(long, value_name = "SECONDS")]
        source_epoch: Option<u64>,
    },
}

/// Runs `osbuildctl` and returns its exit code.
pub fn main(args: Args) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("osbuildctl: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osbuildctl: {e:#}");
            exit_code_for(&e)
        }
    }
}

/// osbuildd left the bus while we waited for it (it crashed, or was stopped or restarted).
#[derive(Debug, thiserror::Error)]
#[error("osbuildd went away while {0}; its log says why (journalctl -t osbuildd)")]
struct DaemonGone(String);

fn exit_code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if cause.downcast_ref::<DaemonGone>().is_some() {
            return 4;
        }
        if let Some((name, _)) = cause.downcast_ref::<zbus::Error>().and_then(error_reply) {
            return match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => 3,
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.osbuild.Builder1.Error.ShuttingDown" => 4,
                n if n.starts_with("org.osbuild.Builder1.Error.")
                    && n != "org.osbuild.Builder1.Error.Failed" =>
                {
                    2
                }
                _ => 1,
            };
        }
        if let Some(zbus::Error::InputOutput(_) | zbus::Error::Address(_)) =
            cause.downcast_ref::<zbus::Error>()
        {
            return 4;
        }
    }
    1
}

/// A D-Bus error as the user should read it: the message, with the name as a hint.
fn explain(e: zbus::Error) -> anyhow::Error {
    match error_reply(&e) {
        Some((name, msg)) => {
            let short = name.rsplit('.').next().unwrap_or("").to_owned();
            anyhow::Error::new(e).context(format!("{short}: {msg}"))
        }
        None => anyhow::Error::new(e),
    }
}

async fn connect(address: &Option<String>) -> anyhow::Result<Connection> {
    let builder = match address {
        Some(a) => zbus::connection::Builder::address(a.as_str()),
        None => zbus::connection::Builder::system(),
    };
    builder
        .build()
        .await
        .map_err(|e| anyhow::Error::new(e).context("cannot connect to the bus"))
}

async fn run(args: Args) -> anyhow::Result<i32> {
    if let Cmd::Inspect {
        manifest,
        libdir,
        source_epoch,
    } = &args.command
    {
        return inspect(manifest, libdir, *source_epoch);
    }
    let conn = connect(&args.address).await?;
    let proxy = Builder1Proxy::new(&conn).await?;
    match args.command {
        Cmd::Build {
            manifest,
            checkpoint,
            export,
            output,
            json,
            detach,
            sources,
            secrets,
            source_epoch,
        } => {
            let read = |p: Option<PathBuf>| {
                p.map(|p| {
                    std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
                })
                .transpose()
            };
            let req = BuildRequest {
                manifest: super::read_input(&manifest)?,
                options: BuildOptions {
                    checkpoints: (!checkpoint.is_empty()).then_some(checkpoint),
                    exports: (!export.is_empty()).then_some(export),
                    sources: read(sources)?,
                    secrets: read(secrets)?,
                    source_epoch,
                },
                output,
                json,
                detach,
            };
            build(&conn, &proxy, req).await
        }
        Cmd::Cancel { job } => {
            let path = job_path(&job)?;
            proxy.cancel(&path.as_ref()).await.map_err(explain)?;
            Ok(0)
        }
        Cmd::Jobs => {
            for path in proxy.list_jobs().await.map_err(explain)? {
                let job = JobProxy::builder(&conn).path(path.clone()).build().await?;
                let (state, progress, uid) = (
                    job.state().await.unwrap_or_default(),
                    job.progress().await.unwrap_or_default(),
                    job.owner_uid().await.unwrap_or_default(),
                );
                let n = path.as_str().rsplit('/').next().unwrap_or("");
                println!("{n:>4}  {state:<10} {:>3.0}%  uid {uid}", progress * 100.0);
            }
            Ok(0)
        }
        Cmd::Objects => {
            for o in proxy.list_objects().await.map_err(explain)? {
                println!("{}  {:<6} {:>12}  {}", o.id, o.kind, o.size, o.treesum);
            }
            Ok(0)
        }
        Cmd::Export { id, dir } => {
            export(&proxy, &id, &dir).await?;
            Ok(0)
        }
        Cmd::Prune { budget } => {
            let freed = proxy.prune(budget).await.map_err(explain)?;
            println!("freed {freed} bytes");
            Ok(0)
        }
        Cmd::Verify => {
            let (clean, report) = proxy.verify().await.map_err(explain)?;
            print!("{report}");
            Ok(if clean { 0 } else { 1 })
        }
        Cmd::Inspect { .. } => unreachable!("handled above"),
    }
}

/// `inspect`: the manifest with every stage's id, checked locally against `libdir`: v10's
/// description of a v1 manifest, osbuild HEAD's of a v2 one (as `osbuild --inspect` prints).
fn inspect(manifest: &str, libdir: &Path, source_epoch: Option<u64>) -> anyhow::Result<i32> {
    let text = super::read_input(manifest)?;
    let index = Index::new(libdir);
    match manifest::load_document(&text, &index) {
        Ok(manifest::Document::V1(mut m)) => {
            if let Some(epoch) = source_epoch {
                m.set_source_epoch(epoch);
            }
            println!("{}", json::dumps_pretty(&m.describe()));
            Ok(0)
        }
        Ok(manifest::Document::V2(_)) if source_epoch.is_some() => {
            eprintln!(
                "osbuildctl: --source-epoch is for version 1 manifests; a version 2 manifest \
                 sets \"source-epoch\" in each pipeline"
            );
            Ok(2)
        }
        Ok(manifest::Document::V2(m)) => {
            let host_runner = index.host_runner().ok();
            println!(
                "{}",
                json::dumps_pretty(&m.describe(host_runner.as_deref()))
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("osbuildctl: invalid manifest:\n{e}");
            Ok(2)
        }
    }
}

/// A job given as a number or a path.
fn job_path(job: &str) -> anyhow::Result<OwnedObjectPath> {
    let path = if job.bytes().all(|b| b.is_ascii_digit()) && !job.is_empty() {
        format!("{}/job/{job}", crate::service::MANAGER_PATH)
    } else {
        job.to_owned()
    };
    OwnedObjectPath::try_from(path).map_err(|e| anyhow::anyhow!("'{job}' is not a job: {e}"))
}

/// Streams object `id` from the daemon into `dir`: the daemon writes a tar stream into a pipe,
/// `tar` running as the calling user unpacks it, so the files are the caller's.
pub async fn export(proxy: &Builder1Proxy<'_>, id: &str, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Close-on-exec: tar must not hold the write end, or it never sees the end of input when
    // the daemon refuses or dies.
    let (rd, wr) = osbuild_sys::process::pipe().context("pipe")?;
    let mut tar = Command::new("tar")
        .arg("--extract")
        .arg("--file=-")
        .arg("--no-same-owner")
        .arg("--directory")
        .arg(dir)
        .stdin(Stdio::from(rd))
        .stderr(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let reply = proxy.export_output(id, zbus::Fd::from(wr.as_fd())).await;
    drop(wr);
    let out = tokio::task::spawn_blocking(move || {
        let status = tar.wait();
        let mut err = String::new();
        if let Some(mut e) = tar.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    })
    .await?;
    reply.map_err(explain)?;
    let (status, err) = out;
    let status = status.context("waiting for tar")?;
    if !status.success() {
        anyhow::bail!("unpacking into {} failed: {}", dir.display(), err.trim());
    }
    Ok(())
}

struct BuildRequest {
    manifest: String,
    options: BuildOptions,
    output: Option<PathBuf>,
    json: bool,
    detach: bool,
}

/// The signals about jobs, subscribed to before `Build` so none can be missed: the manager's
/// and the job objects' (`DownloadProgress`), from the daemon's unique name (any connection may
/// send us a unicast signal, only the daemon's count), on one stream: in the order the daemon
/// sent them (a stream per signal would let a stage's lines come after its end, or after the
/// job's).
struct JobSignals<'a> {
    signals: zbus::MessageStream,
    /// The daemon's bus name changing hands: `None` when it went away.
    owner: zbus::proxy::OwnerChangedStream<'a>,
}

impl<'a> JobSignals<'a> {
    async fn subscribe(conn: &Connection, proxy: &'a Builder1Proxy<'_>) -> zbus::Result<Self> {
        // Started first (by D-Bus activation, if it is not running), so that it has an owner
        // whose signals and departure we can follow.
        let bus = zbus::fdo::DBusProxy::new(conn).await?;
        let name = proxy.inner().destination().clone();
        let well_known = zbus::names::WellKnownName::try_from(name.as_str())?;
        // dbus-daemon answers ServiceUnknown for a running service without an activation file.
        if !bus.name_has_owner(name.clone()).await? {
            bus.start_service_by_name(well_known, 0).await?;
        }
        let daemon = bus.get_name_owner(name).await?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(daemon)
            .build()?;
        Ok(JobSignals {
            signals: zbus::MessageStream::for_match_rule(rule, conn, None).await?,
            owner: proxy.inner().receive_owner_changed().await?,
        })
    }
}

const MANAGER_INTERFACE: &str = "org.osbuild.Builder1";
const JOB_INTERFACE: &str = "org.osbuild.Builder1.Job";

/// A `DownloadProgress` signal of `job`: its source and figures.
fn download_of(msg: &zbus::Message, job: &OwnedObjectPath) -> Option<(String, Download)> {
    if msg.header().path().map(|p| p.as_str()) != Some(job.as_str()) {
        return None;
    }
    let (source, bytes_done, bytes_total, files_done, files_total): (String, u64, u64, u64, u64) =
        msg.body().deserialize().ok()?;
    let d = Download {
        bytes_done,
        bytes_total,
        files_done,
        files_total,
    };
    Some((source, d))
}

/// How a followed job ended.
struct Ending {
    success: bool,
    /// The job's full result JSON (`Job.GetResult`; `JobFinished` carries only a summary).
    result: String,
    /// `JobFinished`'s summary (for a v2 manifest, the exports' ids are there).
    summary: String,
    /// Ctrl-C cancelled it.
    cancelled: bool,
}

async fn build(
    conn: &Connection,
    proxy: &Builder1Proxy<'_>,
    req: BuildRequest,
) -> anyhow::Result<i32> {
    let signals = JobSignals::subscribe(conn, proxy).await?;
    let job = submit(proxy, &req).await?;
    if req.detach {
        println!("{}", job.as_str());
        return Ok(0);
    }
    let mut display = Display::new(req.json);
    let ending = follow(conn, &job, &mut display, signals).await?;
    display.finish();
    report(proxy, &req, ending).await
}

/// `Build`, tried again for a few seconds while the daemon answers ShuttingDown: a daemon
/// leaving when idle refuses the calls that reach it as it goes, and the next call starts a new
/// one (see `osbuild::service::idle`).
async fn submit(proxy: &Builder1Proxy<'_>, req: &BuildRequest) -> anyhow::Result<OwnedObjectPath> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match proxy.build(&req.manifest, &req.options).await {
            Err(e)
                if error_reply(&e)
                    .is_some_and(|(name, _)| name == "org.osbuild.Builder1.Error.ShuttingDown")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            r => return r.map_err(explain),
        }
    }
}

/// A stage's name as shown: with its v2 pipeline's name before it.
fn qualified(pipeline: &str, name: &str) -> String {
    if pipeline.is_empty() {
        name.to_owned()
    } else {
        format!("{pipeline}: {name}")
    }
}

/// Shows the job's progress until it ends; Ctrl-C cancels it (once).
async fn follow(
    conn: &Connection,
    job: &OwnedObjectPath,
    display: &mut Display,
    mut s: JobSignals<'_>,
) -> anyhow::Result<Ending> {
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut cancelled = false;
    loop {
        tokio::select! {
            Some(Ok(msg)) = s.signals.next() => {
                if let Some(ending) = job_signal(conn, job, display, msg, cancelled).await? {
                    return Ok(ending);
                }
            }
            Some(owner) = s.owner.next() => {
                if owner.is_none() {
                    return Err(DaemonGone(format!("job {} ran", job.as_str())).into());
                }
            }
            r = &mut ctrl_c, if !cancelled => {
                if r.is_ok() {
                    cancelled = true;
                    display.line("cancelling the job...");
                    let j = JobProxy::builder(conn).path(job.clone()).build().await?;
                    // Cancel replies once the sandbox is gone: keep reading signals meanwhile.
                    tokio::spawn(async move {
                        if let Err(e) = j.cancel().await {
                            eprintln!("osbuildctl: cancel failed: {e}");
                        }
                    });
                }
            }
        }
    }
}

/// Shows one of the daemon's signals if it is about `job`; its ending once it has ended.
async fn job_signal(
    conn: &Connection,
    job: &OwnedObjectPath,
    display: &mut Display,
    msg: zbus::Message,
    cancelled: bool,
) -> anyhow::Result<Option<Ending>> {
    let header = msg.header();
    let interface = header
        .interface()
        .map(|i| i.to_string())
        .unwrap_or_default();
    let member = header.member().map(|m| m.to_string()).unwrap_or_default();
    match (interface.as_str(), member.as_str()) {
        (MANAGER_INTERFACE, "StageStarted") => {
            let Some(a) = StageStarted::from_message(msg) else {
                return Ok(None);
            };
            let Ok(a) = a.args() else { return Ok(None) };
            if a.job == job.as_ref() {
                let name = qualified(a.pipeline, a.name);
                display.stage_started(&name, a.stage_id, a.index, a.total);
            }
        }
        (MANAGER_INTERFACE, "StageOutput") => {
            let Some(a) = StageOutput::from_message(msg) else {
                return Ok(None);
            };
            let Ok(a) = a.args() else { return Ok(None) };
            if a.job == job.as_ref() {
                display.line(a.line);
            }
        }
        (MANAGER_INTERFACE, "StageFinished") => {
            let Some(a) = StageFinished::from_message(msg) else {
                return Ok(None);
            };
            let Ok(a) = a.args() else { return Ok(None) };
            if a.job == job.as_ref() {
                display.stage_finished(&qualified(a.pipeline, a.name), a.success, a.seconds);
            }
        }
        (JOB_INTERFACE, "DownloadProgress") => {
            if let Some((source, d)) = download_of(&msg, job) {
                display.download(&source, d);
            }
        }
        (MANAGER_INTERFACE, "JobFinished") => {
            let Some(a) = JobFinished::from_message(msg) else {
                return Ok(None);
            };
            let Ok(a) = a.args() else { return Ok(None) };
            if a.job == job.as_ref() {
                let j = JobProxy::builder(conn).path(job.clone()).build().await?;
                let result = j.get_result().await.map_err(explain)?;
                let summary = a.result.to_owned();
                let success = a.success;
                return Ok(Some(Ending {
                    success,
                    result,
                    summary,
                    cancelled,
                }));
            }
        }
        _ => {}
    }
    Ok(None)
}

/// Prints the outcome, writes the output when asked, and returns the exit code.
async fn report(
    proxy: &Builder1Proxy<'_>,
    req: &BuildRequest,
    ending: Ending,
) -> anyhow::Result<i32> {
    let Ending {
        success,
        result,
        summary,
        cancelled,
    } = ending;
    if req.json {
        println!("{result}");
    }
    if cancelled && !success {
        eprintln!("osbuildctl: cancelled");
        return Ok(130);
    }
    if req.options.exports.is_some() {
        return report_v2(proxy, req, success, &result, &summary).await;
    }
    let parsed = PipelineResult::parse(&result).ok();
    if !success {
        if !req.json {
            let why = parsed
                .and_then(|r| r.error)
                .unwrap_or_else(|| "a stage failed".into());
            eprintln!("osbuildctl: build failed: {why}");
        }
        return Ok(1);
    }
    let (tree_id, output_id) = parsed.map_or((None, None), |r| (r.tree_id, r.output_id));
    if !req.json {
        let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "None".into());
        println!("tree id: {}", show(&tree_id));
        println!("output id: {}", show(&output_id));
    }
    if let Some(dir) = &req.output {
        let Some(id) = output_id else {
            anyhow::bail!("the manifest has no assembler, so there is no output to write");
        };
        export(proxy, &id, dir).await?;
    }
    Ok(0)
}

/// The outcome of a v2 build: HEAD's error (the failed stage and what it raised), or the
/// exports' ids and, with --output, each export's tree in DIR/NAME.
async fn report_v2(
    proxy: &Builder1Proxy<'_>,
    req: &BuildRequest,
    success: bool,
    result: &str,
    summary: &str,
) -> anyhow::Result<i32> {
    if !success {
        if !req.json {
            eprintln!("osbuildctl: build failed: {}", v2_failure(result));
        }
        return Ok(1);
    }
    let summary: serde_json::Value =
        serde_json::from_str(summary).context("reading the job's summary")?;
    let exports = summary["exports"].as_object().cloned().unwrap_or_default();
    if !req.json {
        println!("Pipelines");
        for (name, id) in &exports {
            println!("  {name}: {}", id.as_str().unwrap_or("None"));
        }
    }
    let Some(dir) = &req.output else {
        return Ok(0);
    };
    for (name, id) in &exports {
        if name.contains('/') || name == "." || name == ".." {
            anyhow::bail!(
                "export {name:?} cannot be a directory name inside {}",
                dir.display()
            );
        }
        let dest = dir.join(name);
        match id.as_str() {
            Some(id) => export(proxy, id, &dest).await?,
            // A pipeline without stages exports an empty tree.
            None => std::fs::create_dir_all(&dest)
                .with_context(|| format!("creating {}", dest.display()))?,
        }
    }
    Ok(0)
}

/// Why a v2 build failed, from HEAD's result: the stage and its exception, or the source.
fn v2_failure(result: &str) -> String {
    let Ok(r) = serde_json::from_str::<serde_json::Value>(result) else {
        return "see the result (--json)".into();
    };
    let error = &r["error"];
    if let Some(text) = error.as_str() {
        return text.to_owned();
    }
    let details = &error["details"];
    if let Some(stage) = details.get("stage") {
        let raised = &stage["error"]["data"];
        let why = match (raised["type"].as_str(), raised["value"].as_str()) {
            (Some(t), Some(v)) => format!(": {t}: {v}"),
            _ => String::new(),
        };
        let (kind, id) = (stage["type"].as_str(), stage["id"].as_str());
        return format!(
            "stage {} ({}) failed{why}",
            kind.unwrap_or("?"),
            id.unwrap_or("?")
        );
    }
    if let Some(source) = details.get("source") {
        return format!(
            "source {} failed: {}",
            source["type"].as_str().unwrap_or("?"),
            source["output"].as_str().unwrap_or_default().trim()
        );
    }
    "a stage failed".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_arguments() {
        assert_eq!(
            job_path("3").unwrap().as_str(),
            "/org/osbuild/Builder1/job/3"
        );
        assert_eq!(
            job_path("/org/osbuild/Builder1/job/12").unwrap().as_str(),
            "/org/osbuild/Builder1/job/12"
        );
        assert!(job_path("job 3").is_err());
    }

    #[test]
    fn exit_codes_follow_the_error_name() {
        let cases = [
            ("org.freedesktop.DBus.Error.AccessDenied", 3),
            (
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                3,
            ),
            ("org.freedesktop.DBus.Error.ServiceUnknown", 4),
            ("org.osbuild.Builder1.Error.InvalidManifest", 2),
            ("org.osbuild.Builder1.Error.TooManyJobs", 2),
            ("org.osbuild.Builder1.Error.Failed", 1),
            ("org.osbuild.Builder1.Error.ShuttingDown", 4),
            ("org.freedesktop.DBus.Error.NoReply", 4),
        ];
        for (name, code) in cases {
            let msg = zbus::message::Message::method_call("/", "X")
                .build(&())
                .unwrap();
            let e = zbus::Error::MethodError(
                zbus::names::OwnedErrorName::try_from(name).unwrap(),
                Some("m".into()),
                msg,
            );
            assert_eq!(exit_code_for(&explain(e)), code, "{name}");
        }
    }
}
