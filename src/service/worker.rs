//! Build threads: each job's build runs on its own `std::thread`, which spawns and waits for
//! its sandboxes itself (bubblewrap dies with the thread that spawned it). What happens comes
//! back as [`JobEvent`]s over a channel, for the bus adapter to relay. No D-Bus here.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::scheduler::{Job, JobId, Scheduler};
use super::Service;
use crate::events::{Event, Monitor};
use crate::id::ObjectId;
use crate::pipeline::{BuildError, Builder, CommitPolicy, PipelineResult};

/// What a build thread tells its job's task.
pub(crate) enum JobEvent {
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

/// How many events a build thread may be ahead of the bus: when the relay is slower than a
/// stage prints, the build thread waits (and so does the stage, on its full pipe) instead of
/// the daemon buffering without bound. With lines of at most
/// [`crate::buildroot::MAX_LINE_BYTES`], at most 4 MiB wait per job.
const EVENTS_IN_FLIGHT: usize = 64;

/// Starts `job`'s build thread; its events arrive on the returned channel, which closes
/// without [`JobEvent::Done`] only when the thread panicked.
pub(crate) fn spawn(
    svc: &Arc<Service>,
    job: &Arc<Job>,
) -> std::io::Result<mpsc::Receiver<JobEvent>> {
    let (tx, rx) = mpsc::channel(EVENTS_IN_FLIGHT);
    let (svc, job) = (svc.clone(), job.clone());
    std::thread::Builder::new()
        .name(format!("job-{}", job.id))
        .spawn(move || {
            let shared = SharedStages {
                scheduler: &svc.scheduler,
                job: job.id,
            };
            let builder = Builder {
                store: &svc.store,
                index: &svc.index,
                commit: &shared,
                cancel: job.cancel.clone(),
            };
            let mut monitor = JobMonitor {
                tx: tx.clone(),
                job: job.id,
                current: None,
            };
            let result = builder.build(&job.request, &mut monitor);
            let _ = tx.blocking_send(JobEvent::Done(result));
        })?;
    Ok(rx)
}

/// Single flight: commit a stage that a queued job also needs, so it is built once.
struct SharedStages<'a> {
    scheduler: &'a Scheduler,
    job: JobId,
}

impl CommitPolicy for SharedStages<'_> {
    fn also_commit(&self, id: &ObjectId) -> bool {
        let keep = self.scheduler.wanted_by_queue(self.job, id);
        if keep {
            tracing::info!(
                OSBUILD_JOB = self.job.0,
                OSBUILD_STAGE_ID = %id,
                "committing stage {id}: a queued job needs it too"
            );
        }
        keep
    }
}

/// Turns pipeline events into [`JobEvent`]s; source events only go to the journal.
struct JobMonitor {
    tx: mpsc::Sender<JobEvent>,
    job: JobId,
    current: Option<(ObjectId, String)>,
}

impl Monitor for JobMonitor {
    fn event(&mut self, event: Event<'_>) {
        let msg = match event {
            Event::ModuleStarted { name, id, .. } => {
                self.current = Some((id.clone(), name.to_owned()));
                JobEvent::Started {
                    id: id.clone(),
                    name: name.to_owned(),
                }
            }
            Event::Output { line } => {
                let Some((id, name)) = self.current.clone() else {
                    return;
                };
                JobEvent::Output {
                    id,
                    name,
                    line: line.to_owned(),
                }
            }
            Event::SourceStarted { name, files } => {
                tracing::info!(OSBUILD_JOB = self.job.0, "{name}: fetching {files} files");
                return;
            }
            Event::SourceProgress { .. } => return,
            Event::SourceFinished {
                name,
                success,
                seconds,
            } => {
                tracing::info!(
                    OSBUILD_JOB = self.job.0,
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
            } => JobEvent::Finished {
                id: id.clone(),
                name: name.to_owned(),
                success,
                seconds,
            },
        };
        let _ = self.tx.blocking_send(msg);
    }
}
