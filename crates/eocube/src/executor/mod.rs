//! Executors: who runs the tasks of a run, and the one scheduler above all of them (DESIGN
//! section 9).
//!
//! ```text
//! build ─▶ run folder (worker) ─▶ scheduler ──launch/cancel──▶ Executor (local | slurm | ...)
//!                                     ▲  ◀──TaskEvent: Started / Ended(TaskResult)──┘
//!                                     └─▶ recorder (background): ledger + report, batched
//! ```
//!
//! Owns: the [`Executor`] seam, per-task timeouts, retries with backoff and their
//! classification (once, for every executor), the background recorder, what a run tells its
//! [`Watcher`] (the CLI draws it) and the final [`Summary`]. Must not touch: what a job computes (`job`), a task's jobs (`worker`) or how the
//! store lays out bytes (`store`).

pub mod array;
#[cfg(any(feature = "batch", feature = "lambda"))]
pub mod aws;
#[cfg(feature = "batch")]
pub mod batch;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "lambda")]
pub mod lambda;
mod local;
mod pool;
#[cfg(any(feature = "kubernetes", feature = "batch", feature = "lambda"))]
pub mod remote;
mod scheduler;
pub mod slurm;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use local::LocalExecutor;
pub use scheduler::{Executor, ExecutorError, Pending, TaskEnd, TaskEvent, run};

pub(crate) use crate::unit_random as jitter;

use crate::job::JobStats;
use crate::plan::Job;

/// How jobs are run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Jobs in flight at once.
    pub workers: usize,
    /// One attempt of one job; a timed-out attempt counts as a transient failure.
    pub timeout: Duration,
    /// Attempts after the first, for transient failures only (a 404 or a corrupt TIFF fails at
    /// once: trying again cannot fix it).
    pub retries: u32,
    /// First wait between attempts; doubles each retry, with jitter, up to [`MAX_BACKOFF`].
    pub backoff: Duration,
}

/// 90 s per job: a chunk-month of Sentinel-2 reads ~170 MB; at 10 MB/s that is well inside.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_RETRIES: u32 = 5;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two attempts of a job.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { workers: 2, timeout: DEFAULT_TIMEOUT, retries: DEFAULT_RETRIES, backoff: DEFAULT_BACKOFF }
    }
}

impl RunOptions {
    /// Wait before retry number `retry` (0-based): `backoff * 2^retry`, capped, times a jitter
    /// in [0.5, 1.0] so that jobs failing together do not retry together.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let base = self.backoff.saturating_mul(1u32 << retry.min(16)).min(MAX_BACKOFF);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Done,
    Failed,
}

/// One job's line in the run report and, when done, its ledger record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job: Job,
    pub outcome: Outcome,
    /// Attempts after the first.
    pub retries: u32,
    /// Request attempts of the job that failed transiently and were sent again (5xx, 429,
    /// timeouts, resets, bodies cut short; [`crate::cloud::retries`]), over all its attempts.
    #[serde(default)]
    pub request_retries: u64,
    /// Wall time of all attempts, waits included.
    pub seconds: f64,
    /// The statistics of the last attempt.
    #[serde(flatten)]
    pub stats: JobStats,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Errors of earlier attempts that were retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried_errors: Vec<String>,
    /// The run whose scheduler recorded this line (`eocube report --run`); `None` in lines of
    /// cubes made before runs were stamped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The process that ran the job ([`crate::worker::worker_id`]: a Lambda log stream, a Slurm
    /// array task, a pod, `host:pid`); `None` when the attempt ended before any job ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The task attempt this line comes from, from 1 (stamped by the scheduler); 0 in older lines.
    #[serde(default)]
    pub attempt: u32,
    /// Wall-clock start and end of the job's last attempt, in Unix seconds (UTC, fractional).
    /// The first job of a task starts with the task (its joint catalog search included); for an
    /// attempt lost before its jobs ran, the scheduler's view of the task attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<f64>,
    /// Peak resident memory of the worker process when the job ended, in MB (`VmHWM` of
    /// /proc/self/status). Process-wide: with several jobs in flight in one process (the local
    /// executor) it is their joint peak so far, not this job's. `None` where unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
}

impl JobRecord {
    /// A job done in one attempt that took `seconds`.
    pub fn done(job: Job, stats: JobStats, seconds: f64) -> JobRecord {
        JobRecord {
            job,
            outcome: Outcome::Done,
            retries: 0,
            request_retries: 0,
            seconds,
            stats,
            error: None,
            retried_errors: vec![],
            run: None,
            worker: None,
            attempt: 0,
            started: None,
            ended: None,
            peak_rss_mb: None,
        }
    }

    /// A job whose attempt failed with `error`.
    pub fn failed(job: Job, error: String, seconds: f64) -> JobRecord {
        JobRecord {
            job,
            outcome: Outcome::Failed,
            retries: 0,
            request_retries: 0,
            seconds,
            stats: JobStats::default(),
            error: Some(error),
            retried_errors: vec![],
            run: None,
            worker: None,
            attempt: 0,
            started: None,
            ended: None,
            peak_rss_mb: None,
        }
    }

    /// The wall-clock span of the job, when both ends were recorded and in order.
    pub fn span(&self) -> Option<(f64, f64)> {
        match (self.started, self.ended) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b >= a => Some((a, b)),
            _ => None,
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Jobs in the plan.
    pub jobs: usize,
    /// Done before this run started (skipped).
    pub already_done: usize,
    pub done: usize,
    pub failed: usize,
    /// Neither done nor failed: left when the run was interrupted.
    pub not_run: usize,
    pub interrupted: bool,
    /// Scenes the catalog returned for the jobs of this run (`JobStats::scenes_found`)...
    pub scenes_found: usize,
    /// ...those that had data on a chunk (`JobStats::scenes`)...
    pub scenes: usize,
    /// ...and those not read because their solar day was already covered (`JobStats::scenes_covered`).
    pub scenes_covered: usize,
    pub requests: u64,
    pub bytes: u64,
    /// Job attempts after the first, and failed request attempts sent again, over all jobs.
    pub retries: u64,
    pub request_retries: u64,
    pub seconds: f64,
    /// The failed jobs' records, for the final report.
    #[serde(skip)]
    pub failures: Vec<JobRecord>,
}

impl Summary {
    /// Every job of the plan is in the ledger.
    pub fn complete(&self) -> bool {
        self.already_done + self.done == self.jobs
    }
}

/// What a run tells whoever watches it, as it goes. The library draws nothing: the CLI's
/// progress bar is one of these.
pub trait Observer: Send {
    /// Before the first task: the jobs to run and those done before.
    fn started(&mut self, _summary: &Summary) {}
    /// After each job ended for good (done, or failed with no retry left).
    fn job_ended(&mut self, _summary: &Summary, _record: &JobRecord) {}
    /// After the last job, or when the run was interrupted.
    fn finished(&mut self, _summary: &Summary) {}
    /// After a batch of done jobs is recorded: their chunks are final and readable from the
    /// coordinator's store (an Icechunk job's change set is merged by then). The overview
    /// pyramid builds the tiles above them from here on.
    fn recorded(&mut self, _jobs: &[Job]) {}
}

/// The observer of a run; [`Watcher::default`] watches nothing. Cheap to clone.
#[derive(Clone, Default)]
pub struct Watcher(Option<Arc<Mutex<dyn Observer>>>);

impl Watcher {
    pub fn new(observer: impl Observer + 'static) -> Watcher {
        Watcher(Some(Arc::new(Mutex::new(observer))))
    }

    /// A watcher that tells `self` and then `other` everything.
    pub fn and(self, other: Watcher) -> Watcher {
        match (&self.0, &other.0) {
            (None, _) => other,
            (_, None) => self,
            _ => Watcher::new(Both(self, other)),
        }
    }

    pub(crate) fn tell(&self, f: impl FnOnce(&mut dyn Observer)) {
        if let Some(o) = &self.0 {
            // A panic inside an observer leaves only drawing state behind; keep telling it.
            let mut guard = o.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut *guard);
        }
    }
}

/// Two watchers told the same things, in order.
struct Both(Watcher, Watcher);

impl Observer for Both {
    fn started(&mut self, summary: &Summary) {
        self.0.tell(|o| o.started(summary));
        self.1.tell(|o| o.started(summary));
    }
    fn job_ended(&mut self, summary: &Summary, record: &JobRecord) {
        self.0.tell(|o| o.job_ended(summary, record));
        self.1.tell(|o| o.job_ended(summary, record));
    }
    fn finished(&mut self, summary: &Summary) {
        self.0.tell(|o| o.finished(summary));
        self.1.tell(|o| o.finished(summary));
    }
    fn recorded(&mut self, jobs: &[Job]) {
        self.0.tell(|o| o.recorded(jobs));
        self.1.tell(|o| o.recorded(jobs));
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Watcher(..)" } else { "Watcher(none)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_is_capped_and_jittered_down_to_half() {
        let o = RunOptions::default();
        assert_eq!(o.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(o.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(o.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(o.delay(30, 1.0), MAX_BACKOFF);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn record_serializes_flat_with_outcome_and_job() {
        let r = JobRecord {
            job: Job { t: 1, iy: 2, ix: 3 },
            outcome: Outcome::Failed,
            retries: 2,
            seconds: 1.5,
            stats: JobStats { scenes: 4, ..Default::default() },
            error: Some("boom".into()),
            ..JobRecord::failed(Job { t: 0, iy: 0, ix: 0 }, String::new(), 0.0)
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["job"], serde_json::json!({"t": 1, "iy": 2, "ix": 3}));
        assert_eq!(v["outcome"], "failed");
        assert_eq!(v["scenes"], 4);
        assert_eq!(v["error"], "boom");
        assert!(v.get("retried_errors").is_none());
        assert!(v.get("started").is_none());
    }

    #[test]
    fn lines_written_before_the_timeline_fields_still_parse() {
        let old = serde_json::json!({"job": {"t": 0, "iy": 1, "ix": 2}, "outcome": "done", "retries": 0,
            "seconds": 2.0, "scenes_found": 1, "scenes": 1, "solar_days": 1, "requests": 3, "bytes": 10,
            "searches": 1, "search_seconds": 0.1, "read_seconds": 1.0, "reduce_seconds": 0.1,
            "write_seconds": 0.1, "warnings": []});
        let r: JobRecord = serde_json::from_value(old).unwrap();
        assert_eq!((r.span(), r.run, r.worker, r.attempt, r.peak_rss_mb), (None, None, None, 0, None));
        let mut r = JobRecord::done(Job { t: 0, iy: 0, ix: 0 }, JobStats::default(), 1.0);
        (r.started, r.ended) = (Some(10.0), Some(9.0));
        assert_eq!(r.span(), None, "an end before the start is no span");
    }
}
