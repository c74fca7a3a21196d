//! The scheduler: which jobs exist, which wait and which run. Synchronous and free of D-Bus,
//! so it is tested on its own; the bus adapter ([`super::interface`]) exports what it decides.
//!
//! - Admission: one uid may have at most `max_jobs_per_user` unfinished jobs.
//! - At most `max_jobs` builds run at once. A queued job starts when a slot is free and none
//!   of its not-yet-built stages is also a stage of a running job (a conflict).
//! - Single flight: a running job commits a stage that a queued job also needs
//!   (`Scheduler::wanted_by_queue`), so that stage is built once and both jobs use it. A job
//!   whose output (v1) or exported trees (v2: the manifest's pipeline ids + exports) are in
//!   the store conflicts with nothing and builds nothing: an identical Build queued behind a
//!   running one waits for it, then is served from the store.
//! - Retention: a finished job stays listed until it is forgotten (`keep_finished` later), or
//!   earlier when more than `max_finished_jobs` finished jobs, or their results together more
//!   than `max_finished_bytes`, are kept (the oldest go first).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::request::JobRequest;
use crate::buildroot::Cancel;
use crate::id::ObjectId;

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
    /// The most finished jobs kept at once.
    pub max_finished_jobs: usize,
    /// The most bytes of finished jobs' results kept at once.
    pub max_finished_bytes: usize,
    /// Exports (`ExportOutput`) running at once.
    pub max_exports: usize,
    /// After each job, prune the store (objects and downloads) to this many bytes.
    pub max_store_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 2,
            max_jobs_per_user: 8,
            max_manifest_bytes: 4 << 20,
            keep_finished: Duration::from_secs(300),
            max_finished_jobs: 64,
            max_finished_bytes: 64 << 20,
            max_exports: 4,
            max_store_bytes: None,
        }
    }
}

/// A job number; its object lives at `/org/osbuild/Builder1/job/<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

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

/// Who asked for a job.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub uid: u32,
    /// The owner's unique bus name: stage output goes only there.
    pub name: Option<String>,
}

/// One build request, admitted.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: JobId,
    pub owner: Owner,
    /// The validated request; its secrets are never logged, never in a signal or a result.
    pub request: JobRequest,
    /// Every stage and assembler id, in the order they run.
    pub order: Vec<ObjectId>,
    pub cancel: Cancel,
    pub status: Mutex<Status>,
    /// The full result (v10's or, for a v2 manifest, HEAD's: options, output, errors), set
    /// once when the job ends. Only the
    /// owner, or a caller allowed `cancel-other-user`, reads it (`Job.GetResult`).
    pub result: OnceLock<String>,
}

impl Job {
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    pub fn tree_id(&self) -> String {
        self.request.tree_id()
    }

    pub fn output_id(&self) -> String {
        self.request.output_id()
    }

    /// Ids this job would build that the store (`built`) does not have yet: none once what
    /// the job is for (a v1 output, a v2 manifest's exported trees) is built.
    fn missing(&self, built: &dyn Fn(&ObjectId) -> bool) -> BTreeSet<ObjectId> {
        let done = self.request.done_when();
        if done.is_some_and(|ids| ids.iter().all(built)) {
            return BTreeSet::new();
        }
        self.order.iter().filter(|id| !built(id)).cloned().collect()
    }
}

/// Locks a mutex, ignoring poisoning (a panicked build thread must not wedge the daemon).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a job was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The owner already has `active` unfinished jobs.
    TooManyJobs { active: usize },
    /// The daemon is shutting down ([`Scheduler::drain`] was called).
    ShuttingDown,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<JobId, Arc<Job>>,
    queue: VecDeque<JobId>,
    running: BTreeSet<JobId>,
    last: u64,
    /// Set by [`Scheduler::drain`]: no job is admitted any more.
    closed: bool,
}

/// The jobs, the queue and the running set (see the module doc).
pub(crate) struct Scheduler {
    limits: Limits,
    state: Mutex<State>,
}

impl Scheduler {
    pub fn new(limits: Limits) -> Self {
        Scheduler {
            limits,
            state: Mutex::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Queues `request` for `owner`, unless they have as many unfinished jobs as one may or
    /// the daemon is shutting down.
    pub fn admit(&self, owner: Owner, request: JobRequest) -> Result<Arc<Job>, Refused> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(Refused::ShuttingDown);
        }
        let active = s
            .jobs
            .values()
            .filter(|j| j.owner.uid == owner.uid && !j.status().state.is_finished())
            .count();
        if active >= self.limits.max_jobs_per_user {
            return Err(Refused::TooManyJobs { active });
        }
        s.last += 1;
        let id = JobId(s.last);
        let job = Arc::new(Job {
            id,
            owner,
            order: request.order(),
            request,
            cancel: Cancel::new(),
            status: Mutex::new(Status {
                state: JobState::Queued,
                progress: 0.0,
            }),
            result: OnceLock::new(),
        });
        s.jobs.insert(id, job.clone());
        s.queue.push_back(id);
        Ok(job)
    }

    /// Jobs known, oldest first.
    pub fn job_ids(&self) -> Vec<JobId> {
        lock(&self.state).jobs.keys().copied().collect()
    }

    pub fn job(&self, id: JobId) -> Option<Arc<Job>> {
        lock(&self.state).jobs.get(&id).cloned()
    }

    /// Moves the queued jobs that may start now (free slots, no conflicts) to the running
    /// set and returns them, in queue order. `built` tells which ids the store has.
    pub fn start_ready(&self, built: &dyn Fn(&ObjectId) -> bool) -> Vec<Arc<Job>> {
        let mut s = lock(&self.state);
        let mut started = Vec::new();
        while s.running.len() < self.limits.max_jobs {
            let busy: BTreeSet<ObjectId> = s
                .running
                .iter()
                .filter_map(|r| s.jobs.get(r))
                .flat_map(|j| j.missing(built))
                .collect();
            let pick = s.queue.iter().position(|q| {
                s.jobs
                    .get(q)
                    .is_some_and(|j| j.missing(built).is_disjoint(&busy))
            });
            let Some(id) = pick.and_then(|pos| s.queue.remove(pos)) else {
                break;
            };
            let Some(job) = s.jobs.get(&id).cloned() else {
                continue;
            };
            s.running.insert(id);
            lock(&job.status).state = JobState::Running;
            started.push(job);
        }
        started
    }

    /// Whether a queued job other than `me` needs stage `id`.
    pub fn wanted_by_queue(&self, me: JobId, id: &ObjectId) -> bool {
        let s = lock(&self.state);
        s.queue
            .iter()
            .filter(|q| **q != me)
            .filter_map(|q| s.jobs.get(q))
            .any(|j| j.order.contains(id))
    }

    /// Removes a queued job from the queue; false when it was not queued.
    pub fn dequeue(&self, id: JobId) -> bool {
        let mut s = lock(&self.state);
        let before = s.queue.len();
        s.queue.retain(|q| *q != id);
        before != s.queue.len()
    }

    /// Records that `job` ended in `state`, which frees its slot. Returns the older finished
    /// jobs forgotten to stay within the retention limits.
    pub fn finish(&self, job: &Job, state: JobState) -> Vec<JobId> {
        {
            let mut st = lock(&job.status);
            st.state = state;
            if state == JobState::Succeeded {
                st.progress = 1.0;
            }
        }
        let mut s = lock(&self.state);
        s.running.remove(&job.id);
        s.queue.retain(|q| *q != job.id);
        let finished: Vec<(JobId, usize)> = s
            .jobs
            .values()
            .filter(|j| j.status().state.is_finished())
            .map(|j| (j.id, j.result.get().map_or(0, String::len)))
            .collect(); // in id order: oldest first
        let (mut count, mut bytes) = (finished.len(), finished.iter().map(|f| f.1).sum::<usize>());
        let mut forgotten = Vec::new();
        for (id, size) in finished {
            let over =
                count > self.limits.max_finished_jobs || bytes > self.limits.max_finished_bytes;
            if !over || id == job.id {
                break;
            }
            s.jobs.remove(&id);
            forgotten.push(id);
            count -= 1;
            bytes -= size;
        }
        forgotten
    }

    /// Drops a finished job (its retention time is over).
    pub fn forget(&self, id: JobId) {
        lock(&self.state).jobs.remove(&id);
    }

    /// Empties the queue, admits no job from now on, and returns every job (daemon shutdown).
    pub fn drain(&self) -> Vec<Arc<Job>> {
        let mut s = lock(&self.state);
        s.closed = true;
        s.queue.clear();
        s.jobs.values().cloned().collect()
    }

    /// Whether any job is known (queued, running, or finished and not yet forgotten).
    pub fn has_jobs(&self) -> bool {
        !lock(&self.state).jobs.is_empty()
    }

    /// Admits no job from now on, if none is known; false (and nothing changed) otherwise.
    /// Idle exit: checked and closed under one lock, so no job slips in between.
    pub fn close_if_empty(&self) -> bool {
        let mut s = lock(&self.state);
        if s.jobs.is_empty() {
            s.closed = true;
        }
        s.closed
    }

    /// Whether a build is still running.
    pub fn any_running(&self) -> bool {
        !lock(&self.state).running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request for a manifest whose stages are test stages with the given options;
    /// parsed without a libdir, so nothing needs to exist.
    fn request(stages: &[&str]) -> JobRequest {
        let stages: Vec<String> = stages
            .iter()
            .map(|o| format!(r#"{{"name": "org.osbuild.test", "options": {{"o": "{o}"}}}}"#))
            .collect();
        let text = format!(r#"{{"pipeline": {{"stages": [{}]}}}}"#, stages.join(", "));
        JobRequest::V1(crate::pipeline::Request {
            manifest: crate::manifest::parse(&text).expect("a valid manifest"),
            checkpoints: Default::default(),
            secrets: None,
            unprivileged_caller: false,
            source_epoch: None,
        })
    }

    fn owner(uid: u32) -> Owner {
        Owner { uid, name: None }
    }

    fn limits(max_jobs: usize, max_jobs_per_user: usize) -> Limits {
        Limits {
            max_jobs,
            max_jobs_per_user,
            ..Limits::default()
        }
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

    fn nothing_built(_: &ObjectId) -> bool {
        false
    }

    #[test]
    fn per_user_limit_counts_unfinished_jobs_only() {
        let s = Scheduler::new(limits(0, 2));
        let first = s.admit(owner(1), request(&["a"])).unwrap();
        s.admit(owner(1), request(&["a"])).unwrap();
        assert_eq!(
            s.admit(owner(1), request(&["a"])).unwrap_err(),
            Refused::TooManyJobs { active: 2 }
        );
        s.admit(owner(2), request(&["a"])).expect("another uid");
        assert!(s.dequeue(first.id));
        s.finish(&first, JobState::Cancelled);
        s.admit(owner(1), request(&["a"]))
            .expect("a finished job no longer counts");
        assert_eq!(s.job_ids().len(), 4);
    }

    /// A v2 request exporting `export` of a manifest where "image" builds on "base".
    fn v2_request(export: &str) -> JobRequest {
        let text = r#"{"version": "2", "pipelines": [
            {"name": "base", "stages": [{"type": "org.osbuild.test", "options": {"o": 1}}]},
            {"name": "image", "build": "name:base",
             "stages": [{"type": "org.osbuild.test", "options": {"o": 2}}]},
            {"name": "other", "stages": [{"type": "org.osbuild.test", "options": {"o": 3}}]}
        ]}"#;
        let Ok(crate::manifest::Document::V2(m)) = crate::manifest::parse_document(text) else {
            panic!("a valid v2 manifest");
        };
        let r = crate::pipeline::V2Request::new(m, vec![export.to_owned()], &[]).unwrap();
        JobRequest::V2(r)
    }

    #[test]
    fn identical_v2_builds_wait_for_each_other_and_then_build_nothing() {
        let s = Scheduler::new(limits(2, 8));
        let a = s.admit(owner(1), v2_request("image")).unwrap();
        let b = s.admit(owner(2), v2_request("image")).unwrap();
        let other = s.admit(owner(2), v2_request("other")).unwrap();
        assert_eq!(a.order.len(), 2, "base and image, not other: {:?}", a.order);
        let started: Vec<JobId> = s.start_ready(&nothing_built).iter().map(|j| j.id).collect();
        assert_eq!(started, [a.id, other.id], "the identical build waits");
        assert!(s.wanted_by_queue(a.id, &a.order[0]), "b needs base");
        s.finish(&a, JobState::Succeeded);
        // Only the export is in the store (base was not kept): b has nothing to build.
        let image = a.request.done_when().unwrap();
        assert_eq!(image.as_slice(), &a.order[1..]);
        let built = |id: &ObjectId| image.contains(id);
        assert!(b.missing(&built).is_empty());
        let next: Vec<JobId> = s.start_ready(&built).iter().map(|j| j.id).collect();
        assert_eq!(next, [b.id]);
    }

    #[test]
    fn conflicting_jobs_wait_and_shared_stages_are_wanted() {
        let s = Scheduler::new(limits(2, 8));
        let a = s.admit(owner(1), request(&["x", "y"])).unwrap();
        let b = s.admit(owner(1), request(&["x"])).unwrap();
        let c = s.admit(owner(1), request(&["z"])).unwrap();
        let started: Vec<JobId> = s.start_ready(&nothing_built).iter().map(|j| j.id).collect();
        assert_eq!(
            started,
            [a.id, c.id],
            "b shares stage x with a, so it waits"
        );
        assert_eq!(b.status().state, JobState::Queued);
        assert!(
            s.wanted_by_queue(a.id, &a.order[0]),
            "b needs a's first stage"
        );
        assert!(!s.wanted_by_queue(a.id, &a.order[1]));
        assert!(s.start_ready(&nothing_built).is_empty(), "no free slot");
        s.finish(&a, JobState::Succeeded);
        assert_eq!(a.status().progress, 1.0);
        let built = |id: &ObjectId| a.order.contains(id);
        let next: Vec<JobId> = s.start_ready(&built).iter().map(|j| j.id).collect();
        assert_eq!(next, [b.id]);
        assert!(s.any_running());
    }

    #[test]
    fn finished_jobs_are_kept_within_count_and_bytes() {
        let s = Scheduler::new(Limits {
            max_finished_jobs: 2,
            max_finished_bytes: 100,
            ..limits(0, 8)
        });
        let done = |size: usize| {
            let j = s.admit(owner(1), request(&["x"])).unwrap();
            s.dequeue(j.id);
            j.result.set("r".repeat(size)).unwrap();
            let forgotten = s.finish(&j, JobState::Succeeded);
            (j.id, forgotten)
        };
        let (a, none) = done(10);
        assert!(none.is_empty());
        let (b, none) = done(10);
        assert!(none.is_empty());
        let (c, forgotten) = done(10);
        assert_eq!(forgotten, [a], "a third finished job pushes out the oldest");
        let (d, forgotten) = done(95);
        assert_eq!(forgotten, [b, c], "95 + 10 bytes are more than 100");
        let (_, forgotten) = done(200);
        assert_eq!(
            forgotten,
            [d],
            "the newest is kept even when it alone is too large"
        );
        let unfinished = s.admit(owner(1), request(&["y"])).unwrap();
        assert!(
            s.job(unfinished.id).is_some(),
            "unfinished jobs are never forgotten"
        );
    }

    #[test]
    fn forgotten_and_drained_jobs() {
        let s = Scheduler::new(limits(0, 8));
        let a = s.admit(owner(1), request(&["x"])).unwrap();
        s.admit(owner(1), request(&["y"])).unwrap();
        s.finish(&a, JobState::Failed);
        s.forget(a.id);
        assert!(s.job(a.id).is_none());
        assert_eq!(s.drain().len(), 1);
        assert_eq!(
            s.admit(owner(2), request(&["z"])).unwrap_err(),
            Refused::ShuttingDown
        );
        assert!(
            s.start_ready(&nothing_built).is_empty(),
            "the queue is empty"
        );
        assert!(!s.any_running());
    }

    #[test]
    fn idle_exit_closes_only_without_jobs() {
        let s = Scheduler::new(limits(1, 8));
        let a = s.admit(owner(1), request(&["x"])).unwrap();
        assert!(!s.close_if_empty(), "a queued job");
        s.finish(&a, JobState::Succeeded);
        assert!(!s.close_if_empty(), "a finished job is kept for its owner");
        assert!(s.admit(owner(1), request(&["y"])).is_ok(), "still open");
        s.drain();
        let s = Scheduler::new(limits(1, 8));
        assert!(!s.has_jobs());
        assert!(s.close_if_empty());
        assert_eq!(
            s.admit(owner(1), request(&["x"])).unwrap_err(),
            Refused::ShuttingDown
        );
    }
}
