//! Build threads: each job's build runs on its own `std::thread`, which spawns and waits for
//! its sandboxes itself (bubblewrap dies with the thread that spawned it). What happens comes
//! back as [`JobEvent`]s over a channel, for the bus adapter to relay. No D-Bus here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::outcome::Built;
use super::request::JobRequest;
use super::scheduler::{Job, JobId, Scheduler};
use super::Service;
use crate::events::{Event, Monitor, SourceProgress};
use crate::id::ObjectId;
use crate::pipeline::{BuildError, Builder, CommitPolicy};

/// What a build thread tells its job's task.
pub(crate) enum JobEvent {
    Started {
        id: ObjectId,
        name: String,
        /// The v2 pipeline of the stage (`None` for v1 manifests).
        pipeline: Option<String>,
    },
    Output {
        id: ObjectId,
        name: String,
        line: String,
    },
    Finished {
        id: ObjectId,
        name: String,
        pipeline: Option<String>,
        success: bool,
        seconds: f64,
    },
    /// Where a source's download stands, at most every [`DOWNLOAD_INTERVAL`].
    Download {
        source: String,
        progress: SourceProgress,
    },
    Done(Result<Built, BuildError>),
}

/// The shortest time between two download reports of one job (at most 10 a second reach
/// the bus, however often the sources report).
pub(crate) const DOWNLOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Passes a source's reports at most every `interval`; the latest one held back is sent when
/// the source finishes, so the last report a client sees is where the download ended.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    held: Option<(String, SourceProgress)>,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            held: None,
        }
    }

    /// The report to send now, if any (otherwise it is held back).
    fn report(
        &mut self,
        now: Instant,
        source: &str,
        progress: SourceProgress,
    ) -> Option<(String, SourceProgress)> {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            self.last = Some(now);
            self.held = None;
            Some((source.to_owned(), progress))
        } else {
            self.held = Some((source.to_owned(), progress));
            None
        }
    }

    /// The report held back when the source finished.
    fn flush(&mut self) -> Option<(String, SourceProgress)> {
        self.held.take()
    }
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
                pipeline: None,
                current: None,
                downloads: Throttle::new(DOWNLOAD_INTERVAL),
            };
            let result = match &job.request {
                JobRequest::V1(r) => builder.build(r, &mut monitor).map(Built::V1),
                JobRequest::V2(r) => builder.build_v2(r, &mut monitor).map(Built::V2),
            };
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

/// Turns pipeline events into [`JobEvent`]s; a source's start and end only go to the
/// journal, its progress to the job's owner (throttled).
struct JobMonitor {
    tx: mpsc::Sender<JobEvent>,
    job: JobId,
    /// The v2 pipeline building now (`PipelineStarted`); v1 manifests have none.
    pipeline: Option<String>,
    current: Option<Current>,
    downloads: Throttle,
}

/// The module running now: its output lines and its end are reported under its names.
#[derive(Clone)]
struct Current {
    id: ObjectId,
    name: String,
    pipeline: Option<String>,
}

impl JobMonitor {
    fn download(&self, report: Option<(String, SourceProgress)>) {
        if let Some((source, progress)) = report {
            let _ = self
                .tx
                .blocking_send(JobEvent::Download { source, progress });
        }
    }
}

impl Monitor for JobMonitor {
    fn event(&mut self, event: Event<'_>) {
        let msg = match event {
            Event::ModuleStarted { name, id, .. } => {
                let current = Current {
                    id: id.clone(),
                    name: name.to_owned(),
                    pipeline: self.pipeline.clone(),
                };
                self.current = Some(current.clone());
                JobEvent::Started {
                    id: current.id,
                    name: current.name,
                    pipeline: current.pipeline,
                }
            }
            Event::Output { line } => {
                let Some(Current { id, name, .. }) = self.current.clone() else {
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
            Event::SourceProgress { name, progress } => {
                let report = self.downloads.report(Instant::now(), name, progress);
                self.download(report);
                return;
            }
            Event::SourceFinished {
                name,
                success,
                seconds,
            } => {
                let held = self.downloads.flush();
                self.download(held);
                tracing::info!(
                    OSBUILD_JOB = self.job.0,
                    "{name}: {} after {seconds:.1} s",
                    if success { "fetched" } else { "failed" }
                );
                return;
            }
            Event::PipelineStarted { name, .. } => {
                self.pipeline = Some(name.to_owned());
                return;
            }
            Event::PipelineFinished { .. } => {
                self.pipeline = None;
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
                pipeline: self.current.as_ref().and_then(|c| c.pipeline.clone()),
                success,
                seconds,
            },
        };
        let _ = self.tx.blocking_send(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_reported_at_most_every_interval_and_the_last_is_kept() {
        let mut t = Throttle::new(Duration::from_millis(100));
        let at = |ms| Instant::now() + Duration::from_millis(ms);
        let start = Instant::now();
        let p = |bytes_done| SourceProgress {
            bytes_done,
            bytes_total: 100,
            ..SourceProgress::default()
        };
        let mut sent = Vec::new();
        // 30 reports in 150 ms: the first, and the one 100 ms after it.
        for i in 0..30u64 {
            let now = start + Duration::from_millis(i * 5);
            if let Some((_, p)) = t.report(now, "org.osbuild.files", p(i)) {
                sent.push(p.bytes_done);
            }
        }
        assert_eq!(sent, [0, 20]);
        let (source, last) = t.flush().expect("the latest report waits for the end");
        assert_eq!(
            (source.as_str(), last.bytes_done),
            ("org.osbuild.files", 29)
        );
        assert!(t.flush().is_none(), "flushed once");
        assert!(
            t.report(at(1000), "s", p(30)).is_some(),
            "after a pause, at once"
        );
        assert!(
            t.flush().is_none(),
            "nothing held when the last one was sent"
        );
    }
}
