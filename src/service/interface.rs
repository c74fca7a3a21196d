//! The bus adapter: the D-Bus objects (the manager `org.osbuild.Builder1` at
//! `/org/osbuild/Builder1`, one `org.osbuild.Builder1.Job` per job), and everything the
//! scheduler's decisions look like on the bus: job objects exported and removed, signals,
//! property changes and the journal's fields. `dbus/org.osbuild.Builder1.xml` is what it serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, OwnedObjectPath, OwnedVariant};

use super::auth::{self, Action};
use super::error::{Error, Result};
use super::outcome::{self, Built, Ending};
use super::request::{check_manifest_size, validate, JobRequest};
use super::scheduler::{lock, Job, JobId, JobState, Owner, Refused};
use super::wire::ObjectInfo;
use super::worker::{self, JobEvent};
use super::{output, Service, MANAGER_PATH};
use crate::pipeline::BuildError;
use crate::store::{Store, StoreError};

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

impl JobId {
    /// The job's object path.
    pub fn path(self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{}", self.0))
            .expect("a number makes a valid object path")
    }

    /// The job named by an object path, if it is one of ours.
    pub fn from_path(path: &ObjectPath<'_>) -> Option<JobId> {
        let n = path
            .as_str()
            .strip_prefix(MANAGER_PATH)?
            .strip_prefix("/job/")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
            return None;
        }
        n.parse().ok().map(JobId)
    }
}

/// Queues a validated request for `caller`, within the per-user limit.
fn admit(svc: &Service, caller: &auth::Caller, mut request: JobRequest) -> Result<Arc<Job>> {
    request.set_unprivileged_caller(caller.uid != 0);
    let owner = Owner {
        uid: caller.uid,
        name: caller.name.clone(),
    };
    svc.scheduler
        .admit(owner, request)
        .map_err(|refused| match refused {
            Refused::TooManyJobs { active } => Error::TooManyJobs(format!(
                "uid {} already has {active} unfinished jobs, the most one user may have; wait for one to finish or cancel one",
                caller.uid
            )),
            Refused::ShuttingDown => Error::ShuttingDown(
                "osbuildd is shutting down; try again when it is back".into(),
            ),
        })
}

/// The caller of the message, once root or polkit allows it `action`.
async fn authorized(
    svc: &Service,
    conn: &Connection,
    hdr: &Header<'_>,
    action: Action,
) -> Result<auth::Caller> {
    let caller = auth::caller(conn, hdr).await?;
    svc.authority.check(conn, hdr, &caller, action).await?;
    Ok(caller)
}

/// Runs `work` (to `what` the store) on a blocking thread; a failure is logged in full and
/// answered without its details.
async fn on_store<T: Send + 'static>(
    svc: &Service,
    what: &'static str,
    work: impl FnOnce(&Store) -> std::result::Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    let store = svc.store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| Error::Failed(format!("cannot {what} the store: {e}")))?
        .map_err(|e| {
            tracing::error!("cannot {what} the store: {e}");
            Error::Failed(format!("cannot {what} the store; see the daemon's journal"))
        })
}

/// Exports and announces an admitted job, and starts what may start.
async fn publish(svc: &Arc<Service>, conn: &Connection, job: Arc<Job>) -> Result<OwnedObjectPath> {
    let (id, path) = (job.id, job.id.path());
    let iface = JobIface {
        job: job.clone(),
        svc: svc.clone(),
    };
    if let Err(e) = conn.object_server().at(&path, iface).await {
        svc.scheduler.dequeue(id);
        svc.scheduler.forget(id);
        return Err(e.into());
    }
    tracing::info!(
        OSBUILD_JOB = id.0,
        OSBUILD_CALLER_UID = job.owner.uid,
        OSBUILD_TREE_ID = %job.tree_id(),
        OSBUILD_OUTPUT_ID = %job.output_id(),
        "job {id} queued by uid {}",
        job.owner.uid
    );
    let mgr = SignalEmitter::new(conn, MANAGER_PATH)?;
    Manager::job_new(&mgr, path.as_ref()).await?;
    start_ready(svc, conn);
    Ok(path)
}

/// Starts the jobs the scheduler lets start, each relayed by its own task.
fn start_ready(svc: &Arc<Service>, conn: &Connection) {
    let store = &svc.store;
    for job in svc.scheduler.start_ready(&|id| store.contains(id)) {
        let (svc, conn) = (svc.clone(), conn.clone());
        match worker::spawn(&svc, &job) {
            Ok(rx) => {
                tokio::spawn(async move { follow(svc, conn, job, rx).await });
            }
            Err(e) => {
                tracing::error!(OSBUILD_JOB = job.id.0, "cannot start a build thread: {e}");
                let r = Err(BuildError::Internal(format!(
                    "cannot start a build thread: {e}"
                )));
                tokio::spawn(async move { finish(&svc, &conn, &job, r).await });
            }
        }
    }
}

/// Relays a running job's events until it ends.
async fn follow(
    svc: Arc<Service>,
    conn: Connection,
    job: Arc<Job>,
    mut rx: mpsc::Receiver<JobEvent>,
) {
    let Ok(relay) = Relay::new(&conn, &job) else {
        return;
    };
    emit_state(&conn, &job).await;
    while let Some(event) = rx.recv().await {
        if let JobEvent::Done(result) = event {
            finish(&svc, &conn, &job, result).await;
            return;
        }
        relay.event(event).await;
    }
    // The thread ended without a result: it panicked.
    let r = Err(BuildError::Internal("the build thread panicked".into()));
    finish(&svc, &conn, &job, r).await;
}

/// Where one job's stage events go: signals to everyone, output to the owner only, and the
/// journal.
struct Relay<'a> {
    conn: &'a Connection,
    job: &'a Job,
    path: OwnedObjectPath,
    mgr: SignalEmitter<'a>,
    /// The owner's connection, for stage output; `None` when its name is not valid.
    owner: Option<SignalEmitter<'a>>,
    /// The job object's signals to the owner's connection (download progress).
    owner_job: Option<SignalEmitter<'a>>,
    total: u32,
}

/// `emitter` aimed at the job owner's connection only: `None` when the owner's name is not
/// a bus name, as is (there is no bus to broadcast on) on a peer-to-peer connection.
fn to_owner<'a>(emitter: SignalEmitter<'a>, job: &Job) -> Option<SignalEmitter<'a>> {
    match job.owner.name.as_deref().map(BusName::try_from) {
        Some(Ok(name)) => Some(emitter.set_destination(name.to_owned())),
        Some(Err(_)) => None,
        None => Some(emitter),
    }
}

impl<'a> Relay<'a> {
    fn new(conn: &'a Connection, job: &'a Job) -> zbus::Result<Self> {
        let mgr = SignalEmitter::new(conn, MANAGER_PATH)?;
        let path = job.id.path();
        let owner_job = to_owner(SignalEmitter::new(conn, path.clone())?, job);
        Ok(Relay {
            conn,
            job,
            owner: to_owner(mgr.clone(), job),
            owner_job,
            path,
            mgr,
            total: u32::try_from(job.order.len()).unwrap_or(u32::MAX),
        })
    }

    /// The position of stage `id` among the job's stages.
    fn index(&self, id: &crate::id::ObjectId) -> usize {
        self.job.order.iter().position(|o| o == id).unwrap_or(0)
    }

    async fn event(&self, event: JobEvent) {
        let (n, total, path) = (self.job.id.0, self.total, self.path.as_ref());
        match event {
            JobEvent::Started { id, name, pipeline } => {
                let index = self.index(&id);
                let pipeline = pipeline.unwrap_or_default();
                tracing::info!(
                    OSBUILD_JOB = n,
                    OSBUILD_PIPELINE = %pipeline,
                    OSBUILD_STAGE = %name,
                    OSBUILD_STAGE_ID = %id,
                    "job {n}: {name} started ({}/{total})",
                    index + 1
                );
                let (index, id) = (index as u32, id.as_str());
                let (mgr, p) = (&self.mgr, pipeline.as_str());
                let _ = Manager::stage_started(mgr, path, id, &name, index, total, p).await;
            }
            JobEvent::Output { id, name, line } => {
                tracing::info!(
                    OSBUILD_JOB = n,
                    OSBUILD_STAGE = %name,
                    OSBUILD_STAGE_ID = %id,
                    "{line}"
                );
                if let Some(owner) = &self.owner {
                    let _ = Manager::stage_output(owner, path, id.as_str(), &line).await;
                }
            }
            JobEvent::Finished {
                id,
                name,
                pipeline,
                success,
                seconds,
            } => {
                let pipeline = pipeline.unwrap_or_default();
                tracing::info!(
                    OSBUILD_JOB = n,
                    OSBUILD_PIPELINE = %pipeline,
                    OSBUILD_STAGE = %name,
                    OSBUILD_STAGE_ID = %id,
                    "job {n}: {name} {} in {seconds:.2}s",
                    if success { "finished" } else { "failed" }
                );
                let done = (self.index(&id) + 1) as f64 / f64::from(total.max(1));
                lock(&self.job.status).progress = done;
                emit_progress(self.conn, self.job).await;
                let (mgr, id, p) = (&self.mgr, id.as_str(), pipeline.as_str());
                let _ = Manager::stage_finished(mgr, path, id, &name, success, seconds, p).await;
            }
            JobEvent::Download { source, progress } => {
                if let Some(owner) = &self.owner_job {
                    let p = progress;
                    let _ = JobIface::download_progress(
                        owner,
                        &source,
                        p.bytes_done,
                        p.bytes_total,
                        p.files_done,
                        p.files_total,
                    )
                    .await;
                }
            }
            JobEvent::Done(_) => unreachable!("follow handles the end"),
        }
    }
}

/// Records the outcome, announces it, frees the slot and schedules the unexport.
pub(super) async fn finish(
    svc: &Arc<Service>,
    conn: &Connection,
    job: &Arc<Job>,
    result: std::result::Result<Built, BuildError>,
) {
    let n = job.id.0;
    let error = match &result {
        Err(BuildError::Cancelled) | Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    let Ending {
        state,
        full,
        summary,
    } = outcome::ending(&job.request, result);
    match error {
        Some(e) => tracing::warn!(OSBUILD_JOB = n, "job {n} failed: {e}"),
        None => tracing::info!(OSBUILD_JOB = n, "job {n} {}", state.as_str()),
    }
    let _ = job.result.set(full);
    let forgotten = svc.scheduler.finish(job, state);
    for id in forgotten {
        let _ = conn
            .object_server()
            .remove::<JobIface, _>(id.path().as_ref())
            .await;
    }
    emit_state(conn, job).await;
    emit_progress(conn, job).await;
    if let Ok(mgr) = SignalEmitter::new(conn, MANAGER_PATH) {
        let path = job.id.path();
        let success = state == JobState::Succeeded;
        let _ = Manager::job_finished(&mgr, path.as_ref(), success, &summary).await;
    }
    start_ready(svc, conn);
    if let Some(budget) = svc.scheduler.limits().max_store_bytes {
        let store = svc.store.clone();
        tokio::task::spawn_blocking(move || {
            match store.prune(budget) {
            Ok(r) if r.freed > 0 => tracing::info!(
                "store kept within {budget} bytes: {} objects and {} downloads removed, {} bytes freed",
                r.removed.len(),
                r.downloads_removed.len(),
                r.freed
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning the store to {budget} bytes: {e}"),
        }
        });
    }
    // What the build freed goes back to the system: a daemon between builds holds what it
    // keeps (the jobs on the bus), not the peak of the last build.
    osbuild_sys::alloc::release_free_memory();
    let (svc, conn, id) = (svc.clone(), conn.clone(), job.id);
    tokio::spawn(async move {
        tokio::time::sleep(svc.scheduler.limits().keep_finished).await;
        svc.scheduler.forget(id);
        let _ = conn
            .object_server()
            .remove::<JobIface, _>(id.path().as_ref())
            .await;
    });
}

/// The job's exported interface, if it is (still) on the bus.
async fn job_iface(
    conn: &Connection,
    job: &Job,
) -> Option<zbus::object_server::InterfaceRef<JobIface>> {
    conn.object_server()
        .interface::<_, JobIface>(job.id.path().as_ref())
        .await
        .ok()
}

async fn emit_state(conn: &Connection, job: &Job) {
    if let Some(iface) = job_iface(conn, job).await {
        let emitter = iface.signal_emitter();
        let _ = iface.get().await.state_changed(emitter).await;
    }
}

async fn emit_progress(conn: &Connection, job: &Job) {
    if let Some(iface) = job_iface(conn, job).await {
        let emitter = iface.signal_emitter();
        let _ = iface.get().await.progress_changed(emitter).await;
    }
}

/// `hdr`'s sender, if it may act on `job`: its owner may, anyone else needs
/// cancel-other-user.
async fn owner_or_admin(
    svc: &Service,
    conn: &Connection,
    hdr: &Header<'_>,
    job: &Job,
) -> Result<auth::Caller> {
    let caller = auth::caller(conn, hdr).await?;
    if caller.uid != job.owner.uid {
        svc.authority
            .check(conn, hdr, &caller, Action::CancelOtherUser)
            .await?;
    }
    Ok(caller)
}

/// Cancel on behalf of `hdr`'s sender: the owner may, anyone else needs cancel-other-user.
async fn cancel_job(
    svc: &Arc<Service>,
    conn: &Connection,
    hdr: &Header<'_>,
    job: &Arc<Job>,
) -> Result<()> {
    let caller = owner_or_admin(svc, conn, hdr, job).await?;
    tracing::info!(
        OSBUILD_JOB = job.id.0,
        OSBUILD_CALLER_UID = caller.uid,
        "cancel of job {} requested by uid {}",
        job.id,
        caller.uid
    );
    if svc.scheduler.dequeue(job.id) {
        // A queued job ends at once.
        finish(svc, conn, job, Err(BuildError::Cancelled)).await;
        return Ok(());
    }
    if job.status().state.is_finished() {
        return Err(Error::NotRunning(format!(
            "job {} has already finished",
            job.id
        )));
    }
    // A running one ends when its sandbox is gone. Reply only then (within a bound under the
    // usual 25 s D-Bus call timeout): a caller seeing the reply knows no process of the job runs.
    tracing::info!(OSBUILD_JOB = job.id.0, "cancelling job {}", job.id);
    job.cancel.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !job.status().state.is_finished() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[zbus::interface(name = "org.osbuild.Builder1")]
impl Manager {
    /// Queues a build of `manifest` (a v1 or v2 manifest, JSON); returns the job's object.
    async fn build(
        &self,
        manifest: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath> {
        let _call = self.svc.calls.begin();
        // Before polkit is asked: an oversized call costs the daemon nothing more.
        check_manifest_size(&self.svc, manifest)?;
        let caller = authorized(&self.svc, conn, &hdr, Action::Build).await?;
        let admitted = validate(&self.svc, manifest, options)
            .and_then(|request| admit(&self.svc, &caller, request));
        let job = match admitted {
            Ok(job) => job,
            Err(e) => {
                tracing::info!(OSBUILD_CALLER_UID = caller.uid, "Build refused: {e}");
                return Err(e);
            }
        };
        publish(&self.svc, conn, job).await
    }

    /// Cancels a job (see `Job.Cancel`).
    async fn cancel(
        &self,
        job: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let found = JobId::from_path(&job).and_then(|id| self.svc.scheduler.job(id));
        let Some(found) = found else {
            return Err(Error::NoSuchJob(format!("no job {job}")));
        };
        cancel_job(&self.svc, conn, &hdr, &found).await
    }

    /// The jobs on the bus (queued, running, and finished ones not yet forgotten).
    async fn list_jobs(&self) -> Vec<OwnedObjectPath> {
        let ids = self.svc.scheduler.job_ids();
        ids.into_iter().map(JobId::path).collect()
    }

    /// The store's objects: `id`, `treesum`, `kind` ("tree" or "output"), `size` (bytes),
    /// `created` and `last_used` (Unix seconds).
    async fn list_objects(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<ObjectInfo>> {
        let _call = self.svc.calls.begin();
        authorized(&self.svc, conn, &hdr, Action::Build).await?;
        let list = on_store(&self.svc, "list", Store::list).await?;
        let secs = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        Ok(list
            .into_iter()
            .map(|e| ObjectInfo {
                id: e.id.to_string(),
                treesum: e.treesum.to_string(),
                kind: match e.kind {
                    crate::store::ObjectKind::Tree => "tree",
                    crate::store::ObjectKind::Output => "output",
                }
                .to_owned(),
                size: e.size,
                created: secs(e.created),
                last_used: secs(e.last_used),
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
        let _call = self.svc.calls.begin();
        let caller = authorized(&self.svc, conn, &hdr, Action::ManageStore).await?;
        let report = on_store(&self.svc, "prune", move |s| s.prune(budget)).await?;
        tracing::info!(
            OSBUILD_CALLER_UID = caller.uid,
            "pruned to {budget} bytes: {} objects removed, {} bytes freed",
            report.removed.len(),
            report.freed
        );
        Ok(report.freed)
    }

    /// Hashes every object and cached download again (like `git fsck`); what does not match
    /// its name is moved to the store's quarantine and its refs removed. Returns whether the
    /// store was clean and the report. Needs `org.osbuild.builder1.manage-store`.
    #[zbus(out_args("clean", "report"))]
    async fn verify(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(bool, String)> {
        let _call = self.svc.calls.begin();
        let caller = authorized(&self.svc, conn, &hdr, Action::ManageStore).await?;
        let report = on_store(&self.svc, "verify", Store::verify).await?;
        let text = report.to_text();
        if report.is_clean() {
            tracing::info!(
                OSBUILD_CALLER_UID = caller.uid,
                "verified: {}",
                text.trim_end()
            );
        } else {
            tracing::warn!(
                OSBUILD_CALLER_UID = caller.uid,
                "verified: {}",
                text.trim_end()
            );
        }
        Ok((report.is_clean(), text))
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
        let _call = self.svc.calls.begin();
        authorized(&self.svc, conn, &hdr, Action::Build).await?;
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
        let _call = self.svc.calls.begin();
        let caller = authorized(&self.svc, conn, &hdr, Action::Build).await?;
        // Each export holds a thread and a tar process: a bounded number at once.
        let _running = self.svc.exports.try_acquire().map_err(|_| {
            zbus::fdo::Error::LimitsExceeded(format!(
                "{} exports are running, the most at once; try again when one has finished",
                self.svc.scheduler.limits().max_exports
            ))
        })?;
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
    /// the manifest (build pipelines first, then the stages, then the assembler; for a v2
    /// manifest, the stages of the pipelines the exports need, in manifest order) of `total`.
    /// `pipeline` is the name of the v2 pipeline the stage belongs to ("" for v1 manifests).
    #[zbus(signal)]
    pub(crate) async fn stage_started(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        index: u32,
        total: u32,
        pipeline: &str,
    ) -> zbus::Result<()>;

    /// One line a stage printed. Sent only to the job owner's connection, never broadcast.
    #[zbus(signal)]
    pub(crate) async fn stage_output(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        line: &str,
    ) -> zbus::Result<()>;

    /// A stage ended; `pipeline` as in `StageStarted`.
    #[zbus(signal)]
    pub(crate) async fn stage_finished(
        e: &SignalEmitter<'_>,
        job: ObjectPath<'_>,
        stage_id: &str,
        name: &str,
        success: bool,
        seconds: f64,
        pipeline: &str,
    ) -> zbus::Result<()>;

    /// A job ended. Broadcast, so `result` is only what any local user may see: for a v1
    /// manifest osbuild v10's `--json` shape with every stage's `options` and `output` null,
    /// for a v2 one the exports' ids and per pipeline and stage name, id and success; no error
    /// text but "cancelled". The owner reads the full result with `Job.GetResult`.
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
        self.job.owner.uid
    }

    /// The id of the manifest's tree ("" without stages; v2: the first export's tree).
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

    /// Where `source`'s download stands: bytes and files in place, of those known so far
    /// (`bytes_total` grows as responses arrive). Sent only to the job owner's connection,
    /// at most 10 times a second, and once more when the source is done.
    #[zbus(signal)]
    pub(crate) async fn download_progress(
        e: &SignalEmitter<'_>,
        source: &str,
        bytes_done: u64,
        bytes_total: u64,
        files_done: u64,
        files_total: u64,
    ) -> zbus::Result<()>;

    /// The finished job's full result: osbuild v10's `--json` result with every stage's
    /// options and output (v2 manifests: osbuild HEAD's `--json` result), or `{"success":
    /// false, "error": ...}` when the build could not run. Allowed to its owner, others
    /// need `org.osbuild.builder1.cancel-other-user`.
    async fn get_result(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        owner_or_admin(&self.svc, conn, &hdr, &self.job).await?;
        self.job.result.get().cloned().ok_or_else(|| {
            Error::NotFinished(format!(
                "job {} has not finished; its result comes after JobFinished",
                self.job.id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_paths_round_trip_and_reject_strangers() {
        let cases: &[(&str, Option<u64>)] = &[
            ("/org/osbuild/Builder1/job/1", Some(1)),
            ("/org/osbuild/Builder1/job/42", Some(42)),
            ("/org/osbuild/Builder1/job/0", None),
            ("/org/osbuild/Builder1/job/01", None),
            ("/org/osbuild/Builder1/job/1/x", None),
            ("/org/osbuild/Builder1", None),
            ("/org/other/job/1", None),
        ];
        for (path, want) in cases {
            let p = ObjectPath::try_from(*path).unwrap();
            assert_eq!(JobId::from_path(&p).map(|j| j.0), *want, "{path}");
        }
        assert_eq!(JobId(7).path().as_str(), "/org/osbuild/Builder1/job/7");
    }
}
