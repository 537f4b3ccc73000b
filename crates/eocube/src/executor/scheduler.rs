//! The scheduler: takes a run's pending tasks through any [`Executor`] to their end. One place
//! for what every engine needs: a bound on each attempt, retries with backoff for transient
//! failures only, the per-job records, and a recorder that writes the ledger and the run report
//! in batches on a task of its own, so a slow store never stalls the loop (nor the timeouts).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{JobRecord, Outcome, RunOptions, Summary, Watcher, jitter};
use crate::plan::Job;
use crate::store::{Cube, Finished, StoreError};
use crate::worker::{StoredRun, TaskExit, TaskResult, unix_now};

/// What an executor reports about a task.
#[derive(Debug)]
pub enum TaskEvent {
    /// The attempt began running (its time bound starts now).
    Started {
        index: u32,
    },
    Ended {
        index: u32,
        end: TaskEnd,
    },
}

/// How a task attempt ended.
#[derive(Debug)]
pub enum TaskEnd {
    /// The worker's result, handed over in-process or read from its result file.
    Result(TaskResult),
    /// The attempt ended without a result (killed, cancelled, its node lost, the worker
    /// crashed before writing one).
    Lost { reason: String, transient: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("{executor}: {reason}")]
    Engine { executor: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recording finished jobs failed, the build stops: {0}")]
    Recorder(StoreError),
}

/// Who runs the tasks: this process, a Slurm cluster, ... Implementations start attempts and
/// report their ends; they never retry, time out or record anything themselves.
#[async_trait]
pub trait Executor: Send + Sync {
    /// For messages and the run record: `local`, `slurm`, ...
    fn name(&self) -> &'static str;
    /// Starts one attempt of each task in `tasks`; returns once the engine has them. Each sends
    /// [`TaskEvent::Started`] (when it runs) and then exactly one [`TaskEvent::Ended`].
    async fn launch(&self, tasks: Vec<u32>, events: mpsc::UnboundedSender<TaskEvent>) -> Result<(), ExecutorError>;
    /// Stops the attempt of task `index`; it then ends as [`TaskEnd::Lost`].
    async fn cancel(&self, index: u32) -> Result<(), ExecutorError>;
    /// Stops every attempt (the build was interrupted); no more events need to follow.
    async fn shutdown(&self);
    /// One line on what the engine did, for the end of the build (invocations per second, ...).
    fn summary(&self) -> Option<String> {
        None
    }
}

/// Finished jobs written at once at most: a batch is what has queued up while the last one
/// was being written.
const RECORD_BATCH: usize = 512;
/// Finished jobs waiting for the recorder before the scheduler waits for it.
const RECORD_QUEUE: usize = 16_384;
/// How often timeouts and due retries are looked at.
const TICK: Duration = Duration::from_millis(200);
/// Beyond a task's own bound (the worker's per-job timeouts): start-up, result writing.
const TASK_SLACK: Duration = Duration::from_secs(30);

/// A task's attempts so far.
#[derive(Default)]
struct TaskState {
    attempt: u32,
    started: Option<Instant>,
    /// When the current attempt began, Unix seconds: the span of jobs it lost before they ran.
    started_wall: Option<f64>,
    timed_out: bool,
    errors: Vec<String>,
    /// Failed request attempts of earlier attempts, per job (a record holds its last attempt's).
    request_retries: HashMap<Job, u64>,
    /// Jobs of the task already recorded as done (an attempt after a partial one repeats them).
    recorded: Vec<Job>,
}

/// The tasks of a stored run still to be run.
pub struct Pending<'a> {
    pub run: &'a StoredRun,
    /// Task indices to launch, each at most once.
    pub tasks: Vec<u32>,
    /// How many of the plan's jobs were done before this run (for the summary).
    pub already_done: usize,
}

/// Runs the pending tasks through `executor` until each has ended for good or `stop` completes
/// (Ctrl-C: attempts are stopped; unfinished jobs stay pending). Every ended job is recorded in
/// `cube` (ledger when done, run report always) by the background recorder; the summary counts
/// jobs, not tasks.
pub async fn run(
    executor: &dyn Executor,
    pending: Pending<'_>,
    cube: &Arc<Cube>,
    opts: &RunOptions,
    watcher: &Watcher,
    stop: impl Future<Output = ()>,
) -> Result<Summary, ExecutorError> {
    let Pending { run, tasks, already_done } = pending;
    let t0 = Instant::now();
    let pending_jobs: usize = tasks.iter().map(|&i| run.record.task_jobs(&run.jobs, i).len()).sum();
    let mut summary =
        Summary { jobs: already_done + pending_jobs, already_done, not_run: pending_jobs, ..Default::default() };
    watcher.tell(|o| o.started(&summary));
    let mut recorder = Recorder::spawn(Arc::clone(cube), watcher.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut states: HashMap<u32, TaskState> = HashMap::new();
    let mut outstanding = tasks.len();
    let mut retry_at: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    if !tasks.is_empty() {
        executor.launch(tasks, tx.clone()).await?;
    }
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(TICK);
    while outstanding > 0 {
        tokio::select! {
            biased;
            () = &mut stop => {
                summary.interrupted = true;
                executor.shutdown().await;
                break;
            }
            event = rx.recv() => {
                let Some(event) = event else { break };
                match event {
                    TaskEvent::Started { index } => {
                        let state = states.entry(index).or_default();
                        state.started = Some(Instant::now());
                        state.started_wall = Some(unix_now());
                    }
                    TaskEvent::Ended { index, end } => {
                        let state = states.entry(index).or_default();
                        let jobs = run.record.task_jobs(&run.jobs, index);
                        let mut result = match end {
                            TaskEnd::Result(r) => r,
                            TaskEnd::Lost { reason, transient } => {
                                TaskResult::failed_before_jobs(index, jobs, &reason, transient)
                            }
                        };
                        if std::mem::take(&mut state.timed_out) {
                            let bound = task_bound(run, jobs.len());
                            result = TaskResult::failed_before_jobs(
                                index,
                                jobs,
                                &format!(
                                    "task {index} ran longer than {} s and was stopped; raise `timeout` if jobs are \
                                     slow rather than stuck",
                                    bound.as_secs()
                                ),
                                true,
                            );
                        }
                        state.started = None;
                        let attempt_span = (state.started_wall.take(), unix_now());
                        let last = result.exit != TaskExit::Retry || state.attempt >= opts.retries;
                        for j in result.jobs {
                            let job = j.record.job;
                            if j.record.outcome == Outcome::Done {
                                if state.recorded.contains(&job) {
                                    continue;
                                }
                                state.recorded.push(job);
                            } else if !last {
                                state.errors.push(j.record.error.clone().unwrap_or_default());
                                *state.request_retries.entry(job).or_default() += j.record.request_retries;
                                continue;
                            }
                            let mut record = j.record;
                            record.request_retries += state.request_retries.remove(&job).unwrap_or(0);
                            record.retries = state.attempt;
                            record.retried_errors = state.errors.clone();
                            record.run = Some(run.record.id.clone());
                            record.attempt = state.attempt + 1;
                            if record.started.is_none() {
                                (record.started, record.ended) = (attempt_span.0, Some(attempt_span.1));
                            }
                            count(&mut summary, &record, t0);
                            recorder.send(&record, j.receipt).await?;
                            watcher.tell(|o| o.job_ended(&summary, &record));
                        }
                        if last {
                            states.remove(&index);
                            outstanding -= 1;
                        } else {
                            let delay = opts.delay(state.attempt, jitter());
                            state.attempt += 1;
                            retry_at.push(Reverse((Instant::now() + delay, index)));
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(Reverse((at, index))) = retry_at.peek().copied() {
                    if at > now {
                        break;
                    }
                    retry_at.pop();
                    due.push(index);
                }
                if !due.is_empty() {
                    executor.launch(due, tx.clone()).await?;
                }
                for (&index, state) in states.iter_mut() {
                    let jobs = run.record.task_jobs(&run.jobs, index).len();
                    if !state.timed_out && state.started.is_some_and(|s| now - s > task_bound(run, jobs)) {
                        state.timed_out = true;
                        executor.cancel(index).await?;
                    }
                }
                recorder.check().await?;
            }
        }
    }
    recorder.finish().await?;
    summary.seconds = t0.elapsed().as_secs_f64();
    watcher.tell(|o| o.finished(&summary));
    Ok(summary)
}

/// The longest an attempt of a task of `jobs` jobs may run before it is stopped.
fn task_bound(run: &StoredRun, jobs: usize) -> Duration {
    run.record.task_timeout(jobs) + TASK_SLACK
}

fn count(summary: &mut Summary, record: &JobRecord, t0: Instant) {
    summary.not_run = summary.not_run.saturating_sub(1);
    summary.scenes_found += record.stats.scenes_found;
    summary.scenes += record.stats.scenes;
    summary.scenes_covered += record.stats.scenes_covered;
    summary.requests += record.stats.requests;
    summary.bytes += record.stats.bytes;
    summary.retries += u64::from(record.retries);
    summary.request_retries += record.request_retries;
    match record.outcome {
        Outcome::Done => summary.done += 1,
        Outcome::Failed => {
            summary.failed += 1;
            summary.failures.push(record.clone());
        }
    }
    summary.seconds = t0.elapsed().as_secs_f64();
}

/// The background writer of finished jobs.
struct Recorder {
    tx: mpsc::Sender<Finished>,
    handle: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// Attempts of one batch write before the build stops.
const RECORD_ATTEMPTS: u32 = 6;

impl Recorder {
    /// `watcher` is told of every batch of done jobs once it is written.
    fn spawn(cube: Arc<Cube>, watcher: Watcher) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Finished>(RECORD_QUEUE);
        let handle = tokio::spawn(async move {
            let backoff = RunOptions::default();
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < RECORD_BATCH {
                    match rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                let mut attempt = 0;
                loop {
                    match cube.record(batch.clone()).await {
                        Ok(()) => {
                            let done: Vec<Job> = batch.iter().filter(|f| f.receipt.is_some()).map(|f| f.job).collect();
                            if !done.is_empty() {
                                watcher.tell(|o| o.recorded(&done));
                            }
                            break;
                        }
                        Err(e) if e.is_transient() && attempt + 1 < RECORD_ATTEMPTS => {
                            tokio::time::sleep(backoff.delay(attempt, jitter())).await;
                            attempt += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        });
        Recorder { tx, handle }
    }

    async fn send(&mut self, record: &JobRecord, receipt: Option<crate::store::Receipt>) -> Result<(), ExecutorError> {
        let line = serde_json::to_value(record).map_err(|e| {
            ExecutorError::Recorder(StoreError::Record {
                location: String::new(),
                what: format!("the report line of job {:?}", record.job),
                reason: e.to_string(),
            })
        })?;
        let receipt = if record.outcome == Outcome::Done { receipt } else { None };
        let finished = Finished { job: record.job, receipt, record: line };
        if self.tx.send(finished).await.is_err() {
            return Err(self.stopped().await);
        }
        Ok(())
    }

    /// The recorder's error, if it has stopped on one.
    async fn check(&mut self) -> Result<(), ExecutorError> {
        if self.handle.is_finished() {
            return Err(self.stopped().await);
        }
        Ok(())
    }

    /// Why the recorder task ended before it was told to.
    async fn stopped(&mut self) -> ExecutorError {
        match (&mut self.handle).await {
            Ok(Err(e)) => ExecutorError::Recorder(e),
            Ok(Ok(())) => ExecutorError::Engine { executor: "recorder", reason: "stopped early".into() },
            Err(e) => ExecutorError::Engine { executor: "recorder", reason: e.to_string() },
        }
    }

    /// Waits until every finished job is written.
    async fn finish(self) -> Result<(), ExecutorError> {
        drop(self.tx);
        match self.handle.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ExecutorError::Recorder(e)),
            Err(e) => Err(ExecutorError::Engine { executor: "recorder", reason: e.to_string() }),
        }
    }
}
