//! The D-Bus objects: the manager `org.osbuild.Builder1` at `/org/osbuild/Builder1` and one
//! `org.osbuild.Builder1.Job` per job. `dbus/org.osbuild.Builder1.xml` is what they serve.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, OwnedObjectPath, OwnedVariant};

use super::auth::{self, Action};
use super::error::{Error, Result};
use super::jobs::{Job, JobId, Request, Service};
use super::output;
use crate::id::ObjectId;
use crate::json::{self, Value};
use crate::manifest::{self, ManifestError, Pipeline};
use crate::modules::Index;

/// `org.osbuild.Builder1`.
pub struct Manager {
    pub(crate) svc: Arc<Service>,
}

impl Manager {
    /// The manager interface over `svc`.
    pub fn new(svc: Arc<Service>) -> Manager {
        Manager { svc }
    }
}

/// `Build` options, checked: unknown keys and wrong types are refused.
#[derive(Default)]
struct BuildOptions {
    checkpoints: Vec<String>,
    sources: Option<String>,
    /// Parsed only to be validated: never logged, never echoed.
    secrets: Option<String>,
}

fn build_options(options: HashMap<String, OwnedVariant>) -> Result<BuildOptions> {
    let mut out = BuildOptions::default();
    let mut keys: Vec<_> = options.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, value) in keys {
        let wrong =
            |want: &str| Error::InvalidOption(format!("option '{key}' must be of type {want}"));
        match key.as_str() {
            "checkpoints" => {
                out.checkpoints = Vec::<String>::try_from(value).map_err(|_| wrong("as"))?
            }
            "sources" => out.sources = Some(String::try_from(value).map_err(|_| wrong("s"))?),
            "secrets" => out.secrets = Some(String::try_from(value).map_err(|_| wrong("s"))?),
            other => {
                return Err(Error::InvalidOption(format!(
                    "unknown option '{other}'; known: checkpoints (as), sources (s), secrets (s)"
                )))
            }
        }
    }
    Ok(out)
}

fn invalid_manifest(e: &ManifestError) -> Error {
    Error::InvalidManifest(format!("invalid manifest:\n{e}"))
}

/// Every runner the pipeline and its build pipelines need exists.
fn check_runners(index: &Index, pipeline: &Pipeline) -> Result<()> {
    let r = match &pipeline.build {
        None => index.host_runner(),
        Some(b) => index.resolve_runner(&b.runner),
    };
    r.map_err(|e| Error::RunnerNotFound(e.to_string()))?;
    match &pipeline.build {
        Some(b) => check_runners(index, &b.pipeline),
        None => Ok(()),
    }
}

/// Validates a `Build` call into a job request; no side effect.
pub(crate) fn validate(
    svc: &Service,
    caller: &auth::Caller,
    manifest: &str,
    options: HashMap<String, OwnedVariant>,
) -> Result<Request> {
    let limit = svc.limits.max_manifest_bytes;
    if manifest.len() > limit {
        return Err(Error::ManifestTooLarge(format!(
            "the manifest has {} bytes; this daemon accepts at most {limit} (osbuildd --max-manifest-bytes)",
            manifest.len()
        )));
    }
    let opts = build_options(options)?;
    let mut m = manifest::load(manifest, &svc.index).map_err(|e| invalid_manifest(&e))?;
    if let Some(text) = &opts.sources {
        m.sources = match json::parse(text) {
            Ok(Value::Object(map)) => map.into_iter().collect::<BTreeMap<_, _>>(),
            Ok(_) => {
                return Err(Error::InvalidOption(
                    "option 'sources' must be a JSON object".into(),
                ))
            }
            Err(e) => {
                return Err(Error::InvalidOption(format!(
                    "option 'sources' is not valid JSON: {e}"
                )))
            }
        };
    }
    let secrets = match opts.secrets.as_deref().map(json::parse) {
        None => None,
        Some(Ok(v @ Value::Object(_))) => Some(v),
        // Never echo the text: it is a secret.
        Some(_) => {
            return Err(Error::InvalidOption(
                "option 'secrets' must be a JSON object".into(),
            ))
        }
    };
    let known: BTreeSet<&ObjectId> = m.ids().into_iter().collect();
    let mut checkpoints = BTreeSet::new();
    for c in &opts.checkpoints {
        match ObjectId::parse(c) {
            Ok(id) if known.contains(&id) => {
                checkpoints.insert(id);
            }
            _ => {
                return Err(Error::UnknownCheckpoint(format!(
                    "checkpoint '{c}' is not the id of a stage of this manifest (osbuildctl inspect shows them)"
                )))
            }
        }
    }
    check_runners(&svc.index, &m.pipeline)?;
    let active = svc.active_jobs_of(caller.uid);
    if active >= svc.limits.max_jobs_per_user {
        return Err(Error::TooManyJobs(format!(
            "uid {} already has {active} unfinished jobs, the most one user may have; wait for one to finish or cancel one",
            caller.uid
        )));
    }
    Ok(Request {
        owner_uid: caller.uid,
        owner_name: caller.name.clone(),
        manifest: m,
        checkpoints,
        secrets,
    })
}

/// Cancel on behalf of `hdr`'s sender: the owner may, anyone else needs cancel-other-user.
async fn cancel_job(
    svc: &Arc<Service>,
    conn: &Connection,
    hdr: &Header<'_>,
    job: &Arc<Job>,
) -> Result<()> {
    let caller = auth::caller(conn, hdr).await?;
    if caller.uid != job.owner_uid {
        svc.authority
            .check(conn, hdr, &caller, Action::CancelOtherUser)
            .await?;
    }
    tracing::info!(
        OSBUILD_JOB = job.id.0,
        OSBUILD_CALLER_UID = caller.uid,
        "cancel of job {} requested by uid {}",
        job.id,
        caller.uid
    );
    if svc.cancel(conn, job).await {
        Ok(())
    } else {
        Err(Error::NotRunning(format!(
            "job {} has already finished",
            job.id
        )))
    }
}

#[zbus::interface(name = "org.osbuild.Builder1")]
impl Manager {
    /// Queues a build of `manifest` (a v1 manifest, JSON); returns the job's object.
    async fn build(
        &self,
        manifest: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath> {
        let caller = auth::caller(conn, &hdr).await?;
        self.svc
            .authority
            .check(conn, &hdr, &caller, Action::Build)
            .await?;
        let req = match validate(&self.svc, &caller, manifest, options) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(OSBUILD_CALLER_UID = caller.uid, "Build refused: {e}");
                return Err(e);
            }
        };
        Ok(self.svc.submit(conn, req).await?)
    }

    /// Cancels a job (see `Job.Cancel`).
    async fn cancel(
        &self,
        job: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let found = JobId::from_path(&job).and_then(|id| self.svc.job(id));
        let Some(found) = found else {
            return Err(Error::NoSuchJob(format!("no job {job}")));
        };
        cancel_job(&self.svc, conn, &hdr, &found).await
    }

    /// The jobs on the bus (queued, running, and finished ones not yet forgotten).
    async fn list_jobs(&self) -> Vec<OwnedObjectPath> {
        self.svc.job_ids().into_iter().map(JobId::path).collect()
    }

    /// The store's objects: `id`, `treesum`, `kind` ("tree" or "output"), `size` (bytes),
    /// `created` and `last_used` (Unix seconds).
    async fn list_objects(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<HashMap<String, OwnedVariant>>> {
        let caller = auth::caller(conn, &hdr).await?;
        self.svc
            .authority
            .check(conn, &hdr, &caller, Action::Build)
            .await?;
        let store = self.svc.store.clone();
        let list = tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| Error::Failed(format!("listing the store: {e}")))?
            .map_err(|e| {
                tracing::error!("listing the store: {e}");
                Error::Failed("cannot list the store; see the daemon's journal".into())
            })?;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        Ok(list
            .into_iter()
            .map(|e| {
                let kind = match e.kind {
                    crate::store::ObjectKind::Tree => "tree",
                    crate::store::ObjectKind::Output => "output",
                };
                let mut m = HashMap::new();
                m.insert(
                    "id".to_owned(),
                    OwnedVariant::from(zbus::Str::from(e.id.to_string())),
                );
                m.insert(
                    "treesum".to_owned(),
                    OwnedVariant::from(zbus::Str::from(e.treesum.to_string())),
                );
                m.insert("kind".to_owned(), OwnedVariant::from(zbus::Str::from(kind)));
                m.insert("size".to_owned(), OwnedVariant::from(e.size));
                m.insert("created".to_owned(), OwnedVariant::from(secs(e.created)));
                m.insert(
                    "last_used".to_owned(),
                    OwnedVariant::from(secs(e.last_used)),
                );
                m
            })
            .collect())
    }

    /// Removes objects, least recently used first, until the store fits in `budget` bytes;
    /// returns the bytes freed. Needs `org.osbuild.builder1.manage-store`.
    async fn prune(
        &self,
        budget: u64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<u64> {
        let caller = auth::caller(conn, &hdr).await?;
        self.svc
            .authority
            .check(conn, &hdr, &caller, Action::ManageStore)
            .await?;
        let store = self.svc.store.clone();
        let report = tokio::task::spawn_blocking(move || store.prune(budget))
            .await
            .map_err(|e| Error::Failed(format!("pruning: {e}")))?
            .map_err(|e| {
                tracing::error!("pruning the store: {e}");
                Error::Failed("cannot prune the store; see the daemon's journal".into())
            })?;
        tracing::info!(
            OSBUILD_CALLER_UID = caller.uid,
            "pruned to {budget} bytes: {} objects removed, {} bytes freed",
            report.removed.len(),
            report.freed
        );
        Ok(report.freed)
    }

    /// A read-only descriptor of the regular file `path` inside output (or tree) `id`.
    /// `path` is relative; `..`, absolute paths and symlinks are refused.
    async fn open_output(
        &self,
        id: &str,
        path: &str,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<zbus::OwnedFd> {
        let caller = auth::caller(conn, &hdr).await?;
        self.svc
            .authority
            .check(conn, &hdr, &caller, Action::Build)
            .await?;
        let fd = output::open(&self.svc.store, id, path)?;
        Ok(zbus::OwnedFd::from(fd))
    }

    /// Writes output (or tree) `id` as an uncompressed tar stream into `fd` (the write end of
    /// a pipe, or a file the caller opened); the reply comes when the stream is complete.
    async fn export_output(
        &self,
        id: &str,
        fd: zbus::OwnedFd,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let caller = auth::caller(conn, &hdr).await?;
        self.svc
            .authority
            .check(conn, &hdr, &caller, Action::Build)
            .await?;
        let child = output::export(&self.svc.store, id, fd.into())?;
        tracing::info!(OSBUILD_CALLER_UID = caller.uid, "exporting {id}");
        tokio::task::spawn_blocking(move || output::wait(child))
            .await
            .map_err(|e| Error::Failed(format!("exporting: {e}")))?
    }

    /// A job was queued.
    #[zbus(signal)]
    pub(crate) async fn job_new(e: &SignalEmitter<'_>, job: ObjectPath<'_>) -> zbus::Result<()>;

    /// A stage (or the assembler) of `job` started; `index` counts from 0 over every stage of
    /// the manifest (build pipelines first, then the stages, then the assembler) of `total`.
    #[zbus(signal)]
    pub(crate) async fn stage_started(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        index: u32,
        total: u32,
    ) -> zbus::Result<()>;

    /// One line a stage printed. Sent only to the job owner's connection, never broadcast.
    #[zbus(signal)]
    pub(crate) async fn stage_output(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        line: &str,
    ) -> zbus::Result<()>;

    /// A stage ended.
    #[zbus(signal)]
    pub(crate) async fn stage_finished(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        success: bool,
        seconds: f64,
    ) -> zbus::Result<()>;

    /// A job ended; `result` is osbuild v10's `--json` result, or `{"success": false,
    /// "error": ...}` when the build could not run or was cancelled.
    #[zbus(signal)]
    pub(crate) async fn job_finished(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        success: bool,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `org.osbuild.Builder1.Job`.
pub struct JobIface {
    pub(crate) job: Arc<Job>,
    pub(crate) svc: Arc<Service>,
}

#[zbus::interface(name = "org.osbuild.Builder1.Job")]
impl JobIface {
    /// queued, running, succeeded, failed or cancelled.
    #[zbus(property)]
    fn state(&self) -> String {
        self.job.status().state.as_str().to_owned()
    }

    /// Share of the manifest's stages done, 0.0 to 1.0.
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.job.status().progress
    }

    /// Who started the job.
    #[zbus(property(emits_changed_signal = "const"))]
    fn owner_uid(&self) -> u32 {
        self.job.owner_uid
    }

    /// The id of the manifest's tree ("" without stages).
    #[zbus(property(emits_changed_signal = "const"))]
    fn tree_id(&self) -> String {
        self.job.tree_id()
    }

    /// The id of the manifest's output ("" without an assembler).
    #[zbus(property(emits_changed_signal = "const"))]
    fn output_id(&self) -> String {
        self.job.output_id()
    }

    /// Cancels this job: allowed to its owner, others need
    /// `org.osbuild.builder1.cancel-other-user`.
    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        cancel_job(&self.svc, conn, &hdr, &self.job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: Vec<(&str, OwnedVariant)>) -> HashMap<String, OwnedVariant> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn build_options_are_checked() {
        let s = |t: &str| OwnedVariant::from(zbus::Str::from(t.to_owned()));
        let ok = build_options(opts(vec![("sources", s("{}")), ("secrets", s("{}"))])).unwrap();
        assert_eq!(ok.sources.as_deref(), Some("{}"));
        let cases: Vec<(HashMap<String, OwnedVariant>, &str)> = vec![
            (
                opts(vec![("libdir", s("/x"))]),
                "unknown option 'libdir'; known: checkpoints (as), sources (s), secrets (s)",
            ),
            (
                opts(vec![("sources", OwnedVariant::from(3u32))]),
                "option 'sources' must be of type s",
            ),
            (
                opts(vec![("checkpoints", s("abc"))]),
                "option 'checkpoints' must be of type as",
            ),
        ];
        for (o, want) in cases {
            match build_options(o) {
                Err(Error::InvalidOption(m)) => assert_eq!(m, want),
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("accepted: {want}"),
            }
        }
    }
}
