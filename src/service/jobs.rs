//! Jobs: admission (bounds, validation), the queue, the build threads, and turning pipeline
//! events into D-Bus signals, property changes and journal entries.
//!
//! Scheduling: at most `max_jobs` builds run at once. A queued job starts when a slot is free
//! and none of its not-yet-built stages is also a stage of a running job; a job waiting that
//! way makes the running one commit the shared stages ([`crate::pipeline::Monitor::keep`]), so
//! that stage is built once and both jobs use it.
//!
//! Each build runs on its own `std::thread`, which spawns and waits for its sandboxes itself
//! (bubblewrap dies with the thread that spawned it); events reach async code over a channel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use zbus::names::BusName;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, OwnedObjectPath};

use crate::buildroot::Cancel;
use crate::id::ObjectId;
use crate::json::Value;
use crate::manifest::Manifest;
use crate::modules::Index;
use crate::pipeline::{BuildError, Builder, Event, Monitor, PipelineResult};
use crate::store::Store;

use super::interface::{JobIface, Manager};
use super::MANAGER_PATH;

/// Limits and places the daemon works with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Builds running at once; more are queued.
    pub max_jobs: usize,
    /// Unfinished (queued or running) jobs one uid may have.
    pub max_jobs_per_user: usize,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: usize,
    /// How long a finished job stays on the bus.
    pub keep_finished: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 2,
            max_jobs_per_user: 8,
            max_manifest_bytes: 4 << 20,
            keep_finished: Duration::from_secs(300),
        }
    }
}

/// A job number; its object lives at `/org/osbuild/Builder1/job/<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

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

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// The `State` property's value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What changes while a job runs.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub state: JobState,
    pub progress: f64,
}

/// One build request.
pub(crate) struct Job {
    pub id: JobId,
    pub owner_uid: u32,
    /// The owner's unique bus name: stage output goes only there.
    pub owner_name: Option<String>,
    pub manifest: Manifest,
    pub checkpoints: BTreeSet<ObjectId>,
    /// Secrets for the sources; never logged, never in a signal or a result.
    pub secrets: Option<Value>,
    /// Every stage and assembler id, in the order they run.
    pub order: Vec<ObjectId>,
    pub cancel: Cancel,
    pub status: Mutex<Status>,
}

impl Job {
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    fn set_state(&self, state: JobState) {
        lock(&self.status).state = state;
    }

    pub fn tree_id(&self) -> String {
        self.manifest
            .pipeline
            .tree_id()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    pub fn output_id(&self) -> String {
        self.manifest
            .pipeline
            .output_id()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Ids this job would build that the store does not have yet.
    fn missing(&self, store: &Store) -> BTreeSet<ObjectId> {
        if self
            .manifest
            .pipeline
            .output_id()
            .is_some_and(|o| store.contains(o))
        {
            return BTreeSet::new();
        }
        self.order
            .iter()
            .filter(|id| !store.contains(id))
            .cloned()
            .collect()
    }
}

/// Locks a mutex, ignoring poisoning (a panicked build thread must not wedge the daemon).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Sched {
    jobs: BTreeMap<JobId, Arc<Job>>,
    queue: VecDeque<JobId>,
    running: BTreeSet<JobId>,
}

/// The daemon's state, shared by the interfaces and the job tasks.
pub struct Service {
    pub(crate) store: Store,
    pub(crate) index: Index,
    pub(crate) limits: Limits,
    pub(crate) authority: super::auth::Authority,
    sched: Mutex<Sched>,
    next: AtomicU64,
}

/// A new job's request, validated.
pub(crate) struct Request {
    pub owner_uid: u32,
    pub owner_name: Option<String>,
    pub manifest: Manifest,
    pub checkpoints: BTreeSet<ObjectId>,
    /// Secrets for the sources (`{SOURCE: {...}}`); handed to source processes only.
    pub secrets: Option<Value>,
}

impl Service {
    /// A service over `store`, building with the modules of `index`.
    pub fn new(
        store: Store,
        index: Index,
        limits: Limits,
        authority: super::auth::Authority,
    ) -> Arc<Service> {
        Arc::new(Service {
            store,
            index,
            limits,
            authority,
            sched: Mutex::new(Sched::default()),
            next: AtomicU64::new(1),
        })
    }

    /// Jobs on the bus, oldest first.
    pub(crate) fn job_ids(&self) -> Vec<JobId> {
        lock(&self.sched).jobs.keys().copied().collect()
    }

    pub(crate) fn job(&self, id: JobId) -> Option<Arc<Job>> {
        lock(&self.sched).jobs.get(&id).cloned()
    }

    /// Unfinished jobs of `uid`.
    pub(crate) fn active_jobs_of(&self, uid: u32) -> usize {
        lock(&self.sched)
            .jobs
            .values()
            .filter(|j| j.owner_uid == uid && !j.status().state.is_finished())
            .count()
    }

    /// Registers and exports a job, announces it, and starts it when it may.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        conn: &Connection,
        req: Request,
    ) -> zbus::Result<OwnedObjectPath> {
        let id = JobId(self.next.fetch_add(1, Ordering::SeqCst));
        let order = req
            .manifest
            .pipeline
            .all_stages()
            .into_iter()
            .map(|s| s.id.clone())
            .collect();
        let job = Arc::new(Job {
            id,
            owner_uid: req.owner_uid,
            owner_name: req.owner_name,
            manifest: req.manifest,
            checkpoints: req.checkpoints,
            secrets: req.secrets,
            order,
            cancel: Cancel::new(),
            status: Mutex::new(Status {
                state: JobState::Queued,
                progress: 0.0,
            }),
        });
        let path = id.path();
        conn.object_server()
            .at(
                &path,
                JobIface {
                    job: job.clone(),
                    svc: self.clone(),
                },
            )
            .await?;
        tracing::info!(
            OSBUILD_JOB = id.0,
            OSBUILD_CALLER_UID = job.owner_uid,
            OSBUILD_TREE_ID = %job.tree_id(),
            OSBUILD_OUTPUT_ID = %job.output_id(),
            "job {id} queued by uid {}",
            job.owner_uid
        );
        {
            let mut s = lock(&self.sched);
            s.jobs.insert(id, job);
            s.queue.push_back(id);
        }
        let mgr = SignalEmitter::new(conn, MANAGER_PATH)?;
        Manager::job_new(&mgr, path.as_ref()).await?;
        self.start_ready(conn);
        Ok(path)
    }

    /// Starts queued jobs while there are free slots and no conflicts.
    pub(crate) fn start_ready(self: &Arc<Self>, conn: &Connection) {
        let mut s = lock(&self.sched);
        loop {
            if s.running.len() >= self.limits.max_jobs {
                return;
            }
            let busy: BTreeSet<ObjectId> = s
                .running
                .iter()
                .filter_map(|r| s.jobs.get(r))
                .flat_map(|j| j.missing(&self.store))
                .collect();
            let pick = s.queue.iter().position(|q| {
                s.jobs
                    .get(q)
                    .is_some_and(|j| j.missing(&self.store).is_disjoint(&busy))
            });
            let Some(pos) = pick else { return };
            let Some(id) = s.queue.remove(pos) else {
                return;
            };
            let Some(job) = s.jobs.get(&id).cloned() else {
                continue;
            };
            s.running.insert(id);
            job.set_state(JobState::Running);
            self.spawn(conn, job);
        }
    }

    /// Whether a queued job other than `me` needs stage `id`.
    fn wanted_by_queue(&self, me: JobId, id: &ObjectId) -> bool {
        let s = lock(&self.sched);
        s.queue
            .iter()
            .filter(|q| **q != me)
            .filter_map(|q| s.jobs.get(q))
            .any(|j| j.order.contains(id))
    }

    fn spawn(self: &Arc<Self>, conn: &Connection, job: Arc<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let svc = self.clone();
        let thread_job = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("job-{}", job.id))
            .spawn(move || {
                let builder = Builder {
                    store: &svc.store,
                    index: &svc.index,
                    checkpoints: thread_job.checkpoints.clone(),
                    cancel: thread_job.cancel.clone(),
                };
                let mut monitor = JobMonitor {
                    tx: tx.clone(),
                    svc: &svc,
                    job: &thread_job,
                    current: None,
                };
                let result = builder.build_with_secrets(
                    &thread_job.manifest,
                    thread_job.secrets.as_ref(),
                    &mut monitor,
                );
                let _ = tx.send(Msg::Done(result));
            });
        let svc = self.clone();
        let conn = conn.clone();
        match spawned {
            Ok(_) => {
                tokio::spawn(async move { svc.follow(conn, job, rx).await });
            }
            Err(e) => {
                tracing::error!(OSBUILD_JOB = job.id.0, "cannot start a build thread: {e}");
                tokio::spawn(async move {
                    let r = Err(BuildError::Cancelled);
                    svc.finish(
                        &conn,
                        &job,
                        r,
                        Some(format!("cannot start a build thread: {e}")),
                    )
                    .await
                });
            }
        }
    }

    /// Relays a running job's events until it ends.
    async fn follow(
        self: Arc<Self>,
        conn: Connection,
        job: Arc<Job>,
        mut rx: mpsc::UnboundedReceiver<Msg>,
    ) {
        let path = job.id.path();
        let n = job.id.0;
        let Ok(mgr) = SignalEmitter::new(&conn, MANAGER_PATH) else {
            return;
        };
        let owner = match job
            .owner_name
            .as_deref()
            .map(|name| BusName::try_from(name.to_owned()))
        {
            Some(Ok(name)) => Some(mgr.clone().set_destination(name)),
            Some(Err(_)) => None,
            None => Some(mgr.clone()),
        };
        let total = u32::try_from(job.order.len()).unwrap_or(u32::MAX);
        self.emit_state(&conn, &job).await;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Started { id, name } => {
                    let index = job.order.iter().position(|o| *o == id).unwrap_or(0);
                    tracing::info!(
                        OSBUILD_JOB = n,
                        OSBUILD_STAGE = %name,
                        OSBUILD_STAGE_ID = %id,
                        "job {n}: {name} started ({}/{total})",
                        index + 1
                    );
                    let _ = Manager::stage_started(
                        &mgr,
                        path.as_ref(),
                        id.as_str(),
                        &name,
                        index as u32,
                        total,
                    )
                    .await;
                }
                Msg::Output { id, name, line } => {
                    tracing::info!(
                        OSBUILD_JOB = n,
                        OSBUILD_STAGE = %name,
                        OSBUILD_STAGE_ID = %id,
                        "{line}"
                    );
                    if let Some(owner) = &owner {
                        let _ =
                            Manager::stage_output(owner, path.as_ref(), id.as_str(), &line).await;
                    }
                }
                Msg::Finished {
                    id,
                    name,
                    success,
                    seconds,
                } => {
                    let index = job.order.iter().position(|o| *o == id).unwrap_or(0);
                    tracing::info!(
                        OSBUILD_JOB = n,
                        OSBUILD_STAGE = %name,
                        OSBUILD_STAGE_ID = %id,
                        "job {n}: {name} {} in {seconds:.2}s",
                        if success { "finished" } else { "failed" }
                    );
                    lock(&job.status).progress = (index + 1) as f64 / f64::from(total.max(1));
                    self.emit_progress(&conn, &job).await;
                    let _ = Manager::stage_finished(
                        &mgr,
                        path.as_ref(),
                        id.as_str(),
                        &name,
                        success,
                        seconds,
                    )
                    .await;
                }
                Msg::Done(result) => {
                    self.finish(&conn, &job, result, None).await;
                    return;
                }
            }
        }
        // The thread ended without a result: it panicked.
        let r = Err(BuildError::Cancelled);
        self.finish(
            &conn,
            &job,
            r,
            Some("internal error: the build thread panicked".into()),
        )
        .await;
    }

    /// Records the outcome, announces it, frees the slot and schedules the unexport.
    pub(crate) async fn finish(
        self: &Arc<Self>,
        conn: &Connection,
        job: &Arc<Job>,
        result: Result<PipelineResult, BuildError>,
        failure: Option<String>,
    ) {
        let n = job.id.0;
        let (state, json) = match (&result, failure) {
            (_, Some(msg)) => (JobState::Failed, error_json(&msg)),
            (Ok(r), None) => (
                if r.success {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                },
                r.to_json(),
            ),
            (Err(BuildError::Cancelled), None) => (JobState::Cancelled, error_json("cancelled")),
            (Err(e), None) => (JobState::Failed, error_json(&e.to_string())),
        };
        {
            let mut st = lock(&job.status);
            st.state = state;
            if state == JobState::Succeeded {
                st.progress = 1.0;
            }
        }
        match &result {
            Err(e) if state == JobState::Failed => {
                tracing::warn!(OSBUILD_JOB = n, "job {n} failed: {e}")
            }
            _ => tracing::info!(OSBUILD_JOB = n, "job {n} {}", state.as_str()),
        }
        self.emit_state(conn, job).await;
        self.emit_progress(conn, job).await;
        if let Ok(mgr) = SignalEmitter::new(conn, MANAGER_PATH) {
            let _ = Manager::job_finished(
                &mgr,
                job.id.path().as_ref(),
                state == JobState::Succeeded,
                &json,
            )
            .await;
        }
        {
            let mut s = lock(&self.sched);
            s.running.remove(&job.id);
            s.queue.retain(|q| *q != job.id);
        }
        self.start_ready(conn);
        let svc = self.clone();
        let conn = conn.clone();
        let id = job.id;
        tokio::spawn(async move {
            tokio::time::sleep(svc.limits.keep_finished).await;
            svc.forget(&conn, id).await;
        });
    }

    /// Removes a finished job from the bus.
    async fn forget(&self, conn: &Connection, id: JobId) {
        lock(&self.sched).jobs.remove(&id);
        let _ = conn
            .object_server()
            .remove::<JobIface, _>(id.path().as_ref())
            .await;
    }

    /// Cancels `job` (the caller is already authorized). A queued job ends at once; a running
    /// one when its sandbox is gone. Returns false when it had already finished.
    pub(crate) async fn cancel(self: &Arc<Self>, conn: &Connection, job: &Arc<Job>) -> bool {
        let was_queued = {
            let mut s = lock(&self.sched);
            let before = s.queue.len();
            s.queue.retain(|q| *q != job.id);
            before != s.queue.len()
        };
        if was_queued {
            self.finish(conn, job, Err(BuildError::Cancelled), None)
                .await;
            return true;
        }
        if job.status().state.is_finished() {
            return false;
        }
        tracing::info!(OSBUILD_JOB = job.id.0, "cancelling job {}", job.id);
        job.cancel.cancel();
        true
    }

    /// Cancels every job (daemon shutdown) and waits up to `grace` for the builds to clean up.
    pub async fn shutdown(self: &Arc<Self>, grace: Duration) {
        let jobs: Vec<Arc<Job>> = {
            let mut s = lock(&self.sched);
            s.queue.clear();
            s.jobs.values().cloned().collect()
        };
        for j in &jobs {
            j.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !lock(&self.sched).running.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn emit_state(&self, conn: &Connection, job: &Job) {
        if let Some(iface) = job_iface(conn, job).await {
            let _ = iface
                .get()
                .await
                .state_changed(iface.signal_emitter())
                .await;
        }
    }

    async fn emit_progress(&self, conn: &Connection, job: &Job) {
        if let Some(iface) = job_iface(conn, job).await {
            let _ = iface
                .get()
                .await
                .progress_changed(iface.signal_emitter())
                .await;
        }
    }
}

fn error_json(message: &str) -> String {
    serde_json::json!({"success": false, "error": message}).to_string()
}

/// What a build thread tells its job's task.
enum Msg {
    Started {
        id: ObjectId,
        name: String,
    },
    Output {
        id: ObjectId,
        name: String,
        line: String,
    },
    Finished {
        id: ObjectId,
        name: String,
        success: bool,
        seconds: f64,
    },
    Done(Result<PipelineResult, BuildError>),
}

struct JobMonitor<'a> {
    tx: mpsc::UnboundedSender<Msg>,
    svc: &'a Service,
    job: &'a Job,
    current: Option<(ObjectId, String)>,
}

impl Monitor for JobMonitor<'_> {
    fn event(&mut self, event: Event<'_>) {
        let msg = match event {
            Event::ModuleStarted { name, id, .. } => {
                self.current = Some((id.clone(), name.to_owned()));
                Msg::Started {
                    id: id.clone(),
                    name: name.to_owned(),
                }
            }
            Event::Output { line } => {
                let Some((id, name)) = self.current.clone() else {
                    return;
                };
                Msg::Output {
                    id,
                    name,
                    line: line.to_owned(),
                }
            }
            Event::SourceStarted { name, files } => {
                tracing::info!(
                    OSBUILD_JOB = self.job.id.0,
                    "{name}: fetching {files} files"
                );
                return;
            }
            Event::SourceProgress { .. } => return,
            Event::SourceFinished {
                name,
                success,
                seconds,
            } => {
                tracing::info!(
                    OSBUILD_JOB = self.job.id.0,
                    "{name}: {} after {seconds:.1} s",
                    if success { "fetched" } else { "failed" }
                );
                return;
            }
            Event::ModuleFinished {
                name,
                id,
                success,
                seconds,
                ..
            } => Msg::Finished {
                id: id.clone(),
                name: name.to_owned(),
                success,
                seconds,
            },
        };
        let _ = self.tx.send(msg);
    }

    fn keep(&mut self, id: &ObjectId) -> bool {
        let keep = self.svc.wanted_by_queue(self.job.id, id);
        if keep {
            tracing::info!(
                OSBUILD_JOB = self.job.id.0,
                OSBUILD_STAGE_ID = %id,
                "committing stage {id}: a queued job needs it too"
            );
        }
        keep
    }
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

    #[test]
    fn finished_states() {
        let cases = [
            (JobState::Queued, "queued", false),
            (JobState::Running, "running", false),
            (JobState::Succeeded, "succeeded", true),
            (JobState::Failed, "failed", true),
            (JobState::Cancelled, "cancelled", true),
        ];
        for (s, name, done) in cases {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.is_finished(), done, "{name}");
        }
    }
}
